"""The command-line flags every study script shares (absl)."""

import dataclasses

from absl import flags


@dataclasses.dataclass(frozen=True)
class CommonFlags:
  """Holders of the shared flags; `arguments()` maps them to a study's."""
  work_dir: flags.FlagHolder
  videos_per_class: flags.FlagHolder
  eval_clips: flags.FlagHolder
  gin_bindings: flags.FlagHolder

  def arguments(self):
    """Keyword arguments of `run_*_study` besides the work folder."""
    return {"dataset_settings": {"videos_per_class":
                                 self.videos_per_class.value},
            "gin_bindings": self.gin_bindings.value,
            "eval_clips": self.eval_clips.value}


def define_common_flags(work_dir_help):
  """Defines --work_dir (required), --videos_per_class, --eval_clips and
  --gin_bindings, and returns their holders."""
  common = CommonFlags(
      work_dir=flags.DEFINE_string("work_dir", None, work_dir_help),
      videos_per_class=flags.DEFINE_integer(
          "videos_per_class", 40, "Synthetic videos per class (10 classes)."),
      eval_clips=flags.DEFINE_integer(
          "eval_clips", 4, "Clips per video averaged in evaluation."),
      gin_bindings=flags.DEFINE_multi_string(
          "gin_bindings", [], "Extra gin bindings for every training run."))
  flags.mark_flag_as_required("work_dir")
  return common
