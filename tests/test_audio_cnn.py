"""Tests for avid_tf.models.audio_cnn."""

import itertools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.models import audio_cnn

STAGES = ("conv2x", "conv3x", "conv4x", "conv5x")
EPS = 1e-5  # PyTorch BatchNorm default, written here independently.


def np_conv2d(x, kernel, stride, pad):
  """Cross-correlation [B, H, W, Cin] * [kh, kw, Cin, Cout], symmetric pad."""
  x = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
  kh, kw = kernel.shape[:2]
  oh = (x.shape[1] - kh) // stride + 1
  ow = (x.shape[2] - kw) // stride + 1
  out = np.zeros((x.shape[0], oh, ow, kernel.shape[-1]))
  for i, j in itertools.product(range(kh), range(kw)):
    out += x[:, i:i + stride * (oh - 1) + 1:stride,
             j:j + stride * (ow - 1) + 1:stride] @ kernel[i, j]
  return out


def np_bn(x, bn, batch_stats=False, group=None):
  """Inference BN, or BN with the statistics of the batch (or of each group
  of `group` consecutive examples)."""
  gamma, beta, mean, var = (np.asarray(w, np.float64) for w in (
      bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
  if batch_stats:
    grouped = x.reshape((-1, group or len(x)) + x.shape[1:])
    mean = grouped.mean(axis=(1, 2, 3), keepdims=True)
    var = grouped.var(axis=(1, 2, 3), keepdims=True)
    return ((grouped - mean) / np.sqrt(var + EPS) * gamma + beta).reshape(
        x.shape)
  return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def kernel_of(conv, window):
  kernel = np.asarray(conv.kernel, np.float64)
  assert kernel.shape[:2] == window, (conv.name, kernel.shape)
  return kernel


def np_audio_net(model, spectrogram, batch_stats=False, group=None):
  """The audio ConvNet of docs/methods.md, written from its description."""
  relu = lambda v: np.maximum(v, 0.0)
  out = {}
  x = np_conv2d(spectrogram.astype(np.float64),
                kernel_of(model.stem_conv, (7, 7)), 2, 3)
  x = relu(np_bn(x, model.stem_bn, batch_stats, group))
  out["conv1"] = x
  assert len(model.blocks) == 4
  for name, block, stride in zip(STAGES, model.blocks, (2, 2, 2, 1)):
    x = relu(np_bn(np_conv2d(x, kernel_of(block.conv1, (3, 3)), stride, 1),
                   block.bn1, batch_stats, group))
    x = relu(np_bn(np_conv2d(x, kernel_of(block.conv2, (3, 3)), 1, 1),
                   block.bn2, batch_stats, group))
    out[name] = x
  out["pool"] = x.max(axis=(1, 2))
  return out


def bn_layers(model):
  return [l for l in model._flatten_layers(include_self=False, recursive=True)
          if isinstance(l, keras.layers.BatchNormalization)]


def randomize_bn(model, seed=0):
  rng = np.random.default_rng(seed)
  for bn in bn_layers(model):
    c = bn.gamma.shape[0]
    bn.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
    bn.beta.assign(rng.normal(0, 0.2, c).astype(np.float32))
    bn.moving_mean.assign(rng.normal(0, 0.2, c).astype(np.float32))
    bn.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))


def count(weights):
  return sum(int(np.prod(w.shape)) for w in weights)


