"""Loads a pretrained video or audio backbone for downstream evaluation.

One entry point, `load_encoder`, accepts any of:
  * an exported SavedModel: `<export_dir>` (holding video_encoder/ and
    audio_encoder/) or one encoder folder `<export_dir>/video_encoder`
    (avid_tf.export.saved_model); its avid_encoder.json gives the
    preprocessing;
  * the model_dir of a training run (config.gin, preprocessing.json,
    checkpoints/), which is also what scripts/convert_pytorch_checkpoint.py
    writes for an official checkpoint (avid_tf.training.trained_model).
Anything else is one `UserError`.
"""

import dataclasses
import os
from typing import Any, Dict

import keras

from avid_tf import errors
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.export import saved_model
from avid_tf.models import builders
from avid_tf.training import trained_model

MODALITIES = ("video", "audio")


class NotAnEncoderSourceError(errors.UserError, ValueError):
  """Raised for a path that is neither an export nor a run folder."""


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
  return os.path.isfile(os.path.join(path, saved_model.METADATA_FILE))


def _is_model_dir(path):
  return (os.path.isfile(os.path.join(path, trained_model.CONFIG_FILE)) and
          os.path.isfile(os.path.join(path,
                                      preprocessing_lib.Preprocessing.FILE_NAME)))


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


def _random_encoder(modality, model_dir=None):
  """A freshly initialised encoder: a run's architecture or the gin one."""
  if model_dir is not None:
    model = trained_model.build_model(model_dir, num_data=1)
    encoder = getattr(model, f"{modality}_encoder")
  else:
    video_encoder, audio_encoder = builders.build_encoders()
    encoder = video_encoder if modality == "video" else audio_encoder
  _use_local_batch_norm(encoder)
  return encoder


def load_encoder(path=None, modality="video", random_init=False):
  """Returns the backbone of an export or a run folder.

  Args:
    path: export folder (root or `<root>/<modality>_encoder`), or a run
      folder / converted official checkpoint (model_dir). None only with
      `random_init`.
    modality: "video" or "audio".
    random_init: return a freshly initialised encoder instead: the
      architecture of the run folder `path`, or, without `path` (or for an
      export, whose architecture is not rebuilt), `build_encoders` as gin
      configures it. The preprocessing is still that of `path`.

  Returns:
    An `EncoderSource`.

  Raises:
    NotAnEncoderSourceError: `path` is neither (one-line message).
  """
  if modality not in MODALITIES:
    raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
  if path is None:
    if not random_init:
      raise NotAnEncoderSourceError(
          "Give an encoder to start from (export or model_dir) or ask for a "
          "random initialisation")
    return EncoderSource(_random_encoder(modality), "random", None, {})
  path = os.fspath(path)
  export_path = os.path.join(path, f"{modality}_encoder")
  if not _is_export(path) and _is_export(export_path):
    path = export_path
  if _is_export(path):
    metadata = saved_model.read_metadata(path)
    if metadata.get("modality") != modality:
      raise NotAnEncoderSourceError(
          f"{path} is an exported {metadata.get('modality')} encoder, not a "
          f"{modality} one")
    preprocessing = dict(metadata.get("preprocessing", {}))
    if random_init:
      return EncoderSource(_random_encoder(modality), "random", None,
                           preprocessing)
    return EncoderSource(saved_model.load_encoder_layer(path), "export", path,
                         preprocessing)
  if _is_model_dir(path):
    preprocessing = preprocessing_lib.Preprocessing.read(
        path).export_metadata()[modality]
    if random_init:
      return EncoderSource(_random_encoder(modality, path), "random", None,
                           preprocessing)
    model = trained_model.load_trained_model(path)
    encoder = getattr(model, f"{modality}_encoder")
    _use_local_batch_norm(encoder)
    return EncoderSource(encoder, "model_dir", path, preprocessing)
  raise NotAnEncoderSourceError(
      f"{path} is neither an exported encoder (no {saved_model.METADATA_FILE}"
      f" in it or in {modality}_encoder/) nor a training run or converted "
      f"checkpoint (no {trained_model.CONFIG_FILE} + "
      f"{preprocessing_lib.Preprocessing.FILE_NAME})")
