"""Noise-contrastive estimation loss against memory-bank rows.

See docs/methods.md, "NCE loss".

For an anchor x with positive logits s_p and K negative logits s_j, where
s = x^T m / tau, and the partition-function estimate Z:

  h(s)  = exp(s) / (exp(s) + K Z)
  L_NCE = -(1/|P|) sum_p log h(s_p) - sum_j log(1 - h(s_j)),  batch mean.

With c = log(K Z): log h(s) = -softplus(c - s) and log(1 - h(s)) =
-softplus(s - c), which is how it is computed (stable for any logits).
"""

import tensorflow as tf

from avid_tf.losses import base


def nce_loss(positive_logits, negative_logits, partition):
  """Batch-mean NCE loss.

  Args:
    positive_logits: float [B, P], x^T m_p / tau for the P positives.
    negative_logits: float [B, K], x^T m_j / tau for the K negatives; K is
      this term's own number of negatives.
    partition: Z > 0, scalar (Python float or tensor).

  Returns:
    float32 scalar, the NCE loss averaged over the batch.
  """
  positive_logits = tf.cast(positive_logits, tf.float32)
  negative_logits = tf.cast(negative_logits, tf.float32)
  num_negatives = tf.cast(tf.shape(negative_logits)[1], tf.float32)
  log_noise = tf.math.log(num_negatives * tf.cast(partition, tf.float32))
  positive_term = tf.reduce_mean(
      tf.math.softplus(log_noise - positive_logits), axis=1)
  negative_term = tf.reduce_sum(
      tf.math.softplus(negative_logits - log_noise), axis=1)
  return tf.reduce_mean(positive_term + negative_term)


def weighted_nce_loss(scores, term_weights, partition):
  """Weighted sum of NCE terms sharing one Z.

  Args:
    scores: {term: (positive_logits [B, P], negative_logits [B, K])}.
    term_weights: {term: coefficient} for every term of `scores`.
    partition: Z > 0 (each term's h uses its own number of negatives).

  Returns:
    (loss, {term: term_loss}), float32 scalars.
  """
  term_losses = {term: nce_loss(positive, negative, partition)
                 for term, (positive, negative) in scores.items()}
  loss = tf.add_n([term_weights[term] * value
                   for term, value in term_losses.items()])
  return loss, term_losses


def estimate_partition(negative_logits):
  """Estimates Z as the mean of exp(s) over all negative logits.

  Under data parallelism average the result over replicas
  (all_reduce MEAN) so every replica gets the same Z.

  Args:
    negative_logits: float [B, K].

  Returns:
    float32 scalar.
  """
  return tf.reduce_mean(tf.exp(tf.cast(negative_logits, tf.float32)))


def resolve_partition(partition, negative_logits):
  """Returns Z, estimating and storing it on the first call.

  Z is estimated once, from `negative_logits` (the first evaluated term's),
  averaged over the replicas so every replica gets the same value, and then
  frozen. 0 in `partition` means "not estimated yet". The estimate is always
  computed (a scalar; static graph, XLA-safe) and the stored value kept when
  it is set.

  Args:
    partition: the objective's float32 scalar state variable.
    negative_logits: float [B, K] of this replica.

  Returns:
    float32 scalar Z, no gradient.
  """
  estimate = base.cross_replica_mean(
      tf.stop_gradient(estimate_partition(negative_logits)))
  current = tf.convert_to_tensor(partition.value)
  value = tf.where(current > 0, current, estimate)
  partition.assign(value)
  return value
