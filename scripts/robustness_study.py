r"""The Robust xID study: faulty positives injected at known rates.

For each --faulty_positive_rate a synthetic dataset is made in which that
fraction of the videos has the audio of another class; every Robust xID
variant is trained on it with the same budget and evaluated (probes,
retrieval, and the AUC of the agreement weights for the faulty videos).
Writes <work_dir>/robustness_study.json and one PNG per rate, and prints
the table. Rerunning reuses finished runs (and evaluates them again, without
retraining, after a change to the evaluation).

Example:
  python scripts/robustness_study.py --work_dir=/tmp/robustness
  python scripts/robustness_study.py --work_dir=/tmp/robustness \
    --faulty_positive_rate=0 --faulty_positive_rate=0.25 \
    --faulty_positive_rate=0.5 --seed=0 --seed=1 --epochs=50
"""

# studies/ and benchmarks/ live beside the installed package, in the clone:
# put the clone's root first on the path so this script finds them.
import pathlib, sys  # pylint: disable=g-multiple-import
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from avid_tf import cli
from studies import robustness
from studies import study_flags

_COMMON = study_flags.define_common_flags(
    "Folder of the datasets, training runs and results.")
_RATES = flags.DEFINE_multi_float(
    "faulty_positive_rate", [0.0, 0.5],
    "Fractions of faulty videos, one synthetic dataset each (repeat the "
    "flag).")
_VARIANTS = flags.DEFINE_multi_enum(
    "variant", list(robustness.VARIANTS), list(robustness.VARIANTS),
    "Variants to train (gin/robust_xid/<variant>.gin; repeat the flag).")
_SEEDS = flags.DEFINE_multi_integer(
    "seed", [0], "Training seeds per variant (repeat the flag).")
_EPOCHS = flags.DEFINE_integer(
    "epochs", 20, "Epochs of every run (2 clips per video, batch 32).")


def main(argv):
  del argv
  study = robustness.run_robustness_study(
      _COMMON.work_dir.value, faulty_positive_rates=_RATES.value,
      variants=_VARIANTS.value, seeds=_SEEDS.value, epochs=_EPOCHS.value,
      **_COMMON.arguments())
  print(robustness.format_study(study))


if __name__ == "__main__":
  cli.run(main)
