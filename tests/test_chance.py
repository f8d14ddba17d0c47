"""Chance levels against hand computations and exhaustive enumeration."""

import itertools

import numpy as np
import pytest

from avid_tf.eval import chance


def test_top_k_chance_is_the_frequency_of_the_commonest_classes():
  # 3 of 6 test videos are class 0, 2 are class 1, 1 is class 2.
  labels = [0, 1, 0, 2, 1, 0]
  assert chance.top_k(labels, 1, num_classes=4) == pytest.approx(3 / 6)
  assert chance.top_k(labels, 2, num_classes=4) == pytest.approx(5 / 6)
  assert chance.top_k(labels, 3, num_classes=4) == pytest.approx(6 / 6)
  # Balanced classes: 1 / C.
  assert chance.top_k(np.arange(8) % 4, 1, num_classes=4) == 0.25
  # k >= C: not applicable.
  assert chance.top_k(labels, 4, num_classes=4) is None
  assert "k = 5 >= 4 classes" in chance.not_applicable(5, 4, "classes")
  assert chance.not_applicable(3, 4, "classes") is None


def test_instance_recall_chance_is_k_over_n():
  assert chance.instance_recall(1, 4) == 0.25
  assert chance.instance_recall(3, 4) == 0.75
  assert chance.instance_recall(4, 4) is None


def _enumerated(relevant, k):
  """Mean hit@k and AP over every order of the keys (ties impossible)."""
  hits, precisions = [], []
  for order in itertools.permutations(range(len(relevant))):
    ranked = np.asarray(relevant)[list(order)]
    hits.append(ranked[:k].any())
    positions = np.flatnonzero(ranked) + 1
    precisions.append(np.mean(np.arange(1, len(positions) + 1) / positions))
  return np.mean(hits), np.mean(precisions)


@pytest.mark.parametrize("num_relevant, num_keys, k", [
    (1, 5, 1), (2, 5, 2), (3, 6, 2), (1, 4, 3), (4, 6, 1)])
def test_class_retrieval_chance_matches_every_order(num_relevant, num_keys,
                                                    k):
  relevant = [True] * num_relevant + [False] * (num_keys - num_relevant)
  recall, average_precision = _enumerated(relevant, k)
  assert chance.class_recall([num_relevant], num_keys, k) == pytest.approx(
      recall)
  assert chance.class_average_precision([num_relevant], num_keys) == (
      pytest.approx(average_precision))


def test_format_figure():
  assert chance.format_figure(None) == "n/a"
  assert chance.format_figure(0.5, 0.25) == "50.0% (chance 25.0%)"
  assert chance.format_figure(0.5) == "50.0%"
