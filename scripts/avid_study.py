r"""The AVID ablation on the synthetic dataset: Self, Cross and Joint.

Trains Self-, Cross- and Joint-AVID with the quickstart's recipe and the
same number of steps on the same synthetic set, once per --seed, evaluates
each (video and audio probes, v->a / a->v retrieval, class-level retrieval)
next to a randomly initialised network, and writes
<work_dir>/avid_study.json and avid_study.png, and prints the table.
Rerunning reuses finished runs (and evaluates them again, without
retraining, after a change to the evaluation).

Example:
  python scripts/avid_study.py --work_dir=/tmp/avid_study
  python scripts/avid_study.py --work_dir=/tmp/avid_study --seed=0 --seed=1 \
    --seed=2 --epochs=50
"""

# studies/ and benchmarks/ live beside the installed package, in the clone:
# put the clone's root first on the path so this script finds them.
import pathlib, sys  # pylint: disable=g-multiple-import
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from avid_tf import cli
from avid_tf.errors import UserError
from studies import avid_variants
from studies import study_flags

_COMMON = study_flags.define_common_flags(
    "Folder of the dataset, training runs and results.")
_VARIANTS = flags.DEFINE_multi_enum(
    "variant", list(avid_variants.VARIANTS), list(avid_variants.VARIANTS),
    "Variants to train (repeat the flag).")
_SEEDS = flags.DEFINE_multi_integer(
    "seed", [0, 1], "Training seeds per variant (repeat the flag).")
_EPOCHS = flags.DEFINE_integer(
    "epochs", 50, "Epochs of every run (2 clips per video, batch 32).")


def main(argv):
  del argv
  if _EPOCHS.value < 1:
    raise UserError(f"--epochs must be at least 1, got {_EPOCHS.value}.")
  study = avid_variants.run_avid_study(
      _COMMON.work_dir.value, variants=_VARIANTS.value, seeds=_SEEDS.value,
      epochs=_EPOCHS.value, **_COMMON.arguments())
  print(avid_variants.format_study(study))


if __name__ == "__main__":
  cli.run(main)
