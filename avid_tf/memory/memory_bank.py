"""Memory banks of per-instance embeddings, kept identical on every replica.

A bank holds one unit-norm row per training video. Rows are read as
positives and negatives of the NCE terms (avid_tf.losses) and refreshed
after every step with an exponential moving average of the new embeddings.

Distribution (docs/design.md, "Distribution"): every replica holds the full
bank. Negatives for the *global* batch are drawn with a stateless RNG seeded by
(seed, step) and each replica takes its own slice of rows, so a run on R
replicas uses exactly the negatives of a single-device run. The update is
computed from embeddings and indices all-gathered from every replica, so all
replicas compute the same rows and write them with the same scatter; the
bank variable has ONLY_FIRST_REPLICA aggregation, so tf.distribute
broadcasts replica 0's write to every copy. Shapes are static (no
tf.unique), so everything compiles under XLA.
"""

import keras
import tensorflow as tf

from avid_tf import errors

_RNG_ALGORITHM = "philox"  # Fixed so CPU, GPU and XLA draw the same numbers.
# Name of a bank's variable: its Keras path is "<bank layer name>/bank".
BANK_VARIABLE_NAME = "bank"


def replica_context_info():
  """Returns (replica_id, num_replicas) of the current replica context.

  Outside any strategy (or in the default strategy) this is (0, 1).
  """
  context = tf.distribute.get_replica_context()
  if context is None:  # Cross-replica context: act as a single replica.
    return tf.constant(0, tf.int32), 1
  replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
  return replica_id, context.num_replicas_in_sync


def all_gather_batch(tensor):
  """Concatenates a per-replica tensor along axis 0 over all replicas.

  Replicas are concatenated in replica-id order, so with a batch split into
  consecutive per-replica slices the result is the global batch. With one
  replica the tensor is returned unchanged.

  Args:
    tensor: a per-replica tensor [B, ...], the same B on every replica.

  Returns:
    The global tensor [B * num_replicas, ...].
  """
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return tensor
  return context.all_gather(tensor, axis=0)


def sample_negatives(indices, num_rows, num_negatives, seed, step,
                     exclude=None):
  """Draws negatives uniformly with replacement, never the anchor itself.

  The draw is made for the whole global batch from a stateless RNG seeded by
  (seed, step), and each replica keeps the rows of its own slice
  [replica_id * B, (replica_id + 1) * B), so the negatives do not depend on
  the number of replicas. Shapes are static (XLA-safe).

  Without `exclude`, for anchor index i a value is drawn uniformly from
  {0..N-2} and values >= i are shifted up by one, giving a uniform draw from
  {0..N-1} \\ {i}. With `exclude`, the excluded set E_i = {i} U exclude[i]
  (duplicates allowed) is sorted into distinct values e_0 < e_1 < ...; a
  value u is drawn uniformly from {0..N-|E_i|-1} and becomes
  u + #{j : e_j - j <= u}, the u-th row outside E_i.

  Args:
    indices: int tensor [B], this replica's instance indices in [0, N).
    num_rows: N, the number of instances (>= 2).
    num_negatives: K, negatives per anchor.
    seed: Python int seed.
    step: int scalar (Python or tensor), the training step.
    exclude: optional int tensor [B, m] of rows never to draw for each
      anchor besides the anchor itself (e.g. its positive set); values in
      [0, N). At least one row must remain outside E_i.

  Returns:
    int32 tensor [B, K] of negative indices.

  Raises:
    ValueError: if num_rows < 2, num_negatives < 1, or `exclude` leaves no
      row to draw (m + 1 >= N).
  """
  if num_rows < 2:
    raise ValueError(f"need at least 2 memory rows to draw negatives, got "
                     f"num_rows={num_rows}")
  if num_negatives < 1:
    raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
  indices = tf.cast(indices, tf.int32)
  local_batch = tf.shape(indices)[0]
  replica_id, num_replicas = replica_context_info()
  rng_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
  if exclude is None:
    draws = tf.random.stateless_uniform(
        [local_batch * num_replicas, num_negatives], seed=rng_seed, minval=0,
        maxval=num_rows - 1, dtype=tf.int32, alg=_RNG_ALGORITHM)
    draws = draws[replica_id * local_batch:(replica_id + 1) * local_batch]
    return draws + tf.cast(draws >= indices[:, None], tf.int32)

  exclude = tf.cast(exclude, tf.int32)
  num_excluded = exclude.shape[1] + 1
  if num_excluded >= num_rows:
    raise ValueError(
        f"cannot draw negatives outside {num_excluded} excluded rows of "
        f"{num_rows}: there must be at least one row left")
  excluded = tf.sort(tf.concat([indices[:, None], exclude], axis=1), axis=1)
  repeated = tf.concat([tf.zeros_like(excluded[:, :1], tf.bool),
                        excluded[:, 1:] == excluded[:, :-1]], axis=1)
  # Repeats move to the end with a value that never shifts a draw.
  excluded = tf.sort(tf.where(repeated, num_rows + num_excluded, excluded),
                     axis=1)
  num_distinct = num_excluded - tf.reduce_sum(
      tf.cast(repeated, tf.int32), axis=1, keepdims=True)
  # 53 random bits as an integer (XLA and the TF kernels agree on integer
  # draws, not on float64 ones), then exactly u / 2^53 in [0, 1): the floor
  # below is uniform to ~N / 2^53 for any realistic N.
  bits = tf.random.stateless_uniform(
      [local_batch * num_replicas, num_negatives], seed=rng_seed, minval=0,
      maxval=2**53, dtype=tf.int64, alg=_RNG_ALGORITHM)
  bits = bits[replica_id * local_batch:(replica_id + 1) * local_batch]
  uniform = tf.cast(bits, tf.float64) * 2.0**-53
  draws = tf.cast(tf.floor(uniform * tf.cast(num_rows - num_distinct,
                                             tf.float64)), tf.int32)
  below = excluded - tf.range(num_excluded, dtype=tf.int32)[None, :]
  shift = tf.reduce_sum(
      tf.cast(below[:, None, :] <= draws[:, :, None], tf.int32), axis=2)
  return draws + shift


