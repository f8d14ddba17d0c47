"""Tests for avid_tf.models.heads."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.models import heads


def np_head(head, features):
  """Float64 reference: ReLU MLP, then x / max(||x||, 1e-12)."""
  x = features.astype(np.float64)
  for layer in head.hidden_layers:
    x = np.maximum(x @ np.asarray(layer.kernel, np.float64)
                   + np.asarray(layer.bias, np.float64), 0.0)
  x = (x @ np.asarray(head.output_layer.kernel, np.float64)
       + np.asarray(head.output_layer.bias, np.float64))
  norm = np.linalg.norm(x, axis=-1, keepdims=True)
  return x / np.maximum(norm, 1e-12)


def random_features(shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def randomize_biases(head, seed=0):
  rng = np.random.default_rng(seed)
  for layer in head.hidden_layers + [head.output_layer]:
    layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))


def test_default_sizes_and_parameter_count():
  head = heads.ProjectionHead()
  out = head(random_features((3, 512)))
  assert out.shape == (3, 128)
  # 512->512, 512->512, 512->128, all with biases.
  assert head.count_params() == (512 * 512 + 512) * 2 + 512 * 128 + 128
  assert [tuple(w.shape) for w in head.trainable_weights] == [
      (512, 512), (512,), (512, 512), (512,), (512, 128), (128,)]


def test_matches_float64_reference_and_is_unit_norm():
  head = heads.ProjectionHead(hidden_dim=24, output_dim=8)
  features = random_features((5, 16), seed=1)
  head(features)
  randomize_biases(head, seed=1)
  actual = np.asarray(head(features))
  np.testing.assert_allclose(actual, np_head(head, features), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(actual, axis=-1), 1.0,
                             rtol=1e-6)


def test_hidden_layers_apply_relu_and_output_has_no_activation():
  head = heads.ProjectionHead(hidden_dim=6, output_dim=4, num_hidden_layers=2)
  head.build((None, 3))
  assert [l.activation.__name__ for l in head.hidden_layers] == ["relu"] * 2
  assert head.output_layer.activation.__name__ == "linear"
  assert all(l.use_bias for l in head.hidden_layers + [head.output_layer])


def test_zero_hidden_layers_is_a_normalised_linear_map():
  head = heads.ProjectionHead(output_dim=4, num_hidden_layers=0)
  features = random_features((3, 5), seed=2)
  actual = np.asarray(head(features))
  assert head.hidden_layers == []
  np.testing.assert_allclose(actual, np_head(head, features), rtol=1e-5,
                             atol=1e-6)


def test_zero_vector_stays_finite():
  head = heads.ProjectionHead(hidden_dim=4, output_dim=3, num_hidden_layers=0)
  head.build((None, 2))
  out = np.asarray(head(np.zeros((1, 2), np.float32)))  # bias is zero.
  np.testing.assert_array_equal(out, np.zeros((1, 3), np.float32))


def test_output_is_float32_under_mixed_precision():
  head = heads.ProjectionHead(hidden_dim=16, output_dim=8,
                              dtype="mixed_float16")
  features = random_features((4, 12), seed=3).astype(np.float16)
  out = head(features)
  assert head.output_layer.compute_dtype == "float16"
  assert out.dtype == tf.float32
  np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), 1.0,
                             rtol=1e-6)
  spec = head.compute_output_spec(keras.KerasTensor((None, 12)))
  assert spec.dtype == "float32" and spec.shape == (None, 8)


def test_get_config_round_trip():
  head = heads.ProjectionHead(hidden_dim=10, output_dim=6,
                              num_hidden_layers=3, name="video_head")
  features = random_features((2, 7), seed=4)
  head(features)
  config = head.get_config()
  json.dumps(config)
  assert (config["hidden_dim"], config["output_dim"],
          config["num_hidden_layers"], config["name"]) == (10, 6, 3,
                                                           "video_head")
  clone = heads.ProjectionHead.from_config(config)
  clone.build(features.shape)
  assert clone.count_params() == head.count_params()
  clone.set_weights(head.get_weights())
  np.testing.assert_array_equal(clone(features), head(features))


def test_call_under_jit_compile():
  head = heads.ProjectionHead(hidden_dim=16, output_dim=8)
  features = random_features((4, 12), seed=5)
  eager = np.asarray(head(features))
  compiled = tf.function(head, jit_compile=True)
  np.testing.assert_allclose(compiled(features), eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"hidden_dim": 0}, {"output_dim": 0},
                                    {"num_hidden_layers": -1}])
def test_invalid_arguments_raise(kwargs):
  with pytest.raises(ValueError):
    heads.ProjectionHead(**kwargs)


def np_batch_norm(x, bn, eps=1e-5):
  """Float64 train-mode BatchNorm over axis 0 (biased variance)."""
  mean, var = x.mean(axis=0), x.var(axis=0)
  return ((x - mean) / np.sqrt(var + eps) * np.asarray(bn.gamma, np.float64)
          + np.asarray(bn.beta, np.float64))


def test_batch_norm_head_matches_float64_reference_in_training():
  head = heads.ProjectionHead(hidden_dim=12, output_dim=6, batch_norm=True)
  features = random_features((9, 5), seed=6)
  head(features)
  rng = np.random.default_rng(6)
  for bn in head.hidden_norms + [head.output_norm]:
    bn.gamma.assign(rng.uniform(0.5, 1.5, bn.gamma.shape).astype(np.float32))
    bn.beta.assign(rng.normal(0, 0.1, bn.beta.shape).astype(np.float32))
  x = features.astype(np.float64)
  for layer, bn in zip(head.hidden_layers, head.hidden_norms):
    x = x @ np.asarray(layer.kernel, np.float64) + np.asarray(layer.bias,
                                                              np.float64)
    x = np.maximum(np_batch_norm(x, bn), 0.0)
  x = (x @ np.asarray(head.output_layer.kernel, np.float64)
       + np.asarray(head.output_layer.bias, np.float64))
  x = np_batch_norm(x, head.output_norm)
  expected = x / np.linalg.norm(x, axis=-1, keepdims=True)
  actual = np.asarray(head(features, training=True))
  np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_batch_norm_head_uses_moving_statistics_outside_training():
  head = heads.ProjectionHead(hidden_dim=8, output_dim=4, batch_norm=True)
  features = random_features((6, 5), seed=7)
  before = np.asarray(head(features, training=False))
  head(features, training=True)  # Updates the moving statistics.
  after = np.asarray(head(features, training=False))
  assert not np.allclose(before, after)
  # Inference is per example: a sub-batch gives the same rows.
  np.testing.assert_allclose(np.asarray(head(features[:2], training=False)),
                             after[:2], rtol=1e-5, atol=1e-6)
  assert len(head.non_trainable_weights) == 2 * 3  # moving mean/var x 3 BN.


def test_batch_norm_head_removes_the_shared_direction():
  # All-positive inputs with a strong common component (as ReLU + max
  # pooling features are) map to nearly parallel embeddings through the
  # published head; in training mode the BN head centres them per batch.
  rng = np.random.default_rng(8)
  features = (3.0 + 0.3 * rng.normal(size=(32, 16))).astype(np.float32)

  def mean_cosine(x):
    similarity = x @ x.T
    return similarity[~np.eye(len(x), dtype=bool)].mean()

  plain = np.asarray(heads.ProjectionHead(hidden_dim=32, output_dim=8)(
      features))
  normed = np.asarray(heads.ProjectionHead(
      hidden_dim=32, output_dim=8, batch_norm=True)(features, training=True))
  assert mean_cosine(plain) > 0.9
  assert abs(mean_cosine(normed)) < 0.1


def test_batch_norm_head_config_round_trip():
  head = heads.ProjectionHead(hidden_dim=10, output_dim=6, batch_norm=True)
  features = random_features((4, 7), seed=9)
  head(features, training=True)
  config = head.get_config()
  assert config["batch_norm"] is True
  clone = heads.ProjectionHead.from_config(config)
  clone.build(features.shape)
  clone.set_weights(head.get_weights())
  np.testing.assert_array_equal(clone(features, training=False),
                                head(features, training=False))
