r"""Compares runs: every evaluation they hold, in one table.

Example:
  python scripts/report.py /runs/avid_cross /runs/avid_joint \
    --output_dir=/runs/report

For each RUN_DIR (a training run, a quickstart or study work folder, or any
folder with evaluation folders inside it) it reads the probes'
linear_probe.json, retrieval.json, fine-tuning's summary.json, the
quickstart's summary*.json and the training runs' train_summary.json and
TensorBoard scalars. Prints one row per run (figures in %, each with its
chance level in brackets; n/a where not applicable) and writes report.json
and training_curves.png to --output_dir.
"""

from absl import flags

from avid_tf import cli
from avid_tf import errors
from avid_tf.eval import report

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None,
    f"Folder for {report.REPORT_FILE} and {report.PLOT_FILE} (default: "
    "<RUN_DIR>/report for one run, <the runs' common parent>/report for "
    "several).")


def main(argv):
  run_dirs = argv[1:]
  if not run_dirs:
    raise errors.UserError("Give one or more run folders: report.py RUN_DIR "
                           "[RUN_DIR ...]")
  output_dir = _OUTPUT_DIR.value or report.default_output_dir(run_dirs)
  result = report.write_report(run_dirs, output_dir)
  print(report.format_table(result))
  print(f"wrote {result['report_file']}" + (
      f" and {result['plot_file']}" if result["plot_file"] else ""))


if __name__ == "__main__":
  cli.run(main)
