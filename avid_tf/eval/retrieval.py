"""Instance- and class-level retrieval between video and audio features.

All similarities are cosine similarities computed in float64, one block of
queries at a time (`chunk_size` rows against all keys), so that 10k x 10k
retrieval never holds the full similarity matrix.

Conventions:
  * Instance retrieval (cross-modal, v->a and a->v): query i's correct key
    is key i. Its rank is the number of keys strictly more similar than the
    correct one, so a tie with the correct key counts in the query's
    favour; Recall@k is the fraction of queries of rank < k.
  * Class-level Recall@k: a query is a hit when at least one key of its
    class has rank < k (rank as above: the number of keys strictly more
    similar than that key).
  * Average precision of one query: the mean, over the keys of its class,
    of the precision at that key, where the precision counts every key at
    least as similar (ties are ranked ahead, as in
    `sklearn.metrics.average_precision_score`). mAP is the mean over
    queries.
  * Within-modal retrieval (v->v, a->a) leaves the query itself out of the
    keys; cross-modal class-level retrieval keeps the query's own pair,
    which is a key of its class.
  * Queries with no key of their class, and items with label < 0
    (unknown), take no part in class-level figures.
  * Recall@k with k at least the number of keys a query ranks is None (not
    applicable: every key is within the top k); each direction's
    "not_applicable" says why, and its "chance" holds the chance level of
    every figure (`avid_tf.eval.chance`).
"""

import numpy as np

from avid_tf.eval import chance

DEFAULT_KS = (1, 5, 10)
DEFAULT_CHUNK_SIZE = 1024


def _unit_rows(x):
  x = np.asarray(x, np.float64)
  if x.ndim != 2:
    raise ValueError(f"features must be [N, D], got shape {x.shape}")
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.maximum(norms, 1e-12)


def _similarity_blocks(queries, keys, chunk_size):
  """Yields (first query row, float64 cosine similarities [rows, N keys])."""
  queries, keys = _unit_rows(queries), _unit_rows(keys)
  if queries.shape[1] != keys.shape[1]:
    raise ValueError(f"queries have {queries.shape[1]} dimensions, keys "
                     f"{keys.shape[1]}")
  chunk_size = max(1, int(chunk_size))
  for start in range(0, len(queries), chunk_size):
    yield start, queries[start:start + chunk_size] @ keys.T


def recall_at_k(queries, keys, ks=(1, 5), chunk_size=DEFAULT_CHUNK_SIZE):
  """Instance Recall@k of retrieving key i for query i by cosine similarity.

  Args:
    queries: float array [N, D]; row i is the query of item i.
    keys: float array [N, D]; row i is the correct key of query i.
    ks: the cut-offs to report.
    chunk_size: query rows per similarity block.

  Returns:
    Dict k -> fraction of queries whose own key ranks within the top k
    (rank = number of keys strictly more similar than the correct one);
    None for k >= N, where every query's key is within the top k.
  """
  if len(queries) != len(keys):
    raise ValueError(f"{len(queries)} queries but {len(keys)} keys: instance "
                     "retrieval pairs query i with key i")
  ranks = []
  for start, block in _similarity_blocks(queries, keys, chunk_size):
    rows = np.arange(len(block))
    own = block[rows, start + rows]
    ranks.append(np.sum(block > own[:, None], axis=1))
  ranks = np.concatenate(ranks) if ranks else np.zeros([0], np.int64)
  return {k: None if chance.not_applicable(k, len(keys), "keys")
          else float(np.mean(ranks < k)) for k in ks}


def _average_precision_rows(block, relevant):
  """AP of each row of a similarity block; ties ranked ahead (as sklearn)."""
  order = np.argsort(-block, axis=1, kind="stable")
  scores = np.take_along_axis(block, order, axis=1)
  hits = np.take_along_axis(relevant, order, axis=1)
  cumulative_hits = np.cumsum(hits, axis=1)
  n = block.shape[1]
  positions = np.arange(n)
  # The last position of each run of equal scores: the precision of every
  # key in a tie is taken after all of them.
  is_last = np.ones_like(hits)
  is_last[:, :-1] = scores[:, :-1] != scores[:, 1:]
  last = np.where(is_last, positions, n)
  last = np.minimum.accumulate(last[:, ::-1], axis=1)[:, ::-1]
  precision = (np.take_along_axis(cumulative_hits, last, axis=1)
               / (last + 1.0))
  num_relevant = hits.sum(axis=1)
  return np.sum(precision * hits, axis=1) / np.maximum(num_relevant, 1)


