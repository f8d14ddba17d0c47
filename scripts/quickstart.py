"""Runs avid_tf's main job end to end on a synthetic audio-visual dataset.

generate -> ingest -> pretrain Cross-AVID -> linear probes and retrieval on
held-out videos (vs a randomly initialised network) -> export. Prints a
table and writes <work_dir>/summary.json, loss_curve.png and
val_video_features_pca.png. Rerunning reuses finished stages.

Example:
  python scripts/quickstart.py --work_dir=/tmp/avid_quickstart
"""

from absl import flags

from avid_tf import cli
from avid_tf import quickstart
from avid_tf.training import gin_utils

_WORK_DIR = flags.DEFINE_string(
    "work_dir", "quickstart_work",
    "Folder for the synthetic videos, dataset, training run, export and "
    "results.")
_GIN_FILE = flags.DEFINE_multi_string(
    "gin_file", [quickstart.QUICKSTART_GIN],
    "Gin file(s) configuring the run (default gin/quickstart.gin).")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [],
    "Extra gin bindings, e.g. \"run_quickstart.videos_per_class = 20\".")


def main(argv):
  del argv
  gin_utils.parse_gin(_GIN_FILE.value, _GIN_BINDINGS.value)
  summary = quickstart.run_quickstart(_WORK_DIR.value)
  print(quickstart.format_table(summary))


if __name__ == "__main__":
  cli.run(main)
