"""Tests of the minimal evaluation tools: features and retrieval.

The linear probe is tested in test_sklearn_probe.py.
"""

import numpy as np
import tensorflow as tf

from avid_tf.eval import features
from avid_tf.eval import retrieval


def test_recall_at_k_matches_bruteforce_ranking():
  rng = np.random.default_rng(0)
  queries = rng.normal(size=(20, 8))
  keys = queries + rng.normal(scale=1.0, size=(20, 8))
  recalls = retrieval.recall_at_k(queries, keys, ks=(1, 5))
  qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
  kn = keys / np.linalg.norm(keys, axis=1, keepdims=True)
  order = np.argsort(-(qn @ kn.T), axis=1)
  expected_r1 = np.mean(order[:, 0] == np.arange(20))
  expected_r5 = np.mean([i in order[i, :5] for i in range(20)])
  assert recalls[1] == expected_r1
  assert recalls[5] == expected_r5
  assert retrieval.recall_at_k(keys, keys)[1] == 1.0


def test_extract_features_averages_over_clips():
  video = tf.random.stateless_normal([5, 3, 2, 4, 4, 3], seed=[1, 2])
  dataset = tf.data.Dataset.from_tensor_slices({
      "video": video, "label": tf.range(5), "index": tf.range(5)}).batch(2)
  fn = lambda x: {"v": tf.reshape(x, [tf.shape(x)[0], -1])[:, :6]}
  out = features.extract_features(dataset, {"video": fn}, progress=False)
  expected = video.numpy().reshape(5, 3, -1)[:, :, :6].mean(axis=1)
  np.testing.assert_allclose(out["v"], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(out["index"], np.arange(5))
