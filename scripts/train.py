r"""Pretrains an audio-visual model (AVID, AVID+CMA, Robust xID) from gin files.

Examples:
  python scripts/train.py --gin_file=gin/avid/kinetics_cross.gin \
    --dataset_dir=/data/kinetics/1.0.0 --model_dir=/runs/avid_kinetics

  # A laptop-sized run on a small dataset of your own:
  python scripts/train.py --gin_file=gin/small.gin \
    --dataset_dir=/data/mine/1.0.0 --model_dir=/runs/mine_small

Rerunning the same command resumes the run; Ctrl-C stops it after the
current step with a checkpoint and the summary saved.
"""

from absl import flags

from avid_tf import cli
from avid_tf.training import gin_utils
from avid_tf.training import train_lib

_GIN_FILE = flags.DEFINE_multi_string(
    "gin_file", [], "Gin experiment file(s), applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [],
    "Extra gin bindings applied after the files, e.g. "
    "\"train.batch_size = 64\".")
_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", None,
    "Dataset folder written by scripts/prepare_data.py "
    "(<output_dir>/<name>/1.0.0); overrides a train.dataset_dir binding.")
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None,
    "Folder for checkpoints, TensorBoard events and config.gin; a run "
    "resumes from the newest checkpoint found here.")
flags.mark_flag_as_required("model_dir")


def main(argv):
  del argv
  bindings = list(_GIN_BINDINGS.value)
  if _DATASET_DIR.value:
    bindings.append(f"train.dataset_dir = {_DATASET_DIR.value!r}")
  gin_utils.parse_gin(_GIN_FILE.value, bindings)
  train_lib.train(_MODEL_DIR.value)


if __name__ == "__main__":
  cli.run(main)
