"""Chooses Robust xID's defaults on the claims benchmark's development data.

Sweeps the agreement weights (delta, kappa, w_min), the soft-target kind,
lambda and tau_s, and the schedule (from scratch or after an xID warm-up)
on the latent benchmark at faulty-positive rate 0.3, seeds 0-4, by the rule
written in docs/methods.md ("Choosing Robust xID's defaults"). Writes
<work_dir>/robust_xid_sweep.json and robust_xid_sweep.md and prints the
choices. Rerunning reuses
finished runs.

Example:
  python scripts/robust_xid_sweep.py --work_dir=/tmp/robust_sweep
"""

import json
import os
import pathlib
import sys

from absl import flags

# studies/ lives in the clone, beside the installed avid_tf.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from avid_tf import cli  # noqa: E402  pylint: disable=g-import-not-at-top
from avid_tf.utils import files  # noqa: E402  pylint: disable=g-import-not-at-top
from studies import claims_study  # noqa: E402  pylint: disable=g-import-not-at-top
from studies import robust_sweep  # noqa: E402  pylint: disable=g-import-not-at-top

_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "Folder of the runs and the report (required).")
flags.mark_flag_as_required("work_dir")


def main(argv):
  del argv
  study = claims_study.StudyConfig(work_dir=_WORK_DIR.value)
  report = robust_sweep.run_sweep(study)
  files.write_json(os.path.join(_WORK_DIR.value, "robust_xid_sweep.json"),
                   report)
  table = robust_sweep.format_sweep(report)
  files.write_text(os.path.join(_WORK_DIR.value, "robust_xid_sweep.md"),
                   table)
  print(table)
  print(json.dumps({"combined": report["combined"],
                    "schedule": report["schedule"]["chosen"]}, indent=1))


if __name__ == "__main__":
  cli.run(main)
