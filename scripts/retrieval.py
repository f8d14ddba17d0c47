r"""Cross-modal and within-modal retrieval figures of video/audio features.

Examples:
  # From the output of extract_features.py (both modalities):
  python scripts/retrieval.py --features_dir=/features/kinetics_val

  # Or straight from a run and a dataset (features kept in memory):
  python scripts/retrieval.py --model_dir=/runs/avid_kinetics \
    --dataset_dir=/data/kinetics/1.0.0 --split=val --num_clips=10 \
    --output_dir=/results/kinetics_val

Writes retrieval.json: instance Recall@k v->a and a->v and, when the
videos have labels, class-level Recall@k and mAP v->v, a->a (query left
out), v->a and a->v, each with its chance level; Recall@k with k >= the
keys ranked is null ("n/a"), with the reason (see
avid_tf/eval/retrieval.py for the conventions).
"""

import os

from absl import flags

from avid_tf import cli
from avid_tf import errors
from avid_tf import runs
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.data import schema
from avid_tf.eval import features
from avid_tf.eval import retrieval
from avid_tf.utils import files

RESULT_FILE = "retrieval.json"

_FEATURES_DIR = flags.DEFINE_string(
    "features_dir", None,
    "Output folder of extract_features.py holding both modalities' "
    "--feature; alternative to --model_dir/--dataset_dir.")
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Training or converted run folder (with --dataset_dir).")
_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", None, "Ingested dataset folder (with --model_dir).")
_SPLIT = flags.DEFINE_string("split", "val",
                             "Split to evaluate (with --model_dir).")
_NUM_CLIPS = flags.DEFINE_integer(
    "num_clips", 10, "Clips per video, averaged (with --model_dir).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8,
                                   "Videos per model batch (with --model_dir).")
_RANDOM_INIT = flags.DEFINE_bool(
    "random_init", False,
    "Freshly initialised weights of the run's architecture (with "
    "--model_dir).")
_SEED = flags.DEFINE_integer(
    "random_init_seed", runs.RANDOM_INIT_SEED,
    "Seed of the --random_init weights (default: runs.RANDOM_INIT_SEED, the "
    "seed of every random-init baseline).")
_FEATURE = flags.DEFINE_enum(
    "feature", "embedding", ["embedding", "pool"],
    "Features to compare: projection-head embeddings or encoder outputs "
    "(pool; cross-modal needs equal video and audio widths).")
_KS = flags.DEFINE_list("ks", ["1", "5", "10"], "Recall@k cut-offs.")
_CHUNK_SIZE = flags.DEFINE_integer(
    "chunk_size", retrieval.DEFAULT_CHUNK_SIZE,
    "Queries per similarity block (bounds memory to chunk_size x N).")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None,
    f"Folder for {RESULT_FILE} (default: --features_dir).")


def _features_from_dir(features_dir, feature):
  names = [f"{modality}_{feature}" for modality in features.MODALITIES]
  loaded = features.load_features(features_dir, names)
  if loaded["settings"].get("average_clips") is False:
    raise errors.UserError(f"{features_dir} holds per-clip features; "
                           "retrieval needs --average_clips ones.")
  return loaded[names[0]], loaded[names[1]], loaded["label"], {
      "features_dir": os.path.abspath(features_dir)}


def _features_from_model(feature):
  dataset = schema.DatasetInfo.load(_DATASET_DIR.value)
  preprocessing = preprocessing_lib.Preprocessing.read(_MODEL_DIR.value)
  model, settings = features.load_model(
      _MODEL_DIR.value, _RANDOM_INIT.value, _SEED.value,
      num_data=dataset.splits["train"].num_examples
      if "train" in dataset.splits else None)
  arrays = features.extract_arrays(
      model, dataset, _SPLIT.value, preprocessing, names=[feature],
      num_clips=_NUM_CLIPS.value, batch_size=_BATCH_SIZE.value)
  settings.update({"dataset_dir": os.path.abspath(_DATASET_DIR.value),
                   "split": _SPLIT.value, "num_clips": _NUM_CLIPS.value})
  return (arrays[f"video_{feature}"], arrays[f"audio_{feature}"],
          arrays["label"], settings)


def main(argv):
  del argv
  from_dir = _FEATURES_DIR.value is not None
  if from_dir == (_MODEL_DIR.value is not None):
    raise errors.UserError("Give either --features_dir or --model_dir with "
                           "--dataset_dir.")
  if not from_dir and _DATASET_DIR.value is None:
    raise errors.UserError("--model_dir needs --dataset_dir.")
  output_dir = _OUTPUT_DIR.value or _FEATURES_DIR.value
  if output_dir is None:
    raise errors.UserError("--model_dir needs --output_dir.")
  try:
    ks = tuple(int(k) for k in _KS.value)
  except ValueError as error:
    raise errors.UserError(f"--ks must be integers, got {_KS.value}") from error
  if from_dir:
    video, audio, labels, source = _features_from_dir(_FEATURES_DIR.value,
                                                      _FEATURE.value)
  else:
    video, audio, labels, source = _features_from_model(_FEATURE.value)
  if video.shape[1:] != audio.shape[1:]:
    raise errors.UserError(
        f"Video {_FEATURE.value} features are {video.shape[1:]} but audio "
        f"ones {audio.shape[1:]}; cross-modal retrieval needs equal widths "
        "(use --feature=embedding).")
  report = retrieval.retrieval_report(video, audio, labels, ks,
                                      _CHUNK_SIZE.value)
  report.update({"feature": _FEATURE.value, "source": source})
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, RESULT_FILE)
  files.write_json(path, report)
  print(retrieval.format_report(report))
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
