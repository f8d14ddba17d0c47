r"""Reads back every shard of an avid_tf dataset and reports damaged ones.

Every record of every shard is read (its CRC checked) and parsed, and the
records of each shard are counted against the dataset's metadata. Prints a
JSON summary: for each damaged shard its file, the problem and byte offset,
and the source videos it holds (from ingest_report.json), and the ingest
command that rewrites the damaged shards (good shards are left as they
are). Exits 1 when anything is damaged, 0 otherwise.

Example:
  python scripts/verify_dataset.py --dataset_dir=/data/avid/kinetics/1.0.0
"""

import json
import sys

from absl import flags

from avid_tf import cli
from avid_tf.data import shard_check

_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", None,
    "The dataset folder to check (<output_dir>/<name>/1.0.0 of "
    "scripts/prepare_data.py).")
flags.mark_flag_as_required("dataset_dir")


def main(argv):
  del argv
  summary = shard_check.verify_dataset(_DATASET_DIR.value)
  print(json.dumps(summary, indent=1))
  if not summary["ok"]:
    print(f"{summary['num_damaged']} damaged shard(s); repair: "
          f"{summary['repair_command']}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
