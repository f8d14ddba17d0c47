"""Rebuilds a pretrained model from its run folder.

A run folder holds the operative gin config (config.gin), the preprocessing
record (preprocessing.json) and checkpoints. The model is rebuilt from the
run's own config, parsed in isolation so that the caller's gin bindings are
left as they were, and its variables are created from the record's shapes.
"""

import os

import keras

from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.memory import memory_bank
from avid_tf.models import av_model
from avid_tf.models import builders
from avid_tf.training import checkpointing
from avid_tf.training import gin_utils
from avid_tf.training import train_lib

CONFIG_FILE = "config.gin"


def _config_path(model_dir):
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: is {model_dir} the "
                            "--model_dir of a training run?")
  return path


def build_model(model_dir, num_data, seed=0):
  """Builds an untrained model of a run's architecture, variables created.

  Args:
    model_dir: folder of a training run (its config.gin and
      preprocessing.json describe the model and its inputs).
    num_data: rows of the memory banks.
    seed: seed of the new weights and banks. The global random generators
      (Python, NumPy, TensorFlow, Keras) are reseeded with it, so that the
      weights depend on `seed` alone, not on what the process drew before.

  Returns:
    An `AVModel` with freshly initialised variables.

  Raises:
    FileNotFoundError: no config.gin or preprocessing.json in `model_dir`.
  """
  config_path = _config_path(model_dir)
  preprocessing = preprocessing_lib.Preprocessing.read(model_dir)
  keras.utils.set_random_seed(seed)
  with gin_utils.isolated_config():
    gin_utils.parse_gin([config_path], [], skip_unknown=True)
    model = builders.build_av_model(num_data=num_data, seed=seed)
  train_lib.build_variables(model, preprocessing)
  return model


def load_trained_model(model_dir, checkpoint_path=None):
  """Returns the pretrained AV model of a run folder.

  Builds the model the run's config describes, with as many memory rows as
  the checkpoint holds, and restores the newest (or the given) checkpoint.
  The caller's gin config is left unchanged.

  Args:
    model_dir: folder of a training run.
    checkpoint_path: optional checkpoint prefix; default the newest one.

  Returns:
    The restored `AVModel`.

  Raises:
    FileNotFoundError: no config.gin, preprocessing record or checkpoint in
      `model_dir`.
    checkpointing.CheckpointMismatchError: the checkpoint does not fit.
  """
  _config_path(model_dir)
  checkpoint_path = checkpoint_path or checkpointing.resolve_checkpoint(
      model_dir, train_lib.CHECKPOINT_SUBDIR)
  bank_path = f"{av_model.VIDEO_BANK_NAME}/{memory_bank.BANK_VARIABLE_NAME}"
  num_data = checkpointing.bank_rows(checkpoint_path, bank_path)
  model = build_model(model_dir, num_data)
  checkpointing.restore(checkpointing.make_checkpoint(model), checkpoint_path,
                        model)
  return model

