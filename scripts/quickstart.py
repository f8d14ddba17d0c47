"""Runs avid_tf's main job end to end on a synthetic audio-visual dataset.

generate -> ingest -> pretrain (Cross-AVID; or Cross-AVID then AVID+CMA;
or Robust xID) -> linear probes and retrieval on held-out videos (vs a
randomly initialised network) -> export. Prints a table and writes
<work_dir>/summary.json (summary_<method>.json for the other methods),
loss_curve.png and val_video_features_pca.png. Rerunning reuses finished
stages.

Example:
  python scripts/quickstart.py --work_dir=/tmp/avid_quickstart
  python scripts/quickstart.py --work_dir=/tmp/avid_quickstart --method=cma
"""

from absl import flags

from avid_tf import cli
from avid_tf import quickstart
from avid_tf.training import gin_utils

_WORK_DIR = flags.DEFINE_string(
    "work_dir", "quickstart_work",
    "Folder for the synthetic videos, dataset, training runs, exports and "
    "results; the methods share its data and Cross-AVID run.")
_METHOD = flags.DEFINE_enum(
    "method", "avid", sorted(quickstart.METHODS),
    "avid: Cross-AVID (gin/quickstart.gin). cma: Cross-AVID, then AVID+CMA "
    "from it (gin/cma/quickstart.gin). robust_xid: Robust xID "
    "(gin/robust_xid/quickstart.gin).")
_GIN_FILE = flags.DEFINE_multi_string(
    "gin_file", [],
    "Extra gin file(s), applied after the method's own in every stage.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [],
    "Extra gin bindings applied last in every stage, e.g. "
    "\"run_quickstart.videos_per_class = 20\".")


def main(argv):
  del argv
  gin_utils.parse_gin(
      [quickstart.stage_gin_file(_METHOD.value)] + _GIN_FILE.value,
      _GIN_BINDINGS.value)
  summary = quickstart.run_quickstart(
      _WORK_DIR.value, method=_METHOD.value, gin_files=_GIN_FILE.value,
      gin_bindings=_GIN_BINDINGS.value)
  print(quickstart.format_table(summary))


if __name__ == "__main__":
  cli.run(main)
