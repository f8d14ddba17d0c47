"""Per-stage linear probes of a frozen video encoder (the Kinetics protocol).

Each stage conv2x..conv5x of the frozen R(2+1)D encoder gets its own
classifier: adaptive max-pool of the stage map to a fixed grid (1x12x12,
1x8x8, 1x6x6, 1x4x4 by default), flatten, BatchNormalization, Dense. All
classifiers train together on the same clips; the encoder runs in inference
mode (BN moving statistics used, never updated) and outside the gradient
tape, so none of its variables changes. Test: softmax averaged over clips
uniformly spaced over each video (Video@1) and single clips (Clip@1).
"""

import os

import gin
import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from avid_tf import errors
from avid_tf.models import r2plus1d
from avid_tf.utils import checks

STAGE_GRIDS = {"conv2x": (1, 12, 12), "conv3x": (1, 8, 8),
               "conv4x": (1, 6, 6), "conv5x": (1, 4, 4)}
CHECKPOINT_SUBDIR = "probe_checkpoints"
TENSORBOARD_SUBDIR = "tensorboard"


def adaptive_bins(size, output_size):
  """PyTorch's adaptive-pooling bins: [floor(i n / k), ceil((i + 1) n / k)).

  When `output_size` exceeds `size` the bins hold one cell each and cells
  repeat, so the pooled grid (and the feature size) is the same whatever
  the input resolution.
  """
  return [(i * size // output_size, -(-(i + 1) * size // output_size))
          for i in range(output_size)]


def adaptive_max_pool(maps, grid):
  """Adaptive max pooling of [B, T, H, W, C] maps to [B, t, h, w, C].

  Args:
    maps: channels-last 3-D feature maps with static T, H, W.
    grid: output sizes (t, h, w).

  Returns:
    The pooled maps; bins follow `adaptive_bins` along each axis (a max over
    a box is the max over its axes one after the other).
  """
  for axis, output_size in zip((1, 2, 3), grid):
    size = maps.shape[axis]
    if size is None:
      raise ValueError(f"adaptive_max_pool needs static map sizes, got "
                       f"{maps.shape}.")
    if size == output_size:
      continue
    slices = []
    for start, end in adaptive_bins(size, output_size):
      index = [slice(None)] * len(maps.shape)
      index[axis] = slice(start, end)
      slices.append(tf.reduce_max(maps[tuple(index)], axis=axis,
                                  keepdims=True))
    maps = tf.concat(slices, axis=axis)
  return maps


def stage_features(encoder, video, grids):
  """Flattened, pooled stage features of a frozen encoder (no gradient).

  Args:
    encoder: an encoder with `stage_outputs(video, training)` (R2Plus1D).
    video: [B, T, H, W, 3] clips.
    grids: {stage name: (t, h, w)}.

  Returns:
    {stage: float32 [B, t * h * w * C]}.
  """
  outputs = encoder.stage_outputs(video, training=False)
  features = {}
  for stage, grid in grids.items():
    pooled = adaptive_max_pool(tf.cast(outputs[stage], tf.float32), grid)
    features[stage] = tf.stop_gradient(
        tf.reshape(pooled, [tf.shape(pooled)[0], -1]))
  return features


class StageClassifiers(keras.Model):
  """One BatchNormalization -> Dense classifier per stage."""

  def __init__(self, stages, num_classes, **kwargs):
    super().__init__(**kwargs)
    self.stages = tuple(stages)
    # PyTorch BatchNorm1d defaults: momentum 0.1 (Keras 0.9), epsilon 1e-5.
    self.classifiers = {
        stage: keras.Sequential(
            [keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5),
             keras.layers.Dense(num_classes)], name=f"{stage}_classifier")
        for stage in self.stages}

  def call(self, features, training=None):
    return {stage: self.classifiers[stage](features[stage], training=training)
            for stage in self.stages}


