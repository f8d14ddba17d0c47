"""NCE loss against a float64 NumPy reference (docs/methods.md, "NCE loss")."""

import numpy as np
import pytest
import tensorflow as tf

from avid_tf.losses import nce


def _reference_nce(positive, negative, partition):
  positive = positive.astype(np.float64)
  negative = negative.astype(np.float64)
  noise = negative.shape[1] * partition
  h_positive = np.exp(positive) / (np.exp(positive) + noise)
  one_minus_h_negative = noise / (np.exp(negative) + noise)
  per_anchor = (-np.mean(np.log(h_positive), axis=1)
                - np.sum(np.log(one_minus_h_negative), axis=1))
  return per_anchor.mean()


@pytest.mark.parametrize("num_positives", [1, 3])
@pytest.mark.parametrize("num_negatives", [1, 7, 64])
@pytest.mark.parametrize("partition", [0.3, 25.0, 4000.0])
def test_nce_loss_matches_float64_reference(num_positives, num_negatives,
                                            partition):
  rng = np.random.default_rng(num_positives * 100 + num_negatives)
  # Scores of unit vectors at tau = 0.07 lie in [-1/0.07, 1/0.07].
  positive = rng.uniform(-14.3, 14.3, (5, num_positives)).astype(np.float32)
  negative = rng.uniform(-14.3, 14.3, (5, num_negatives)).astype(np.float32)
  loss = nce.nce_loss(positive, negative, partition)
  assert loss.dtype == tf.float32 and loss.shape == ()
  np.testing.assert_allclose(
      loss.numpy(), _reference_nce(positive, negative, partition), rtol=2e-6)


def test_nce_loss_is_finite_where_exp_overflows_float32():
  positive = np.array([[95.0], [-90.0]], np.float32)
  negative = np.array([[92.0, -100.0], [0.0, 91.0]], np.float32)
  loss = nce.nce_loss(positive, negative, 1.5)
  np.testing.assert_allclose(
      loss.numpy(), _reference_nce(positive, negative, 1.5), rtol=1e-6)


def test_nce_loss_gradient_matches_analytic_form():
  # d/ds_p = -(1 - h(s_p)) / (P B), d/ds_j = h(s_j) / B.
  rng = np.random.default_rng(3)
  positive = tf.constant(rng.normal(size=(4, 2)) * 3, tf.float32)
  negative = tf.constant(rng.normal(size=(4, 5)) * 3, tf.float32)
  partition = 2.0
  with tf.GradientTape() as tape:
    tape.watch([positive, negative])
    loss = nce.nce_loss(positive, negative, partition)
  grad_positive, grad_negative = tape.gradient(loss, [positive, negative])

  noise = 5 * partition
  h_positive = np.exp(positive.numpy().astype(np.float64))
  h_positive /= h_positive + noise
  h_negative = np.exp(negative.numpy().astype(np.float64))
  h_negative /= h_negative + noise
  np.testing.assert_allclose(grad_positive.numpy(), -(1 - h_positive) / 8,
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grad_negative.numpy(), h_negative / 4,
                             rtol=1e-5, atol=1e-7)


def test_estimate_partition_is_mean_exp_of_negatives():
  rng = np.random.default_rng(4)
  negative = rng.uniform(-14.3, 14.3, (6, 9)).astype(np.float32)
  estimate = nce.estimate_partition(negative)
  assert estimate.dtype == tf.float32 and estimate.shape == ()
  np.testing.assert_allclose(
      estimate.numpy(), np.exp(negative.astype(np.float64)).mean(), rtol=1e-6)
