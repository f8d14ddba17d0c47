"""Exports the pretrained encoders as SavedModels and reloads them in Keras.

Each encoder is written on its own, without the memory banks, heads or
optimizer state of pre-training:

  <export_dir>/video_encoder/     SavedModel + avid_encoder.json
  <export_dir>/audio_encoder/     SavedModel + avid_encoder.json

Every SavedModel has two endpoints over a batch of normalised inputs:
  "serve"        inference mode (BatchNorm uses its moving statistics);
                 also the "serving_default" signature.
  "serve_train"  training mode (BatchNorm normalises with batch statistics
                 and updates its moving statistics in place, like
                 `encoder(x, training=True)`).
`avid_encoder.json` records the modality, the architecture (Keras
serialisation of the encoder), the feature dimension, the endpoints and the
preprocessing the inputs must have had.

Downstream fine-tuning (the documented route):

  encoder = load_encoder_layer("export/video_encoder")    # trainable=True
  clips = keras.Input((8, 112, 112, 3))
  logits = keras.layers.Dense(101)(encoder(clips))
  model = keras.Model(clips, logits)
  model.compile(keras.optimizers.Adam(1e-4), ...)
  model.fit(...)

Why not plain `keras.layers.TFSMLayer(path, call_endpoint="serve",
call_training_endpoint="serve_train", trainable=True)`: it runs inference
and training calls, but fitting it with an optimizer that keeps slot
variables (Adam, SGD with momentum) fails (Keras 3.15.1 with TF 2.17.1;
reported for Keras 3.10-3.15.1) with
"ValueError: 'r2plus1d_18_stem_conv_kernel:0_momentum' is not a valid scope
name". TFSMLayer names its Keras weights after the restored `tf.Variable`s,
whose names always end in ":0" (TensorFlow appends it to every variable it
restores, whatever name was saved), and the optimizer builds slot variable
names from them; ":" is not allowed in a TensorFlow name scope. No choice of
names at export time avoids the suffix, so the fix is on the loading side:
`EncoderLayer` wraps the same restored variables under names without it.

Without Keras: `encoder = tf.saved_model.load(path)`, then
`encoder.serve(x)` or `encoder.signatures["serving_default"](inputs=x)
["output_0"]`. Keep `encoder` referenced while calling it: the functions
hold only weak references to the variables, so a one-liner
`tf.saved_model.load(path).serve(x)` fails with "Called a function
referencing variables which have been deleted".
"""

import contextlib
import json
import os
import re
from typing import Any, Dict, Mapping, Optional, Sequence

import keras
# TFSMLayer's own safe-mode check reads this flag; Keras has no public getter.
from keras.src.saving import serialization_lib
import numpy as np
import tensorflow as tf

import avid_tf
from avid_tf.data import video_ops
from avid_tf.utils import files

SERVE_ENDPOINT = "serve"
TRAIN_ENDPOINT = "serve_train"
METADATA_FILE = "avid_encoder.json"
VIDEO_ENCODER_DIR = "video_encoder"
AUDIO_ENCODER_DIR = "audio_encoder"

# Batch, time, height, width free: the encoders end in a global max pool.
VIDEO_INPUT_SHAPE = (None, None, None, None, 3)
# Batch and spectrogram frames free; 257 frequency bins (docs/methods.md,
# "Inputs and augmentation").
AUDIO_INPUT_SHAPE = (None, None, 257, 1)

IMAGENET_MEAN = video_ops.IMAGENET_MEAN
IMAGENET_STD = video_ops.IMAGENET_STD

