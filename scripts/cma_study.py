"""The AVID+CMA study on the synthetic dataset.

From one Cross-AVID run (the quickstart's recipe): positive-set precision of
consensus, union, video-only, audio-only and random sets; then the probes
and retrieval after AVID, after AVID+CMA and after AVID continued for the
same number of steps (the control), over several seeds. Writes
<work_dir>/cma_study.json, cma_study_precision.png and
cma_study_figures.png, and prints the tables. Rerunning reuses finished
runs (and evaluates them again, without retraining, after a change to the
evaluation).

Example:
  python scripts/cma_study.py --work_dir=/tmp/cma_study
"""

# studies/ and benchmarks/ live beside the installed package, in the clone:
# put the clone's root first on the path so this script finds them.
import pathlib, sys  # pylint: disable=g-multiple-import
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from avid_tf import cli
from studies import cma
from studies import study_flags

_COMMON = study_flags.define_common_flags(
    "Folder of the dataset, training runs and results.")
_SEEDS = flags.DEFINE_multi_integer(
    "seed", [0, 1, 2], "Seeds of the second stages (repeat the flag).")
_EXTRA_EPOCHS = flags.DEFINE_integer(
    "extra_epochs", 20,
    "Epochs of each second stage (AVID+CMA and the AVID control).")
_KS = flags.DEFINE_multi_integer(
    "k", [8, 32], "Positive-set sizes of the precision comparison.")


def main(argv):
  del argv
  study = cma.run_cma_study(
      _COMMON.work_dir.value, seeds=_SEEDS.value,
      extra_epochs=_EXTRA_EPOCHS.value, ks=_KS.value, **_COMMON.arguments())
  print(cma.format_study(study))


if __name__ == "__main__":
  cli.run(main)
