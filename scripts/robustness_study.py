"""The Robust xID study: faulty positives injected at known rates.

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

from absl import flags

from avid_tf import cli
from avid_tf.studies import robustness

_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "Folder of the datasets, training runs and results.")
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
_VIDEOS_PER_CLASS = flags.DEFINE_integer(
    "videos_per_class", 40, "Synthetic videos per class (10 classes).")
_EVAL_CLIPS = flags.DEFINE_integer(
    "eval_clips", 4, "Clips per video averaged in evaluation.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Extra gin bindings for every training run.")
flags.mark_flag_as_required("work_dir")


def main(argv):
  del argv
  study = robustness.run_robustness_study(
      _WORK_DIR.value, faulty_positive_rates=_RATES.value,
      variants=_VARIANTS.value, seeds=_SEEDS.value, epochs=_EPOCHS.value,
      dataset_settings={"videos_per_class": _VIDEOS_PER_CLASS.value},
      gin_bindings=_GIN_BINDINGS.value, eval_clips=_EVAL_CLIPS.value)
  print(robustness.format_study(study))


if __name__ == "__main__":
  cli.run(main)
