r"""Exports the video and audio encoders of a pretraining run as SavedModels.

Example:
  python scripts/export.py --model_dir=/runs/avid_kinetics \
    --export_dir=/runs/avid_kinetics/export

Each encoder's avid_encoder.json records the checkpoint and step it came
from ("source"), which the script also prints. Downstream Keras code
fine-tunes them with
`avid_tf.export.saved_model.load_encoder_layer(path)` (see README).
"""

import json

from absl import flags

from avid_tf import cli
from avid_tf import runs
from avid_tf.export import saved_model

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Folder of the training run (config.gin + checkpoints).")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None,
    "Output folder; gets video_encoder/ and audio_encoder/ SavedModels.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None,
    "Checkpoint prefix to export (default: the newest in --model_dir).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace existing encoder folders in --export_dir.")
flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv):
  del argv
  run = runs.open_run(_MODEL_DIR.value)
  source = run.checkpoint_source(_CHECKPOINT.value)
  model = run.model(source["checkpoint"])
  preprocessing = run.preprocessing.export_metadata()
  paths = saved_model.export_encoders(
      model, _EXPORT_DIR.value, video_preprocessing=preprocessing["video"],
      audio_preprocessing=preprocessing["audio"],
      overwrite=_OVERWRITE.value, source=source)
  step = "" if source["step"] is None else f" (step {source['step']})"
  print(f"Exported {source['checkpoint']}{step}:")
  print(json.dumps(paths))


if __name__ == "__main__":
  cli.run(main)
