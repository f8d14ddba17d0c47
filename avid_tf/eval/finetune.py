"""Full fine-tuning of a video backbone on UCF-101 / HMDB-51 style datasets.

The protocol (docs/methods.md, "Downstream evaluation"): backbone -> pooled
feature -> Dropout 0.5 -> Dense; Adam, no weight decay, a multi-step
learning-rate schedule by epoch; during the first `frozen_epochs` epochs
only the classifier trains, the backbone frozen with BatchNorm in
inference mode; at the first unfrozen epoch a fresh Adam takes over all
weights. Test: `num_test_clips` clips uniformly spaced over each video;
Video@k averages their softmax, Clip@k scores every clip alone.

Output folder:
  <output_dir>/fold_<k>/checkpoints/   model + optimizer after the newest
                                       epoch(s) (`keep_checkpoints`)
  <output_dir>/fold_<k>/progress.json  epochs completed (written after the
                                       checkpoint of that epoch)
  <output_dir>/fold_<k>/result.json    the fold's test scores (fold done)
  <output_dir>/fold_<k>/tensorboard/   train loss/accuracy, lr, test scores
  <output_dir>/summary.json            per fold and mean over folds
  <output_dir>/finetune_settings.json  the settings of every fold
A rerun with the same settings continues each fold from its newest
checkpoint and skips finished folds; one with other settings is refused.
"""

import dataclasses
import json
import os
from typing import Tuple
import types

import gin
import keras
import numpy as np
import tensorflow as tf
import tqdm

from avid_tf import errors
from avid_tf import runs
from avid_tf.eval import chance
from avid_tf.eval import finetune_data
from avid_tf.training import checkpointing
from avid_tf.utils import checks
from avid_tf.utils import files
from avid_tf.utils import settings_record

SUMMARY_FILE = "summary.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.json"
SETTINGS_FILE = "finetune_settings.json"
METRICS = ("video_top1", "video_top5", "clip_top1", "clip_top5")
TOP_KS = (1, 5)


class FinetuneClassifier(keras.Model):
  """backbone -> [B, D] feature -> Dropout -> Dense logits."""

  def __init__(self, backbone, num_classes, dropout=0.5,
               name="finetune_classifier", **kwargs):
    # Fixed names keep the checkpoint keys (variable paths) the same for
    # every model a process builds.
    super().__init__(name=name, **kwargs)
    self.backbone = backbone
    self.dropout = keras.layers.Dropout(dropout, name="dropout")
    self.classifier = keras.layers.Dense(num_classes, name="classifier")

  def call(self, clips, training=False):
    features = self.backbone(clips, training=training)
    return self.classifier(self.dropout(features, training=training))


def learning_rate_at(epoch, base, milestones, gamma):
  """Multi-step schedule: base * gamma ** (milestones passed by `epoch`)."""
  return base * gamma ** sum(1 for m in milestones if epoch >= m)


def topk_hits(probabilities, labels, k):
  """1 where the label is among the k largest scores of a row, else 0."""
  top = np.argsort(-probabilities, axis=-1, kind="stable")[..., :k]
  return np.any(top == labels[..., None], axis=-1)


def score_clips(clip_probabilities, labels):
  """Video@1/5 (softmax averaged over a video's clips) and Clip@1/5.

  Args:
    clip_probabilities: [V, C, K] softmax of C clips of V videos.
    labels: [V] class ids.

  Returns:
    Dict of video_top1, video_top5, clip_top1, clip_top5 in [0, 1] (None
    for top-k with k >= K classes, which is 1 whatever the model, its reason
    in "not_applicable"), and the chance levels chance_top1, chance_top5
    (`chance.top_k` of the labels; a clip has its video's label, so the
    clip and video levels are the same).
  """
  clip_probabilities = np.asarray(clip_probabilities, np.float64)
  labels = np.asarray(labels)
  num_classes = clip_probabilities.shape[-1]
  clip_labels = np.broadcast_to(labels[:, None],
                                clip_probabilities.shape[:2])
  levels = {"video": (clip_probabilities.mean(axis=1), labels),
            "clip": (clip_probabilities, clip_labels)}
  scores, reasons = {}, {}
  for metric in METRICS:
    level, k = metric.split("_top")
    reason = chance.not_applicable(int(k), num_classes, "classes")
    if reason:
      reasons[metric] = reason
    scores[metric] = None if reason else float(
        topk_hits(*levels[level], int(k)).mean())
  for k in TOP_KS:
    scores[f"chance_top{k}"] = chance.top_k(labels, k, num_classes)
  if reasons:
    scores["not_applicable"] = reasons
  return scores