# Inputs the encoders were pretrained on (docs/methods.md, "Inputs and
# augmentation"); callers override entries (crop size, clip length, spectrogram statistics).
DEFAULT_PREPROCESSING = {
    "video": {
        "layout": "[batch, frames, height, width, 3] float32, RGB",
        "num_frames": 8,
        "fps": 16,
        "crop_size": 112,
        "value_range_before_normalization": [0.0, 1.0],
        "pixels": "frames resized then rounded to uint8, divided by 255",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "normalization": "(rgb / 255 - mean) / std per channel",
        "eval_resize": "short side to crop_size / 0.875, centre crop",
    },
    "audio": {
        "layout": "[batch, frames, 257, 1] float32 log-spectrogram",
        "sample_rate": 24000,
        "seconds": 2.0,
        "num_frames": 200,
        "n_fft": 1024,
        "hop_length": 240,
        "window": "hann",
        "center": True,
        "pad_mode": "reflect",
        "frequency_bins": 257,
        "bins": "DC bin + bins 1..512 averaged in adjacent pairs",
        "power_to_db": {"ref": 1.0, "amin": 1e-10, "top_db": 100.0},
        "normalization": "per-frequency (spec - mean) / std with the "
                         "pretraining dataset's statistics",
        "spectrogram_mean": None,
        "spectrogram_std": None,
    },
}

# Characters TensorFlow accepts in a name scope (and so in variable names).
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-/>]")


def _variable_export_name(path: str) -> str:
  """Returns a TF variable name for a Keras variable path."""
  return _INVALID_NAME_CHARS.sub("_", path)


def _keras_weight_name(tf_name: str) -> str:
  """Returns a Keras weight name for a restored tf.Variable name.

  Drops the ":0" TensorFlow appends to restored variable names and maps
  "/" (not allowed in Keras weight names) and any other character an
  optimizer slot name could not carry to "_".
  """
  name = re.sub(r":\d+$", "", tf_name)
  return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


def _json_default(value):
  """Makes NumPy scalars/arrays and other objects JSON-serialisable."""
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return repr(value)


def _write_json(path: str, payload: Mapping[str, Any]) -> None:
  files.write_json(path, payload, indent=2, sort_keys=True,
                   default=_json_default)


def _architecture(encoder: keras.Model) -> Dict[str, Any]:
  """Keras serialisation of the encoder (class, module, config)."""
  try:
    return keras.saving.serialize_keras_object(encoder)
  except Exception:  # pylint: disable=broad-except
    # A config that does not serialise must not block the export.
    return {"class_name": type(encoder).__name__,
            "module": type(encoder).__module__,
            "config": encoder.get_config()}


@contextlib.contextmanager
def _local_batch_norm(encoder: keras.Model):
  """Temporarily makes every BatchNormalization use its whole local batch.

  A SavedModel runs on one device; synchronized BN would trace an all-reduce
  with a custom gradient that SavedModel cannot store (every load then warns
  "unsaved custom gradients"). On one replica both compute the same batch
  statistics up to rounding (the synchronized path takes the variance as
  E[x^2] - E[x]^2, the local one in two passes, which is more accurate).
  Downstream multi-device fine-tuning therefore uses per-replica BN.

  Groups of a virtual batch size (`bn_virtual_batch_size`) are dropped too:
  the exported training endpoint takes any batch size, and downstream
  fine-tuning normalises over the batches it chooses.
  """
  changed = []
  # pylint: disable-next=protected-access
  for layer in encoder._flatten_layers(include_self=True):
    if not isinstance(layer, keras.layers.BatchNormalization):
      continue
    for attribute, local in (("synchronized", False),
                             ("virtual_batch_size", None)):
      value = getattr(layer, attribute, local)
      if value != local:
        changed.append((layer, attribute, value))
        setattr(layer, attribute, local)
  try:
    yield
  finally:
    for layer, attribute, value in changed:
      setattr(layer, attribute, value)


