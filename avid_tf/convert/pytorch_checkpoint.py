"""Converts an official AVID-CMA PyTorch checkpoint into an avid_tf model_dir.

The model_dir is the one `train` writes, so every consumer of a training
run accepts it: `runs.open_run`, `scripts/export.py`,
the evaluation scripts, and an AVID+CMA stage started with
`train(init_from=<model_dir>)`, which copies the weights, both memory banks
and Z from it.

  <model_dir>/config.gin           the architecture (build_encoders,
                                   build_av_model, a Cross-AVID objective)
  <model_dir>/builder_args.json    the same, as the builders' arguments
  <model_dir>/preprocessing.json   8 frames at 16 fps, the crop size, 2 s
                                   of 24 kHz audio, spectrogram statistics
  <model_dir>/checkpoints/ckpt-0   encoders, heads, banks and Z (the model
                                   variables; no optimizer state)
  <model_dir>/conversion.json      where it came from and what was checked

What comes through: every encoder and head weight, BatchNorm's moving
statistics, the video and audio memory banks (`nce_average.view1_mem` /
`view2_mem` -> `video_bank/bank` / `audio_bank/bank`, N rows as in the
checkpoint) and Z (`criterion.avg_exp_score` -> `objective/partition`).
What does not: Adam's state (a new stage starts a fresh optimizer anyway),
the epoch counter (recorded in conversion.json only), AVID+CMA's positive
sets (a CMA stage computes its own) and the official spectrogram statistics
(a file under CC BY-NC that avid_tf cannot ship: take the statistics from
an ingested dataset, or pass the file yourself).

PyTorch is imported only when a checkpoint is read or verified
(requirements-convert.txt); the official layout itself is in
`official_layout`.
"""

import dataclasses
import hashlib
import os
import shutil
from typing import Dict, Mapping, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from avid_tf import errors
from avid_tf import runs
from avid_tf.convert import official_layout as layout
from avid_tf.data import audio_ops
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.data import schema
from avid_tf.training import builder_args
from avid_tf.training import checkpointing
from avid_tf.training import train_lib
from avid_tf.utils import files

CONVERSION_FILE = "conversion.json"
# The converted run has taken no avid_tf step.
CHECKPOINT_NUMBER = 0
# Relative error allowed between the two frameworks' outputs.
TOLERANCE = 1e-4
# The official pretraining inputs (configs/main/*/kinetics, audioset).
SAMPLE_RATE = 24000
NUM_FRAMES = 8
FRAME_RATE = 16.0
AUDIO_SECONDS = 2.0
CROP_SIZES = (112, 224)
# The released models are Cross-AVID with 1024 negatives, momentum 0.5,
# Adam weight decay 1e-5 (configs/main/avid/*/Cross-N1024.yaml).
_OBJECTIVE_BINDINGS = (
    ("build_av_model.bank_momentum", 0.5),
    ("build_av_model.weight_decay", 1e-5),
    ("build_objective.name", "avid"),
    ("build_avid_objective.cross_modal_weight", 1.0),
    ("build_avid_objective.within_modal_weight", 0.0),
    ("build_avid_objective.num_negatives", 1024),
    ("build_avid_objective.temperature", 0.07),
)
_UNIT_NORM_TOLERANCE = 1e-3
_INSTALL_HINT = ("pip install -r requirements-convert.txt (PyTorch 2.13.0, "
                 "CPU build)")


class TorchNotAvailableError(errors.UserError, ImportError):
  """Raised when a conversion needs PyTorch and it is not installed."""


class ConversionVerificationError(errors.UserError, ValueError):
  """Raised when the converted model does not compute what PyTorch does."""


def _import_torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise TorchNotAvailableError(
        f"Reading a PyTorch checkpoint needs PyTorch: {_INSTALL_HINT}.") from e
  return torch