def average_duplicates(indices, values):
  """Replaces each row of `values` by the mean over rows with the same index.

  Uses a static-shape [G, G] equality matrix (XLA-safe, no tf.unique). The
  product runs in float64 so that rows whose index occurs once come back
  bit-exact (no TF32 rounding on GPUs) and duplicates get the same,
  order-independent mean.

  Args:
    indices: int tensor [G].
    values: float tensor [G, D].

  Returns:
    float tensor [G, D] of the dtype of `values`.
  """
  same = tf.cast(tf.equal(indices[:, None], indices[None, :]), tf.float64)
  sums = tf.matmul(same, tf.cast(values, tf.float64))
  counts = tf.reduce_sum(same, axis=1, keepdims=True)
  return tf.cast(sums / counts, values.dtype)


class MemoryBank(keras.layers.Layer):
  """A bank of N unit-norm D-dimensional rows, one per training instance.

  The bank is a non-trainable float32 variable [N, D] initialised with
  N(0, 1) rows (stateless draw from `seed`, so every replica and every
  strategy start identical) then L2-normalised. Create it under the
  strategy scope it will be used with.

  Args:
    num_rows: N, the number of training instances (derive it from the
      dataset's metadata).
    dim: D, the embedding width.
    momentum: mu of the update m_i <- normalize(mu * m_i + (1 - mu) * x_i).
    seed: Python int seed of the initial rows.
    name: layer name.
  """

  def __init__(self, num_rows, dim=128, momentum=0.5, seed=0, name=None,
               **kwargs):
    super().__init__(name=name, **kwargs)
    if num_rows < 1 or dim < 1:
      raise errors.InvalidValueError(
          f"memory bank {self.name}: num_rows and dim must be "
          f"positive, got num_rows={num_rows}, dim={dim}")
    if not 0.0 <= momentum < 1.0:
      raise errors.InvalidValueError(
          f"memory bank {self.name}: momentum must be in [0, 1),"
                       f" got {momentum}")
    self.num_rows = int(num_rows)
    self.dim = int(dim)
    self.momentum = float(momentum)
    self.seed = int(seed)
    self.bank = self.add_weight(
        shape=(self.num_rows, self.dim),
        initializer=self._initial_rows,
        dtype="float32",
        trainable=False,
        autocast=False,
        aggregation="only_first_replica",
        name=BANK_VARIABLE_NAME)
    self.built = True

  def _initial_rows(self, shape, dtype=None):
    rows = tf.random.stateless_normal(
        shape, seed=[self.seed, 0], dtype=tf.float32, alg=_RNG_ALGORITHM)
    return tf.cast(tf.math.l2_normalize(rows, axis=1), dtype or tf.float32)

  def call(self, indices):
    return self.gather(indices)

  def gather(self, indices):
    """Returns the rows at `indices` (any int shape [...]) as [..., D]."""
    return tf.gather(self.bank.value, tf.cast(indices, tf.int32))

  def sample_negatives(self, indices, num_negatives, seed, step,
                       exclude=None):
    """Draws negatives for this replica's anchors; see `sample_negatives`."""
    return sample_negatives(indices, self.num_rows, num_negatives, seed, step,
                            exclude=exclude)

  def updated_rows(self, global_indices, global_embeddings):
    """Computes the new rows for a global batch without writing them.

    Args:
      global_indices: int tensor [G], the indices of the whole global batch.
      global_embeddings: float tensor [G, D], their embeddings.

    Returns:
      float32 [G, D]: normalize(mu * m_i + (1 - mu) * mean_x_i), where
      mean_x_i averages the embeddings of every occurrence of index i, so
      duplicated indices get identical rows.
    """
    global_indices = tf.cast(global_indices, tf.int32)
    embeddings = average_duplicates(
        global_indices, tf.cast(global_embeddings, tf.float32))
    mixed = (self.momentum * self.gather(global_indices)
             + (1.0 - self.momentum) * embeddings)
    return tf.math.l2_normalize(mixed, axis=1)

  def update(self, global_indices, global_embeddings):
    """Writes the EMA update of the rows of a global batch into the bank.

    Call it with the same (all-gathered) arguments on every replica.

    Args:
      global_indices: int tensor [G] of the whole global batch.
      global_embeddings: float tensor [G, D] of the whole global batch.

    Returns:
      The new rows, float32 [G, D] (row g is the bank's row
      global_indices[g] after the update).
    """
    global_indices = tf.cast(global_indices, tf.int32)
    rows = self.updated_rows(global_indices, global_embeddings)
    self.bank.value.scatter_update(tf.IndexedSlices(rows, global_indices))
    return rows

  def get_config(self):
    config = super().get_config()
    config.update(num_rows=self.num_rows, dim=self.dim,
                  momentum=self.momentum, seed=self.seed)
    return config
