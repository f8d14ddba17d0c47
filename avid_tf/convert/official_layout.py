"""The official AVID-CMA checkpoint layout and its mapping onto avid_tf.

Facts about the official release (facebookresearch/AVID-CMA), by file:

- `main-avid.py`, `utils/main_utils.py` (`CheckpointManager.save`): a
  training checkpoint is `torch.save` of a dict with `epoch` (int), `model`
  (the AV model's state_dict), `optimizer` (Adam's state_dict) and
  `train_criterion` (the loss module's state_dict). The model is wrapped in
  `DataParallel` / `DistributedDataParallel` before it is saved, so every
  model key starts with `module.` (`utils/eval_utils.py` strips it).
- `models/av_wrapper.py`: the AV model has `video_model`, `audio_model`,
  `video_proj` and `audio_proj`; a head is `projection`, a Sequential of
  Linear layers with a ReLU between two of them, so the released
  [512, 512, 128] heads have `projection.0`, `.2` and `.4`.
- `models/video.py`: `conv1` is Sequential(Conv3d 3x7x7, BatchNorm3d, ReLU,
  MaxPool3d), i.e. `conv1.0` and `conv1.1`; the stages are `conv2x` ..
  `conv5x`. Depth 10 holds one block per stage directly
  (`conv2x.spt_conv1`), depths 18 and 34 a Sequential of blocks
  (`conv2x.0.spt_conv1`).
- `models/network_blocks.py`: a (2+1)D block has `spt_conv1`, `spt_bn1`,
  `tmp_conv1`, `tmp_bn1`, `spt_conv2`, `spt_bn2`, `tmp_conv2`, `out_bn`,
  and `res_conv` (a 1x1x1 conv, no BN) when the channels or the stride
  change; the audio block (`Basic2DBlock`) has `conv1`, `bn1`, `conv2`,
  `bn2`.
- `models/audio.py`: `conv1` is Sequential(Conv2d 7x7, BatchNorm2d, ReLU);
  the blocks are `block1` .. `block4`.
- `datasets/preprocessing.py` (`LogSpectrogram`): the spectrogram is
  transposed to time x frequency before it becomes the [1, time, freq]
  input, so the audio network sees NCHW with H = time and W = frequency,
  the same orientation as avid_tf's [B, time, freq, 1]: Conv2d kernels map
  [out, in, h, w] -> [h, w, in, out] without swapping h and w.
- `criterions/avid.py`, `criterions/nce.py`, `criterions/avid_cma.py`: the
  loss module's state is `nce_average.view1_mem` (video memory bank,
  [N, 128], unit rows), `nce_average.view2_mem` (audio memory bank) and
  `criterion.avg_exp_score` (the NCE partition estimate Z, -1 until the
  first step sets it); AVID+CMA adds `nce_average.positive_set` (int
  [N, k]). The official CMA stage restores the banks and the mean of every
  `avg_exp_score` entry from an AVID checkpoint.
- BatchNorm entries are `weight`, `bias`, `running_mean`, `running_var` and
  `num_batches_tracked` (PyTorch >= 0.4.1).

Layouts: Conv3d [out, in, t, h, w] -> Keras [t, h, w, in, out] (avid_tf
runs some 3D convolutions as 2D ones internally, but stores every kernel
in the 3D layout); Conv2d [out, in, h, w] -> [h, w, in, out]; Linear
[out, in] -> [in, out]; BatchNorm weight / bias / running_mean /
running_var -> gamma / beta / moving_mean / moving_variance.
"""

import dataclasses
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from avid_tf import errors

# The released configurations: R(2+1)D stages and their widths, heads
# [512, 512, 128] (see avid_tf.models.r2plus1d, audio_cnn and heads).
STAGE_NAMES = ("conv2x", "conv3x", "conv4x", "conv5x")
STAGE_CHANNELS = (64, 128, 256, 512)
STEM_CHANNELS = 64
BLOCKS_PER_STAGE = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

MODULE_PREFIX = "module."

# Top-level entries of a training checkpoint.
MODEL = "model"
CRITERION = "train_criterion"
EPOCH = "epoch"
OPTIMIZER = "optimizer"
REQUIRED_ENTRIES = (MODEL, CRITERION)
IGNORED_ENTRIES = (EPOCH, OPTIMIZER)