class _EncoderEndpoints:
  """The exported state: copies of the encoder's variables, named by path.

  The endpoints run the encoder through `stateless_call` on these copies,
  so the SavedModel holds exactly the encoder's weights (nothing else the
  encoder object might reference), under its Keras paths instead of the
  ambiguous names Keras 3 gives the underlying tf.Variables
  ("r2plus1d_18/kernel" for every kernel).
  """

  def __init__(self, encoder: keras.Model):
    self._encoder = encoder

    def copy(variables):
      copies = []
      for v in variables:
        with tf.init_scope():
          copies.append(tf.Variable(
              v.numpy(), trainable=v.trainable,
              name=_variable_export_name(v.path),
              aggregation=v.value.aggregation,
              synchronization=v.value.synchronization))
      return copies

    self.exported_trainable = copy(encoder.trainable_variables)
    self.exported_non_trainable = copy(encoder.non_trainable_variables)

  def infer(self, inputs):
    outputs, _ = self._encoder.stateless_call(
        self.exported_trainable, self.exported_non_trainable, inputs,
        training=False)
    return tf.cast(outputs, tf.float32)

  def train(self, inputs):
    outputs, updated = self._encoder.stateless_call(
        self.exported_trainable, self.exported_non_trainable, inputs,
        training=True)
    for variable, value in zip(self.exported_non_trainable, updated):
      variable.assign(tf.cast(value, variable.dtype))
    return tf.cast(outputs, tf.float32)


def export_encoder(encoder: keras.Model,
                   export_dir: str,
                   input_signature_shape: Sequence[Optional[int]],
                   modality: str,
                   preprocessing: Optional[Mapping[str, Any]] = None,
                   verify_inputs: Optional[np.ndarray] = None,
                   verify_atol: float = 1e-4,
                   overwrite: bool = False,
                   source: Optional[Mapping[str, Any]] = None) -> str:
  """Writes one encoder as a SavedModel with inference and training endpoints.

  The folder is written under a temporary name and moved into place when
  complete.

  Args:
    encoder: a built Keras model whose `call(x, training)` returns [B, D].
    export_dir: folder to create (the SavedModel root).
    input_signature_shape: input shape with None for free axes; the first
      (batch) axis must be None.
    modality: "video" or "audio" (selects the default preprocessing record).
    preprocessing: entries overriding `DEFAULT_PREPROCESSING[modality]` in
      avid_encoder.json (e.g. crop_size, spectrogram_mean/std).
    verify_inputs: optional batch; when given, the written SavedModel is
      reloaded and both endpoints must match the in-memory encoder on it
      within `verify_atol` (the encoder's own state is not changed).
    verify_atol: absolute tolerance of that check.
    overwrite: replace an existing `export_dir`.
    source: where the weights come from, recorded as "source" in
      avid_encoder.json (`export_encoders`).

  Returns:
    `export_dir`.

  Raises:
    ValueError: unbuilt encoder, bad modality or signature, or a reloaded
      SavedModel that does not reproduce the encoder.
    FileExistsError: `export_dir` exists and `overwrite` is False.
  """
  if modality not in DEFAULT_PREPROCESSING:
    raise ValueError(f"modality must be one of {sorted(DEFAULT_PREPROCESSING)}"
                     f", got {modality!r}")
  if not encoder.built:
    raise ValueError(f"Encoder {encoder.name} must be built before export "
                     f"(call it on a batch first); export_dir={export_dir}")
  shape = tuple(input_signature_shape)
  if not shape or shape[0] is not None:
    raise ValueError(f"input_signature_shape must start with a None batch "
                     f"axis, got {shape} for {export_dir}")
  export_dir = os.fspath(export_dir)
  if files.exists(export_dir) and not overwrite:
    raise FileExistsError(
        f"Export folder {export_dir} already exists (pass overwrite=True)")

  record_preprocessing = dict(DEFAULT_PREPROCESSING[modality])
  record_preprocessing.update(preprocessing or {})
  files.makedirs(os.path.dirname(files.abspath(export_dir)))
  with files.atomic_path(export_dir, local=True) as tmp_dir:
    with _local_batch_norm(encoder):
      endpoints = _EncoderEndpoints(encoder)
      output_shape = _write_archive(endpoints, shape, tmp_dir)
    metadata = _metadata(encoder, endpoints, modality, shape, output_shape,
                         record_preprocessing)
    if source is not None:
      metadata["source"] = dict(source)
    _write_json(os.path.join(tmp_dir, METADATA_FILE), metadata)
    if verify_inputs is not None:
      check_export(tmp_dir, encoder, verify_inputs, atol=verify_atol)
    if files.exists(export_dir):  # overwrite=True, checked above
      files.rmtree(export_dir)
  return export_dir