@dataclasses.dataclass(frozen=True)
class OfficialCheckpoint:
  """The parts of an official training checkpoint that avid_tf converts.

  Attributes:
    model: {key: array} of the AV model's state, `module.` prefix removed.
    video_bank: float32 [N, D] video memory rows (`nce_average.view1_mem`).
    audio_bank: float32 [N, D] audio memory rows (`nce_average.view2_mem`).
    partition: Z, the mean of the `avg_exp_score` entries; 0 when the
      checkpoint never estimated it.
    epoch: the checkpoint's epoch counter, if it has one.
    not_converted: what the checkpoint holds that avid_tf does not keep.
    source: how messages name the checkpoint.
  """

  model: Dict[str, np.ndarray]
  video_bank: np.ndarray
  audio_bank: np.ndarray
  partition: float
  epoch: Optional[int]
  not_converted: Tuple[str, ...]
  source: str

  @property
  def shapes(self) -> Dict[str, Tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in self.model.items()}

  @property
  def architecture(self) -> layout.Architecture:
    return layout.detect_architecture(self.shapes, self.source)

  @property
  def num_data(self) -> int:
    """Rows of the memory banks (the training videos of the checkpoint)."""
    return int(self.video_bank.shape[0])


def _to_numpy(value):
  """A tensor (PyTorch or NumPy) or number as a NumPy array."""
  if hasattr(value, "detach"):
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    return value.numpy()
  return np.asarray(value)


def _bank(criterion, key, arch, source):
  bank = np.asarray(_to_numpy(criterion[key]), np.float32)
  if bank.ndim != 2 or bank.shape[1] != arch.embedding_dim:
    raise layout.CheckpointLayoutError(
        f"{source}: memory bank '{key}' has shape {bank.shape}; expected "
        f"[N, {arch.embedding_dim}] (the heads' embedding width).")
  norms = np.linalg.norm(bank, axis=1)
  worst = float(np.max(np.abs(norms - 1.0))) if len(norms) else 0.0
  if not worst <= _UNIT_NORM_TOLERANCE:
    raise layout.CheckpointLayoutError(
        f"{source}: memory bank '{key}' has rows of norm up to "
        f"{float(np.max(norms)):.4g} (down to {float(np.min(norms)):.4g}); "
        "official memory rows have unit norm.")
  return bank


def from_state(state: Mapping[str, object],
               source: str = "The checkpoint") -> OfficialCheckpoint:
  """Checks and extracts an official checkpoint dict (as torch.load gives).

  Args:
    state: the checkpoint's top-level dict; tensors may be PyTorch tensors
      or NumPy arrays.
    source: how messages name the checkpoint.

  Returns:
    The `OfficialCheckpoint`.

  Raises:
    CheckpointLayoutError: one line listing (some of) the missing and the
      unknown keys, or naming a tensor of the wrong shape.
  """
  if not isinstance(state, Mapping):
    raise layout.CheckpointLayoutError(
        f"{source} holds a {type(state).__name__}, not the dict of an "
        "official AVID-CMA training checkpoint.")
  layout.check_entries(state.keys(), layout.REQUIRED_ENTRIES,
                       layout.IGNORED_ENTRIES, "top level", source)
  for entry in layout.REQUIRED_ENTRIES:
    if not isinstance(state[entry], Mapping):
      raise layout.CheckpointLayoutError(
          f"{source}: '{entry}' is a {type(state[entry]).__name__}, not a "
          "state_dict.")
  model = {key: _to_numpy(value) for key, value in
           layout.strip_module_prefix(state[layout.MODEL]).items()}
  shapes = {key: tuple(value.shape) for key, value in model.items()}
  arch = layout.detect_architecture(shapes, source)
  layout.check_model_keys(model, arch, source)

  criterion = layout.strip_module_prefix(state[layout.CRITERION])
  layout.check_entries(
      criterion.keys(),
      (layout.VIDEO_BANK_KEY, layout.AUDIO_BANK_KEY, layout.PARTITION_KEY),
      (layout.POSITIVE_SET_KEY,), layout.CRITERION, source)
  video_bank = _bank(criterion, layout.VIDEO_BANK_KEY, arch, source)
  audio_bank = _bank(criterion, layout.AUDIO_BANK_KEY, arch, source)
  if video_bank.shape != audio_bank.shape:
    raise layout.CheckpointLayoutError(
        f"{source}: the video bank has shape {video_bank.shape} but the "
        f"audio bank {audio_bank.shape}.")
  partition = float(np.mean(_to_numpy(criterion[layout.PARTITION_KEY])))
  if not np.isfinite(partition):
    raise layout.CheckpointLayoutError(
        f"{source}: Z ('{layout.PARTITION_KEY}') is {partition}.")
  if partition <= 0:
    logging.warning(
        "%s never estimated Z ('%s' = %g, the value before the first "
        "training step): the converted run has Z = 0, and an AVID+CMA stage "
        "started from it will refuse to train.", source, layout.PARTITION_KEY,
        partition)
    partition = 0.0

  not_converted = [key for key in layout.IGNORED_ENTRIES
                   if key in state and key != layout.EPOCH]
  if layout.POSITIVE_SET_KEY in criterion:
    not_converted.append(f"{layout.CRITERION}.{layout.POSITIVE_SET_KEY}")
  if set(layout.optional_model_keys(arch)) & set(model):
    not_converted.append("BatchNorm num_batches_tracked")
  epoch = state.get(layout.EPOCH)
  return OfficialCheckpoint(
      model=model, video_bank=video_bank, audio_bank=audio_bank,
      partition=partition,
      epoch=None if epoch is None else int(_to_numpy(epoch)),
      not_converted=tuple(not_converted), source=source)


