"""The random changes made to every pretraining clip, as one setting.

`clip_augmentation` (gin-configurable) builds the `ClipAugmentation` that
`pipeline.make_train_dataset` applies: the audio-video offset, the
RandomResizedCrop, the flip, the colour jitter and the audio gain.
"""

import dataclasses
from typing import Tuple

import gin

from avid_tf import errors
from avid_tf.utils import checks


@dataclasses.dataclass(frozen=True)
class VideoAugmentation:
  """The crop, flip and colour jitter of a video clip, shared by pretraining
  (`ClipAugmentation`) and fine-tuning (`finetune_data.ClipSettings`) clips.

  A subclass checks these fields in its `__post_init__` with
  `check_video_augmentation`.
  """

  crop_scale: Tuple[float, float]
  crop_ratio: Tuple[float, float]
  flip_probability: float
  brightness: float
  contrast: float
  saturation: float
  hue: float

  def check_video_augmentation(self, builder):
    """Checks and normalises the fields above, in place.

    Args:
      builder: the gin name that binds them.

    Raises:
      errors.InvalidValueError: naming `<builder>.<field>`.
    """
    checks.field(self, builder, "crop_scale", checks.numbers_pair, low=0)
    checks.field(self, builder, "crop_ratio", checks.numbers_pair, low=0)
    checks.field(self, builder, "flip_probability", checks.number, low=0,
                 high=1)
    for name in ("brightness", "contrast", "saturation"):
      checks.field(self, builder, name, checks.number, low=0)
    checks.field(self, builder, "hue", checks.number, low=0, high=0.5)


@dataclasses.dataclass(frozen=True)
class ClipAugmentation(VideoAugmentation):
  """Augmentation of pretraining clips (see `clip_augmentation`).

  Values are checked when it is made: a wrong type or a value out of range
  is a `errors.InvalidValueError` naming the `clip_augmentation` binding.
  """

  max_offsync: float
  gain_range: Tuple[float, float]
  antialias: bool

  def __post_init__(self):
    builder = "clip_augmentation"
    self.check_video_augmentation(builder)
    checks.field(self, builder, "max_offsync", checks.number, low=0)
    checks.field(self, builder, "gain_range", checks.numbers_pair, low=0)
    checks.field(self, builder, "antialias", checks.boolean)


@gin.configurable
def clip_augmentation(max_offsync=0.5, crop_scale=(0.08, 1.0),
                      crop_ratio=(3.0 / 4.0, 4.0 / 3.0), flip_probability=0.5,
                      brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2,
                      gain_range=(0.9, 1.1), antialias=True):
  """The augmentation of pretraining clips.

  Args:
    max_offsync: largest offset in seconds between the video clip and the
      audio window (0 keeps the video clip inside the audio window).
    crop_scale: RandomResizedCrop area fraction range.
    crop_ratio: RandomResizedCrop aspect ratio range.
    flip_probability: probability of a horizontal flip.
    brightness: colour jitter strength (0 disables).
    contrast: colour jitter strength (0 disables).
    saturation: colour jitter strength (0 disables).
    hue: colour jitter strength in turns (0 disables).
    gain_range: audio gain drawn uniformly from this range.
    antialias: antialias the crop resize when it shrinks (PIL's bilinear
      does).

  Returns:
    A `ClipAugmentation`.

  Raises:
    errors.InvalidValueError: a value of the wrong type or out of range.
  """
  return ClipAugmentation(
      max_offsync=max_offsync, crop_scale=crop_scale, crop_ratio=crop_ratio,
      flip_probability=flip_probability, brightness=brightness,
      contrast=contrast, saturation=saturation, hue=hue,
      gain_range=gain_range, antialias=antialias)
