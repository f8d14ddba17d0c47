"""The claims benchmark: the methods' claims on data with known structure.

Trains Cross-, Self- and Joint-AVID, AVID+CMA and its control, and the
Robust xID variants on in-memory audio-visual data whose classes, latents
and faulty pairs are known, over several seeds, and tests each claim with
a paired 95% t-interval (docs/methods.md, "Claims benchmark"). Writes
<work_dir>/claims.json, claims.md, probe_by_rate.png and
positive_set_precision.png. Rerunning reuses the finished runs whose
configuration is unchanged.

Examples:
  python scripts/claims_study.py --work_dir=/tmp/claims
  python scripts/claims_study.py --work_dir=/tmp/claims_quick --quick
"""

import pathlib
import sys

from absl import flags

# studies/ lives in the clone, beside the installed avid_tf.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from avid_tf import cli  # noqa: E402  pylint: disable=g-import-not-at-top
from studies import claims  # noqa: E402  pylint: disable=g-import-not-at-top
from studies import claims_plan  # noqa: E402  pylint: disable=g-import-not-at-top
from studies import claims_study  # noqa: E402  pylint: disable=g-import-not-at-top

_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "Folder of the runs and the report (required).")
_QUICK = flags.DEFINE_boolean(
    "quick", False, "Two seeds, rates 0 and 0.5, fewer cells and 2,000 "
    "instances x 10 epochs: about 5 minutes on 2 cores.")
_SEEDS = flags.DEFINE_multi_integer(
    "seed", None, "Seeds of every cell (repeat the flag; at least 2). "
    "Default 100..104 (2 with --quick).")
_RATES = flags.DEFINE_multi_float(
    "faulty_positive_rate", None, "Faulty-positive rates of the Robust xID "
    "claims, in [0, 1) (repeat the flag). Default 0, 0.1, 0.3, 0.5 (0 and "
    "0.5 with --quick).")
_NUM_CLASSES = flags.DEFINE_integer(
    "num_classes", 10, "Classes of the data settings that do not fix their "
    "own (the 'few_classes' setting has 2).")
_DATA_SEED = flags.DEFINE_integer("data_seed", 0, "The generator's seed.")
_CLAIMS = flags.DEFINE_multi_string(
    "claim", None, f"Claims to test (repeat the flag): {claims.CLAIM_IDS}. "
    "Default: all.")
_SOFT_KIND = flags.DEFINE_string(
    "soft_kind", None, f"Soft-target kind of the soft and robust variants, "
    f"one of {claims_plan.SOFT_KINDS}. Default: the one "
    "gin/robust_xid/robust.gin ships.")
_GIN_FILES = flags.DEFINE_multi_string(
    "gin_file", [], "Extra gin files applied to every run after its own.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Extra gin bindings applied after them.")
flags.mark_flag_as_required("work_dir")


def main(argv):
  del argv
  plan, scale = claims_study.make_plan(
      quick=_QUICK.value, seeds=_SEEDS.value, rates=_RATES.value,
      claim_ids=_CLAIMS.value, soft_kind=_SOFT_KIND.value)
  study = claims_study.StudyConfig(
      work_dir=_WORK_DIR.value, scale=scale, num_classes=_NUM_CLASSES.value,
      data_seed=_DATA_SEED.value, gin_files=tuple(_GIN_FILES.value),
      gin_bindings=tuple(_GIN_BINDINGS.value))
  report = claims_study.run_study(study, plan)
  print(claims_study.format_table(report))


if __name__ == "__main__":
  cli.run(main)
