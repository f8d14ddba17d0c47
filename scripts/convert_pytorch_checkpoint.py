r"""Converts an official AVID-CMA PyTorch checkpoint into an avid_tf model_dir.

Example (the released Kinetics Cross-AVID model):
  pip install -r requirements-convert.txt
  python scripts/convert_pytorch_checkpoint.py \
    --checkpoint=AVID_Kinetics_Cross-N1024_checkpoint.pth.tar \
    --model_dir=/runs/avid_kinetics_official \
    --normalization_dataset_dir=/data/kinetics/kinetics/1.0.0

The model_dir holds what `train` writes (config.gin, preprocessing.json,
checkpoints/ with the encoders, heads, memory banks and Z) plus
conversion.json, so scripts/export.py, the evaluation scripts and an
AVID+CMA stage (`train.init_from`) accept it. Prints the conversion summary
as JSON.
"""

import json

from absl import flags

from avid_tf import cli
from avid_tf.convert import pytorch_checkpoint

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None,
    "The official training checkpoint (*.pth.tar, with 'model' and "
    "'train_criterion'), e.g. AVID_Kinetics_Cross-N1024_checkpoint.pth.tar.")
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "The avid_tf model folder to create.")
_CROP_SIZE = flags.DEFINE_enum(
    "crop_size", "224", [str(s) for s in pytorch_checkpoint.CROP_SIZES],
    "Frame size recorded in preprocessing.json, which export and evaluation "
    "prepare their inputs with: 224 as in the official pretraining, or 112.")
_NORMALIZATION_DATASET_DIR = flags.DEFINE_string(
    "normalization_dataset_dir", None,
    "An ingested avid_tf dataset folder (24 kHz audio) whose spectrogram "
    "statistics to record; without it or --spectrogram_statistics the "
    "record says mean 0 / std 1, which the official audio encoder was not "
    "trained with.")
_SPECTROGRAM_STATISTICS = flags.DEFINE_string(
    "spectrogram_statistics", None,
    "Instead of a dataset: an .npz file with 257-entry 'mean' and 'std' "
    "arrays, such as the official release's own statistics file (not "
    "shipped with avid_tf: its licence is CC BY-NC).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace --model_dir if it exists.")
_VERIFY = flags.DEFINE_bool(
    "verify", True,
    "Check that the converted encoders and heads compute what the PyTorch "
    "model does (relative error <= 1e-4 on random inputs) before writing.")
flags.mark_flags_as_required(["checkpoint", "model_dir"])


def main(argv):
  del argv
  summary = pytorch_checkpoint.convert_checkpoint(
      _CHECKPOINT.value, _MODEL_DIR.value, crop_size=int(_CROP_SIZE.value),
      normalization_dataset_dir=_NORMALIZATION_DATASET_DIR.value,
      spectrogram_statistics=_SPECTROGRAM_STATISTICS.value,
      overwrite=_OVERWRITE.value, verify=_VERIFY.value)
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  cli.run(main)
