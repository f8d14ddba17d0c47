"""Checkpoints of a run: every model and optimizer variable, keyed by path.

Keras 3 layers kept in Python lists are invisible to TF's object-graph
checkpointing, so the run's checkpoint maps each variable's unique Keras path
to the variable instead. Writes go through `tf.train.CheckpointManager`,
which renames complete files into place.

In a multi-worker run every worker takes part in every save, but only the
chief's checkpoints are kept: the others write to a temporary folder of their
own (`worker_directory`) that is deleted afterwards, and every worker restores
from the chief's folder.
"""

import os

import tensorflow as tf

from avid_tf.training import strategy as strategy_lib


class CheckpointMismatchError(ValueError):
  """Raised when a checkpoint does not fit the dataset or the model."""


def _by_path(variables, owner, drop_prefix=False):
  """Maps variable paths to variables; `drop_prefix` drops the owner's name.

  Keras numbers unnamed optimizers per process ("adam", "adam_1", ...), so
  optimizer paths are keyed without that first component.
  """
  table = {}
  for variable in variables:
    key = variable.path.split("/", 1)[-1] if drop_prefix else variable.path
    if key in table:
      raise ValueError(f"Two {owner} variables share the path '{key}'; give "
                       "their layers unique names.")
    table[key] = variable.value
  return table


def make_checkpoint(model, optimizer=None):
  """Returns a `tf.train.Checkpoint` of a built model (and optimizer).

  Args:
    model: a built Keras model (all variables created).
    optimizer: optional built Keras optimizer.
  """
  parts = {"model": _by_path(model.variables, "model")}
  if optimizer is not None:
    parts["optimizer"] = _by_path(optimizer.variables, "optimizer",
                                  drop_prefix=True)
  return tf.train.Checkpoint(**parts)


def worker_directory(directory, strategy):
  """Returns the folder this worker writes the checkpoints of `directory` to.

  Args:
    directory: the run's checkpoint folder.
    strategy: the run's `tf.distribute.Strategy`.

  Returns:
    `directory` for the chief (and any single-process run), otherwise
    `directory/workertemp_<task type>_<task id>`.
  """
  if strategy_lib.is_chief(strategy):
    return directory
  resolver = strategy.cluster_resolver
  return os.path.join(directory,
                      f"workertemp_{resolver.task_type}_{resolver.task_id}")


def remove_worker_directory(directory, strategy):
  """Deletes this worker's temporary folder of `directory`, if it has one."""
  path = worker_directory(directory, strategy)
  if path != directory and tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)


def _check_bank_rows(checkpoint_path, num_data):
  """Fails clearly when a checkpoint's memory banks do not have N rows."""
  for name, shape in tf.train.list_variables(checkpoint_path):
    if name.startswith("model/") and "bank" in name and len(shape) == 2:
      if shape[0] != num_data:
        raise CheckpointMismatchError(
            f"Checkpoint {checkpoint_path} holds a memory bank of {shape[0]} "
            f"rows but the dataset has {num_data} training videos; use a new "
            "--model_dir or the dataset the run started with.")


def restore(checkpoint, path, num_data=None):
  """Restores `path` into `checkpoint`, failing clearly on a mismatch.

  Args:
    checkpoint: a checkpoint from `make_checkpoint`.
    path: checkpoint prefix to restore.
    num_data: rows each memory bank must have, or None to skip the check.

  Raises:
    CheckpointMismatchError: for another dataset size, or a checkpoint that
      lacks or mis-shapes variables of this model (another architecture).
  """
  if num_data is not None:
    _check_bank_rows(path, num_data)
  try:
    status = checkpoint.restore(path)
    status.assert_existing_objects_matched()
    # A model-only checkpoint object (evaluation, export) leaves the
    # optimizer's saved values unused on purpose.
    status.expect_partial()
  except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
    first_line = str(e).strip().splitlines()[0][:300]
    raise CheckpointMismatchError(
        f"Checkpoint {path} does not match this model (another architecture "
        f"or width?): {first_line}") from e
