"""A run's clip and spectrogram geometry, as one record.

The encoders of a run only make sense on inputs prepared the way they were
trained: so many frames at such a rate and crop size, so many seconds of
audio at a sample rate, spectrograms normalised with given statistics.
`train` writes this record to `<model_dir>/preprocessing.json`; export,
evaluation, the quickstart and the benchmarks read it back, and the input
pipelines take it as their geometry. It also gives the shapes used to create
a model's variables before a checkpoint is restored.
"""

import dataclasses
import json
import os
from typing import ClassVar, Tuple

import gin
import tensorflow as tf

from avid_tf import errors
from avid_tf.data import audio_ops
from avid_tf.utils import files


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """Clip and spectrogram geometry of a run.

  Attributes:
    num_frames: frames per video clip.
    crop_size: height and width of the frames.
    frame_rate: rate the clip frames are sampled at (frames per second).
    audio_seconds: length of the audio clip.
    sample_rate: audio sample rate in Hz.
    spectrogram_mean: 257 per-frequency means of the log-spectrogram.
    spectrogram_std: 257 per-frequency standard deviations.
  """

  FILE_NAME: ClassVar[str] = "preprocessing.json"

  num_frames: int
  crop_size: int
  frame_rate: float
  audio_seconds: float
  sample_rate: int
  spectrogram_mean: Tuple[float, ...]
  spectrogram_std: Tuple[float, ...]

  def __post_init__(self):
    if self.num_frames < 1 or self.crop_size < 1:
      raise errors.InvalidValueError(
          f"num_frames and crop_size must be >= 1, got "
          f"{self.num_frames} and {self.crop_size}")
    if self.frame_rate <= 0 or self.audio_seconds <= 0:
      raise errors.InvalidValueError(
          f"frame_rate and audio_seconds must be > 0, got "
          f"{self.frame_rate} and {self.audio_seconds}")
    for name in ("spectrogram_mean", "spectrogram_std"):
      values = tuple(float(v) for v in getattr(self, name))
      if len(values) != audio_ops.NUM_BINS:
        raise errors.InvalidValueError(
            f"{name} must hold {audio_ops.NUM_BINS} values, got "
            f"{len(values)}")
      object.__setattr__(self, name, values)

  @property
  def clip_seconds(self):
    """Time spanned by one video clip."""
    return self.num_frames / self.frame_rate

  @property
  def audio_samples(self):
    """Waveform samples of one audio clip."""
    return int(round(self.audio_seconds * self.sample_rate))

  @property
  def spectrogram_frames(self):
    """Time frames of one clip's spectrogram (100 per second)."""
    return audio_ops.num_spectrogram_frames(self.audio_seconds)

  @property
  def video_shape(self):
    """Shape of one video clip, (T, H, W, 3)."""
    return (self.num_frames, self.crop_size, self.crop_size, 3)

  @property
  def audio_shape(self):
    """Shape of one spectrogram, (frames, 257, 1)."""
    return (self.spectrogram_frames, audio_ops.NUM_BINS, 1)

  def element_spec(self, batch_size=None):
    """The training batch contract as `tf.TensorSpec`s."""
    return {
        "video": tf.TensorSpec((batch_size,) + self.video_shape, tf.float32),
        "audio": tf.TensorSpec((batch_size,) + self.audio_shape, tf.float32),
        "index": tf.TensorSpec((batch_size,), tf.int32),
        "label": tf.TensorSpec((batch_size,), tf.int32),
    }

  def dummy_batch(self, batch_size=1):
    """A batch of zeros in the training contract (to create variables)."""
    return {key: tf.zeros([batch_size] + spec.shape.as_list()[1:], spec.dtype)
            for key, spec in self.element_spec().items()}

  def export_metadata(self):
    """{"video": {...}, "audio": {...}} entries of the export metadata."""
    return {
        "video": {"num_frames": self.num_frames, "crop_size": self.crop_size,
                  "fps": self.frame_rate},
        "audio": {"seconds": self.audio_seconds,
                  "num_frames": self.spectrogram_frames,
                  "sample_rate": self.sample_rate,
                  "spectrogram_mean": list(self.spectrogram_mean),
                  "spectrogram_std": list(self.spectrogram_std)},
    }

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values):
    return cls(**values)

  def write(self, model_dir):
    """Writes the record to `<model_dir>/preprocessing.json` atomically."""
    files.write_json(os.path.join(model_dir, self.FILE_NAME), self.to_dict())

  @classmethod
  def read(cls, model_dir):
    """Reads the record a run wrote.

    Raises:
      FileNotFoundError: when `model_dir` holds no record.
    """
    path = os.path.join(model_dir, cls.FILE_NAME)
    if not files.isfile(path):
      raise FileNotFoundError(f"{path} not found: is {model_dir} the "
                              "--model_dir of a training run?")
    with files.open_file(path) as f:
      return cls.from_dict(json.load(f))


@gin.configurable
def clip_preprocessing(dataset, num_frames=8, crop_size=112,
                       audio_seconds=2.0, frame_rate=None):
  """Returns the experiment's clip geometry for a dataset.

  Args:
    dataset: the `avid_tf.data.schema.DatasetInfo` trained on (audio sample
      rate and spectrogram statistics).
    num_frames: frames per video clip.
    crop_size: height and width of the frames.
    audio_seconds: audio clip length; the spectrogram has 100 frames/s.
    frame_rate: sampling rate of the clip frames, whatever the stored fps:
      clip frame k shows time start + k / frame_rate (the nearest stored
      frame before it), so a clip spans num_frames / frame_rate seconds.
      None takes the dataset's stored fps; base.gin pins the reference's 16,
      so that data ingested at another fps keeps the 0.5 s clip.
  """
  return Preprocessing(
      num_frames=int(num_frames), crop_size=int(crop_size),
      frame_rate=float(frame_rate or dataset.fps),
      audio_seconds=float(audio_seconds), sample_rate=dataset.sample_rate,
      spectrogram_mean=tuple(dataset.spectrogram_mean.tolist()),
      spectrogram_std=tuple(dataset.spectrogram_std.tolist()))