def _mean(values):
  """Mean of per-fold figures; None if any is None (not applicable)."""
  values = list(values)
  if any(value is None for value in values):
    return None
  return float(np.mean(values))


def format_summary(summary):
  """Console lines of a fine-tuning summary: every figure beside its chance
  level, "n/a" (and why) where it is not applicable."""
  lines = []
  rows = [(f"fold {fold}", scores)
          for fold, scores in summary["folds"].items()]
  for name, scores in rows + [("mean", summary["mean"])]:
    lines.append(f"{name}: " + ", ".join(
        f"{metric.replace('_top', ' top-')} " + chance.format_figure(
            scores[metric], scores.get(f"chance_top{metric.split('_top')[1]}"))
        for metric in METRICS))
  for metric, reason in summary["mean"].get("not_applicable", {}).items():
    lines.append(f"{metric} n/a: {reason}")
  return "\n".join(lines)


def predict_test_clips(model, clips, num_videos, num_clips, verbose=True):
  """Softmax of every test clip as [V, C, K], and the labels [V]."""
  probabilities = None
  labels = np.full(num_videos, -1, np.int64)
  counts = np.zeros(num_videos, np.int64)
  # The last batch is smaller: one general trace instead of a retrace.
  predict = tf.function(lambda x: tf.nn.softmax(model(x, training=False)),
                        reduce_retracing=True)
  with tqdm.tqdm(total=num_videos * num_clips, desc="test clips", unit="clip",
                 disable=not verbose, leave=False) as bar:
    for video, label, position in clips:
      scores = predict(video).numpy()
      if probabilities is None:
        probabilities = np.zeros((num_videos, num_clips, scores.shape[-1]),
                                 np.float64)
      position = position.numpy()
      for row, pos in enumerate(position):
        probabilities[pos, counts[pos]] = scores[row]
        counts[pos] += 1
      labels[position] = label.numpy()
      bar.update(len(position))
  if probabilities is None or not np.all(counts == num_clips):
    raise RuntimeError(f"Expected {num_clips} test clips for each of "
                       f"{num_videos} videos")
  return probabilities, labels


def _read_json(path):
  if not files.isfile(path):
    return None
  with files.open_file(path) as f:
    return json.load(f)


def _write_scalars(writer, values, step):
  with writer.as_default():
    for name, value in values.items():
      tf.summary.scalar(name, value, step=step)
  writer.flush()


def _checkpoint(model, optimizer):
  """Model weights (without RNG states, whose names vary) and optimizer."""
  return checkpointing.make_checkpoint(
      types.SimpleNamespace(variables=model.weights), optimizer)


def _make_optimizer(model, learning_rate, weight_decay):
  optimizer = keras.optimizers.Adam(learning_rate,
                                    weight_decay=weight_decay or None)
  optimizer.build(model.trainable_variables)
  return optimizer


