"""The interface every training objective implements (docs/design.md).

An objective is a Keras layer that AVModel calls once per training step:

  loss, logs = objective(embeddings, banks, indices, step, training=True)

It draws its own memory candidates (avid_tf.memory.memory_bank), owns its
state (the NCE partition estimate Z, CMA positive sets, score statistics)
as Keras variables, and returns this replica's batch-mean loss with a dict
of float32 scalars to log. AVModel adds weight decay, divides by the number
of replicas, applies the gradients and updates the banks; a new method
therefore needs a new objective and a gin file, never a new `train_step`.
"""

import keras
import tensorflow as tf

# Every objective layer gets this name unless told otherwise, so that the
# checkpoint paths of its state ("objective/<variable>") are the same for
# every method and a later stage can inherit state from an earlier one.
OBJECTIVE_NAME = "objective"


class Objective(keras.layers.Layer):
  """Base class of the objectives AVModel trains with.

  Subclasses implement `call` and create their state with `add_state` in
  `__init__` (AVModel builds objectives under the strategy scope, so the
  variables are mirrored and identical on every replica).

  Attributes:
    inherited_state: names of the state variables (the `name` given to
      `add_state`) that `train(init_from=...)` copies from the earlier run,
      e.g. ("partition",) for CMA, which keeps the AVID stage's Z.
  """

  inherited_state = ()

  def __init__(self, name=OBJECTIVE_NAME, **kwargs):
    # Scores and losses are always float32, whatever the global policy.
    kwargs.setdefault("dtype", "float32")
    super().__init__(name=name, **kwargs)
    self._state = {}
    self.built = True

  def add_state(self, name, shape, dtype="float32", initializer="zeros"):
    """Creates a non-trainable state variable, identical on every replica.

    Args:
      name: variable name, unique within the objective; its checkpoint path
        is "<objective name>/<name>".
      shape: variable shape.
      dtype: variable dtype.
      initializer: Keras initializer (name or callable).

    Returns:
      The `keras.Variable`.
    """
    if name in self._state:
      raise ValueError(f"{self.name} already has a state variable '{name}'")
    variable = self.add_weight(
        shape=shape, initializer=initializer, dtype=dtype, trainable=False,
        autocast=False, aggregation="only_first_replica", name=name)
    self._state[name] = variable
    return variable

  @property
  def state(self):
    """{name: variable} of the state created with `add_state`."""
    return dict(self._state)

  def __call__(self, embeddings, banks, indices, step, training=True):
    # Keras' Layer.__call__ takes only tensors as positional arguments (the
    # banks are layers) and would cast inputs under a mixed policy; the
    # objective's state is created in __init__, so nothing else is needed.
    return self.call(embeddings, banks, indices, step, training=training)

  def call(self, embeddings, banks, indices, step, training=True):
    """Computes the loss of one step on this replica.

    Args:
      embeddings: {"video", "audio"} float32 [B, D], unit norm, this
        replica's batch.
      banks: {"video", "audio"} `avid_tf.memory.memory_bank.MemoryBank`,
        holding the rows before this step's update.
      indices: int32 [B], memory rows of the batch.
      step: the optimizer step, int scalar tensor (seed of the draws).
      training: Keras training flag.

    Returns:
      (loss, logs): float32 scalar, this replica's batch-mean loss; dict of
      float32 scalars merged into the step's logs.
    """
    raise NotImplementedError

  def callbacks(self, run):
    """Extra Keras callbacks this objective needs during training.

    Args:
      run: `avid_tf.training.run_info.RunInfo` of the run (bank size,
        steps per epoch, strategy, log folder, labels and faulty flags of
        the memory rows when the dataset has them). Epoch-level scalars a
        callback adds to the `logs` dict of `on_epoch_end` are written to
        TensorBoard at the global step by the run's logger, which runs
        after the objective's callbacks.

    Returns:
      A list of `keras.callbacks.Callback`; none by default.
    """
    del run
    return []


def cross_replica_sum(value):
  """Sums a value over the replicas (the value itself on one replica)."""
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return value
  return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def cross_replica_mean(value):
  """Averages a value over the replicas (the value itself on one replica)."""
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return value
  return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)
