"""The linear-probe jobs of scripts/linear_probe.py, on a run folder.

`video_probe` trains the per-stage classifiers (`stage_probe`) on an
ingested dataset; `audio_probe` fits linear classifiers on clip features
(`audio_probe`) of an ESC-50 style folder (cross-validation over its folds)
or of an ingested dataset (its train and test splits). Both take the clip
geometry from the run's preprocessing record and use either the pretrained
encoders or, with `random_init`, the same architecture freshly initialised
(the runs module's one random-init seed).
"""

import os
import sys

import gin
import numpy as np

from avid_tf import errors
from avid_tf import runs
from avid_tf.data import audio_folder
from avid_tf.data import pipeline
from avid_tf.data import schema
from avid_tf.eval import audio_probe as audio_probe_lib
from avid_tf.eval import chance
from avid_tf.eval import features as features_lib
from avid_tf.eval import sklearn_probe
from avid_tf.eval import stage_probe
from avid_tf.utils import files
from avid_tf.utils import settings_record

REPORT_FILE = "linear_probe.json"
SETTINGS_FILE = "linear_probe_settings.json"


def _open(model_dir, random_init, checkpoint):
  """The run's preprocessing record and its pretrained AVModel, or its
  architecture at `runs.RANDOM_INIT_SEED`."""
  run = runs.open_run(model_dir)
  model = run.random_init_model() if random_init else run.model(checkpoint)
  return run.preprocessing, model


def _record_settings(output_dir, model_dir, modality, random_init,
                     checkpoint, **options):
  """Records a probe's settings in its output folder, or checks them.

  The video probe resumes from the classifiers in `output_dir`: run with
  other settings (another model, checkpoint, `random_init`, dataset,
  schedule) it would test classifiers trained on other features. So every
  probe records what its results depend on once its inputs check out, and
  a rerun into the folder must bring the same. The default checkpoint is
  recorded as the file it resolves to now.

  Raises:
    settings_record.SettingsMismatchError: the folder holds a probe of
      other settings; nothing is written.
  """
  settings = {key: settings_record.absolute(value)
              if key.endswith(("_dir", "_csv")) else value
              for key, value in options.items()}
  settings.update(
      model_dir=settings_record.absolute(model_dir), modality=modality,
      random_init=bool(random_init),
      checkpoint=None if random_init else settings_record.absolute(
          runs.open_run(model_dir).checkpoint(checkpoint)))
  if modality == "video":
    settings["train_stage_probe"] = gin.get_bindings(
        stage_probe.train_stage_probe)
  settings_record.record_or_check(output_dir, settings, "a linear probe",
                                  file_name=SETTINGS_FILE)


def _labelled_dataset(dataset_dir, splits):
  """The DatasetInfo and its number of classes; labelled splits only."""
  dataset = schema.DatasetInfo.load(dataset_dir)
  for split in splits:
    dataset.split(split)
  maxima = []
  for split in splits:
    labels = dataset.instance_column(split, "label")
    if labels is not None:
      if len(labels) and labels.min() < 0:
        raise errors.UserError(
            f"Split '{split}' of {dataset_dir} has unlabelled videos "
            "(label -1); the linear probe needs class labels.")
      maxima.append(int(labels.max()) if len(labels) else -1)
  num_classes = len(dataset.label_names) or (max(maxima) + 1 if maxima else 0)
  if num_classes < 2:
    raise errors.UserError(
        f"{dataset_dir} records no class labels (label_names in its "
        "metadata): the linear probe needs a labelled dataset.")
  return dataset, num_classes