# Entries of the loss module's state.
VIDEO_BANK_KEY = "nce_average.view1_mem"
AUDIO_BANK_KEY = "nce_average.view2_mem"
PARTITION_KEY = "criterion.avg_exp_score"
POSITIVE_SET_KEY = "nce_average.positive_set"  # AVID+CMA only; not converted.

# Kinds of tensor, by the transposition they need.
VECTOR = "vector"
CONV3D = "conv3d"
CONV2D = "conv2d"
LINEAR = "linear"
_TO_KERAS = {VECTOR: None, CONV3D: (2, 3, 4, 1, 0), CONV2D: (2, 3, 1, 0),
             LINEAR: (1, 0)}
_FROM_KERAS = {VECTOR: None, CONV3D: (4, 3, 0, 1, 2), CONV2D: (3, 2, 0, 1),
               LINEAR: (1, 0)}

_BN_NAMES = (("weight", "gamma"), ("bias", "beta"),
             ("running_mean", "moving_mean"),
             ("running_var", "moving_variance"))
# (official name, avid_tf name, is a conv) of a (2+1)D block, in order.
_R2PLUS1D_BLOCK = (("spt_conv1", "spatial_conv1", True),
                   ("spt_bn1", "spatial_bn1", False),
                   ("tmp_conv1", "temporal_conv1", True),
                   ("tmp_bn1", "temporal_bn1", False),
                   ("spt_conv2", "spatial_conv2", True),
                   ("spt_bn2", "spatial_bn2", False),
                   ("tmp_conv2", "temporal_conv2", True),
                   ("out_bn", "out_bn", False))
_AUDIO_BLOCK = (("conv1", "conv1", True), ("bn1", "bn1", False),
                ("conv2", "conv2", True), ("bn2", "bn2", False))

# avid_tf variable paths (AVModel, its encoders, heads, banks, objective).
KERAS_VIDEO = "av_model/video_encoder"
KERAS_AUDIO = "av_model/audio_encoder"
KERAS_HEADS = {"video_proj": "av_model/video_head",
               "audio_proj": "av_model/audio_head"}
KERAS_VIDEO_BANK = "video_bank/bank"
KERAS_AUDIO_BANK = "audio_bank/bank"
KERAS_PARTITION = "objective/partition"

# Trainable parameters of the published networks (docs/methods.md).
PUBLISHED_PARAMETERS = {
    "video_encoder": {10: 7_015_616, 18: 15_379_136},
    "audio_encoder": {10: 4_725_696},
}

# How many names an error lists.
_SHOWN = 4


class CheckpointLayoutError(errors.UserError, ValueError):
  """Raised for a checkpoint that is not in the official AVID-CMA layout."""


@dataclasses.dataclass(frozen=True)
class Architecture:
  """The avid_tf architecture an official checkpoint describes.

  Attributes:
    video_depth: R(2+1)D depth (10, 18 or 34).
    width_multiplier: channels relative to the published widths (1.0 for
      the released checkpoints).
    head_hidden_dim: width of the heads' hidden Linear layers.
    head_hidden_layers: hidden Linear + ReLU layers of each head.
    embedding_dim: width of the embeddings and memory rows.
  """

  video_depth: int
  width_multiplier: float
  head_hidden_dim: int
  head_hidden_layers: int
  embedding_dim: int

  def channels(self, channels: int) -> int:
    """A published channel count at this width (avid_tf's rounding)."""
    return max(1, int(round(channels * self.width_multiplier)))

  @property
  def feature_dim(self) -> int:
    """Channels of the pooled encoder features."""
    return self.channels(STAGE_CHANNELS[-1])


@dataclasses.dataclass(frozen=True)
class Target:
  """Where one official tensor goes: an avid_tf variable path and a layout."""

  path: str
  kind: str


def strip_module_prefix(state: Mapping[str, object]) -> Dict[str, object]:
  """Drops the `module.` (DataParallel / DistributedDataParallel) prefix."""
  return {(key[len(MODULE_PREFIX):] if key.startswith(MODULE_PREFIX)
           else key): value for key, value in state.items()}


def _examples(keys: Sequence[str]) -> str:
  keys = sorted(keys)
  shown = ", ".join(f"'{k}'" for k in keys[:_SHOWN])
  return shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN
                  else "")