def random_spectrogram(shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def assert_close(actual, expected, rtol=1e-4):
  actual = np.asarray(actual, np.float64)
  scale = max(1.0, float(np.abs(expected).max()))
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def test_trainable_parameter_count():
  model = audio_cnn.AudioConvNet()
  model(np.zeros((1, 32, 32, 1), np.float32))
  assert count(model.trainable_weights) == 4_725_696
  moving = model.non_trainable_weights
  assert all(w.path.endswith(("moving_mean", "moving_variance"))
             for w in moving)
  assert count(moving) == 2 * sum(bn.gamma.shape[0] for bn in bn_layers(model))
  assert all(w.path.rsplit("/", 1)[-1] in ("kernel", "gamma", "beta")
             for w in model.trainable_weights)
  assert len([w for w in model.trainable_weights
              if w.path.endswith("kernel")]) == 9  # 9 convs, no shortcut.


def test_tiny_output_shape_and_feature_dim():
  model = audio_cnn.AudioConvNet(width_multiplier=0.25)
  assert model.feature_dim == 128
  features = model(random_spectrogram((2, 40, 36, 1)), training=False)
  assert features.shape == (2, 128)
  assert features.dtype == tf.float32


def test_symbolic_stage_output_shapes_full_size():
  # 200 x 257: (200+6-7)//2+1 = 100, (257+6-7)//2+1 = 129; then 3x3 pad 1
  # stride 2: 100 -> 50 -> 25 -> 13, 129 -> 65 -> 33 -> 17; conv5x stride 1.
  model = audio_cnn.AudioConvNet()
  outputs = model.stage_outputs(keras.KerasTensor((None, 200, 257, 1)))
  shapes = {k: tuple(v.shape) for k, v in outputs.items()}
  assert shapes == {
      "conv1": (None, 100, 129, 64),
      "conv2x": (None, 50, 65, 64),
      "conv3x": (None, 25, 33, 128),
      "conv4x": (None, 13, 17, 256),
      "conv5x": (None, 13, 17, 512),
      "pool": (None, 512),
  }


def test_stem_conv_uses_symmetric_pytorch_padding():
  model = audio_cnn.AudioConvNet(width_multiplier=0.0625)
  spectrogram = random_spectrogram((1, 12, 10, 1), seed=1)
  model(spectrogram)
  kernel = np.random.default_rng(2).normal(size=(7, 7, 1, 4))
  model.stem_conv.kernel.assign(kernel.astype(np.float32))
  expected = np_conv2d(spectrogram.astype(np.float64), kernel, 2, 3)
  actual = np.asarray(model.stem_conv(spectrogram))
  assert actual.shape == (1, 6, 5, 4)
  assert_close(actual, expected)
  same = keras.layers.Conv2D(4, 7, strides=2, padding="same", use_bias=False)
  same.build(spectrogram.shape)
  same.kernel.assign(kernel.astype(np.float32))
  assert np.abs(np.asarray(same(spectrogram)) - expected).max() > 1e-2


def test_forward_matches_float64_reference():
  model = audio_cnn.AudioConvNet(width_multiplier=0.125)
  spectrogram = random_spectrogram((2, 40, 34, 1), seed=3)
  model(spectrogram)
  randomize_bn(model, seed=3)
  expected = np_audio_net(model, spectrogram)
  actual = model.stage_outputs(spectrogram, training=False)
  assert set(actual) == set(expected)
  for name in expected:
    assert_close(actual[name], expected[name])
  assert_close(model(spectrogram, training=False), expected["pool"])


def test_training_mode_uses_batch_statistics():
  model = audio_cnn.AudioConvNet(width_multiplier=0.125)
  spectrogram = random_spectrogram((3, 40, 34, 1), seed=4)
  model(spectrogram)
  randomize_bn(model, seed=4)
  expected = np_audio_net(model, spectrogram, batch_stats=True)
  assert_close(model(spectrogram, training=True), expected["pool"],
               rtol=1e-3)


def test_virtual_batches_match_float64_reference():
  model = audio_cnn.AudioConvNet(width_multiplier=0.125,
                                 bn_virtual_batch_size=2)
  spectrogram = random_spectrogram((4, 40, 34, 1), seed=7)
  model(spectrogram)
  randomize_bn(model, seed=7)
  expected = np_audio_net(model, spectrogram, batch_stats=True, group=2)
  whole_batch = np_audio_net(model, spectrogram, batch_stats=True)
  assert {bn.virtual_batch_size for bn in bn_layers(model)} == {2}
  assert_close(model(spectrogram, training=True), expected["pool"],
               rtol=1e-3)
  assert np.abs(whole_batch["pool"] - expected["pool"]).max() > 1e-2
  with pytest.raises(ValueError, match="cannot be combined with synchronized"):
    audio_cnn.AudioConvNet(synchronized_bn=True, bn_virtual_batch_size=2)


@pytest.mark.parametrize("synchronized", [False, True])
def test_bn_hyperparameters_and_synchronized_flag(synchronized):
  model = audio_cnn.AudioConvNet(width_multiplier=0.0625,
                                 synchronized_bn=synchronized)
  model(random_spectrogram((1, 16, 16, 1)))
  bns = bn_layers(model)
  assert len(bns) == 9
  for bn in bns:
    assert bn.momentum == pytest.approx(0.9)
    assert bn.epsilon == pytest.approx(1e-5)
    assert bn.synchronized is synchronized


@pytest.mark.parametrize("virtual_batch_size", [None, 2])
def test_get_config_round_trip(virtual_batch_size):
  model = audio_cnn.AudioConvNet(width_multiplier=0.125, name="audio",
                                 bn_virtual_batch_size=virtual_batch_size)
  spectrogram = random_spectrogram((2, 24, 20, 1), seed=5)
  model(spectrogram)
  randomize_bn(model, seed=5)
  config = model.get_config()
  json.dumps(config)
  assert (config["depth"], config["width_multiplier"],
          config["synchronized_bn"], config["bn_virtual_batch_size"],
          config["name"]) == (10, 0.125, False, virtual_batch_size, "audio")
  clone = audio_cnn.AudioConvNet.from_config(config)
  clone.build(spectrogram.shape)
  assert clone.count_params() == model.count_params()
  assert {bn.virtual_batch_size for bn in bn_layers(clone)} == {
      virtual_batch_size}
  clone.set_weights(model.get_weights())
  np.testing.assert_array_equal(clone(spectrogram), model(spectrogram))
  restored = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(model))
  assert isinstance(restored, audio_cnn.AudioConvNet)
  assert restored.get_config() == config


def test_call_under_jit_compile_matches_eager():
  model = audio_cnn.AudioConvNet(width_multiplier=0.125)
  spectrogram = random_spectrogram((2, 24, 20, 1), seed=6)
  eager = np.asarray(model(spectrogram, training=False))
  compiled = tf.function(lambda x: model(x, training=False),
                         jit_compile=True)
  assert_close(compiled(spectrogram), eager)


def test_mixed_precision_policy():
  model = audio_cnn.AudioConvNet(width_multiplier=0.125,
                                 dtype="mixed_float16")
  features = model(random_spectrogram((2, 24, 20, 1)), training=True)
  assert features.dtype == tf.float16
  assert all(w.dtype == "float32" for w in model.weights)


@pytest.mark.parametrize("kwargs", [{"depth": 18}, {"width_multiplier": -1}])
def test_invalid_arguments_raise(kwargs):
  with pytest.raises(ValueError):
    audio_cnn.AudioConvNet(**kwargs)
