"""Cross-modal retrieval between clip-averaged video and audio embeddings."""

import numpy as np


def recall_at_k(queries, keys, ks=(1, 5)):
  """Recall@k of retrieving key i for query i by cosine similarity.

  Args:
    queries: float array [N, D]; row i is the query of item i.
    keys: float array [N, D]; row i is the correct key of query i.
    ks: the cut-offs to report.

  Returns:
    Dict k -> fraction of queries whose own key ranks within the top k.
  """
  queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
  keys = keys / np.linalg.norm(keys, axis=1, keepdims=True)
  similarity = queries @ keys.T
  own = np.diag(similarity)
  # Rank = number of keys strictly more similar than the correct one.
  ranks = np.sum(similarity > own[:, None], axis=1)
  return {k: float(np.mean(ranks < k)) for k in ks}
