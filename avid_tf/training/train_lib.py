"""The one gin-configured training entry point of avid_tf."""

import json
import os
import time

import gin
import keras
import tensorflow as tf

from avid_tf.data import pipeline
from avid_tf.data import schema
from avid_tf.models import builders
from avid_tf.training import callbacks as callbacks_lib
from avid_tf.training import checkpointing
from avid_tf.training import strategy as strategy_lib

CHECKPOINT_SUBDIR = "checkpoints"
MIXED_PRECISION_POLICIES = (None, "mixed_float16", "mixed_bfloat16")


def _learning_rate(learning_rate, decay_epochs, decay_factor, steps_per_epoch):
  if not decay_epochs or decay_factor == 1.0:
    return learning_rate
  boundaries = [int(e * steps_per_epoch) for e in decay_epochs]
  values = [learning_rate * decay_factor**i for i in range(len(boundaries) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def restore_latest(checkpoint, manager, num_data):
  """Restores the newest checkpoint of a run; returns its path or None."""
  path = manager.latest_checkpoint
  if path:
    checkpointing.restore(checkpoint, path, num_data)
  return path


def _build_variables(model, optimizer, element_spec):
  """Creates all model and optimizer variables so a restore can fill them."""
  dummy = {key: tf.zeros([1] + spec.shape.as_list()[1:], spec.dtype)
           for key, spec in element_spec.items()}
  model(dummy, training=False)
  optimizer.build(model.trainable_variables)


def _write_operative_config(model_dir):
  path = os.path.join(model_dir, "config.gin")
  with open(path + ".tmp", "w") as f:
    f.write(gin.operative_config_str())
  os.replace(path + ".tmp", path)


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
          verbose=1):
  """Pretrains an audio-visual model and checkpoints it in `model_dir`.

  The memory size is the number of training videos in the dataset metadata.
  A run resumes from the newest checkpoint in `model_dir/checkpoints`; the
  input stream is deterministic per position, so a resumed run sees exactly
  the batches an uninterrupted run would have seen.

  Args:
    model_dir: folder for checkpoints, TensorBoard events and config.gin.
    dataset_dir: dataset folder written by ingest (`<output>/<name>/1.0.0`).
    strategy: "default", "mirrored" or "multi_worker".
    batch_size: global batch size (split across replicas).
    epochs: number of epochs; an epoch visits every training video
      `clips_per_video` times.
    clips_per_video: visits of each video per epoch.
    learning_rate: Adam learning rate.
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

  Returns:
    Dict with "steps", "train_seconds", "final_logs" (last step's logs) and
    "history" (list of (step, logs) every `log_every_steps`).

  Raises:
    checkpointing.CheckpointMismatchError: when resuming from an incompatible checkpoint.
    callbacks_lib.NonFiniteLossError: when the loss becomes NaN or infinite.
  """
  if mixed_precision not in MIXED_PRECISION_POLICIES:
    raise ValueError(f"mixed_precision must be one of "
                     f"{MIXED_PRECISION_POLICIES}, got '{mixed_precision}'.")
  keras.mixed_precision.set_global_policy(mixed_precision or "float32")
  # Makes weight initialisation (Keras' global seed) repeatable per seed.
  keras.utils.set_random_seed(seed)
  os.makedirs(model_dir, exist_ok=True)
  distribution = strategy_lib.get_strategy(strategy)
  num_data = schema.num_examples(dataset_dir, "train")
  steps_per_epoch = pipeline.steps_per_epoch(dataset_dir, batch_size,
                                             clips_per_video)
  total_steps = epochs * steps_per_epoch
  if max_steps:
    total_steps = min(total_steps, max_steps)

  with distribution.scope():
    model = builders.build_av_model(num_data=num_data, seed=seed)
    optimizer = keras.optimizers.Adam(
        _learning_rate(learning_rate, lr_decay_epochs, lr_decay_factor,
                       steps_per_epoch))
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    element_spec = pipeline.make_train_dataset(
        dataset_dir, batch_size=1, clips_per_video=clips_per_video,
        seed=seed).element_spec
    _build_variables(model, optimizer, element_spec)
    checkpoint = checkpointing.make_checkpoint(model, optimizer)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(model_dir, CHECKPOINT_SUBDIR),
        max_to_keep=max_checkpoints)
    restored = restore_latest(checkpoint, manager, num_data)
  start_step = int(optimizer.iterations.numpy())
  if restored:
    print(f"Resuming from {restored} at step {start_step}.")

  logger = callbacks_lib.ScalarLogger(os.path.join(model_dir, "train"),
                                      log_every_steps)
  run_callbacks = [
      callbacks_lib.CheckpointAndGuard(manager, checkpoint_every_steps),
      logger
  ]
  _write_operative_config(model_dir)
  start_time = time.time()
  step = start_step
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
    dataset = distribution.distribute_datasets_from_function(
        lambda ctx, start=step: pipeline.make_train_dataset(
            dataset_dir, batch_size=batch_size,
            clips_per_video=clips_per_video, seed=seed, start_step=start,
            input_context=ctx))
    model.fit(dataset, initial_epoch=epoch, epochs=epoch + num_epochs,
              steps_per_epoch=steps, callbacks=run_callbacks, verbose=verbose)
    step = int(optimizer.iterations.numpy())
  train_seconds = time.time() - start_time
  _write_operative_config(model_dir)
  final_logs = logger.history[-1][1] if logger.history else {}
  summary = {"steps": step, "train_seconds": train_seconds,
             "final_logs": final_logs, "history": logger.history}
  with open(os.path.join(model_dir, "train_summary.json"), "w") as f:
    json.dump({k: v for k, v in summary.items() if k != "history"}, f,
              indent=1)
  return summary