def _shape(shapes: Mapping[str, Tuple[int, ...]], key: str, rank: int,
           source: str) -> Tuple[int, ...]:
  shape = shapes.get(key)
  if shape is None or len(shape) != rank:
    raise CheckpointLayoutError(
        f"{source} is not an official AVID-CMA checkpoint: its model has no "
        f"{rank}-D '{key}'" + ("" if shape is None else f" (shape {shape})")
        + f"; its model keys include {_examples(list(shapes))}.")
  return tuple(shape)


def detect_architecture(shapes: Mapping[str, Tuple[int, ...]],
                        source: str = "The checkpoint") -> Architecture:
  """Reads the architecture off the model's state_dict shapes.

  Args:
    shapes: {key: shape} of the model state, `module.` prefix removed.
    source: how error messages name the checkpoint.

  Returns:
    The `Architecture`.

  Raises:
    CheckpointLayoutError: when the keys are not those of an official AV
      model (no video stem, an unknown number of blocks, no heads).
  """
  stem = _shape(shapes, "video_model.conv1.0.weight", 5, source)
  width = stem[0] / STEM_CHANNELS
  # Depth 10 holds its blocks directly, deeper networks in Sequentials.
  if all(f"video_model.{stage}.spt_conv1.weight" in shapes
         for stage in STAGE_NAMES):
    depth = 10
  else:
    blocks = []
    for stage in STAGE_NAMES:
      count = 0
      while f"video_model.{stage}.{count}.spt_conv1.weight" in shapes:
        count += 1
      blocks.append(count)
    depth = {v: k for k, v in BLOCKS_PER_STAGE.items() if k != 10}.get(
        tuple(blocks))
    if depth is None:
      known = ", ".join(f"{k}: {list(v)}" for k, v in BLOCKS_PER_STAGE.items())
      raise CheckpointLayoutError(
          f"{source} holds an R(2+1)D with {blocks} blocks in stages "
          f"{', '.join(STAGE_NAMES)}; the official depths have ({known}).")
  linears = 0
  while f"video_proj.projection.{2 * linears}.weight" in shapes:
    linears += 1
  if linears == 0:
    raise CheckpointLayoutError(
        f"{source} has no projection heads ('video_proj.projection.0.weight')"
        "; avid_tf converts AV models trained with heads (proj_dim).")
  hidden = [_shape(shapes, f"video_proj.projection.{2 * i}.weight", 2,
                   source)[0] for i in range(linears - 1)]
  if len(set(hidden)) > 1:
    raise CheckpointLayoutError(
        f"{source} has heads with hidden widths {hidden}; avid_tf's heads "
        "have one hidden width.")
  output = _shape(shapes, f"video_proj.projection.{2 * (linears - 1)}.weight",
                  2, source)[0]
  return Architecture(video_depth=depth, width_multiplier=width,
                      head_hidden_dim=hidden[0] if hidden else output,
                      head_hidden_layers=linears - 1, embedding_dim=output)


