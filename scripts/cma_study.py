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

from absl import flags

from avid_tf import cli
from avid_tf.studies import cma

_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "Folder of the dataset, training runs and results.")
_SEEDS = flags.DEFINE_multi_integer(
    "seed", [0, 1, 2], "Seeds of the second stages (repeat the flag).")
_EXTRA_EPOCHS = flags.DEFINE_integer(
    "extra_epochs", 20,
    "Epochs of each second stage (AVID+CMA and the AVID control).")
_KS = flags.DEFINE_multi_integer(
    "k", [8, 32], "Positive-set sizes of the precision comparison.")
_VIDEOS_PER_CLASS = flags.DEFINE_integer(
    "videos_per_class", 40, "Synthetic videos per class (10 classes).")
_EVAL_CLIPS = flags.DEFINE_integer(
    "eval_clips", 4, "Clips per video averaged in evaluation.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Extra gin bindings for every training run.")
flags.mark_flag_as_required("work_dir")


def main(argv):
  del argv
  study = cma.run_cma_study(
      _WORK_DIR.value, seeds=_SEEDS.value, extra_epochs=_EXTRA_EPOCHS.value,
      ks=_KS.value,
      dataset_settings={"videos_per_class": _VIDEOS_PER_CLASS.value},
      gin_bindings=_GIN_BINDINGS.value, eval_clips=_EVAL_CLIPS.value)
  print(cma.format_study(study))


if __name__ == "__main__":
  cli.run(main)
