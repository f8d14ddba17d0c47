"""Checkpoints of a run: every model and optimizer variable, keyed by path.

Keras 3 layers kept in Python lists are invisible to TF's object-graph
checkpointing, so the run's checkpoint maps each variable's unique Keras path
to the variable instead. Writes go through `tf.train.CheckpointManager`,
which renames complete files into place.

In a multi-worker run every worker takes part in every save, but only the
chief's checkpoints are kept: the others write to a temporary folder of their
own (`worker_directory`) that is deleted afterwards, and every worker restores
from the chief's folder.

Damaged checkpoints (files truncated or corrupted after they were written,
e.g. by a full disk or an interrupted copy) are never deleted. A resumed run
(`restore_newest`) continues from the newest checkpoint that reads
completely, warns once per damaged one and sets the damaged files aside
under another name, out of the checkpoint manager's bookkeeping, so that
later saves neither overwrite nor delete them. Read-only users of a run
(export, evaluation, `init_from`, through `resolve_checkpoint`) skip the
damaged ones with the same warning and leave the folder as it is.
"""

import os

from absl import logging
import tensorflow as tf

from avid_tf import errors
from avid_tf.training import strategy as strategy_lib


# Suffix of the prefix a damaged checkpoint's files are renamed to.
DAMAGED_SUFFIX = ".damaged"


class CheckpointMismatchError(errors.UserError, ValueError):
  """Raised when a checkpoint does not fit the dataset or the model."""


class DamagedCheckpointError(errors.UserError):
  """Raised when the checkpoint asked for, or every one of a run, is damaged."""


def saved_shapes(path):
  """{variable name: shape} of the checkpoint at prefix `path`.

  `tf.train.list_variables` would first ask whether `path` is a folder, and
  some file systems (ram://) say yes for any prefix of stored names.
  """
  return tf.compat.v1.train.NewCheckpointReader(
      path).get_variable_to_shape_map()


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
  saved = saved_shapes(path)
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
  shape = saved_shapes(path).get(
      _checkpoint_key("model", bank_path))
  if shape is None or len(shape) != 2:
    raise CheckpointMismatchError(
        f"Checkpoint {path} holds no memory bank '{bank_path}': is it an "
        "avid_tf pretraining checkpoint?")
  return shape[0]


def saved_step(path):
  """The optimizer step a checkpoint was saved at, or None without one.

  A converted official checkpoint holds the model only.
  """
  # Not tf.train.load_checkpoint: see `saved_shapes`.
  reader = tf.compat.v1.train.NewCheckpointReader(path)
  key = _checkpoint_key("optimizer", "iteration")
  return int(reader.get_tensor(key)) if reader.has_tensor(key) else None


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
    raise CheckpointMismatchError(
        f"Checkpoint {path} does not match this model (another architecture "
        f"or width?): {_first_line(e)}") from e


def checkpoint_candidates(directory):
  """Checkpoint prefixes a folder's checkpoint state lists, newest first."""
  state = tf.train.get_checkpoint_state(directory)
  if state is None:
    return []
  latest = state.model_checkpoint_path
  return [latest] + [path for path in reversed(
      state.all_model_checkpoint_paths) if path != latest]


def unreadable_reason(path):
  """Returns why the checkpoint `path` does not read completely, or None.

  Reads every saved tensor once (checksums included), so it costs a full
  read of the checkpoint.
  """
  try:
    reader = tf.compat.v1.train.NewCheckpointReader(path)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  # Damaged files raise many kinds of errors: IndexError ("Read less bytes
  # than requested"), DataLossError (checksums), NotFoundError, ...
  except Exception as error:  # pylint: disable=broad-except
    return f"{type(error).__name__}: {_first_line(error)}"
  return None


def _first_line(error):
  lines = str(error).strip().splitlines()
  return lines[0][:300] if lines else "no message"


def _checkpoint_files(prefix):
  return (tf.io.gfile.glob(prefix + ".index") +
          tf.io.gfile.glob(prefix + ".data-?????-of-?????"))


def _set_aside(prefix):
  """Renames a damaged checkpoint's files to a free `<prefix>.damaged[-n]`.

  Returns:
    The new prefix.
  """
  target = prefix + DAMAGED_SUFFIX
  number = 1
  while _checkpoint_files(target):
    number += 1
    target = f"{prefix}{DAMAGED_SUFFIX}-{number}"
  for path in _checkpoint_files(prefix):
    tf.io.gfile.rename(path, target + path[len(prefix):])
  return target


