"""Rebuilds a pretrained model from its run folder (config.gin + checkpoint)."""

import os

import gin
import tensorflow as tf

from avid_tf.data import schema
from avid_tf.models import builders
from avid_tf.training import checkpointing
from avid_tf.training import gin_utils
from avid_tf.training import train_lib


def _bank_rows(checkpoint_path):
  for name, shape in tf.train.list_variables(checkpoint_path):
    if name.startswith("model/") and "bank" in name and len(shape) == 2:
      return shape[0]
  raise checkpointing.CheckpointMismatchError(
      f"Checkpoint {checkpoint_path} holds no memory bank; is it an avid_tf "
      "pretraining checkpoint?")


def build_model(num_data, seed=0):
  """Builds an AV model with all its variables created (tiny dummy call)."""
  model = builders.build_av_model(num_data=num_data, seed=seed)
  model({"video": tf.zeros([1, 4, 32, 32, 3]),
         "audio": tf.zeros([1, 64, 257, 1])}, training=False)
  return model


def load_trained_model(model_dir, checkpoint_path=None):
  """Returns the pretrained AV model of a run folder.

  Parses `<model_dir>/config.gin` (the operative config the run wrote), builds
  the model it describes with as many memory rows as the checkpoint holds,
  and restores the newest (or the given) checkpoint.

  Args:
    model_dir: folder of a training run.
    checkpoint_path: optional checkpoint prefix; default the newest one.

  Returns:
    The restored `AVModel`.

  Raises:
    FileNotFoundError: no config.gin or no checkpoint in `model_dir`.
    checkpointing.CheckpointMismatchError: the checkpoint does not fit.
  """
  config_path = os.path.join(model_dir, "config.gin")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"{config_path} not found: is {model_dir} the "
                            "--model_dir of a training run?")
  checkpoint_path = checkpoint_path or tf.train.latest_checkpoint(
      os.path.join(model_dir, train_lib.CHECKPOINT_SUBDIR))
  if not checkpoint_path:
    raise FileNotFoundError(f"No checkpoint in {model_dir}/"
                            f"{train_lib.CHECKPOINT_SUBDIR}.")
  gin_utils.parse_gin([config_path], [], skip_unknown=True)
  model = build_model(_bank_rows(checkpoint_path))
  checkpointing.restore(checkpointing.make_checkpoint(model), checkpoint_path)
  return model


def preprocessing_config():
  """Returns the video/audio preprocessing of the parsed run config.

  Reads the bindings of `make_train_dataset` and the dataset metadata (for
  the spectrogram statistics) of the currently parsed gin config.

  Returns:
    Dict with "video" and "audio" entries for the export metadata.
  """
  def binding(name, default):
    try:
      return gin.query_parameter(f"make_train_dataset.{name}")
    except ValueError:
      return default

  video = {"num_frames": binding("num_frames", 8),
           "crop_size": binding("crop_size", 112)}
  audio = {"seconds": binding("audio_seconds", 2.0)}
  audio["num_frames"] = int(round(audio["seconds"] * 100))
  try:
    dataset_dir = gin.query_parameter("train.dataset_dir")
    metadata = schema.read_metadata(dataset_dir)
  except (ValueError, FileNotFoundError):
    return {"video": video, "audio": audio}
  video["fps"] = metadata["fps"]
  audio["sample_rate"] = metadata["sample_rate"]
  audio["spectrogram_mean"] = metadata["spectrogram_mean"]
  audio["spectrogram_std"] = metadata["spectrogram_std"]
  return {"video": video, "audio": audio}