def _write_archive(endpoints, shape, directory):
  """Writes the SavedModel of an encoder's endpoints; returns the output
  shape of the inference endpoint."""
  signature = [tf.TensorSpec(shape, tf.float32, name="inputs")]
  archive = keras.export.ExportArchive()
  serve_fn = archive.add_endpoint(SERVE_ENDPOINT, endpoints.infer, signature)
  archive.add_endpoint(TRAIN_ENDPOINT, endpoints.train, signature)
  # Ordered like encoder.(non_)trainable_variables, so that loaders can
  # pair weights one to one; the endpoints capture the same objects.
  archive.add_variable_collection(
      "variables",
      endpoints.exported_trainable + endpoints.exported_non_trainable)
  archive.add_variable_collection("trainable_variables",
                                  endpoints.exported_trainable)
  archive.add_variable_collection("non_trainable_variables",
                                  endpoints.exported_non_trainable)
  output_shape = serve_fn.get_concrete_function().structured_outputs.shape
  archive.write_out(directory, verbose=False)
  return output_shape


def _metadata(encoder, endpoints, modality, shape, output_shape,
              preprocessing):
  """The content of avid_encoder.json."""
  return {
      "modality": modality,
      "architecture": _architecture(encoder),
      "feature_dim": output_shape[-1],
      "input_shape": list(shape),
      "input_dtype": "float32",
      "output_shape": output_shape.as_list(),
      "endpoints": {"inference": SERVE_ENDPOINT,
                    "training": TRAIN_ENDPOINT},
      "num_trainable_variables": len(endpoints.exported_trainable),
      "num_non_trainable_variables": len(endpoints.exported_non_trainable),
      "num_trainable_parameters": int(sum(
          np.prod(v.shape) for v in endpoints.exported_trainable)),
      "variable_paths": [v.path for v in encoder.trainable_variables +
                         encoder.non_trainable_variables],
      "preprocessing": preprocessing,
      "load_with": "avid_tf.export.saved_model.load_encoder_layer(path)",
      "versions": {"avid_tf": avid_tf.__version__,
                   "keras": keras.__version__,
                   "tensorflow": tf.__version__},
  }


def export_encoders(model_or_encoders: Any,
                    export_dir: str,
                    video_input_shape: Sequence[Optional[int]] = (
                        VIDEO_INPUT_SHAPE),
                    audio_input_shape: Sequence[Optional[int]] = (
                        AUDIO_INPUT_SHAPE),
                    video_preprocessing: Optional[Mapping[str, Any]] = None,
                    audio_preprocessing: Optional[Mapping[str, Any]] = None,
                    verify_inputs: Optional[Mapping[str, np.ndarray]] = None,
                    overwrite: bool = False,
                    source: Optional[Mapping[str, Any]] = None
                    ) -> Dict[str, str]:
  """Exports the video and audio encoders of a pretrained model.

  Only the encoders are written: no memory banks, projection heads,
  partition constants or optimizer state.

  Args:
    model_or_encoders: an object with `video_encoder` and `audio_encoder`
      attributes (e.g. `AVModel`), or a mapping {"video": encoder,
      "audio": encoder}; a missing or None encoder is skipped.
    export_dir: parent folder; gets `video_encoder/` and `audio_encoder/`.
    video_input_shape: signature of the video endpoints.
    audio_input_shape: signature of the audio endpoints.
    video_preprocessing: overrides of the recorded video preprocessing.
    audio_preprocessing: overrides of the recorded audio preprocessing
      (pass the dataset's spectrogram_mean/std here).
    verify_inputs: optional {"video": batch, "audio": batch} to check each
      reloaded SavedModel against its encoder (see `export_encoder`).
    overwrite: replace existing encoder folders.
    source: where the weights come from, e.g. {"model_dir", "checkpoint",
      "step"} of a training run; recorded as "source" in each encoder's
      avid_encoder.json.

  Returns:
    Dict modality -> path of the written SavedModel.

  Raises:
    ValueError: no encoder found in `model_or_encoders`.
  """
  if isinstance(model_or_encoders, Mapping):
    encoders = {m: model_or_encoders.get(m) for m in ("video", "audio")}
  else:
    encoders = {m: getattr(model_or_encoders, f"{m}_encoder", None)
                for m in ("video", "audio")}
  encoders = {m: e for m, e in encoders.items() if e is not None}
  if not encoders:
    raise ValueError(f"No video_encoder/audio_encoder found in "
                     f"{type(model_or_encoders).__name__} (export_dir="
                     f"{export_dir})")
  settings = {
      "video": (VIDEO_ENCODER_DIR, video_input_shape, video_preprocessing),
      "audio": (AUDIO_ENCODER_DIR, audio_input_shape, audio_preprocessing),
  }
  verify_inputs = verify_inputs or {}
  paths = {}
  for modality, encoder in encoders.items():
    subdir, shape, preprocessing = settings[modality]
    paths[modality] = export_encoder(
        encoder, os.path.join(export_dir, subdir), shape, modality,
        preprocessing=preprocessing,
        verify_inputs=verify_inputs.get(modality), overwrite=overwrite,
        source=source)
  return paths


