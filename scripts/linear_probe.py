r"""Linear probes of a pretrained (or randomly initialised) run's encoders.

Video: one classifier per stage conv2x..conv5x of the frozen video encoder,
trained on an ingested dataset's train split and tested with the softmax
averaged over --num_clips clips of each test video:
  python scripts/linear_probe.py --model_dir=/runs/avid_kinetics \
    --modality=video --dataset_dir=/data/kinetics/1.0.0 \
    --output_dir=/runs/avid_kinetics/probe_video

Audio: a linear SVM (or logistic regression) on frozen audio features, the
decision scores of --num_clips clips averaged per file; an ESC-50 folder is
cross-validated over its folds:
  python scripts/linear_probe.py --model_dir=/runs/avid_kinetics \
    --modality=audio --audio_dir=/data/ESC-50/audio \
    --folds_csv=/data/ESC-50/meta/esc50.csv \
    --output_dir=/runs/avid_kinetics/probe_esc50

Writes <output_dir>/linear_probe.json (every stage's figures, none picked,
and the chance level) and linear_probe_settings.json; a rerun into the
folder with other settings (--random_init, another model, checkpoint,
dataset or schedule) is refused before anything is written. Training
settings of the video probe are gin bindings of `train_stage_probe`
(epochs, learning_rate, milestones, gamma, stages, grids).
"""

import os

from absl import flags

from avid_tf import cli
from avid_tf import errors
from avid_tf.eval import audio_probe
from avid_tf.eval import sklearn_probe
from avid_tf.eval import probe_runner
from avid_tf.training import gin_utils
from avid_tf.utils import files

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None,
    "Folder of a training run or converted checkpoint (config.gin, "
    "preprocessing.json, checkpoints/).")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Checkpoint prefix (default: the newest in "
    "--model_dir).")
_MODALITY = flags.DEFINE_enum("modality", "video", ["video", "audio"],
                              "Which encoder to probe.")
_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", None,
    "Ingested dataset (prepare_data.py) with class labels; the video probe "
    "and the split-based audio probe read it.")
_AUDIO_DIR = flags.DEFINE_string(
    "audio_dir", None, "ESC-50 style folder of audio files (audio probe).")
_FOLDS_CSV = flags.DEFINE_string(
    "folds_csv", None,
    "CSV with filename,fold,target columns for --audio_dir; the probe is "
    "cross-validated over its folds.")
_TRAIN_SPLIT = flags.DEFINE_string("train_split", "train",
                                   "Split of --dataset_dir to train on.")
_TEST_SPLIT = flags.DEFINE_string("test_split", "val",
                                  "Split of --dataset_dir to test on.")
_CLASSIFIER = flags.DEFINE_enum(
    "classifier", "svm", list(sklearn_probe.CLASSIFIERS),
    "Audio probe classifier: one-vs-rest linear SVM (the papers') or "
    "multinomial logistic regression.")
_C = flags.DEFINE_float("C", 1.0,
                        "Inverse regularisation strength of the audio "
                        "classifier.")
_AUDIO_FEATURES = flags.DEFINE_list(
    "audio_features", [audio_probe.POOLED],
    f"Audio features to probe, of {list(audio_probe.STAGES)} (stages are "
    "global-max-pooled).")
_NUM_CLIPS = flags.DEFINE_integer(
    "num_clips", 10, "Test clips per video / file, uniformly spaced.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 32, "Videos (or audio files) per batch.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None,
    "Folder for linear_probe.json (and the video probe's checkpoints and "
    "TensorBoard logs; a rerun resumes).")
_RANDOM_INIT = flags.DEFINE_bool(
    "random_init", False,
    "Probe the run's architecture at random initialisation (the baseline).")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the classifiers and data order (the --random_init "
    "weights always use runs.RANDOM_INIT_SEED, as every baseline does).")
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [],
                                      "Gin file(s) of probe settings.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [],
    "Gin bindings, e.g. \"train_stage_probe.epochs = 12\".")
flags.mark_flags_as_required(["model_dir", "output_dir"])


def main(argv):
  del argv
  gin_utils.parse_gin(_GIN_FILE.value, _GIN_BINDINGS.value)
  common = dict(train_split=_TRAIN_SPLIT.value, test_split=_TEST_SPLIT.value,
                num_clips=_NUM_CLIPS.value, batch_size=_BATCH_SIZE.value,
                random_init=_RANDOM_INIT.value, checkpoint=_CHECKPOINT.value,
                seed=_SEED.value, dataset_dir=_DATASET_DIR.value,
                output_dir=_OUTPUT_DIR.value)
  if _MODALITY.value == "video":
    if _DATASET_DIR.value is None:
      raise errors.InvalidValueError("The video probe needs --dataset_dir.")
    report = probe_runner.video_probe(_MODEL_DIR.value, **common)
  else:
    report = probe_runner.audio_probe(
        _MODEL_DIR.value, audio_dir=_AUDIO_DIR.value,
        folds_csv=_FOLDS_CSV.value, classifier=_CLASSIFIER.value, C=_C.value,
        stages=tuple(_AUDIO_FEATURES.value), **common)
  path = os.path.join(_OUTPUT_DIR.value, probe_runner.REPORT_FILE)
  files.write_json(path, report)
  print(probe_runner.format_report(report))
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
