"""Tests of the retrieval metrics against brute-force float64 references."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from avid_tf.eval import retrieval


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _tied_features(rng, n, dim=8):
  """Rows of four +-1 entries: every cosine is an exact multiple of 1/4."""
  x = np.zeros((n, dim))
  for row in x:
    positions = rng.choice(dim, size=4, replace=False)
    row[positions] = rng.choice([-1.0, 1.0], size=4)
  return x


def _reference_instance(queries, keys, ks):
  similarity = _unit(queries) @ _unit(keys).T
  ranks = [np.sum(similarity[i] > similarity[i, i])
           for i in range(len(queries))]
  return {k: float(np.mean(np.array(ranks) < k)) for k in ks}


def _reference_class(queries, keys, query_labels, key_labels, ks,
                     leave_query_out):
  similarity = _unit(queries) @ _unit(keys).T
  hits = {k: [] for k in ks}
  aps = []
  for i in range(len(queries)):
    if query_labels[i] < 0:
      continue
    keep = key_labels >= 0
    if leave_query_out:
      keep[i] = False
    scores = similarity[i, keep]
    relevant = key_labels[keep] == query_labels[i]
    if not relevant.any():
      continue
    best = min(np.sum(scores > s) for s in scores[relevant])
    for k in ks:
      hits[k].append(best < k)
    aps.append(average_precision_score(relevant, scores))
  result = {f"r{k}": float(np.mean(hits[k])) for k in ks}
  result["map"] = float(np.mean(aps))
  result["num_queries"] = len(aps)
  return result


@pytest.mark.parametrize("tied", [False, True])
def test_instance_recall_matches_bruteforce(tied):
  rng = np.random.default_rng(0)
  if tied:
    queries, keys = _tied_features(rng, 40), _tied_features(rng, 40)
    keys[5] = keys[7]  # Duplicate keys tie exactly.
  else:
    queries = rng.normal(size=(40, 8))
    keys = queries + rng.normal(size=(40, 8))
  ks = (1, 5, 10)
  expected = _reference_instance(queries, keys, ks)
  assert retrieval.recall_at_k(queries, keys, ks) == expected
  assert retrieval.recall_at_k(queries, keys, ks, chunk_size=7) == expected
  if tied:  # Ties with the correct key count in the query's favour.
    assert expected[1] > 0 and retrieval.recall_at_k(keys, keys)[1] == 1.0


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("leave_query_out", [False, True])
def test_class_retrieval_matches_bruteforce_and_sklearn(tied,
                                                        leave_query_out):
  rng = np.random.default_rng(1)
  n = 30
  labels = rng.integers(0, 4, size=n)
  labels[[3, 11]] = -1  # Unknown labels take no part.
  labels[20] = 9  # A class of one item: no relevant key when left out.
  if tied:
    queries = _tied_features(rng, n)
    keys = queries if leave_query_out else _tied_features(rng, n)
  else:
    queries = rng.normal(size=(n, 6)) + labels[:, None] * 0.5
    keys = queries if leave_query_out else rng.normal(size=(n, 6))
  ks = (1, 5, 10)
  expected = _reference_class(queries, keys, labels, labels, ks,
                              leave_query_out)
  for chunk_size in (1, 4, 1000):
    got = retrieval.class_retrieval(queries, keys, labels, labels, ks,
                                    leave_query_out=leave_query_out,
                                    chunk_size=chunk_size)
    assert got["num_queries"] == expected["num_queries"]
    for key in ("r1", "r5", "r10"):
      assert got[key] == expected[key]
    assert got["map"] == pytest.approx(expected["map"], rel=1e-12)
  assert expected["num_queries"] == n - 2 - int(leave_query_out)


def test_average_precision_of_known_rankings():
  # One query against five keys; relevant keys at ranks 1 and 3 -> AP =
  # (1/1 + 2/3) / 2. A tie of a relevant and an irrelevant key at the top
  # ranks the relevant one second: AP = 1/2.
  query = np.array([[1.0, 0.0]])
  keys = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.1, 1.0],
                   [-1.0, 0.0]])
  result = retrieval.class_retrieval(query, keys, [0], [0, 1, 0, 1, 1])
  assert result["map"] == pytest.approx((1 + 2 / 3) / 2)
  assert result["r1"] == 1.0
  tied = retrieval.class_retrieval(query, np.array([[1.0, 0.0], [2.0, 0.0]]),
                                   [0], [0, 1])
  assert tied["map"] == pytest.approx(0.5)
  assert tied["r1"] == 1.0  # Nothing is strictly more similar.


def test_retrieval_report_has_every_direction():
  rng = np.random.default_rng(2)
  video = rng.normal(size=(12, 4))
  audio = video + 0.1 * rng.normal(size=(12, 4))
  labels = np.arange(12) % 3
  report = retrieval.retrieval_report(video, audio, labels, ks=(1, 5))
  assert report["num_items"] == 12
  assert report["chance_r1"] == pytest.approx(1 / 12)
  assert report["instance"]["v2a"] == dict(
      {f"r{k}": v for k, v in retrieval.recall_at_k(video, audio,
                                                    (1, 5)).items()},
      chance={"r1": 1 / 12, "r5": 5 / 12})
  assert set(report["class"]) == {"v2v", "a2a", "v2a", "a2v"}
  assert report["class"]["v2v"]["num_queries"] == 12
  assert "class" not in retrieval.retrieval_report(video, audio)
  with pytest.raises(ValueError, match="instance retrieval"):
    retrieval.recall_at_k(video, audio[:5])


def test_recall_at_k_of_k_at_least_n_is_not_applicable():
  # 4 items: R@5 and R@10 were 1.0 whatever the features.
  rng = np.random.default_rng(3)
  video, audio = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
  labels = np.array([0, 0, 1, 1])
  report = retrieval.retrieval_report(video, audio, labels, ks=(1, 3, 5, 10))
  v2a = report["instance"]["v2a"]
  assert v2a["r5"] is None and v2a["r10"] is None
  assert v2a["r3"] is not None
  assert v2a["chance"] == {"r1": 0.25, "r3": 0.75, "r5": None, "r10": None}
  assert set(v2a["not_applicable"]) == {"r5", "r10"}
  assert "k = 5 >= 4 keys" in v2a["not_applicable"]["r5"]
  # Within-modal class retrieval ranks the 3 other items: r3 says nothing.
  v2v = report["class"]["v2v"]
  assert v2v["r3"] is None and set(v2v["not_applicable"]) == {
      "r3", "r5", "r10"}
  # One of the 3 keys shares the query's class: chance R@1 = 1/3, and the
  # expected AP of a random order of 3 keys with 1 relevant is H_3 / 3.
  assert v2v["chance"]["r1"] == pytest.approx(1 / 3)
  assert v2v["chance"]["map"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
  # Cross-modal class retrieval keeps the query's pair: 2 of 4 keys.
  assert report["class"]["v2a"]["chance"]["r1"] == pytest.approx(0.5)
  assert report["class"]["v2a"]["r3"] == 1.0