def learning_rate_at(epoch, learning_rate, milestones, gamma):
  """Step decay: `learning_rate * gamma ** (milestones passed by epoch)`."""
  return learning_rate * gamma ** sum(epoch >= m for m in milestones)


def _check_labels(labels, num_classes):
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise errors.UserError(
        f"Labels must be class ids in [0, {num_classes}), got "
        f"{labels.min()}..{labels.max()} (unlabelled videos have -1).")


@gin.configurable(denylist=["encoder", "make_train_dataset", "test_dataset",
                            "steps_per_epoch", "num_classes", "output_dir"])
def train_stage_probe(encoder, make_train_dataset, steps_per_epoch,
                      test_dataset, num_classes, output_dir,
                      stages=r2plus1d.STAGE_NAMES, grids=None, epochs=12,
                      learning_rate=1e-4, milestones=(6, 9), gamma=0.1,
                      progress=True):
  """Trains per-stage classifiers on a frozen encoder; tests them.

  Resumable: the classifiers, optimizer and epoch are checkpointed under
  `<output_dir>/probe_checkpoints` after every epoch, and a rerun continues
  from the newest one. Per-epoch losses, top-1 and the learning rate go to
  `<output_dir>/tensorboard`.

  Args:
    encoder: the frozen video encoder (`R2Plus1D`); left unchanged.
    make_train_dataset: function of the global start step returning the
      training stream of dicts with "video" [B, T, H, W, 3] and "label" [B].
    steps_per_epoch: batches per epoch.
    test_dataset: finite dataset of "video" [B, clips, T, H, W, 3] and
      "label" [B].
    num_classes: number of classes.
    output_dir: folder of the checkpoints and TensorBoard logs.
    stages: the stages to probe.
    grids: {stage: (t, h, w)} pooling grids; default `STAGE_GRIDS`.
    epochs: training epochs.
    learning_rate: Adam learning rate.
    milestones: epochs (0-based) at which the rate is multiplied by gamma.
    gamma: learning-rate decay factor.
    progress: show progress bars.

  Returns:
    {stage: {"top1": Video@1, "clip_top1": Clip@1}}.
  """
  checks.integer("train_stage_probe.epochs", epochs, minimum=1)
  checks.number("train_stage_probe.learning_rate", learning_rate, low=0,
                low_open=True)
  checks.number("train_stage_probe.gamma", gamma, low=0, low_open=True)
  grids = dict(grids or STAGE_GRIDS)
  missing = set(stages) - set(grids)
  if missing:
    raise errors.UserError(f"No pooling grid for stage(s) {sorted(missing)}.")
  grids = {stage: tuple(grids[stage]) for stage in stages}
  classifiers = StageClassifiers(stages, num_classes)
  optimizer = keras.optimizers.Adam(learning_rate)
  epoch_variable = tf.Variable(0, dtype=tf.int64, trainable=False)
  # The classifiers one by one: a Keras model's dict of layers is not a
  # tf.train.Checkpoint dependency.
  checkpoint = tf.train.Checkpoint(optimizer=optimizer, epoch=epoch_variable,
                                   **classifiers.classifiers)
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(output_dir, CHECKPOINT_SUBDIR), max_to_keep=1)
  train_step, test_step = _steps(encoder, classifiers, optimizer, grids)
  # Variables exist before a restore (Keras creates them on first call).
  clip_shape = tuple(test_dataset.element_spec["video"].shape[2:])
  classifiers(stage_features(encoder, tf.zeros((2,) + clip_shape), grids),
              training=False)
  optimizer.build(classifiers.trainable_variables)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).expect_partial()
  writer = tf.summary.create_file_writer(
      os.path.join(output_dir, TENSORBOARD_SUBDIR))
  start_epoch = int(epoch_variable.numpy())
  if start_epoch < epochs:
    stream = iter(make_train_dataset(start_epoch * steps_per_epoch))
  for epoch in range(start_epoch, epochs):
    rate = learning_rate_at(epoch, learning_rate, milestones, gamma)
    optimizer.learning_rate.assign(rate)
    figures = _train_epoch(train_step, stream, steps_per_epoch, stages,
                           num_classes, f"probe epoch {epoch + 1}", progress)
    with writer.as_default(step=epoch + 1):
      tf.summary.scalar("learning_rate", rate)
      for name, value in figures.items():
        tf.summary.scalar(name, value)
    epoch_variable.assign(epoch + 1)
    manager.save(checkpoint_number=epoch + 1)
  results = _test(test_step, test_dataset, stages, num_classes, progress)
  with writer.as_default(step=epochs):
    for stage in stages:
      tf.summary.scalar(f"test_top1/{stage}", results[stage]["top1"])
  writer.flush()
  return results


