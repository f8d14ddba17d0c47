r"""Fine-tunes a pretrained video encoder on UCF-101 / HMDB-51 style datasets.

Example (the three official UCF-101 splits, 8 frames):
  python scripts/finetune.py --gin_file=gin/eval/ucf101_8f.gin \
    --init=/runs/avid_kinetics/export \
    --dataset_dir=/data/ucf101/1.0.0 --split_csv_dir=/data/ucf101/splits \
    --output_dir=/runs/avid_kinetics/ucf101_8f

Writes <output_dir>/summary.json (video_top1, video_top5, clip_top1,
clip_top5 and their chance levels per fold and their mean; top-5 of 5 or
fewer classes is null, "n/a"), per-fold checkpoints, results and TensorBoard
logs, and finetune_settings.json; a rerun with the same settings continues
where it stopped, one with other settings is refused.
"""

from absl import flags

from avid_tf import cli
from avid_tf import errors
from avid_tf.eval import finetune
from avid_tf.training import gin_utils

_INIT = flags.DEFINE_string(
    "init", None,
    "Encoder to fine-tune: an export folder of scripts/export.py (or its "
    "video_encoder/ subfolder), the --model_dir of a training run, or the "
    "--output_dir of scripts/convert_pytorch_checkpoint.py.")
_RANDOM_INIT = flags.DEFINE_bool(
    "random_init", False,
    "Start from random weights (the baseline): of --init's architecture when "
    "it is a run folder, else the R(2+1)D that build_encoders' gin bindings "
    "describe.")
_GIN_FILE = flags.DEFINE_multi_string(
    "gin_file", [],
    "Gin protocol file(s), e.g. gin/eval/ucf101_8f.gin, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [],
    "Extra gin bindings after the files, e.g. 'finetune_schedule.epochs = 2'.")
_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", None,
    "Dataset folder written by scripts/prepare_data.py "
    "(<output_dir>/<name>/1.0.0). Without --split_csv_dir fold k uses its "
    "splits train<k>/test<k>, or fold 1 = train/val.")
_TFDS_NAME = flags.DEFINE_string(
    "tfds_name", None,
    "TFDS video dataset instead of --dataset_dir, e.g. ucf101 (fold k = "
    "config ucf101_<k>) or ucf101/ucf101_1_256 (one fold).")
_TFDS_DATA_DIR = flags.DEFINE_string(
    "tfds_data_dir", None, "TFDS data folder (default: TFDS's own).")
_SPLIT_CSV_DIR = flags.DEFINE_string(
    "split_csv_dir", None,
    "Folder of the official fold lists as CSVs trainlist01.csv, "
    "testlist01.csv, trainlist02.csv, ... with a header row and columns "
    "path,label (label: integer class id). path is the video's path relative "
    "to prepare_data.py's --video_dir (e.g. ApplyEyeMakeup/"
    "v_ApplyEyeMakeup_g08_c01.avi), matched to the ingested videos ignoring "
    "the extension.")
_FOLDS = flags.DEFINE_list(
    "folds", None,
    "Folds to run, e.g. 1,2,3 (default: the gin file's finetune.folds).")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None,
    "Folder of checkpoints, TensorBoard logs, per-fold results and "
    "summary.json; rerunning with the same folder resumes.")
flags.mark_flags_as_required(["output_dir"])


def main(argv):
  del argv
  gin_utils.parse_gin(_GIN_FILE.value, _GIN_BINDINGS.value)
  options = {}
  if _FOLDS.value:
    try:
      options["folds"] = [int(fold) for fold in _FOLDS.value]
    except ValueError:
      raise errors.UserError(
          f"--folds must be integers, got {_FOLDS.value}") from None
  summary = finetune.finetune(
      _OUTPUT_DIR.value, init=_INIT.value, random_init=_RANDOM_INIT.value,
      dataset_dir=_DATASET_DIR.value, tfds_name=_TFDS_NAME.value,
      split_csv_dir=_SPLIT_CSV_DIR.value, tfds_data_dir=_TFDS_DATA_DIR.value,
      **options)
  print(finetune.format_summary(summary))


if __name__ == "__main__":
  cli.run(main)