def read_metadata(path: str) -> Dict[str, Any]:
  """Returns the avid_encoder.json of an exported encoder."""
  metadata_path = os.path.join(path, METADATA_FILE)
  if not files.exists(metadata_path):
    raise FileNotFoundError(f"No {METADATA_FILE} in {path}: not an avid_tf "
                            f"encoder export")
  with files.open_file(metadata_path) as f:
    return json.load(f)


@keras.saving.register_keras_serializable(package="avid_tf")
class EncoderLayer(keras.layers.Layer):
  """A reloaded encoder SavedModel as a fine-tunable Keras layer.

  Like `keras.layers.TFSMLayer`, but its weights are named so that Keras
  optimizers can create slot variables for them (see the module docstring),
  they keep the exported order (`layer.weights` pairs one to one with the
  original encoder's `trainable_variables + non_trainable_variables`), and
  training-mode calls (BatchNorm with batch statistics, moving statistics
  updated) happen only while the layer is trainable: a frozen encoder
  (`layer.trainable = False`) always runs the inference endpoint, like
  Keras' own BatchNormalization.
  """

  def __init__(self,
               filepath: str,
               call_endpoint: str = SERVE_ENDPOINT,
               call_training_endpoint: Optional[str] = TRAIN_ENDPOINT,
               trainable: bool = True,
               name: Optional[str] = None,
               **kwargs):
    """Loads the SavedModel.

    Args:
      filepath: SavedModel folder (e.g. `<export_dir>/video_encoder`).
      call_endpoint: inference endpoint.
      call_training_endpoint: training endpoint, or None to always run
        `call_endpoint`.
      trainable: whether fitting updates the encoder.
      name: layer name.
      **kwargs: base Layer arguments (dtype defaults to float32: the
        endpoints take float32 inputs).

    Raises:
      ValueError: an endpoint the SavedModel does not have.
    """
    kwargs.setdefault("dtype", "float32")
    super().__init__(name=name, **kwargs)
    self.filepath = os.fspath(filepath)
    self.call_endpoint = call_endpoint
    self.call_training_endpoint = call_training_endpoint
    self._reloaded = tf.saved_model.load(self.filepath)
    self._infer_fn = self._endpoint(call_endpoint)
    self._train_fn = (self._endpoint(call_training_endpoint)
                      if call_training_endpoint else None)

    restored = list(getattr(self._reloaded, "variables", []))
    if not restored:  # A SavedModel written without variable collections.
      restored = []
      seen = set()
      for fn in (self._infer_fn, self._train_fn):
        if fn is None:
          continue
        concrete = (fn.concrete_functions if hasattr(fn, "concrete_functions")
                    else [fn])
        for concrete_fn in concrete:
          for v in concrete_fn.variables:
            if id(v) not in seen:
              seen.add(id(v))
              restored.append(v)
    # keras.Variable wraps an existing tf.Variable without copying it, so the
    # endpoints and the optimizer see the same state.
    self.encoder_weights = [
        keras.Variable(initializer=v, trainable=v.trainable, dtype=v.dtype,
                       shape=v.shape, name=_keras_weight_name(v.name))
        for v in restored
    ]
    # The setter also marks the weights non-trainable when freezing (and
    # remembers which ones to unfreeze), as for any Keras layer.
    self.trainable = trainable
    self.built = True

  def _endpoint(self, name: str):
    if hasattr(self._reloaded, name):
      return getattr(self._reloaded, name)
    if name in self._reloaded.signatures:
      return self._reloaded.signatures[name]
    raise ValueError(f"SavedModel {self.filepath} has no endpoint {name!r}; "
                     f"signatures: {sorted(self._reloaded.signatures)}")

  def call(self, inputs, training=False):
    inputs = tf.cast(inputs, tf.float32)
    if training and self.trainable and self._train_fn is not None:
      return self._train_fn(inputs)
    return self._infer_fn(inputs)

  def get_config(self):
    config = super().get_config()
    config.update({
        "filepath": self.filepath,
        "call_endpoint": self.call_endpoint,
        "call_training_endpoint": self.call_training_endpoint,
    })
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None, safe_mode=None):
    """Recreates the layer; refused in safe mode like `TFSMLayer`.

    A SavedModel holds arbitrary graph code, so deserialising one needs
    `safe_mode=False` or `keras.config.enable_unsafe_deserialization()`.
    """
    del custom_objects
    if safe_mode is None:
      safe_mode = serialization_lib.in_safe_mode()
    if safe_mode is not False:
      raise ValueError(
          f"Refusing to load the SavedModel {config.get('filepath')} in safe "
          f"mode: pass safe_mode=False if you trust it")
    return cls(**config)