def _steps(encoder, classifiers, optimizer, grids):
  """The compiled training step (all stages at once) and test step."""
  stages = classifiers.stages
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function(reduce_retracing=True)
  def train_step(video, labels):
    features = stage_features(encoder, video, grids)
    with tf.GradientTape() as tape:
      logits = classifiers(features, training=True)
      losses = {stage: loss_fn(labels, logits[stage]) for stage in stages}
      total = tf.add_n(list(losses.values()))
    variables = classifiers.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
    correct = {stage: tf.reduce_sum(tf.cast(tf.equal(
        tf.argmax(logits[stage], axis=1, output_type=tf.int32), labels),
        tf.float32)) for stage in stages}
    return losses, correct

  @tf.function(reduce_retracing=True)
  def test_step(clips):
    shape = tf.shape(clips)
    flat = tf.reshape(clips, tf.concat([[-1], shape[2:]], axis=0))
    logits = classifiers(stage_features(encoder, flat, grids), training=False)
    return {stage: tf.reshape(tf.nn.softmax(value), [shape[0], shape[1], -1])
            for stage, value in logits.items()}

  return train_step, test_step


def _train_epoch(train_step, stream, steps_per_epoch, stages, num_classes,
                 description, progress):
  """One epoch of every stage's classifier; its mean losses and top-1."""
  loss_sums = {stage: 0.0 for stage in stages}
  correct_sums = {stage: 0.0 for stage in stages}
  seen = 0
  for _ in tqdm(range(steps_per_epoch), desc=description,
                disable=not progress, leave=False):
    batch = next(stream)
    _check_labels(batch["label"], num_classes)
    losses, correct = train_step(batch["video"], batch["label"])
    seen += int(batch["label"].shape[0])
    for stage in stages:
      loss_sums[stage] += float(losses[stage])
      correct_sums[stage] += float(correct[stage])
  figures = {f"loss/{stage}": loss_sums[stage] / steps_per_epoch
             for stage in stages}
  figures.update({f"train_top1/{stage}": correct_sums[stage] / seen
                  for stage in stages})
  return figures


def _test(test_step, test_dataset, stages, num_classes, progress):
  """{stage: {"top1": Video@1, "clip_top1": Clip@1}} on the test split."""
  video_correct = {stage: 0 for stage in stages}
  clip_correct = {stage: 0 for stage in stages}
  num_videos = num_clips = 0
  for batch in tqdm(test_dataset, desc="probe test", disable=not progress,
                    leave=False):
    labels = batch["label"].numpy()
    _check_labels(labels, num_classes)
    probabilities = test_step(batch["video"])
    for stage in stages:
      per_clip = probabilities[stage].numpy()
      video_correct[stage] += int(np.sum(
          per_clip.mean(axis=1).argmax(axis=1) == labels))
      clip_correct[stage] += int(np.sum(per_clip.argmax(axis=2) ==
                                        labels[:, None]))
    num_videos += len(labels)
    num_clips += per_clip.shape[0] * per_clip.shape[1]
  if num_videos == 0:
    raise errors.UserError("The test split of the linear probe is empty.")
  return {stage: {"top1": video_correct[stage] / num_videos,
                  "clip_top1": clip_correct[stage] / num_clips}
          for stage in stages}