def _forget(directory, damaged, restored):
  """Rewrites the checkpoint state without `damaged`, `restored` the newest.

  A `tf.train.CheckpointManager` created afterwards then numbers, keeps and
  deletes checkpoints as if the damaged ones had never been written.
  """
  state = tf.train.get_checkpoint_state(directory)
  timestamps = list(state.all_model_checkpoint_timestamps) or [None] * len(
      state.all_model_checkpoint_paths)
  kept = [(path, timestamp) for path, timestamp in zip(
      state.all_model_checkpoint_paths, timestamps) if path not in damaged]
  tf.__internal__.train.update_checkpoint_state(
      directory, model_checkpoint_path=restored,
      all_model_checkpoint_paths=[path for path, _ in kept],
      all_model_checkpoint_timestamps=(
          [timestamp for _, timestamp in kept]
          if state.all_model_checkpoint_timestamps else None),
      last_preserved_timestamp=state.last_preserved_timestamp,
      save_relative_paths=True)


def restore_newest(checkpoint, directory, model=None, num_data=None,
                   set_aside_damaged=False):
  """Restores the newest checkpoint of `directory` that reads completely.

  A checkpoint whose restore fails is read once more in full: if it reads,
  the failure is the caller's (another model or dataset) and is raised; if
  not, it is damaged and the next older one is tried. Each damaged one
  skipped gets a one-line warning. Call this before creating the folder's
  `tf.train.CheckpointManager`, which reads the checkpoint state once.

  Args:
    checkpoint: a checkpoint from `make_checkpoint`.
    directory: the run's checkpoint folder.
    model: the AVModel behind `checkpoint` (see `restore`).
    num_data: rows each memory bank must have (see `restore`).
    set_aside_damaged: rename the damaged checkpoints newer than the
      restored one (see `DAMAGED_SUFFIX`) and drop them from the checkpoint
      state (the chief of a resumed run); otherwise leave them.

  Returns:
    The restored prefix, or None when the folder lists no checkpoint.

  Raises:
    CheckpointMismatchError: see `restore`.
    DamagedCheckpointError: every checkpoint listed is damaged.
  """
  damaged = []
  for path in checkpoint_candidates(directory):
    try:
      restore(checkpoint, path, model, num_data)
    except Exception:  # pylint: disable=broad-except
      reason = unreadable_reason(path)
      if reason is None:
        raise
      damaged.append((path, reason))
      continue
    for bad, reason in damaged:
      kept = _set_aside(bad) if set_aside_damaged else bad
      logging.warning("Checkpoint %s is damaged (%s); restored %s instead. "
                      "Its files are kept as %s.*", bad, reason, path, kept)
    if damaged and set_aside_damaged:
      _forget(directory, {bad for bad, _ in damaged}, path)
    return path
  if damaged:
    raise DamagedCheckpointError(
        f"No checkpoint in {directory} reads completely ("
        + "; ".join(f"{path}: {reason}" for path, reason in damaged)
        + "): restore the files, or use a new --model_dir.")
  return None


def resolve_checkpoint(run_or_checkpoint, checkpoint_subdir="checkpoints"):
  """Returns the checkpoint prefix a model_dir or checkpoint path names.

  A run folder gives its newest checkpoint that reads completely; newer
  damaged ones are skipped with a one-line warning each and left in place
  (the run may still be training). Each candidate is read in full to check
  it, so the caller's restore reads the checkpoint a second time.

  Args:
    run_or_checkpoint: a training run's folder or a checkpoint prefix
      (".../checkpoints/ckpt-1000").
    checkpoint_subdir: the checkpoint folder inside a run folder.

  Raises:
    FileNotFoundError: when it names neither.
    DamagedCheckpointError: the prefix named, or every checkpoint of the
      run, does not read completely.
  """
  if tf.io.gfile.isdir(run_or_checkpoint):
    candidates = checkpoint_candidates(
        os.path.join(run_or_checkpoint, checkpoint_subdir))
    if not candidates:
      raise FileNotFoundError(
          f"No checkpoint in {run_or_checkpoint}/{checkpoint_subdir}: is "
          f"{run_or_checkpoint} the --model_dir of a finished training run?")
  elif tf.io.gfile.exists(run_or_checkpoint + ".index"):
    candidates = [run_or_checkpoint]
  else:
    raise FileNotFoundError(
        f"{run_or_checkpoint} is neither a training run folder nor a "
        "checkpoint prefix (such as <model_dir>/checkpoints/ckpt-1000).")
  damaged = []
  for path in candidates:
    reason = unreadable_reason(path)
    if reason is None:
      for bad, bad_reason in damaged:
        logging.warning("Checkpoint %s is damaged (%s); using %s instead "
                        "(the damaged files are left as they are).", bad,
                        bad_reason, path)
      return path
    damaged.append((path, reason))
  raise DamagedCheckpointError(
      f"No checkpoint of {run_or_checkpoint} reads completely ("
      + "; ".join(f"{path}: {reason}" for path, reason in damaged) + ").")


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
  saved = saved_shapes(path)
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
