"""Builds the tf.distribute strategy a run trains under."""

import tensorflow as tf

from avid_tf import errors

STRATEGIES = ("default", "mirrored", "multi_worker")


def get_strategy(name="default", devices=None):
  """Returns a distribution strategy by name.

  Args:
    name: "default" (one device), "mirrored" (all local GPUs, or `devices`),
      or "multi_worker" (MultiWorkerMirroredStrategy configured by the
      TF_CONFIG environment variable).
    devices: optional device names for "mirrored", e.g. ["/cpu:0", "/cpu:1"].

  Returns:
    A `tf.distribute.Strategy`.

  Raises:
    ValueError: for an unknown name.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy(devices=devices)
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise errors.InvalidValueError(
      f"Unknown strategy '{name}'; choose one of {STRATEGIES}.")


def is_chief(strategy):
  """Whether this process writes the run's files (checkpoints, logs, config).

  Only one worker of a multi-worker run is the chief; single-process
  strategies always are.
  """
  return bool(strategy.extended.should_checkpoint)


def num_input_pipelines(strategy):
  """Input pipelines `distribute_datasets_from_function` builds: one per worker.
  """
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return 1
  cluster = strategy.cluster_resolver.cluster_spec().as_dict()
  return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))