def read_checkpoint(path: str) -> OfficialCheckpoint:
  """Reads an official training checkpoint (`*.pth.tar`) on the CPU.

  The file is loaded with `torch.load(weights_only=True)`: tensors and plain
  containers only, no code from the file runs.

  Raises:
    FileNotFoundError: no such file.
    TorchNotAvailableError: PyTorch is not installed.
    CheckpointLayoutError: not an official checkpoint (see `from_state`).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No checkpoint file {path}.")
  torch = _import_torch()
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise layout.CheckpointLayoutError(
        f"{path} cannot be read as a PyTorch checkpoint of tensors: "
        f"{first_line[:300]}") from e
  return from_state(state, path)


def conversion_preprocessing(crop_size: int = 224,
                             normalization_dataset_dir: Optional[str] = None,
                             spectrogram_statistics: Optional[str] = None,
                             num_frames: int = NUM_FRAMES,
                             frame_rate: float = FRAME_RATE,
                             audio_seconds: float = AUDIO_SECONDS):
  """The preprocessing record of a converted model, and its statistics' source.

  The official models were pretrained on 8 frames at 16 fps and 2 s of
  24 kHz audio; the crop size was 224. The spectrogram statistics come from
  an ingested dataset, or from an .npz file with 257-entry `mean` and `std`
  arrays (such as the official release's own statistics file, which
  avid_tf does not ship); without either they are mean 0 / std 1, which
  is not what the official audio encoders saw.

  Args:
    crop_size: frame height and width of the inputs.
    normalization_dataset_dir: an avid_tf dataset folder (ingest's output)
      whose spectrogram statistics to record.
    spectrogram_statistics: an .npz file with `mean` and `std` arrays.
    num_frames: frames per clip.
    frame_rate: frames per second of the clips.
    audio_seconds: audio clip length.

  Returns:
    (`Preprocessing`, a description of where the statistics came from).

  Raises:
    ValueError: both sources given, or statistics of the wrong size or
      sample rate.
  """
  if normalization_dataset_dir and spectrogram_statistics:
    raise errors.InvalidValueError(
        "Give either a dataset folder or a statistics file for "
        "the spectrogram statistics, not both.")
  bins = audio_ops.NUM_BINS
  if normalization_dataset_dir:
    dataset = schema.DatasetInfo.load(normalization_dataset_dir)
    if dataset.sample_rate != SAMPLE_RATE:
      raise errors.InvalidValueError(
          f"{normalization_dataset_dir} holds audio at {dataset.sample_rate} "
          f"Hz; the official encoders take {SAMPLE_RATE} Hz spectrograms.")
    mean, std = dataset.spectrogram_mean, dataset.spectrogram_std
    description = f"dataset {os.path.abspath(normalization_dataset_dir)}"
  elif spectrogram_statistics:
    if not os.path.isfile(spectrogram_statistics):
      raise FileNotFoundError(f"No statistics file {spectrogram_statistics}.")
    with np.load(spectrogram_statistics) as stats:
      if "mean" not in stats or "std" not in stats:
        raise errors.InvalidValueError(
            f"{spectrogram_statistics} has no 'mean' and 'std' "
            f"arrays (it has {sorted(stats.files)}).")
      mean, std = np.ravel(stats["mean"]), np.ravel(stats["std"])
    for name, values in (("mean", mean), ("std", std)):
      if values.size != bins:
        raise errors.InvalidValueError(
            f"{spectrogram_statistics}: '{name}' has "
            f"{values.size} entries, not {bins}.")
    description = f"file {os.path.abspath(spectrogram_statistics)}"
  else:
    logging.warning(
        "\n%s\nNO SPECTROGRAM STATISTICS GIVEN: the converted model's "
        "preprocessing.json records mean 0 / std 1, which is NOT the "
        "normalisation the official audio encoder was trained with. Audio "
        "features will be off. Pass --normalization_dataset_dir (an ingested "
        "dataset) or --spectrogram_statistics (an .npz with mean and std).\n"
        "%s", "!" * 72, "!" * 72)
    mean, std = np.zeros(bins), np.ones(bins)
    description = "none (mean 0, std 1)"
  record = preprocessing_lib.Preprocessing(
      num_frames=int(num_frames), crop_size=int(crop_size),
      frame_rate=float(frame_rate), audio_seconds=float(audio_seconds),
      sample_rate=SAMPLE_RATE, spectrogram_mean=tuple(np.ravel(mean).tolist()),
      spectrogram_std=tuple(np.ravel(std).tolist()))
  return record, description


def gin_config(arch: layout.Architecture,
               preprocessing: preprocessing_lib.Preprocessing,
               source: str) -> str:
  """The config.gin of a converted model (its builder_args.json comes from it)."""
  bindings = (
      ("build_encoders.video_depth", arch.video_depth),
      ("build_encoders.audio_depth", 10),
      ("build_encoders.width_multiplier", float(arch.width_multiplier)),
      ("build_encoders.synchronized_bn", False),
      ("build_av_model.embedding_dim", arch.embedding_dim),
      ("build_av_model.head_hidden_dim", arch.head_hidden_dim),
      ("build_av_model.head_hidden_layers", arch.head_hidden_layers),
      ("build_av_model.head_batch_norm", False),
  ) + _OBJECTIVE_BINDINGS + (
      ("clip_preprocessing.num_frames", preprocessing.num_frames),
      ("clip_preprocessing.crop_size", preprocessing.crop_size),
      ("clip_preprocessing.audio_seconds", preprocessing.audio_seconds),
  )
  source_line = " ".join(str(source).split())
  lines = ["# Converted from the official AVID-CMA PyTorch checkpoint",
           f"# {source_line}",
           "# by avid_tf.convert (scripts/convert_pytorch_checkpoint.py).", ""]
  lines += [f"{name} = {value!r}" for name, value in bindings]
  return "\n".join(lines) + "\n"


def assign_weights(model, official: OfficialCheckpoint) -> Dict[str, int]:
  """Copies an official checkpoint into a built AVModel of its architecture.

  Returns:
    Trainable parameters per part ("video_encoder", "audio_encoder",
    "video_head", "audio_head"), the same on both sides.

  Raises:
    CheckpointLayoutError: a tensor whose shape does not fit.
  """
  arch = official.architecture
  variables = {variable.path: variable for variable in model.variables}
  table = layout.weight_map(arch)
  for key, target in table.items():
    variable = variables.get(target.path)
    if variable is None:
      raise RuntimeError(f"avid_tf's model has no variable '{target.path}' "
                         f"for '{key}'")
    value = layout.to_keras(np.asarray(official.model[key], np.float32),
                            target.kind)
    if tuple(value.shape) != tuple(variable.shape):
      raise layout.CheckpointLayoutError(
          f"{official.source}: '{key}' has shape "
          f"{tuple(official.model[key].shape)}, which does not fit avid_tf's "
          f"'{target.path}' of shape {tuple(variable.shape)} (a layer of "
          "another width?).")
    variable.assign(value)
  variables[layout.KERAS_VIDEO_BANK].assign(official.video_bank)
  variables[layout.KERAS_AUDIO_BANK].assign(official.audio_bank)
  variables[layout.KERAS_PARTITION].assign(official.partition)
  covered = {target.path for target in table.values()}
  covered |= {layout.KERAS_VIDEO_BANK, layout.KERAS_AUDIO_BANK,
              layout.KERAS_PARTITION}
  left = sorted(set(variables) - covered)
  if left:
    raise RuntimeError(f"No official tensor for avid_tf's {left[:4]}")

  counts = {}
  for part, prefix in (("video_encoder", "video_model."),
                       ("audio_encoder", "audio_model."),
                       ("video_head", "video_proj."),
                       ("audio_head", "audio_proj.")):
    ours = sum(int(np.prod(v.shape))
               for v in getattr(model, part).trainable_variables)
    theirs = layout.num_parameters(official.shapes, prefix)
    if ours != theirs:
      raise RuntimeError(f"{part}: {theirs} official parameters but {ours} "
                         "in avid_tf")
    counts[part] = ours
  if arch.width_multiplier == 1.0:
    for part, depth in (("video_encoder", arch.video_depth),
                        ("audio_encoder", 10)):
      published = layout.PUBLISHED_PARAMETERS[part].get(depth)
      if published is not None and counts[part] != published:
        raise RuntimeError(f"{part}: {counts[part]} parameters, not the "
                           f"published {published}")
  return counts


def _relative_error(ours, theirs):
  scale = max(float(np.max(np.abs(theirs))), 1e-12)
  return float(np.max(np.abs(ours - theirs))) / scale


def verify_conversion(model, official: OfficialCheckpoint,
                      preprocessing: preprocessing_lib.Preprocessing,
                      tolerance: float = TOLERANCE,
                      seed: int = 0) -> Dict[str, float]:
  """Runs both frameworks in inference mode on the same random inputs.

  The official architecture is rebuilt in PyTorch
  (`avid_tf.convert.torch_reference`) and loaded with the checkpoint's own
  tensors; a batch of 2 clips of the record's frames (at most 112 x 112,
  which is enough to exercise every layer) and spectrograms goes through
  both.

  Returns:
    {"video_features", "audio_features", "video_embeddings",
    "audio_embeddings"}: max |avid_tf - PyTorch| / max |PyTorch|.

  Raises:
    TorchNotAvailableError: PyTorch is not installed.
    ConversionVerificationError: an error above `tolerance`.
  """
  torch = _import_torch()
  from avid_tf.convert import torch_reference  # pylint: disable=g-import-not-at-top
  reference = torch_reference.AVModel(official.architecture)
  state = dict(reference.state_dict())
  for key, value in official.model.items():
    state[key] = torch.from_numpy(np.ascontiguousarray(value))
  reference.load_state_dict(state, strict=True)
  reference.eval()

  size = min(preprocessing.crop_size, 112)
  rng = np.random.default_rng(seed)
  video = rng.standard_normal(
      (2, preprocessing.num_frames, size, size, 3)).astype(np.float32)
  audio = rng.standard_normal((2,) + preprocessing.audio_shape).astype(
      np.float32)
  with torch.no_grad():
    theirs = reference(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy()),
                       torch.from_numpy(audio.transpose(0, 3, 1, 2).copy()))
  theirs = {key: value.numpy() for key, value in theirs.items()}
  ours = {
      "video_features": model.video_encoder(video, training=False),
      "audio_features": model.audio_encoder(audio, training=False),
  }
  embeddings = model({"video": video, "audio": audio}, training=False)
  ours["video_embeddings"] = embeddings["video"]
  ours["audio_embeddings"] = embeddings["audio"]
  result = {key: _relative_error(np.asarray(ours[key]), theirs[key])
            for key in theirs}
  worst = max(result, key=result.get)
  if not result[worst] <= tolerance:
    raise ConversionVerificationError(
        f"The converted model's {worst.replace('_', ' ')} differ from "
        f"PyTorch's by a relative error of {result[worst]:.2e} (more than "
        f"{tolerance:g}); errors: "
        + ", ".join(f"{k} {v:.2e}" for k, v in result.items()))
  return result


def _sha256(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _check_destination(model_dir, overwrite):
  if os.path.exists(model_dir) and not overwrite:
    raise FileExistsError(f"{model_dir} already exists; pass --overwrite to "
                          "replace it.")
  if os.path.exists(model_dir) and not os.path.isdir(model_dir):
    raise NotADirectoryError(f"{model_dir} exists and is not a folder.")


def write_model_dir(official: OfficialCheckpoint, model_dir: str,
                    preprocessing: preprocessing_lib.Preprocessing,
                    statistics: str = "unknown", overwrite: bool = False,
                    verify: bool = True,
                    extra: Optional[Mapping[str, object]] = None) -> dict:
  """Writes the avid_tf model_dir of an official checkpoint, atomically.

  Everything is written into a temporary folder next to `model_dir`, which
  is renamed into place only once the checkpoint is written (and, with
  `verify`, the outputs checked against PyTorch).

  Args:
    official: the checkpoint (`read_checkpoint` or `from_state`).
    model_dir: the folder to create.
    preprocessing: the record to write (`conversion_preprocessing`).
    statistics: where its spectrogram statistics came from.
    overwrite: replace an existing `model_dir`.
    verify: compare the two frameworks' outputs (needs PyTorch).
    extra: more entries for conversion.json.

  Returns:
    The conversion summary written to conversion.json.

  Raises:
    FileExistsError: `model_dir` exists and `overwrite` is False.
    CheckpointLayoutError, ConversionVerificationError: see above.
  """
  _check_destination(model_dir, overwrite)
  arch = official.architecture
  parent = os.path.dirname(os.path.abspath(model_dir))
  os.makedirs(parent, exist_ok=True)
  with files.atomic_path(os.path.abspath(model_dir)) as tmp_dir:
    os.makedirs(tmp_dir)
    files.write_text(os.path.join(tmp_dir, builder_args.CONFIG_FILE),
                     gin_config(arch, preprocessing, official.source))
    builder_args.write(tmp_dir, builder_args.read(tmp_dir))
    preprocessing.write(tmp_dir)
    model = runs.open_run(tmp_dir).random_init_model(official.num_data)
    parameters = assign_weights(model, official)
    verification = (verify_conversion(model, official, preprocessing)
                    if verify else None)
    manager = tf.train.CheckpointManager(
        checkpointing.make_checkpoint(model),
        os.path.join(tmp_dir, train_lib.CHECKPOINT_SUBDIR), max_to_keep=1)
    checkpoint = manager.save(checkpoint_number=CHECKPOINT_NUMBER)
    summary = {
        "source": (os.path.abspath(official.source)
                   if os.path.isfile(official.source) else official.source),
        "epoch": official.epoch,
        "architecture": dataclasses.asdict(arch),
        "parameters": parameters,
        "num_data": official.num_data,
        "partition": official.partition,
        "checkpoint": os.path.join(os.path.abspath(model_dir),
                                   os.path.relpath(checkpoint, tmp_dir)),
        "spectrogram_statistics": statistics,
        "verification_relative_errors": verification,
        "not_converted": list(official.not_converted),
    }
    summary.update(extra or {})
    files.write_json(os.path.join(tmp_dir, CONVERSION_FILE), summary)
    if os.path.exists(model_dir):
      shutil.rmtree(model_dir)
  return summary


def convert_checkpoint(checkpoint_path: str, model_dir: str,
                       crop_size: int = 224,
                       normalization_dataset_dir: Optional[str] = None,
                       spectrogram_statistics: Optional[str] = None,
                       overwrite: bool = False, verify: bool = True,
                       **preprocessing_overrides) -> dict:
  """Converts an official AVID-CMA checkpoint file into an avid_tf model_dir.

  Args:
    checkpoint_path: the official `*.pth.tar` training checkpoint.
    model_dir: the folder to create.
    crop_size: input frame size recorded in preprocessing.json.
    normalization_dataset_dir: an ingested dataset whose spectrogram
      statistics to record (see `conversion_preprocessing`).
    spectrogram_statistics: or an .npz file with `mean` and `std`.
    overwrite: replace an existing `model_dir`.
    verify: check the converted model against PyTorch on random inputs.
    **preprocessing_overrides: num_frames, frame_rate, audio_seconds (tests
      use small clips; the official models take 8 frames, 16 fps, 2 s).

  Returns:
    The conversion summary (also in `<model_dir>/conversion.json`).
  """
  _check_destination(model_dir, overwrite)
  preprocessing, statistics = conversion_preprocessing(
      crop_size, normalization_dataset_dir, spectrogram_statistics,
      **preprocessing_overrides)
  official = read_checkpoint(checkpoint_path)
  return write_model_dir(
      official, model_dir, preprocessing, statistics=statistics,
      overwrite=overwrite, verify=verify,
      extra={"source_sha256": _sha256(checkpoint_path)})
