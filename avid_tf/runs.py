"""Opens what a user points at: a training run, a converted checkpoint or an export.

`open_run(path)` accepts
  * the model_dir of a training run (builder_args.json or config.gin,
    preprocessing.json, checkpoints/), which is also what
    scripts/convert_pytorch_checkpoint.py writes for an official
    checkpoint;
  * an export of avid_tf.export.saved_model: its root (video_encoder/ and
    audio_encoder/) or one encoder folder; an export holds encoders only.
and gives the preprocessing the encoders were trained with, the model, each
encoder, and the random-init baseline. Anything else is one `UserError`.

Every random-init baseline (the quickstart's, the studies', the probes',
feature extraction's and fine-tuning's) is built with `RANDOM_INIT_SEED`
unless a caller asks for another seed, so they are all the same network.
"""

import dataclasses
import os
from typing import Any, Dict, Optional

import keras

from avid_tf import errors
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.export import saved_model
from avid_tf.memory import memory_bank
from avid_tf.models import av_model
from avid_tf.models import builders
from avid_tf.training import builder_args
from avid_tf.training import checkpointing
from avid_tf.training import train_lib
from avid_tf.utils import files

# The seed of the random-init baselines: the weights of a run's architecture
# at initialisation, the reference every pretrained figure is compared with.
RANDOM_INIT_SEED = 12345
MODALITIES = ("video", "audio")
RUN = "run"
EXPORT = "export"


class NotARunError(errors.UserError, ValueError):
  """Raised for a path that is neither a run folder nor an export."""


@dataclasses.dataclass
class EncoderSource:
  """A backbone mapping a batch of normalised inputs to [B, D] features.

  Attributes:
    encoder: Keras layer or model; `encoder(x, training=...)` returns
      [B, D]. Setting `encoder.trainable = False` freezes it with BatchNorm
      in inference mode.
    kind: "export", "model_dir" or "random".
    path: the folder it was loaded from (None for "random").
    preprocessing: the inputs' geometry it was pretrained on (num_frames,
      crop_size, fps for video; the export metadata's keys), may be empty.
  """

  encoder: Any
  kind: str
  path: Any
  preprocessing: Dict[str, Any]


def _is_export(path):
  return files.isfile(os.path.join(path, saved_model.METADATA_FILE))


def _is_run(path):
  return (files.isfile(os.path.join(path,
                                      preprocessing_lib.Preprocessing.FILE_NAME))
          and any(files.isfile(os.path.join(path, name)) for name in
                  (builder_args.FILE_NAME, builder_args.CONFIG_FILE)))


def _use_local_batch_norm(encoder):
  """Per-replica, whole-batch BatchNorm, as in the exported encoders.

  Fine-tuning batches need not be multiples of a pretraining virtual batch
  size, and a single-device fine-tune has nothing to synchronise.
  """
  # pylint: disable-next=protected-access
  for layer in encoder._flatten_layers(include_self=True):
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.synchronized = False
      layer.virtual_batch_size = None


def _dummy_input(modality, preprocessing):
  """One clip of an export's input geometry."""
  if modality == "video":
    size = preprocessing.get("crop_size", 112)
    return keras.ops.zeros((1, preprocessing.get("num_frames", 8), size,
                            size, 3))
  return keras.ops.zeros((1, preprocessing.get("num_frames", 200), 257, 1))


def random_encoder(modality, preprocessing=None, seed=RANDOM_INIT_SEED):
  """`build_encoders` as gin configures it, initialised with `seed`.

  The baseline of an export (whose architecture is not rebuilt) or of no
  source at all.

  Args:
    modality: "video" or "audio".
    preprocessing: the input geometry (export metadata keys) its variables
      are created for; None takes the builders' defaults.
    seed: seed of the weights; the global random generators are reseeded.

  Returns:
    The encoder, variables created, with local BatchNorm.
  """
  keras.utils.set_random_seed(seed)
  video_encoder, audio_encoder = builders.build_encoders()
  encoder = video_encoder if modality == "video" else audio_encoder
  encoder(_dummy_input(modality, preprocessing or {}), training=False)
  _use_local_batch_norm(encoder)
  return encoder