def class_retrieval(queries, keys, query_labels, key_labels,
                    ks=DEFAULT_KS, leave_query_out=False,
                    chunk_size=DEFAULT_CHUNK_SIZE):
  """Class-level Recall@k and mAP (see the module docstring).

  Args:
    queries: float array [N, D].
    keys: float array [M, D].
    query_labels: int array [N]; < 0 means unknown.
    key_labels: int array [M]; < 0 means unknown.
    ks: Recall@k cut-offs.
    leave_query_out: drop key i from the keys of query i (within-modal
      retrieval, queries and keys the same items; needs N == M).
    chunk_size: query rows per similarity block.

  Returns:
    Dict with "r{k}" per cut-off, "map", "num_queries" (the queries that
    have at least one key of their class), "chance" ({"r{k}", "map"}: their
    chance levels) and, when some r{k} is not applicable (k >= the keys a
    query ranks), "not_applicable" ({"r{k}": why}); figures are None when
    no query has a key of its class, or when not applicable.
  """
  query_labels = np.asarray(query_labels).reshape(-1)
  key_labels = np.asarray(key_labels).reshape(-1)
  if len(query_labels) != len(queries) or len(key_labels) != len(keys):
    raise ValueError("one label per query and per key is needed")
  if leave_query_out and len(queries) != len(keys):
    raise ValueError("leave_query_out needs queries and keys of the same "
                     "items")
  known_queries = np.flatnonzero(query_labels >= 0)
  known_keys = np.flatnonzero(key_labels >= 0)
  # Position of each query's own item among the kept keys (-1: none).
  own_key = np.full(len(known_queries), -1)
  if leave_query_out:
    key_position = np.full(len(key_labels), -1)
    key_position[known_keys] = np.arange(len(known_keys))
    own_key = key_position[known_queries]
  queries = np.asarray(queries)[known_queries]
  keys = np.asarray(keys)[known_keys]
  query_labels = query_labels[known_queries]
  key_labels = key_labels[known_keys]

  hits = {k: [] for k in ks}
  average_precisions, num_relevant = [], []
  for start, block in _similarity_blocks(queries, keys, chunk_size):
    labels = query_labels[start:start + len(block)]
    relevant = labels[:, None] == key_labels[None, :]
    own = own_key[start:start + len(block)]
    rows = np.flatnonzero(own >= 0)
    block[rows, own[rows]] = -np.inf
    relevant[rows, own[rows]] = False
    has_relevant = relevant.any(axis=1)
    block, relevant = block[has_relevant], relevant[has_relevant]
    if not len(block):
      continue
    best_relevant = np.max(np.where(relevant, block, -np.inf), axis=1)
    ranks = np.sum(block > best_relevant[:, None], axis=1)
    for k in ks:
      hits[k].append(ranks < k)
    average_precisions.append(_average_precision_rows(block, relevant))
    num_relevant.append(relevant.sum(axis=1))
  return _class_result(hits, average_precisions, num_relevant,
                       len(keys) - int(leave_query_out))


def _class_result(hits, average_precisions, num_relevant, num_ranked):
  """`class_retrieval`'s dict from its per-block hits and precisions."""
  num_queries = int(sum(len(ap) for ap in average_precisions))
  num_relevant = (np.concatenate(num_relevant) if num_relevant
                  else np.zeros([0], np.int64))
  result = {"num_queries": num_queries, "chance": {}}
  reasons = {}
  for k, values in hits.items():
    reason = chance.not_applicable(k, num_ranked, "keys")
    if reason:
      reasons[f"r{k}"] = reason
    result[f"r{k}"] = (float(np.mean(np.concatenate(values)))
                       if num_queries and not reason else None)
    result["chance"][f"r{k}"] = chance.class_recall(num_relevant, num_ranked,
                                                    k)
  result["map"] = (float(np.mean(np.concatenate(average_precisions)))
                   if num_queries else None)
  result["chance"]["map"] = chance.class_average_precision(num_relevant,
                                                           num_ranked)
  if reasons:
    result["not_applicable"] = reasons
  return result


