r"""Extracts frozen video and/or audio features of a dataset split to shards.

Example:
  python scripts/extract_features.py --model_dir=/runs/avid_kinetics \
    --dataset_dir=/data/kinetics/1.0.0 --split=val --modality=both \
    --features=pool,embedding,conv5x --num_clips=10 \
    --output_dir=/features/kinetics_val

Writes index.npz (video_id, label, index per video), one
"<modality>_<feature>-SSSSS-of-NNNNN.npy" file per feature and shard, and
manifest.json. A rerun with the same flags computes only the missing
shards; read the result with `avid_tf.eval.features.load_features`.
"""

import json

from absl import flags

from avid_tf import cli
from avid_tf import errors
from avid_tf import runs
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.data import schema
from avid_tf.eval import features

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None,
    "Training or converted run folder (config.gin, preprocessing.json, "
    "checkpoints); its preprocessing record sets the clip geometry.")
_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", None, "Ingested dataset folder (<output_dir>/<name>/1.0.0).")
_SPLIT = flags.DEFINE_string("split", "val", "Split of the dataset to extract.")
_MODALITY = flags.DEFINE_enum("modality", "both", ["video", "audio", "both"],
                              "Which encoder(s) to run.")
_FEATURES = flags.DEFINE_list(
    "features", ["pool", "embedding"],
    "Comma-separated features: pool (encoder output), embedding (projection "
    "head output), conv1, conv2x, conv3x, conv4x, conv5x (stage maps).")
_NUM_CLIPS = flags.DEFINE_integer(
    "num_clips", 10, "Clips per video, uniformly spaced over the whole video.")
_AVERAGE_CLIPS = flags.DEFINE_bool(
    "average_clips", True,
    "Store the clip average per video [N, D]; --noaverage_clips keeps every "
    "clip [N, clips, D].")
_SPATIAL_POOL = flags.DEFINE_enum(
    "spatial_pool", "max", list(features.SPATIAL_POOLS),
    "Stage maps: global max over time and space to [C] (max) or the whole "
    "map (none).")
_SHARD_SIZE = flags.DEFINE_integer(
    "shard_size", 1024,
    "Videos per shard (a shard is held in memory before it is written; "
    "lower it for --spatial_pool=none or --noaverage_clips).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Videos per model batch.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Folder for the shards, index.npz and manifest.json.")
_RANDOM_INIT = flags.DEFINE_bool(
    "random_init", False,
    "Use the run's architecture with freshly initialised weights (the "
    "baseline) instead of its checkpoint.")
_SEED = flags.DEFINE_integer(
    "random_init_seed", runs.RANDOM_INIT_SEED,
    "Seed of the --random_init weights (default: runs.RANDOM_INIT_SEED, the "
    "seed of every random-init baseline).")
flags.mark_flags_as_required(["model_dir", "dataset_dir", "output_dir"])


def modalities(value):
  """The modalities a --modality value names."""
  return features.MODALITIES if value == "both" else (value,)


def main(argv):
  del argv
  dataset = schema.DatasetInfo.load(_DATASET_DIR.value)
  if _SPLIT.value not in dataset.splits:
    raise errors.UserError(f"Dataset {_DATASET_DIR.value} has no split "
                           f"'{_SPLIT.value}'; it has {sorted(dataset.splits)}.")
  names = features.check_feature_names(_FEATURES.value)
  preprocessing = preprocessing_lib.Preprocessing.read(_MODEL_DIR.value)
  model, settings = features.load_model(
      _MODEL_DIR.value, _RANDOM_INIT.value, _SEED.value,
      num_data=dataset.splits["train"].num_examples
      if "train" in dataset.splits else None)
  manifest = features.extract_to_shards(
      model, dataset, _SPLIT.value, preprocessing, _OUTPUT_DIR.value,
      modalities=modalities(_MODALITY.value), names=names,
      num_clips=_NUM_CLIPS.value, average_clips=_AVERAGE_CLIPS.value,
      spatial_pool=_SPATIAL_POOL.value, shard_size=_SHARD_SIZE.value,
      batch_size=_BATCH_SIZE.value, settings=settings)
  print(json.dumps({"output_dir": _OUTPUT_DIR.value,
                    "num_videos": manifest["settings"]["num_videos"],
                    "num_shards": manifest["num_shards"],
                    "shapes": manifest["shapes"]}))


if __name__ == "__main__":
  cli.run(main)
