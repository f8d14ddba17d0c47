"""The one gin-configured training entry point of avid_tf."""

import json
import os
import time

from absl import logging
import gin
import keras
import numpy as np
import tensorflow as tf

from avid_tf import errors
from avid_tf.data import pipeline
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.data import schema
from avid_tf.data import video_ops
from avid_tf.models import builders
from avid_tf.training import callbacks as callbacks_lib
from avid_tf.training import checkpointing
from avid_tf.training import optimizers
from avid_tf.training import run_info
from avid_tf.training import strategy as strategy_lib
from avid_tf.utils import files

CHECKPOINT_SUBDIR = "checkpoints"
# The run's figures, rewritten at the end of every session of the run.
SUMMARY_FILE = "train_summary.json"
MIXED_PRECISION_POLICIES = (None, "mixed_float16", "mixed_bfloat16")


def _learning_rate(learning_rate, decay_epochs, decay_factor, steps_per_epoch):
  if not decay_epochs or decay_factor == 1.0:
    return learning_rate
  boundaries = [int(e * steps_per_epoch) for e in decay_epochs]
  values = [learning_rate * decay_factor**i for i in range(len(boundaries) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def build_variables(model, preprocessing, optimizer=None):
  """Creates every model (and optimizer) variable so a restore can fill them.

  Args:
    model: an unbuilt AVModel.
    preprocessing: the run's `Preprocessing` (input shapes).
    optimizer: optional optimizer to build for the model's variables.
  """
  model(preprocessing.dummy_batch(), training=False)
  if optimizer is not None:
    optimizer.build(model.trainable_variables)


def _warn_if_crops_are_upsampled(dataset, preprocessing):
  """Warns when the crop is larger than the stored frames' short side.

  Every training crop is then upsampled (a small RandomResizedCrop about
  5x at 224 from 128), where the reference crops from the original frames.
  """
  short_side = dataset.metadata.get("short_side")
  if short_side is None or preprocessing.crop_size <= short_side:
    return
  logging.warning(
      "The crop size %d exceeds the short side %d of the frames stored in "
      "%s: every crop is upsampled. Ingest the videos with --short_side=%d "
      "(crop / %.3f) or more.", preprocessing.crop_size, short_side,
      dataset.directory,
      round(preprocessing.crop_size / video_ops.EVAL_CROP_FRACTION),
      video_ops.EVAL_CROP_FRACTION)


def _check_bn_groups(model, per_replica_batch):
  """Fails early when BN groups do not divide the per-replica batch."""
  for encoder in (model.video_encoder, model.audio_encoder):
    size = getattr(encoder, "bn_virtual_batch_size", None)
    if size and per_replica_batch % size:
      raise errors.InvalidValueError(
          f"The per-replica batch of {per_replica_batch} clips is not a "
          f"multiple of build_encoders.bn_virtual_batch_size = {size}; "
          "choose train.batch_size and the device count to make it one.")


def _instance_column(dataset, column):
  """A train-split column by memory row, or None when nothing is known."""
  values = dataset.instance_column("train", column)
  if values is None or not np.any(values >= 0):
    return None
  return values


def _adapt_for_multi_worker(model):
  """Works around Keras 3 `fit` failures under MultiWorkerMirroredStrategy.

  * Before training, `fit` averages one distributed input batch over the
    replicas to build the model; that reduce fails on dict batches
    (keras-team/keras#20329). `train` creates every model and optimizer
    variable beforehand, so this build is skipped.
  * `fit` averages each step's logs over the replicas with a reduce along
    axis 0, which fails on scalars; the logs get shape [1], so the reduce
    returns their mean over all workers as scalars.
  * The input tensors of a one-device worker carry no device, on which
    `ReplicaContext.all_gather` (the memory-bank update) fails with
    "destinations can not be empty"; `tf.identity` inside the replica
    places the batch on the replica's device.

  Args:
    model: the built AVModel, created under the strategy's scope.
  """
  train_step = model.train_step

  def train_step_with_placed_inputs_and_vector_logs(data):
    logs = train_step(tf.nest.map_structure(tf.identity, data))
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}

  def skip_symbolic_build(iterator=None, data_batch=None):
    del iterator, data_batch

  model.train_step = train_step_with_placed_inputs_and_vector_logs
  # pylint: disable-next=protected-access
  model._maybe_symbolic_build = skip_symbolic_build


def _earlier_summary(model_dir, start_step, steps_per_epoch, resumed):
  """What the sessions before a resumed run recorded in train_summary.json.

  A rerun of a finished or interrupted run would otherwise report only its
  own part: no training seconds and no epoch-level values of the epochs it
  did not run.

  Returns:
    Dict with the earlier "train_seconds", "final_logs" and the
    "epoch_logs" of the epochs completed before `start_step`; empty values
    for a fresh run or when there is no summary.
  """
  earlier = {"train_seconds": 0.0, "final_logs": {}, "epoch_logs": []}
  path = os.path.join(model_dir, SUMMARY_FILE)
  if not resumed or not os.path.isfile(path):
    return earlier
  with open(path) as f:
    recorded = json.load(f)
  completed_epochs = start_step // steps_per_epoch
  return {"train_seconds": float(recorded.get("train_seconds", 0.0)),
          "final_logs": recorded.get("final_logs", {}),
          "epoch_logs": [(epoch, values) for epoch, values
                         in recorded.get("epoch_logs", [])
                         if epoch < completed_epochs]}


@gin.configurable(denylist=["model_dir"])
def train(model_dir,
          dataset_dir=gin.REQUIRED,
          strategy="default",
          batch_size=32,
          epochs=1,
          clips_per_video=10,
          learning_rate=2e-4,
          lr_decay_epochs=(),
          lr_decay_factor=1.0,
          checkpoint_every_steps=1000,
          max_checkpoints=3,
          log_every_steps=10,
          mixed_precision=None,
          jit_compile=False,
          seed=0,
          max_steps=None,
          verbose=1,
          init_from=None,
          callbacks=()):
  """Pretrains an audio-visual model and checkpoints it in `model_dir`.

  The memory size is the number of training videos in the dataset metadata.
  A run resumes from the newest checkpoint in `model_dir/checkpoints` that
  reads completely (a damaged newer one is set aside with a warning, never
  deleted; see `checkpointing.restore_newest`); the input stream is
  deterministic per position, so a resumed run sees exactly the batches an
  uninterrupted run would have seen.

  Staged training (AVID+CMA): `init_from` names an earlier run. A new run
  (no checkpoint of its own yet) starts from that run's encoder and head
  weights, memory banks and the objective state the new objective declares
  it inherits (`Objective.inherited_state`, e.g. Z), with a fresh optimizer
  at step 0. Once the new run has checkpoints, rerunning resumes it from
  them and `init_from` is not read again.

  Under "multi_worker" every worker calls `train` with the same `model_dir`
  (a folder all of them can read); only the chief writes checkpoints,
  events, config.gin and train_summary.json there. The other workers take
  part in every save through a temporary folder of their own, deleted when
  they finish.

  Args:
    model_dir: folder for checkpoints, TensorBoard events and config.gin.
    dataset_dir: dataset folder written by ingest (`<output>/<name>/1.0.0`).
    strategy: "default", "mirrored" or "multi_worker".
    batch_size: global batch size (split across replicas).
    epochs: number of epochs; an epoch visits every training video
      `clips_per_video` times, less the visits that do not fill a whole
      last batch (`pipeline.steps_per_epoch`).
    clips_per_video: visits of each video per epoch.
    learning_rate: Adam learning rate (`optimizers.build_optimizer`).
    lr_decay_epochs: epochs at which the learning rate is multiplied by
      `lr_decay_factor` (the released configs keep it constant).
    lr_decay_factor: multiplicative decay at each of `lr_decay_epochs`.
    checkpoint_every_steps: also checkpoint every this many steps (0: only at
      epoch ends).
    max_checkpoints: checkpoints kept.
    log_every_steps: TensorBoard scalar frequency.
    mixed_precision: None, "mixed_float16" or "mixed_bfloat16".
    jit_compile: compile the train step with XLA.
    seed: seed of data order, augmentation, negatives and initialisation.
    max_steps: optional cap on total steps (smoke tests, benchmarks).
    verbose: Keras progress bar verbosity (0, 1 or 2).
    init_from: model_dir or checkpoint prefix of an earlier run to start
      from (see above); None starts from scratch.
    callbacks: extra Keras callbacks, run after the objective's own.

  Returns:
    Dict with "steps", "train_seconds" (over every session of the run),
    "final_logs" (last step's logs), "epoch_logs" (epoch-level values of the
    objective's callbacks, by epoch, earlier sessions included) and
    "history" (this session's (step, logs) every `log_every_steps`). All but
    "history" are also written to `<model_dir>/train_summary.json`.

  Raises:
    checkpointing.CheckpointMismatchError: when resuming or initialising
      from an incompatible checkpoint.
    checkpointing.DamagedCheckpointError: when no checkpoint of the run (or
      of `init_from`) reads completely.
    callbacks_lib.NonFiniteLossError: when the loss becomes NaN or infinite.
    ValueError: a per-replica batch that is not a multiple of
      `build_encoders.bn_virtual_batch_size`.
  """
  if mixed_precision not in MIXED_PRECISION_POLICIES:
    raise errors.InvalidValueError(
        f"mixed_precision must be one of "
        f"{MIXED_PRECISION_POLICIES}, got '{mixed_precision}'.")
  keras.mixed_precision.set_global_policy(mixed_precision or "float32")
  # Makes weight initialisation (Keras' global seed) repeatable per seed.
  keras.utils.set_random_seed(seed)
  os.makedirs(model_dir, exist_ok=True)
  distribution = strategy_lib.get_strategy(strategy)
  dataset = schema.DatasetInfo.load(dataset_dir)
  num_data = dataset.num_examples("train")
  preprocessing = preprocessing_lib.clip_preprocessing(dataset)
  _warn_if_crops_are_upsampled(dataset, preprocessing)
  steps_per_epoch = pipeline.steps_per_epoch(
      dataset, batch_size, clips_per_video,
      num_input_pipelines=strategy_lib.num_input_pipelines(distribution))
  total_steps = epochs * steps_per_epoch
  if max_steps:
    total_steps = min(total_steps, max_steps)

  with distribution.scope():
    model = builders.build_av_model(num_data=num_data, seed=seed)
    _check_bn_groups(model,
                     batch_size // distribution.num_replicas_in_sync)
    optimizer = optimizers.build_optimizer(
        _learning_rate(learning_rate, lr_decay_epochs, lr_decay_factor,
                       steps_per_epoch))
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    build_variables(model, preprocessing, optimizer)
    if isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy):
      _adapt_for_multi_worker(model)
    checkpoint = checkpointing.make_checkpoint(model, optimizer)
    checkpoint_dir = os.path.join(model_dir, CHECKPOINT_SUBDIR)
    # Left over by a worker that crashed.
    checkpointing.remove_worker_directory(checkpoint_dir, distribution)
    # Every worker of a multi-worker run restores from the chief's folder;
    # only the chief sets damaged checkpoints aside. The manager reads the
    # checkpoint state after that.
    restored = checkpointing.restore_newest(
        checkpoint, checkpoint_dir, model,
        set_aside_damaged=strategy_lib.is_chief(distribution))
    manager = tf.train.CheckpointManager(
        checkpoint, checkpointing.worker_directory(checkpoint_dir,
                                                   distribution),
        max_to_keep=max_checkpoints)
    if not restored and init_from:
      initial = checkpointing.resolve_checkpoint(init_from, CHECKPOINT_SUBDIR)
      checkpointing.initialize_from(model, initial)
      print(f"Initialised from {initial} (weights, memory banks and "
            f"{list(model.objective.inherited_state) or 'no'} objective "
            "state); fresh optimizer.")
  start_step = int(optimizer.iterations.numpy())
  earlier = _earlier_summary(model_dir, start_step, steps_per_epoch,
                             bool(restored))
  if restored:
    print(f"Resuming from {restored} at step {start_step}.")

  is_chief = strategy_lib.is_chief(distribution)
  log_dir = os.path.join(model_dir, "train") if is_chief else None
  run = run_info.RunInfo(
      model_dir=model_dir, num_data=num_data, steps_per_epoch=steps_per_epoch,
      strategy=distribution, is_chief=is_chief, log_dir=log_dir,
      instance_labels=_instance_column(dataset, "label"),
      instance_faulty=_instance_column(dataset, "faulty"), dataset=dataset)
  logger = callbacks_lib.ScalarLogger(log_dir, log_every_steps)
  # The objective's callbacks first: the logger, last, writes what they add
  # to the epoch logs.
  run_callbacks = (
      list(model.objective.callbacks(run)) + list(callbacks) + [
          callbacks_lib.CheckpointAndGuard(manager, checkpoint_every_steps,
                                           checkpoint_dir),
          logger])
  config_path = os.path.join(model_dir, "config.gin")
  if is_chief:
    files.write_text(config_path, gin.operative_config_str())
    preprocessing.write(model_dir)
  start_time = time.time()
  step = start_step
  try:
    while step < total_steps:
      # Whole epochs run in one `fit` that keeps the infinite input iterator;
      # a partial epoch (resumed mid-epoch, or cut by max_steps) runs alone so
      # epochs stay aligned with multiples of steps_per_epoch.
      epoch = step // steps_per_epoch
      if step % steps_per_epoch == 0 and total_steps - step >= steps_per_epoch:
        num_epochs = (total_steps - step) // steps_per_epoch
        steps = steps_per_epoch
      else:
        num_epochs = 1
        steps = min(steps_per_epoch * (epoch + 1), total_steps) - step
      stream = distribution.distribute_datasets_from_function(
          lambda ctx, start=step: pipeline.make_train_dataset(
              dataset, batch_size=batch_size, preprocessing=preprocessing,
              seed=seed, start_step=start, clips_per_video=clips_per_video,
              input_context=ctx))
      model.fit(stream, initial_epoch=epoch, epochs=epoch + num_epochs,
                steps_per_epoch=steps, callbacks=run_callbacks, verbose=verbose,
                shuffle=False)
      step = int(optimizer.iterations.numpy())
  finally:
    # Also after a NaN stop: nothing of a non-chief worker stays behind.
    checkpointing.remove_worker_directory(checkpoint_dir, distribution)
  train_seconds = earlier["train_seconds"] + time.time() - start_time
  final_logs = (logger.history[-1][1] if logger.history
                else earlier["final_logs"])
  summary = {"steps": step, "train_seconds": train_seconds,
             "final_logs": final_logs,
             "epoch_logs": earlier["epoch_logs"] + logger.epoch_history,
             "history": logger.history}
  if is_chief:
    files.write_text(config_path, gin.operative_config_str())
    files.write_json(
        os.path.join(model_dir, SUMMARY_FILE),
        {k: v for k, v in summary.items() if k != "history"})
  return summary
