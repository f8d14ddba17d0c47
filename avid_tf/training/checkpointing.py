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

from avid_tf import errors
from avid_tf.training import strategy as strategy_lib


class CheckpointMismatchError(errors.UserError, ValueError):
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


def _checkpoint_key(part, path):
  """The name `tf.train.list_variables` gives a variable of `make_checkpoint`.

  Object-graph checkpoints escape "." as ".." and "/" as ".S" in the
  dictionary keys (the variables' Keras paths).
  """
  escaped = path.replace(".", "..").replace("/", ".S")
  return f"{part}/{escaped}/.ATTRIBUTES/VARIABLE_VALUE"


def _check_compatible(path, model, variables, num_data=None):
  """Fails with one line when a checkpoint cannot fill `variables`.

  Args:
    path: checkpoint prefix.
    model: the AVModel the variables belong to (for its banks).
    variables: the model variables to be restored.
    num_data: rows the banks must have (the dataset's training videos), or
      None to check against the model's banks only.

  Raises:
    CheckpointMismatchError: naming both sides of the first mismatch.
  """
  saved = dict(tf.train.list_variables(path))
  rows = bank_rows(path, model.video_bank.bank.path)
  if num_data is not None and rows != num_data:
    raise CheckpointMismatchError(
        f"Checkpoint {path} holds memory banks of {rows} rows but the "
        f"dataset has {num_data} training videos; use the dataset the run "
        "was trained on (or a new --model_dir).")
  missing = []
  for variable in variables:
    key = _checkpoint_key("model", variable.path)
    if key not in saved:
      missing.append(variable.path)
    elif list(saved[key]) != list(variable.shape):
      raise CheckpointMismatchError(
          f"Checkpoint {path} does not match this model (another "
          f"architecture or width?): '{variable.path}' has shape "
          f"{tuple(saved[key])} there and {tuple(variable.shape)} here.")
  if missing:
    raise CheckpointMismatchError(
        f"Checkpoint {path} does not match this model (another "
        f"architecture?): {len(missing)} of its variables are missing there,"
        f" e.g. '{missing[0]}'.")


def bank_rows(path, bank_path):
  """Rows of the memory bank variable at Keras path `bank_path` in `path`.

  Raises:
    CheckpointMismatchError: when the checkpoint holds no such bank.
  """
  shape = dict(tf.train.list_variables(path)).get(
      _checkpoint_key("model", bank_path))
  if shape is None or len(shape) != 2:
    raise CheckpointMismatchError(
        f"Checkpoint {path} holds no memory bank '{bank_path}': is it an "
        "avid_tf pretraining checkpoint?")
  return shape[0]


def restore(checkpoint, path, model=None, num_data=None):
  """Restores `path` into `checkpoint`, failing clearly on a mismatch.

  Args:
    checkpoint: a checkpoint from `make_checkpoint`.
    path: checkpoint prefix to restore.
    model: the AVModel behind `checkpoint`; given, the checkpoint's banks
      and variable shapes are checked against it first.
    num_data: rows each memory bank must have (default: the model's).

  Raises:
    CheckpointMismatchError: for another dataset size, or a checkpoint that
      lacks or mis-shapes variables of this model (another architecture).
  """
  if model is not None:
    _check_compatible(path, model, model.variables,
                      model.num_data if num_data is None else num_data)
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


def resolve_checkpoint(run_or_checkpoint, checkpoint_subdir="checkpoints"):
  """Returns the checkpoint prefix a model_dir or checkpoint path names.

  Args:
    run_or_checkpoint: a training run's folder (its newest checkpoint is
      taken) or a checkpoint prefix (".../checkpoints/ckpt-1000").
    checkpoint_subdir: the checkpoint folder inside a run folder.

  Raises:
    FileNotFoundError: when it names neither.
  """
  if tf.io.gfile.isdir(run_or_checkpoint):
    path = tf.train.latest_checkpoint(
        os.path.join(run_or_checkpoint, checkpoint_subdir))
    if not path:
      raise FileNotFoundError(
          f"No checkpoint in {run_or_checkpoint}/{checkpoint_subdir}: is "
          f"{run_or_checkpoint} the --model_dir of a finished training run?")
    return path
  if not tf.io.gfile.exists(run_or_checkpoint + ".index"):
    raise FileNotFoundError(
        f"{run_or_checkpoint} is neither a training run folder nor a "
        "checkpoint prefix (such as <model_dir>/checkpoints/ckpt-1000).")
  return run_or_checkpoint


def initialize_from(model, path):
  """Starts a new run from an earlier run's checkpoint (staged training).

  Restores every model variable except the objective's own state, plus the
  objective state named in `model.objective.inherited_state`; optimizer
  state is not read.

  Args:
    model: the new run's built AVModel.
    path: checkpoint prefix of the earlier run.

  Raises:
    CheckpointMismatchError: another architecture or dataset size, or a
      checkpoint without the state the objective inherits.
  """
  objective = model.objective
  state_paths = {v.path for v in objective.state.values()}
  inherited = {}
  for name in objective.inherited_state:
    if name not in objective.state:
      raise ValueError(f"{type(objective).__name__} inherits '{name}' but has "
                       "no such state variable")
    inherited[name] = objective.state[name]
  saved = dict(tf.train.list_variables(path))
  for name, variable in inherited.items():
    if _checkpoint_key("model", variable.path) not in saved:
      raise CheckpointMismatchError(
          f"Checkpoint {path} has no objective state '{variable.path}' for "
          f"{type(objective).__name__} to inherit; --init_from must name a "
          "run whose objective has it (e.g. an AVID run for CMA).")
  variables = [v for v in model.variables if v.path not in state_paths]
  variables += list(inherited.values())
  _check_compatible(path, model, variables, model.num_data)
  checkpoint = tf.train.Checkpoint(
      model=_by_path(variables, "model"))
  status = checkpoint.restore(path)
  status.assert_existing_objects_matched()
  status.expect_partial()