def video_probe(model_dir, dataset_dir, output_dir, train_split="train",
                test_split="val", num_clips=10, batch_size=32,
                random_init=False, checkpoint=None, seed=0, progress=True):
  """Per-stage Video@1 / Clip@1 of the run's frozen video encoder.

  The classifiers' settings (epochs, learning rate, milestones, gamma,
  stages, grids) are gin bindings of `stage_probe.train_stage_probe`.

  Args:
    model_dir: the run folder.
    dataset_dir: an ingested, labelled dataset.
    output_dir: folder of the probe's checkpoints, TensorBoard logs and
      settings record (`_record_settings`).
    train_split: split to train on (one random clip per video per epoch).
    test_split: split to test on.
    num_clips: test clips per video, uniformly spaced.
    batch_size: videos per batch.
    random_init: probe the architecture at random initialisation
      (`runs.RANDOM_INIT_SEED`).
    checkpoint: checkpoint prefix (default: the newest).
    seed: seed of the data order and augmentation.
    progress: show progress bars.

  Returns:
    The report dict: "stages": {stage: {"top1", "clip_top1"}}, every stage
    reported and none picked (picking the best on the test split would
    select the model on its own test figures); "chance", the top-1 of
    always answering the commonest test class (`chance.top_k`); the model,
    dataset and splits.
  """
  dataset, num_classes = _labelled_dataset(dataset_dir,
                                           (train_split, test_split))
  _record_settings(output_dir, model_dir, "video", random_init, checkpoint,
                   dataset_dir=dataset_dir, train_split=train_split,
                   test_split=test_split, num_clips=num_clips,
                   batch_size=batch_size, seed=seed)
  preprocessing, model = _open(model_dir, random_init, checkpoint)
  encoder = model.video_encoder
  if not hasattr(encoder, "stage_outputs"):
    raise errors.UserError("The run's video encoder has no stages to probe.")
  batch_size = _batch_that_fits(dataset, train_split, batch_size)
  steps = pipeline.steps_per_epoch(dataset, batch_size, 1, train_split)

  def make_train_dataset(start_step):
    return pipeline.make_train_dataset(
        dataset, batch_size, preprocessing=preprocessing, split=train_split,
        seed=seed, start_step=start_step, clips_per_video=1)

  test_dataset = pipeline.make_eval_dataset(
      dataset, test_split, batch_size, preprocessing=preprocessing,
      num_clips=num_clips)
  stages = stage_probe.train_stage_probe(
      encoder, make_train_dataset, steps, test_dataset, num_classes,
      output_dir, progress=progress)
  test_labels = features_lib.read_split_index(dataset, test_split)["label"]
  return {"modality": "video", "model_dir": model_dir,
          "random_init": bool(random_init), "dataset_dir": dataset_dir,
          "train_split": train_split, "test_split": test_split,
          "num_classes": num_classes, "num_clips": num_clips,
          "stages": stages,
          "chance": chance.top_k(test_labels, 1, num_classes)}


def _batch_that_fits(dataset, split, batch_size):
  """`batch_size`, or the split's video count when that is smaller (the
  probe trains on whole batches of one clip per video), with a note."""
  num_videos = dataset.num_examples(split)
  if num_videos >= batch_size:
    return batch_size
  print(f"Note: split '{split}' has {num_videos} videos, fewer than "
        f"--batch_size={batch_size}: the probe trains on batches of "
        f"{num_videos}.", file=sys.stderr)
  return num_videos


