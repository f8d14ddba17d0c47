"""AVID objectives against a float64 NumPy reference (docs/methods.md)."""

import numpy as np
import pytest

from avid_tf.losses.avid import AVIDObjective
from avid_tf.memory.memory_bank import MemoryBank

TAU = 0.07


def _unit(x):
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _reference_term(anchors, bank, indices, negatives, partition):
  anchors = anchors.astype(np.float64)
  bank = bank.astype(np.float64)
  positive = np.sum(anchors * bank[indices], axis=1) / TAU
  negative = np.einsum("bd,bkd->bk", anchors, bank[negatives]) / TAU
  noise = negatives.shape[1] * partition
  log_h = positive - np.log(np.exp(positive) + noise)
  log_one_minus_h = np.log(noise) - np.log(np.exp(negative) + noise)
  return np.mean(-log_h - log_one_minus_h.sum(axis=1))


@pytest.fixture(name="setup")
def _setup():
  rng = np.random.default_rng(0)
  batch, dim, num_rows, num_negatives = 4, 6, 12, 5
  banks = {"video": MemoryBank(num_rows, dim, seed=0),
           "audio": MemoryBank(num_rows, dim, seed=1)}
  embeddings = {"video": _unit(rng.normal(size=(batch, dim))),
                "audio": _unit(rng.normal(size=(batch, dim)))}
  indices = np.array([3, 7, 0, 3], np.int32)
  negatives = rng.integers(0, num_rows, (batch, num_negatives)).astype(
      np.int32)
  return banks, embeddings, indices, negatives


def _reference_terms(setup, partition):
  banks, embeddings, indices, negatives = setup
  v, a = embeddings["video"], embeddings["audio"]
  v_bank, a_bank = banks["video"].bank.numpy(), banks["audio"].bank.numpy()
  return {
      "v2a": _reference_term(v, a_bank, indices, negatives, partition),
      "a2v": _reference_term(a, v_bank, indices, negatives, partition),
      "v2v": _reference_term(v, v_bank, indices, negatives, partition),
      "a2a": _reference_term(a, a_bank, indices, negatives, partition),
  }


@pytest.mark.parametrize(
    "cross, within, expected_weights",
    [(1.0, 0.0, {"v2a": 0.5, "a2v": 0.5}),
     (0.0, 1.0, {"v2v": 0.5, "a2a": 0.5}),
     (1.0, 1.0, {"v2a": 0.25, "a2v": 0.25, "v2v": 0.25, "a2a": 0.25}),
     (2.0, 6.0, {"v2a": 0.125, "a2v": 0.125, "v2v": 0.375, "a2a": 0.375})])
def test_loss_matches_reference_and_computes_only_weighted_terms(
    setup, cross, within, expected_weights):
  banks, embeddings, indices, negatives = setup
  partition = 40.0
  objective = AVIDObjective(cross, within, temperature=TAU)
  assert objective.term_weights == pytest.approx(expected_weights)
  scores = objective.scores(embeddings, banks, indices, negatives)
  assert list(scores) == list(expected_weights)
  for positive, negative in scores.values():
    assert positive.shape == (4, 1) and negative.shape == (4, 5)
  loss, term_losses = objective.loss(scores, partition)

  reference = _reference_terms(setup, partition)
  for term, value in term_losses.items():
    np.testing.assert_allclose(value.numpy(), reference[term], rtol=1e-5)
  expected = sum(w * reference[t] for t, w in expected_weights.items())
  np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_joint_is_average_of_cross_and_self(setup):
  banks, embeddings, indices, negatives = setup

  def loss_of(objective):
    scores = objective.scores(embeddings, banks, indices, negatives)
    return objective.loss(scores, 3.0)[0].numpy()

  joint = loss_of(AVIDObjective(1, 1))
  cross, self_avid = loss_of(AVIDObjective(1, 0)), loss_of(AVIDObjective(0, 1))
  np.testing.assert_allclose(joint, 0.5 * (cross + self_avid), rtol=1e-6)


def test_scores_use_the_same_negatives_for_every_term(setup):
  banks, embeddings, indices, negatives = setup
  scores = AVIDObjective(1, 1).scores(embeddings, banks, indices, negatives)
  a_bank = banks["audio"].bank.numpy()
  # v2a and a2a both score against audio rows at the same indices.
  np.testing.assert_allclose(
      scores["v2a"][1].numpy(),
      np.einsum("bd,bkd->bk", embeddings["video"], a_bank[negatives]) / TAU,
      rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      scores["a2a"][1].numpy(),
      np.einsum("bd,bkd->bk", embeddings["audio"], a_bank[negatives]) / TAU,
      rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"cross_modal_weight": -1.0}, ">= 0"),
    ({"cross_modal_weight": 0.0, "within_modal_weight": 0.0}, "both be 0"),
    ({"temperature": 0.0}, "temperature"),
])
def test_invalid_settings_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    AVIDObjective(**kwargs)