def retrieval_report(video, audio, labels=None, ks=DEFAULT_KS,
                     chunk_size=DEFAULT_CHUNK_SIZE):
  """Every retrieval figure of paired video and audio features.

  Args:
    video: float array [N, D] (row i: item i's video features).
    audio: float array [N, D] (row i: item i's audio features).
    labels: optional int array [N] of classes (< 0 unknown).
    ks: Recall@k cut-offs.
    chunk_size: query rows per similarity block.

  Returns:
    {"num_items", "chance_r1", "instance": {"v2a": {"r1": ..., "chance":
    {"r1": ...}}, "a2v": ...}} plus, when some labels are known, "class":
    {"v2v", "a2a", "v2a", "a2v"} each {"r1": ..., "map": ..., "num_queries":
    ..., "chance": ...}. A direction with a figure that is not applicable
    (None) says why in its "not_applicable".
  """
  video, audio = np.asarray(video), np.asarray(audio)
  report = {"num_items": int(len(video)),
            "chance_r1": 1.0 / len(video) if len(video) else None,
            "instance": {}}
  for name, queries, keys in (("v2a", video, audio), ("a2v", audio, video)):
    recalls = recall_at_k(queries, keys, ks, chunk_size)
    figures = {f"r{k}": value for k, value in recalls.items()}
    figures["chance"] = {f"r{k}": chance.instance_recall(k, len(keys))
                         for k in ks}
    reasons = {f"r{k}": chance.not_applicable(k, len(keys), "keys")
               for k in ks if recalls[k] is None}
    if reasons:
      figures["not_applicable"] = reasons
    report["instance"][name] = figures
  if labels is not None and np.any(np.asarray(labels) >= 0):
    features = {"v": video, "a": audio}
    report["class"] = {
        f"{q}2{k}": class_retrieval(features[q], features[k], labels, labels,
                                    ks, leave_query_out=q == k,
                                    chunk_size=chunk_size)
        for q, k in (("v", "v"), ("a", "a"), ("v", "a"), ("a", "v"))}
  return report


def class_figures(video, audio, labels, ks=(1, 5), prefix="retrieval_class_"):
  """Flat class-level figures, e.g. {"retrieval_class_v2v_map": ...}.

  Args:
    video: float array [N, D].
    audio: float array [N, D].
    labels: int array [N] (< 0 unknown).
    ks: Recall@k cut-offs.
    prefix: key prefix.

  Returns:
    "<prefix><direction>_r<k>", "<prefix><direction>_map" and their
    chance levels "<prefix><direction>_chance_r<k>" ... for v2v, a2a (query
    left out), v2a and a2v; empty when no label is known.
  """
  report = retrieval_report(video, audio, labels, ks)
  figures = {}
  for direction, values in report.get("class", {}).items():
    for name in [f"r{k}" for k in ks] + ["map"]:
      figures[f"{prefix}{direction}_{name}"] = values[name]
      figures[f"{prefix}{direction}_chance_{name}"] = values["chance"][name]
  return figures


def format_report(report):
  """The console lines of a `retrieval_report`: each figure beside its
  chance level, "n/a" (and why) where it is not applicable."""
  lines = [f"{report['num_items']} items"]
  reasons = {}
  for level in ("instance", "class"):
    for direction, values in report.get(level, {}).items():
      figures = []
      for name, value in values.items():
        if name in ("chance", "not_applicable", "num_queries"):
          continue
        label = "mAP" if name == "map" else f"R@{name[1:]}"
        figures.append(f"{label} " + chance.format_figure(
            value, values["chance"].get(name)))
      lines.append(f"{level} {direction}: " + ", ".join(figures))
      for name, reason in values.get("not_applicable", {}).items():
        reasons[f"R@{name[1:]} n/a: {reason}"] = None
  return "\n".join(lines + list(reasons))