def audio_probe(model_dir, dataset_dir=None, audio_dir=None,
                folds_csv=None, train_split="train", test_split="val",
                num_clips=10, batch_size=16, classifier="svm", C=1.0,  # pylint: disable=invalid-name
                stages=(audio_probe_lib.POOLED,), random_init=False,
                checkpoint=None, seed=0, output_dir=None, progress=True):
  """Clip-averaged linear classification of the run's frozen audio features.

  Exactly one source: `audio_dir` + `folds_csv` (ESC-50 layout:
  cross-validation over the CSV's folds) or `dataset_dir` (train on
  `train_split`, test on `test_split`).

  Args:
    model_dir: the run folder.
    dataset_dir: an ingested, labelled dataset.
    audio_dir: a folder of audio files.
    folds_csv: its CSV (filename, fold, target).
    train_split: split of `dataset_dir` to train on.
    test_split: split of `dataset_dir` to test on.
    num_clips: clips per file, uniformly spaced.
    batch_size: files per feature-extraction batch.
    classifier: "svm" or "logistic".
    C: inverse regularisation strength.
    stages: features to probe (`audio_probe.STAGES`).
    random_init: probe the architecture at random initialisation
      (`runs.RANDOM_INIT_SEED`).
    checkpoint: checkpoint prefix (default: the newest).
    seed: seed of the classifier.
    output_dir: folder that records the probe's settings (checked against
      an earlier probe there, see `_record_settings`); None records none.
    progress: show progress bars.

  Returns:
    The report dict ("features": {stage: {"folds", "mean"} or {"top1"}},
    "top1": the first feature's figure, "chance": the top-1 of always
    answering the commonest test class (for folds, its mean over the
    folds), ...).
  """
  if (dataset_dir is None) == (audio_dir is None):
    raise errors.UserError("Give either --dataset_dir or --audio_dir (with "
                           "--folds_csv) for the audio probe.")
  if audio_dir is not None and folds_csv is None:
    raise errors.UserError("--audio_dir needs --folds_csv (filename,fold,"
                           "target columns).")
  if audio_dir is not None and not files.isfile(folds_csv):
    raise FileNotFoundError(f"--folds_csv {folds_csv} does not exist.")
  sklearn_probe.make_classifier(classifier, C)  # Checks the settings early.
  unknown = set(stages) - set(audio_probe_lib.STAGES)
  if unknown:
    raise errors.UserError(f"Unknown audio feature(s) {sorted(unknown)}; "
                           f"choose from {list(audio_probe_lib.STAGES)}.")
  if dataset_dir is not None:
    dataset, num_classes = _labelled_dataset(dataset_dir,
                                             (train_split, test_split))
  if output_dir is not None:
    _record_settings(output_dir, model_dir, "audio", random_init, checkpoint,
                     dataset_dir=dataset_dir, audio_dir=audio_dir,
                     folds_csv=folds_csv, train_split=train_split,
                     test_split=test_split, num_clips=num_clips,
                     batch_size=batch_size, classifier=classifier, C=C,
                     stages=list(stages), seed=seed)
  preprocessing, model = _open(model_dir, random_init, checkpoint)
  encoder = model.audio_encoder

  report = {"modality": "audio", "model_dir": model_dir,
            "random_init": bool(random_init), "classifier": classifier,
            "C": C, "num_clips": num_clips, "features": {}}
  if audio_dir is not None:
    data = audio_folder.make_audio_folder_dataset(
        audio_dir, folds_csv, batch_size, num_clips=num_clips,
        audio_seconds=preprocessing.audio_seconds,
        sample_rate=preprocessing.sample_rate,
        spectrogram_mean=preprocessing.spectrogram_mean,
        spectrogram_std=preprocessing.spectrogram_std)
    features = audio_probe_lib.clip_features(encoder, data, stages, progress)
    for stage in stages:
      report["features"][stage] = audio_probe_lib.cross_validate(
          features[stage], features["label"], features["fold"], classifier,
          C, seed)
    num_classes = int(features["label"].max()) + 1
    report.update(protocol="folds", audio_dir=audio_dir, folds_csv=folds_csv,
                  chance=float(np.mean([
                      chance.top_k(features["label"][features["fold"] == fold],
                                   1, num_classes)
                      for fold in np.unique(features["fold"])])))
    figure = "mean"
  else:
    split_features = {
        split: audio_probe_lib.clip_features(
            encoder, pipeline.make_eval_dataset(
                dataset, split, batch_size, preprocessing=preprocessing,
                num_clips=num_clips), stages, progress)
        for split in (train_split, test_split)}
    train, test = split_features[train_split], split_features[test_split]
    for stage in stages:
      report["features"][stage] = {"top1": sklearn_probe.clip_averaged_accuracy(
          train[stage], train["label"], test[stage], test["label"],
          classifier=classifier, C=C, seed=seed)}
    report.update(protocol="split", dataset_dir=dataset_dir,
                  train_split=train_split, test_split=test_split,
                  chance=chance.top_k(test["label"], 1, num_classes))
    figure = "top1"
  report["top1"] = report["features"][stages[0]][figure]
  return report


def format_report(report):
  """Console lines of a probe report, each figure beside its chance level."""
  level = report.get("chance")
  if report["modality"] == "video":
    return "\n".join(
        f"{stage}: Video@1 {chance.format_figure(figures['top1'], level)}, "
        f"Clip@1 {chance.format_figure(figures['clip_top1'], level)}"
        for stage, figures in report["stages"].items())
  return "\n".join(
      f"{name}: top-1 " + chance.format_figure(
          values["mean"] if "mean" in values else values["top1"], level)
      for name, values in report["features"].items())
