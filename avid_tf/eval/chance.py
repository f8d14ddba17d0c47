"""Chance levels of the evaluation figures, and the figures that mean nothing.

Every probe, retrieval and fine-tuning figure is reported beside what a
model that learnt nothing scores:
  * top-k accuracy (probes, fine-tuning): the best constant guess, the k
    most common classes of the test labels, so chance is their summed
    frequency (1/C for top-1 on balanced classes; higher, and honest, on
    unbalanced ones). Top-k with k >= the number of classes is not
    applicable: every label is always within the top k.
  * instance Recall@k (query i's key is item i): the correct key's rank is
    uniform over the N keys, so chance is k / N. Recall@k with k >= N is not
    applicable: every key is within the top k.
  * class-level Recall@k of a query with n keys of its class among M: a
    random order puts none of them in the top k with probability
    C(M - n, k) / C(M, k); average precision has expectation
    (H_M + (n - 1) / (M - 1) * (M - H_M)) / M (H_M the M-th harmonic
    number). Both are averaged over the queries.
A figure that is not applicable is None (JSON null) with a reason beside
it, and "n/a" on the console.
"""

import collections

import numpy as np


def not_applicable(k, count, what):
  """Why a top-k figure says nothing, or None when it does.

  Args:
    k: the cut-off.
    count: the classes (or keys) to choose from.
    what: their name, e.g. "classes" or "keys".

  Returns:
    A one-line reason when k >= count, else None.
  """
  if k < count:
    return None
  return (f"k = {k} >= {count} {what}: the right one is always within the "
          f"top {k}")


def top_k(labels, k, num_classes):
  """Chance top-k accuracy: the summed frequency of the k commonest labels.

  Args:
    labels: the test labels (any shape; one per scored item).
    k: the cut-off.
    num_classes: classes the classifier chooses from.

  Returns:
    The chance level in [0, 1], or None when k >= num_classes (not
    applicable) or there are no labels.
  """
  labels = np.asarray(labels).reshape(-1)
  if not_applicable(k, num_classes, "classes") or not labels.size:
    return None
  counts = sorted(collections.Counter(labels.tolist()).values(), reverse=True)
  return float(sum(counts[:k]) / labels.size)


def instance_recall(k, num_keys):
  """Chance instance Recall@k among `num_keys` keys; None when k >= N."""
  if not_applicable(k, num_keys, "keys"):
    return None
  return k / num_keys


def class_recall(num_relevant, num_keys, k):
  """Chance class-level Recall@k, averaged over queries.

  Args:
    num_relevant: int array, keys of each query's class.
    num_keys: keys every query ranks.
    k: the cut-off.

  Returns:
    The mean over queries of 1 - C(M - n, k) / C(M, k), or None when
    k >= num_keys or there is no query.
  """
  num_relevant = np.asarray(num_relevant, np.int64).reshape(-1)
  if not_applicable(k, num_keys, "keys") or not num_relevant.size:
    return None
  # C(M - n, k) / C(M, k) = prod_{i < k} (M - n - i) / (M - i).
  steps = np.arange(k)
  misses = np.prod(np.clip(num_keys - num_relevant[:, None] - steps, 0, None)
                   / (num_keys - steps), axis=1)
  return float(np.mean(1.0 - misses))


def class_average_precision(num_relevant, num_keys):
  """Expected average precision of a random order, averaged over queries."""
  num_relevant = np.asarray(num_relevant, np.float64).reshape(-1)
  if not num_relevant.size or num_keys < 1:
    return None
  harmonic = np.sum(1.0 / np.arange(1, num_keys + 1))
  if num_keys == 1:
    return 1.0
  expected = (harmonic + (num_relevant - 1) / (num_keys - 1)
              * (num_keys - harmonic)) / num_keys
  return float(np.mean(expected))


def format_figure(value, chance_level=None):
  """'45.0%', '45.0% (chance 25.0%)' or 'n/a' for the console."""
  if value is None:
    return "n/a"
  text = f"{value:.1%}"
  if chance_level is not None:
    text += f" (chance {chance_level:.1%})"
  return text
