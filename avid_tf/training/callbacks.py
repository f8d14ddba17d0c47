"""Keras callbacks of a training run: checkpoints, NaN guard, scalars."""

import math

import keras
import tensorflow as tf

from avid_tf import errors


class NonFiniteLossError(errors.UserError, RuntimeError):
  """Raised when the training loss becomes NaN or infinite."""


class CheckpointAndGuard(keras.callbacks.Callback):
  """Saves checkpoints every N steps and at epoch ends; stops on NaN loss.

  The loss is checked before any save, so a NaN step never overwrites the
  last good checkpoint. Every worker of a multi-worker run must use one (its
  manager writing to its own folder, see `checkpointing.worker_directory`):
  saves are collective, and the logged loss is averaged over all workers, so
  all of them save and stop at the same steps.

  Args:
    manager: the run's `tf.train.CheckpointManager`.
    every_steps: save every this many global steps (0 disables).
    checkpoint_dir: the folder whose newest checkpoint the NaN error names
      (the chief's); None for the manager's own.
  """

  def __init__(self, manager, every_steps, checkpoint_dir=None):
    super().__init__()
    self._manager = manager
    self._every_steps = every_steps
    self._checkpoint_dir = checkpoint_dir
    self._last_saved_step = None

  def save(self, step):
    """Saves the run at `step`, unless this callback already has."""
    if step != self._last_saved_step:
      self._manager.save(checkpoint_number=step)
      self._last_saved_step = step

  def _step(self):
    return int(self.model.optimizer.iterations.numpy())

  def on_train_batch_end(self, batch, logs=None):
    loss = float((logs or {}).get("loss", 0.0))
    step = self._step()
    if not math.isfinite(loss):
      last = (tf.train.latest_checkpoint(self._checkpoint_dir)
              if self._checkpoint_dir else self._manager.latest_checkpoint)
      last = last or "none (no checkpoint yet)"
      raise NonFiniteLossError(
          f"Loss became {loss} at step {step}; training stopped. Last good "
          f"checkpoint: {last}")
    if self._every_steps and step % self._every_steps == 0:
      self.save(step)

  def on_epoch_end(self, epoch, logs=None):
    self.save(self._step())


class ScalarLogger(keras.callbacks.Callback):
  """Writes every training log value to TensorBoard at the global step.

  Keras' own TensorBoard callback counts steps per `fit` call; a resumed run
  needs the optimizer's global step instead. The written values are also kept
  in `history` as (step, logs) pairs.

  Epoch-level values that earlier callbacks (an objective's) add to the logs
  of `on_epoch_end` are written too, at the epoch's last global step, and
  kept in `epoch_history` as (epoch, values) pairs; the per-step values
  Keras repeats there are not.

  Args:
    log_dir: folder of the TensorBoard event files; None keeps `history`
      only (the non-chief workers of a multi-worker run).
    every_steps: write every this many global steps.
  """

  def __init__(self, log_dir, every_steps=10):
    super().__init__()
    self._log_dir = log_dir
    self._writer = None
    self._every_steps = max(1, every_steps)
    self._step_keys = set()
    self.history = []
    self.epoch_history = []

  def _write(self, step, values):
    # Created at the first value, so a session that logs nothing (a rerun
    # of a finished run) leaves no empty event file.
    if self._writer is None:
      self._writer = (tf.summary.create_file_writer(self._log_dir)
                      if self._log_dir else tf.summary.create_noop_writer())
    with self._writer.as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(f"train/{name}", value)
    self._writer.flush()

  def on_train_batch_end(self, batch, logs=None):
    self._step_keys.update(logs or {})
    step = int(self.model.optimizer.iterations.numpy())
    if step % self._every_steps:
      return
    values = {name: float(value) for name, value in (logs or {}).items()}
    self.history.append((step, values))
    self._write(step, values)

  def on_epoch_end(self, epoch, logs=None):
    values = {name: float(value) for name, value in (logs or {}).items()
              if name not in self._step_keys}
    if values:
      self.epoch_history.append((int(epoch), values))
      self._write(int(self.model.optimizer.iterations.numpy()), values)

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.flush()