class Run:
  """A run folder or an export, opened.

  Attributes:
    path: the folder (an export's root or encoder folder).
    kind: RUN (a training run or converted checkpoint) or EXPORT.
  """

  def __init__(self, path, kind):
    self.path = path
    self.kind = kind

  def _require_run(self, what):
    if self.kind != RUN:
      raise NotARunError(f"{self.path} is an export, which holds encoders "
                         f"only; {what} needs a training run folder.")

  @property
  def preprocessing(self):
    """The run's `Preprocessing` record (run folders only)."""
    self._require_run("the preprocessing record")
    return preprocessing_lib.Preprocessing.read(self.path)

  def encoder_preprocessing(self, modality):
    """The input geometry of one encoder, as in an export's metadata."""
    _check_modality(modality)
    if self.kind == RUN:
      return self.preprocessing.export_metadata()[modality]
    metadata = saved_model.read_metadata(self._export_path(modality))
    return dict(metadata.get("preprocessing", {}))

  def checkpoint(self, checkpoint=None):
    """The checkpoint prefix a model is restored from: `checkpoint` or the
    newest of the run."""
    self._require_run("a checkpoint")
    return checkpoint or checkpointing.resolve_checkpoint(
        self.path, train_lib.CHECKPOINT_SUBDIR)

  def checkpoint_source(self, checkpoint=None):
    """Where a model restored from `checkpoint` comes from, as recorded
    beside an export: {"model_dir", "checkpoint", "step"} (step None for a
    converted checkpoint, which has no optimizer)."""
    path = self.checkpoint(checkpoint)
    return {"model_dir": files.abspath(self.path),
            "checkpoint": files.abspath(path),
            "step": checkpointing.saved_step(path)}

  def _build(self, num_data, seed):
    model = builder_args.build_av_model(builder_args.read(self.path),
                                        num_data=num_data, seed=seed)
    train_lib.build_variables(model, self.preprocessing)
    return model

  def model(self, checkpoint=None):
    """The run's AVModel, restored from `checkpoint` (default the newest).

    Raises:
      FileNotFoundError: no checkpoint.
      checkpointing.CheckpointMismatchError: the checkpoint does not fit.
    """
    path = self.checkpoint(checkpoint)
    model = self._build(_bank_rows(path), seed=0)
    checkpointing.restore(checkpointing.make_checkpoint(model), path, model)
    return model

  def random_init_model(self, num_data=None, seed=RANDOM_INIT_SEED):
    """The run's architecture, freshly initialised: the baseline.

    Args:
      num_data: memory-bank rows; None takes the rows of the run's newest
        checkpoint (an objective may need more rows than it draws). The
        banks are drawn apart from the weights, so this does not change
        the encoders and heads.
      seed: seed of the weights and banks. The global random generators
        (Python, NumPy, TensorFlow, Keras) are reseeded with it, so the
        weights depend on `seed` alone, not on what the process drew before.

    Returns:
      An `AVModel`, variables created.
    """
    self._require_run("a random-init model")
    if num_data is None:
      num_data = _bank_rows(self.checkpoint())
    keras.utils.set_random_seed(seed)
    return self._build(num_data, seed)

  def _export_path(self, modality):
    path = os.path.join(self.path, f"{modality}_encoder")
    return path if _is_export(path) else self.path

  def encoder(self, modality="video", random_init=False):
    """One encoder of the run or export, as an `EncoderSource`.

    Args:
      modality: "video" or "audio".
      random_init: the baseline instead: the run's architecture at
        `RANDOM_INIT_SEED`, or for an export (whose architecture is not
        rebuilt) `random_encoder`. The preprocessing is still the source's.

    Raises:
      NotARunError: an export of the other modality.
    """
    _check_modality(modality)
    preprocessing = self.encoder_preprocessing(modality)
    if self.kind == EXPORT:
      path = self._export_path(modality)
      found = saved_model.read_metadata(path).get("modality")
      if found != modality:
        raise NotARunError(f"{path} is an exported {found} encoder, not a "
                           f"{modality} one")
      if random_init:
        return EncoderSource(random_encoder(modality, preprocessing),
                             "random", None, preprocessing)
      return EncoderSource(saved_model.load_encoder_layer(path), "export",
                           path, preprocessing)
    model = self.random_init_model() if random_init else self.model()
    encoder = getattr(model, f"{modality}_encoder")
    _use_local_batch_norm(encoder)
    return EncoderSource(encoder, "random" if random_init else "model_dir",
                         None if random_init else self.path, preprocessing)


def _bank_rows(checkpoint):
  """Memory-bank rows of a checkpoint (the run's training videos)."""
  return checkpointing.bank_rows(
      checkpoint, f"{av_model.VIDEO_BANK_NAME}/{memory_bank.BANK_VARIABLE_NAME}")


def _check_modality(modality):
  if modality not in MODALITIES:
    raise errors.UserError(f"modality must be one of {MODALITIES}, got "
                           f"{modality!r}")


def open_run(path):
  """Opens a training run folder, a converted checkpoint or an export.

  Args:
    path: the folder.

  Returns:
    A `Run`.

  Raises:
    FileNotFoundError: `path` does not exist.
    NotARunError: `path` is neither (one-line message).
  """
  path = os.fspath(path)
  if not files.isdir(path):
    raise FileNotFoundError(f"{path} does not exist.")
  if _is_run(path):
    return Run(path, RUN)
  if _is_export(path) or any(_is_export(os.path.join(path, f"{m}_encoder"))
                             for m in MODALITIES):
    return Run(path, EXPORT)
  raise NotARunError(
      f"{path} is neither a training run or converted checkpoint (no "
      f"{preprocessing_lib.Preprocessing.FILE_NAME} with "
      f"{builder_args.FILE_NAME} or {builder_args.CONFIG_FILE}) nor an "
      f"exported encoder (no {saved_model.METADATA_FILE} in it or in "
      "video_encoder/ or audio_encoder/)")


def load_encoder(path: Optional[str] = None, modality="video",
                 random_init=False):
  """One encoder of `open_run(path)`, or with no path a random one.

  Args:
    path: a run folder, converted checkpoint or export; None only with
      `random_init` (then `random_encoder`, no preprocessing).
    modality: "video" or "audio".
    random_init: the random-init baseline (see `Run.encoder`).

  Returns:
    An `EncoderSource`.
  """
  if path is None:
    if not random_init:
      raise NotARunError("Give an encoder to start from (export or "
                         "model_dir) or ask for a random initialisation")
    _check_modality(modality)
    return EncoderSource(random_encoder(modality), "random", None, {})
  return open_run(path).encoder(modality, random_init)