def weight_map(arch: Architecture) -> Dict[str, Target]:
  """{official model key: `Target`} of every converted model tensor."""
  table = {}

  def conv(official, keras, kind):
    table[f"{official}.weight"] = Target(f"{keras}/kernel", kind)

  def batch_norm(official, keras):
    for name, keras_name in _BN_NAMES:
      table[f"{official}.{name}"] = Target(f"{keras}/{keras_name}", VECTOR)

  def dense(official, keras):
    table[f"{official}.weight"] = Target(f"{keras}/kernel", LINEAR)
    table[f"{official}.bias"] = Target(f"{keras}/bias", VECTOR)

  conv("video_model.conv1.0", f"{KERAS_VIDEO}/stem_conv", CONV3D)
  batch_norm("video_model.conv1.1", f"{KERAS_VIDEO}/stem_bn")
  in_channels = arch.channels(STEM_CHANNELS)
  for stage_index, (stage, channels, count) in enumerate(zip(
      STAGE_NAMES, STAGE_CHANNELS, BLOCKS_PER_STAGE[arch.video_depth])):
    out_channels = arch.channels(channels)
    for block in range(count):
      official = (f"video_model.{stage}" if arch.video_depth == 10 else
                  f"video_model.{stage}.{block}")
      keras = f"{KERAS_VIDEO}/{stage}_block{block + 1}"
      for name, keras_name, is_conv in _R2PLUS1D_BLOCK:
        if is_conv:
          conv(f"{official}.{name}", f"{keras}/{keras_name}", CONV3D)
        else:
          batch_norm(f"{official}.{name}", f"{keras}/{keras_name}")
      strided = block == 0 and stage_index > 0
      if strided or in_channels != out_channels:
        conv(f"{official}.res_conv", f"{keras}/shortcut_conv", CONV3D)
      in_channels = out_channels

  conv("audio_model.conv1.0", f"{KERAS_AUDIO}/stem_conv", CONV2D)
  batch_norm("audio_model.conv1.1", f"{KERAS_AUDIO}/stem_bn")
  for index, stage in enumerate(STAGE_NAMES):
    official = f"audio_model.block{index + 1}"
    for name, keras_name, is_conv in _AUDIO_BLOCK:
      if is_conv:
        conv(f"{official}.{name}", f"{KERAS_AUDIO}/{stage}/{keras_name}",
             CONV2D)
      else:
        batch_norm(f"{official}.{name}", f"{KERAS_AUDIO}/{stage}/{keras_name}")

  for official, keras in KERAS_HEADS.items():
    for layer in range(arch.head_hidden_layers):
      dense(f"{official}.projection.{2 * layer}", f"{keras}/hidden{layer + 1}")
    dense(f"{official}.projection.{2 * arch.head_hidden_layers}",
          f"{keras}/output")
  return table


def optional_model_keys(arch: Architecture) -> Tuple[str, ...]:
  """Model keys that may be present and carry nothing avid_tf keeps.

  BatchNorm's `num_batches_tracked` counts training steps; Keras has no
  such variable.
  """
  return tuple(sorted(
      key[:-len(".running_mean")] + ".num_batches_tracked"
      for key in weight_map(arch) if key.endswith(".running_mean")))


def check_model_keys(keys, arch: Architecture,
                     source: str = "The checkpoint") -> None:
  """Fails unless the model keys are exactly those of `arch`.

  Raises:
    CheckpointLayoutError: one line naming (some of) the missing and the
      unknown keys.
  """
  parts = _key_differences(keys, weight_map(arch), optional_model_keys(arch),
                           "{count} {kind} keys ({examples})")
  if parts:
    raise CheckpointLayoutError(
        f"{source} does not match the official AVID-CMA R(2+1)D-"
        f"{arch.video_depth} / audio ConvNet layout it appears to hold: "
        f"{' and '.join(parts)}.")


def _key_differences(keys, required, optional, template):
  """The missing required and the unknown keys, each formatted by `template`.

  `template` takes {count}, {kind} ("missing" or "unknown") and {examples};
  an empty list means the keys are as expected.
  """
  keys = set(keys)
  required = set(required)
  differences = (("missing", required - keys),
                 ("unknown", keys - required - set(optional)))
  return [template.format(count=len(found), kind=kind,
                          examples=_examples(found))
          for kind, found in differences if found]


def check_entries(keys, expected_required, expected_optional, what: str,
                  source: str = "The checkpoint") -> None:
  """Fails with one line when a dict lacks or has unexpected entries."""
  parts = _key_differences(keys, expected_required, expected_optional,
                           "{kind} {examples}")
  if parts:
    raise CheckpointLayoutError(
        f"{source} is not an official AVID-CMA training checkpoint: its "
        f"{what} has {' and '.join(parts)} (expected "
        f"{_examples(list(expected_required) + list(expected_optional))}).")


def to_keras(value: np.ndarray, kind: str) -> np.ndarray:
  """An official tensor in avid_tf's layout."""
  axes = _TO_KERAS[kind]
  return value if axes is None else np.transpose(value, axes)


def from_keras(value: np.ndarray, kind: str) -> np.ndarray:
  """An avid_tf variable in the official layout (the inverse of to_keras)."""
  axes = _FROM_KERAS[kind]
  return value if axes is None else np.transpose(value, axes)


def num_parameters(shapes: Mapping[str, Tuple[int, ...]],
                   prefix: str) -> int:
  """Trainable parameters under `prefix` (BN running statistics excluded)."""
  return sum(int(np.prod(shape)) for key, shape in shapes.items()
             if key.startswith(prefix) and
             not key.endswith((".running_mean", ".running_var",
                               ".num_batches_tracked")))