def load_encoder_layer(path: str,
                       trainable: bool = True,
                       name: Optional[str] = None) -> EncoderLayer:
  """Returns an exported encoder as a Keras layer (the documented route).

  Args:
    path: an exported encoder folder (`<export_dir>/video_encoder`).
    trainable: whether fitting updates the encoder's weights and BatchNorm
      statistics.
    name: layer name (default: the folder's name).

  Returns:
    An `EncoderLayer` mapping [B, ...] float32 inputs to [B, D] features;
    `training=True` calls use the training endpoint.
  """
  if not files.isdir(path):
    raise FileNotFoundError(f"No exported encoder at {path}")
  return EncoderLayer(path, trainable=trainable,
                      name=name or os.path.basename(files.normpath(path)))


def check_export(path: str,
                 encoder: keras.Model,
                 inputs: np.ndarray,
                 atol: float = 1e-4) -> Dict[str, float]:
  """Reloads an export and compares both endpoints with the encoder.

  Neither the encoder nor the files change: the encoder runs through
  `stateless_call` and the reloaded training endpoint only updates the
  in-memory copy.

  Args:
    path: exported SavedModel folder.
    encoder: the in-memory encoder it was exported from.
    inputs: a batch matching the export's signature.
    atol: largest allowed absolute difference.

  Returns:
    {"inference": max |diff|, "training": max |diff|}.

  Raises:
    ValueError: a difference above `atol`.
  """
  reloaded = tf.saved_model.load(path)
  inputs = tf.convert_to_tensor(inputs, tf.float32)
  trainable = [v.value for v in encoder.trainable_variables]
  non_trainable = [v.value for v in encoder.non_trainable_variables]
  diffs = {}
  for mode, endpoint, training in (("inference", SERVE_ENDPOINT, False),
                                   ("training", TRAIN_ENDPOINT, True)):
    with _local_batch_norm(encoder):
      expected, _ = encoder.stateless_call(trainable, non_trainable, inputs,
                                           training=training)
    actual = getattr(reloaded, endpoint)(inputs)
    diffs[mode] = float(np.max(np.abs(
        np.asarray(actual, np.float64) - np.asarray(expected, np.float64))))
    if not diffs[mode] <= atol:
      raise ValueError(f"Reloaded {path} endpoint {endpoint!r} differs from "
                       f"the encoder by {diffs[mode]:.3g} > {atol}")
  return diffs