def _set_phase(model, backbone_trainable, learning_rate, weight_decay):
  """Freezes/unfreezes the backbone and compiles with a new optimizer."""
  model.backbone.trainable = backbone_trainable
  optimizer = _make_optimizer(model, learning_rate, weight_decay)
  model.compile(optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy(
                    name="accuracy")])
  return optimizer


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How every fold trains and tests (see `finetune_schedule`).

  Values are checked when it is made: a wrong type or a value out of range
  is a `errors.InvalidValueError` naming the `finetune_schedule` binding.
  """

  epochs: int
  frozen_epochs: int
  batch_size: int
  clips_per_video: int
  learning_rate: float
  lr_milestones: Tuple[int, ...]
  lr_gamma: float
  weight_decay: float
  dropout: float
  num_test_clips: int
  eval_batch_size: int
  shuffle_buffer: int
  keep_checkpoints: int
  seed: int

  def __post_init__(self):
    builder = "finetune_schedule"
    for name in ("epochs", "batch_size", "clips_per_video", "num_test_clips",
                 "eval_batch_size", "shuffle_buffer", "keep_checkpoints"):
      checks.field(self, builder, name, checks.integer, minimum=1)
    checks.field(self, builder, "frozen_epochs", checks.integer, minimum=0)
    if self.frozen_epochs > self.epochs:
      raise errors.InvalidValueError(
          f"finetune_schedule.frozen_epochs must be in [0, epochs="
          f"{self.epochs}], got {self.frozen_epochs}")
    checks.field(self, builder, "seed", checks.integer, minimum=0)
    for name in ("learning_rate", "lr_gamma"):
      checks.field(self, builder, name, checks.number, low=0, low_open=True)
    checks.field(self, builder, "weight_decay", checks.number, low=0)
    checks.field(self, builder, "dropout", checks.number, low=0, high=1,
                 high_open=True)
    if not isinstance(self.lr_milestones, (tuple, list)):
      raise errors.InvalidValueError(
          f"finetune_schedule.lr_milestones must be a tuple of epochs, got "
          f"{self.lr_milestones!r}")
    object.__setattr__(self, "lr_milestones", tuple(
        checks.integer("finetune_schedule.lr_milestones", epoch, minimum=0)
        for epoch in self.lr_milestones))


@gin.configurable
def finetune_schedule(epochs=16, frozen_epochs=5, batch_size=64,
                      clips_per_video=10, learning_rate=1e-4,
                      lr_milestones=(6, 10, 14), lr_gamma=0.3,
                      weight_decay=0.0, dropout=0.5, num_test_clips=10,
                      eval_batch_size=32, shuffle_buffer=256,
                      keep_checkpoints=1, seed=0):
  """The training and test schedule of fine-tuning (gin/eval/*.gin).

  Args:
    epochs: training epochs (UCF 16, HMDB 10).
    frozen_epochs: first epochs training only the classifier (5).
    batch_size: training clips per step (64 for 8 frames, 32 for 32).
    clips_per_video: training clips of each video per epoch.
    learning_rate: Adam's base rate (1e-4).
    lr_milestones: epochs at which the rate is multiplied by `lr_gamma`.
    lr_gamma: multiplier at each milestone (0.3).
    weight_decay: Adam weight decay (0; a non-zero value is Keras' decoupled
      decay).
    dropout: dropout rate before the classifier (0.5).
    num_test_clips: clips per test video (10).
    eval_batch_size: test clips per forward pass.
    shuffle_buffer: training videos held for shuffling.
    keep_checkpoints: newest epoch checkpoints kept per fold (>= 1).
    seed: seed of the classifier's initialisation, order and augmentation.

  Returns:
    A `Schedule`.
  """
  return Schedule(
      epochs=epochs, frozen_epochs=frozen_epochs, batch_size=batch_size,
      clips_per_video=clips_per_video, learning_rate=learning_rate,
      lr_milestones=lr_milestones, lr_gamma=lr_gamma,
      weight_decay=weight_decay, dropout=dropout,
      num_test_clips=num_test_clips, eval_batch_size=eval_batch_size,
      shuffle_buffer=shuffle_buffer, keep_checkpoints=keep_checkpoints,
      seed=seed)


def _fold_model(init, random_init, num_classes, schedule, clips, fold):
  """The fold's classifier on the initial backbone.

  The backbone comes from `runs.load_encoder` (its random init uses
  `runs.RANDOM_INIT_SEED`); the classifier's weights then depend on the
  schedule's seed and the fold.
  """
  source = runs.load_encoder(init, "video", random_init=random_init)
  keras.utils.set_random_seed(schedule.seed + fold)
  model = FinetuneClassifier(source.encoder, num_classes, schedule.dropout)
  model(tf.zeros((1, clips.num_frames, clips.crop_size, clips.crop_size, 3)),
        training=False)
  return model


def _restore_progress(model, optimizer, checkpoint_dir, done):
  """Reads the checkpoint of epoch `done` (the newest) into the model."""
  path = os.path.join(checkpoint_dir, f"epoch-{done}")
  try:
    _checkpoint(model, optimizer).read(path).assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as error:
    raise checkpointing.CheckpointMismatchError(
        f"Checkpoint {path} does not match this model (another --init or "
        f"settings?): {str(error).splitlines()[0]}") from error


def _train_epoch(model, optimizer, fold_data, source, epoch, clips, schedule,
                 verbose):
  """Trains one epoch of a fold; returns its TensorBoard scalars."""
  frozen = epoch < schedule.frozen_epochs
  lr = learning_rate_at(epoch, schedule.learning_rate, schedule.lr_milestones,
                        schedule.lr_gamma)
  optimizer.learning_rate = lr
  # Dropout masks depend on (seed, fold, epoch) only: a resumed epoch
  # draws the masks it would have drawn without the interruption.
  model.dropout.seed_generator.state.assign(
      np.asarray([schedule.seed + fold_data.fold, epoch], np.int64))
  train = finetune_data.train_clips(
      source, fold_data.train, clips, schedule.batch_size,
      schedule.clips_per_video, schedule.seed, epoch, schedule.shuffle_buffer)
  steps_per_epoch = (fold_data.num_train * schedule.clips_per_video //
                     schedule.batch_size)
  if verbose:
    print(f"fold {fold_data.fold} epoch {epoch + 1}/{schedule.epochs} lr "
          f"{lr:.3g}{' (backbone frozen)' if frozen else ''}")
  history = model.fit(train.take(steps_per_epoch), epochs=1,
                      steps_per_epoch=steps_per_epoch, shuffle=False,
                      verbose=1 if verbose else 0)
  return {"train/loss": history.history["loss"][-1],
          "train/accuracy": history.history["accuracy"][-1],
          "train/learning_rate": lr,
          "train/backbone_trainable": float(not frozen)}


def _save_epoch(model, optimizer, fold_dir, epoch, keep_checkpoints):
  """Checkpoints the end of `epoch`, records it, drops stale checkpoints."""
  checkpoint_dir = os.path.join(fold_dir, "checkpoints")
  files.makedirs(checkpoint_dir)
  _checkpoint(model, optimizer).write(
      os.path.join(checkpoint_dir, f"epoch-{epoch + 1}"))
  files.write_json(os.path.join(fold_dir, PROGRESS_FILE),
                   {"epochs_done": epoch + 1})
  stale = epoch + 1 - keep_checkpoints
  if stale >= 1:
    for path in files.glob(os.path.join(checkpoint_dir, f"epoch-{stale}.*")):
      files.remove(path)


def _check_fold(fold_data, schedule):
  """Fails when a fold's training videos make no batch."""
  if fold_data.num_train * schedule.clips_per_video < schedule.batch_size:
    raise errors.UserError(
        f"Fold {fold_data.fold}: {fold_data.num_train} training videos x "
        f"{schedule.clips_per_video} clips make no batch of "
        f"{schedule.batch_size}")


def _checked_folds(source, folds, init, schedule):
  """Every fold's data, checked before any fold trains.

  A missing split or fold list, a video a list names that is not in the
  dataset, a fold too small for a batch or an `init` that is neither a run
  nor an export fails here, not after hours of training earlier folds.

  Returns:
    {fold: the fold's `finetune_data` examples}, in the order asked.
  """
  if init is not None:
    runs.open_run(init)
  fold_data = {}
  for fold in folds:
    fold = checks.integer("finetune.folds", fold, minimum=1)
    fold_data[fold] = source.fold_data(fold)
    _check_fold(fold_data[fold], schedule)
  return fold_data


def finetune_fold(fold_data, source, fold_dir, init, random_init, clips,
                  schedule, num_classes, verbose=True):
  """Trains and tests one fold (resuming it); returns its scores.

  Args:
    fold_data: the fold's `finetune_data` examples.
    source: the `finetune_data` video source.
    fold_dir: the fold's output folder.
    init: export, run folder or converted checkpoint (`runs.load_encoder`).
    random_init: start from the random-init backbone instead.
    clips: `finetune_data.ClipSettings`.
    schedule: `Schedule`.
    num_classes: classifier width.
    verbose: progress bars and per-epoch lines.
  """
  result = _read_json(os.path.join(fold_dir, RESULT_FILE))
  if result is not None:
    return result
  _check_fold(fold_data, schedule)
  model = _fold_model(init, random_init, num_classes, schedule, clips,
                      fold_data.fold)
  progress = _read_json(os.path.join(fold_dir, PROGRESS_FILE)) or {}
  done = int(progress.get("epochs_done", 0))
  writer = tf.summary.create_file_writer(os.path.join(fold_dir,
                                                      "tensorboard"))
  # The newest checkpoint holds the optimizer of the epoch before it.
  optimizer = _set_phase(model, max(done - 1, 0) >= schedule.frozen_epochs,
                         schedule.learning_rate, schedule.weight_decay)
  if done:
    _restore_progress(model, optimizer, os.path.join(fold_dir, "checkpoints"),
                      done)
  for epoch in range(done, schedule.epochs):
    if epoch > 0 and epoch == schedule.frozen_epochs:
      optimizer = _set_phase(model, True, schedule.learning_rate,
                             schedule.weight_decay)
    _write_scalars(writer, _train_epoch(
        model, optimizer, fold_data, source, epoch, clips, schedule, verbose),
                   epoch + 1)
    _save_epoch(model, optimizer, fold_dir, epoch, schedule.keep_checkpoints)
  test = finetune_data.test_clips(source, fold_data.test, clips,
                                  schedule.num_test_clips,
                                  schedule.eval_batch_size)
  probabilities, labels = predict_test_clips(
      model, test, fold_data.num_test, schedule.num_test_clips, verbose)
  result = score_clips(probabilities, labels)
  result.update(num_train_videos=fold_data.num_train,
                num_test_videos=fold_data.num_test, epochs=schedule.epochs)
  _write_scalars(writer, {f"test/{k}": result[k] for k in METRICS
                          if result[k] is not None}, schedule.epochs)
  files.write_json(os.path.join(fold_dir, RESULT_FILE), result)
  return result


def _mean_scores(results):
  """The mean over folds of every figure and chance level."""
  mean = {key: _mean(r.get(key) for r in results)
          for key in METRICS + tuple(f"chance_top{k}" for k in TOP_KS)}
  reasons = {}
  for result in results:
    reasons.update(result.get("not_applicable", {}))
  if reasons:
    mean["not_applicable"] = reasons
  return mean


def _settings(clips, schedule, **arguments):
  """What a fine-tuning folder's results depend on (every fold's).

  The folds themselves are not part of it: a rerun may add folds.
  """
  settings = {key: settings_record.absolute(value) if key in (
      "init", "dataset_dir", "split_csv_dir", "tfds_data_dir") else value
              for key, value in arguments.items()}
  settings.update(clips=dataclasses.asdict(clips),
                  schedule=dataclasses.asdict(schedule))
  return settings


@gin.configurable
def finetune(output_dir, init=None, random_init=False, dataset_dir=None,
             tfds_name=None, split_csv_dir=None, folds=(1, 2, 3),
             num_classes=None, tfds_config_template="{name}_{fold}",
             tfds_data_dir=None, tfds_fps=25.0, clips=None, schedule=None,
             verbose=True):
  """Fine-tunes a backbone on every fold and writes summary.json.

  Args:
    output_dir: folder of checkpoints, logs and results (see module doc);
      it records the settings (`finetune_settings.json`), and a rerun into
      it with other settings is refused before anything is trained.
    init: export folder, run folder or converted checkpoint (model_dir).
    random_init: start from random weights (of `init`'s architecture when it
      is a run folder, else `build_encoders`' gin configuration), at
      `runs.RANDOM_INIT_SEED`.
    dataset_dir: dataset folder of prepare_data.py.
    tfds_name: TFDS video dataset instead of `dataset_dir`.
    split_csv_dir: fold lists for `dataset_dir` (finetune_data module doc).
    folds: fold numbers to run.
    num_classes: classifier width (default: the dataset's classes).
    tfds_config_template: TFDS builder config of fold k.
    tfds_data_dir: TFDS data folder.
    tfds_fps: frame rate of the TFDS videos.
    clips: `finetune_data.ClipSettings`; None takes
      `finetune_data.finetune_clips()` as gin configures it.
    schedule: `Schedule`; None takes `finetune_schedule()` as gin configures
      it.
    verbose: progress bars and per-epoch lines.

  Returns:
    The summary dict: {"folds": {k: scores}, "mean": scores, ...}.

  Raises:
    errors.UserError: bad source, init or settings.
  """
  if init is None and not random_init:
    raise errors.UserError("Give --init (export, model_dir or converted "
                           "checkpoint) or --random_init")
  clips = clips or finetune_data.finetune_clips()
  schedule = schedule or finetune_schedule()
  source = finetune_data.video_source(
      dataset_dir=dataset_dir, tfds_name=tfds_name,
      split_csv_dir=split_csv_dir, tfds_config_template=tfds_config_template,
      tfds_data_dir=tfds_data_dir, tfds_fps=tfds_fps)
  num_classes = finetune_data.resolve_num_classes(source, num_classes)
  fold_data = _checked_folds(source, folds, init, schedule)
  settings_record.record_or_check(output_dir, _settings(
      init=init, random_init=bool(random_init), dataset_dir=dataset_dir,
      tfds_name=tfds_name, split_csv_dir=split_csv_dir,
      tfds_config_template=tfds_config_template, tfds_data_dir=tfds_data_dir,
      tfds_fps=tfds_fps, num_classes=num_classes, clips=clips,
      schedule=schedule), "fine-tuning results", file_name=SETTINGS_FILE)
  results = {}
  for fold in tqdm.tqdm(list(fold_data), desc="folds", disable=not verbose):
    results[str(fold)] = finetune_fold(
        fold_data[fold], source, os.path.join(output_dir, f"fold_{fold}"),
        init, random_init, clips, schedule, num_classes, verbose)
  summary = {
      "folds": results,
      "mean": _mean_scores(list(results.values())),
      "init": None if init is None else os.fspath(init),
      "random_init": bool(random_init),
      "dataset": source.name,
      "num_classes": num_classes,
      "num_frames": clips.num_frames,
      "crop_size": clips.crop_size,
      "epochs": schedule.epochs,
  }
  files.write_json(os.path.join(output_dir, SUMMARY_FILE), summary)
  return summary
