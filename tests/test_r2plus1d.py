"""Tests for avid_tf.models.r2plus1d (and the padded layers it is built of)."""

import itertools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.models import layers as model_layers
from avid_tf.models import r2plus1d

STAGES = ("conv2x", "conv3x", "conv4x", "conv5x")
BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
EPS = 1e-5  # PyTorch BatchNorm default, written here independently.


# --------------------------------------------------------------------------
# NumPy float64 reference (PyTorch semantics: symmetric padding).
# --------------------------------------------------------------------------
def np_conv(x, kernel, strides, pads):
  """Cross-correlation of [B, *S, Cin] with [*K, Cin, Cout], zero-padded."""
  rank = kernel.ndim - 2
  x = np.pad(x, [(0, 0)] + [(p, p) for p in pads] + [(0, 0)])
  sizes = [(x.shape[1 + i] - kernel.shape[i]) // strides[i] + 1
           for i in range(rank)]
  out = np.zeros((x.shape[0], *sizes, kernel.shape[-1]))
  for offset in itertools.product(*[range(k) for k in kernel.shape[:rank]]):
    window = tuple(slice(o, o + s * (n - 1) + 1, s)
                   for o, s, n in zip(offset, strides, sizes))
    out += x[(slice(None),) + window] @ kernel[offset]
  return out


def np_max_pool(x, window, strides, pads):
  """Max pooling padded with -inf, as torch.nn.MaxPool3d."""
  x = np.pad(x, [(0, 0)] + [(p, p) for p in pads] + [(0, 0)],
             constant_values=-np.inf)
  sizes = [(x.shape[1 + i] - window[i]) // strides[i] + 1
           for i in range(len(window))]
  out = np.full((x.shape[0], *sizes, x.shape[-1]), -np.inf)
  for offset in itertools.product(*[range(k) for k in window]):
    sl = tuple(slice(o, o + s * (n - 1) + 1, s)
               for o, s, n in zip(offset, strides, sizes))
    out = np.maximum(out, x[(slice(None),) + sl])
  return out


def np_bn(x, bn, batch_stats=False, group=None):
  """Inference BN, or BN with the statistics of the batch (or of each group
  of `group` consecutive examples)."""
  gamma, beta, mean, var = (np.asarray(w, np.float64) for w in (
      bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
  if batch_stats:
    grouped = x.reshape((-1, group or len(x)) + x.shape[1:])
    axes = tuple(range(1, grouped.ndim - 1))
    mean = grouped.mean(axis=axes, keepdims=True)
    var = grouped.var(axis=axes, keepdims=True)
    return ((grouped - mean) / np.sqrt(var + EPS) * gamma + beta).reshape(
        x.shape)
  return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def relu(x):
  return np.maximum(x, 0.0)


def kernel_of(conv, expected_window):
  kernel = np.asarray(conv.kernel, np.float64)
  assert kernel.shape[:3] == expected_window, (conv.name, kernel.shape)
  return kernel


def np_block(block, x, stride, out_channels, batch_stats=False, group=None):
  """The basic (2+1)D block of docs/methods.md, from its description."""
  h = np_conv(x, kernel_of(block.spatial_conv1, (1, 3, 3)), (1, stride, stride),
              (0, 1, 1))
  h = relu(np_bn(h, block.spatial_bn1, batch_stats, group))
  h = np_conv(h, kernel_of(block.temporal_conv1, (3, 1, 1)), (stride, 1, 1),
              (1, 0, 0))
  h = relu(np_bn(h, block.temporal_bn1, batch_stats, group))
  h = np_conv(h, kernel_of(block.spatial_conv2, (1, 3, 3)), (1, 1, 1),
              (0, 1, 1))
  h = relu(np_bn(h, block.spatial_bn2, batch_stats, group))
  h = np_conv(h, kernel_of(block.temporal_conv2, (3, 1, 1)), (1, 1, 1),
              (1, 0, 0))
  needs_shortcut_conv = x.shape[-1] != out_channels or stride != 1
  assert (block.shortcut_conv is not None) == needs_shortcut_conv
  if needs_shortcut_conv:
    residual = np_conv(x, kernel_of(block.shortcut_conv, (1, 1, 1)),
                       (stride,) * 3, (0, 0, 0))
  else:
    residual = x
  return relu(np_bn(h + residual, block.out_bn, batch_stats, group))


def np_r2plus1d(model, video, depth, width, batch_stats=False, group=None):
  """Whole-network reference; returns the same dict as stage_outputs."""
  out = {}
  x = np_conv(video.astype(np.float64), kernel_of(model.stem_conv, (3, 7, 7)),
              (1, 2, 2), (1, 3, 3))
  x = relu(np_bn(x, model.stem_bn, batch_stats, group))
  out["conv1"] = x
  x = np_max_pool(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))
  blocks = iter(model.blocks)
  for stage_index, (name, channels, count) in enumerate(
      zip(STAGES, (64, 128, 256, 512), BLOCKS[depth])):
    for block_index in range(count):
      stride = 2 if stage_index > 0 and block_index == 0 else 1
      x = np_block(next(blocks), x, stride, int(round(channels * width)),
                   batch_stats, group)
    out[name] = x
  assert next(blocks, None) is None
  out["pool"] = x.max(axis=(1, 2, 3))
  return out


def randomize_bn(model, seed=0):
  """Gives every BN non-trivial gamma/beta/moving statistics."""
  rng = np.random.default_rng(seed)
  for layer in model._flatten_layers(include_self=False, recursive=True):
    if isinstance(layer, keras.layers.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
      layer.beta.assign(rng.normal(0, 0.2, c).astype(np.float32))
      layer.moving_mean.assign(rng.normal(0, 0.2, c).astype(np.float32))
      layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))


def bn_layers(model):
  return [l for l in model._flatten_layers(include_self=False, recursive=True)
          if isinstance(l, keras.layers.BatchNormalization)]


def count(weights):
  return sum(int(np.prod(w.shape)) for w in weights)


def random_video(shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def assert_close(actual, expected, rtol=1e-4):
  actual = np.asarray(actual, np.float64)
  scale = max(1.0, float(np.abs(expected).max()))
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# --------------------------------------------------------------------------
# Parameter counts.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("depth,expected", [
    (10, 7_015_616),
    (18, 15_379_136),
    # Not published; from the same per-block formula: a stride-1
    # block of width c adds 24c^2 + 8c, so depth 34 = depth 18 + 1 block
    # of 64 + 2 of 128 + 4 of 256 + 1 of 512 = 15,379,136 + 13,482,496.
    (34, 28_861_632),
])
def test_trainable_parameter_counts(depth, expected):
  model = r2plus1d.R2Plus1D(depth=depth)
  model(np.zeros((1, 2, 16, 16, 3), np.float32))
  trainable = count(model.trainable_weights)
  print(f"R2Plus1D-{depth}: {trainable:,} trainable parameters")
  assert trainable == expected
  # Non-trainable = exactly the BN moving statistics (one mean and one
  # variance per BN channel, as many as the BN gammas+betas).
  moving = [w for w in model.non_trainable_weights]
  assert all(w.path.endswith(("moving_mean", "moving_variance"))
             for w in moving)
  bns = bn_layers(model)
  assert count(moving) == 2 * sum(bn.gamma.shape[0] for bn in bns)
  # Bias-free convolutions: kernels, gammas and betas only.
  assert all(w.path.rsplit("/", 1)[-1] in ("kernel", "gamma", "beta")
             for w in model.trainable_weights)


# --------------------------------------------------------------------------
# Shapes.
# --------------------------------------------------------------------------
def test_tiny_output_shape_and_feature_dim():
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.25)
  assert model.feature_dim == 128
  features = model(random_video((2, 4, 32, 32, 3)), training=False)
  assert features.shape == (2, 128)
  assert features.dtype == tf.float32
  assert model.compute_output_shape((2, 4, 32, 32, 3)) == (2, 128)


def test_stage_output_shapes_at_112():
  # Hand-computed with PyTorch's floor((n + 2p - k) / s) + 1:
  # stem 112 -> (112+6-7)//2+1 = 56; max-pool (56+2-3)//2+1 = 28;
  # stride-2 3x3 pad 1: 28 -> 14 -> 7 -> 4; time 8 -> 4 -> 2 -> 1
  # ((8+2-3)//2+1 = 4, (4-1)//2+1 = 2, (2-1)//2+1 = 1).
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125)
  outputs = model.stage_outputs(random_video((1, 8, 112, 112, 3)))
  shapes = {k: tuple(v.shape) for k, v in outputs.items()}
  assert shapes == {
      "conv1": (1, 8, 56, 56, 8),
      "conv2x": (1, 8, 28, 28, 8),
      "conv3x": (1, 4, 14, 14, 16),
      "conv4x": (1, 2, 7, 7, 32),
      "conv5x": (1, 1, 4, 4, 64),
      "pool": (1, 64),
  }


def test_symbolic_stage_output_shapes_full_width_at_224():
  # Symbolic (no compute): full-width channels at 8 x 224 x 224. The
  # Kinetics probe adaptively max-pools conv2x..conv5x to 12, 8, 6, 4
  # (spatial), which needs maps at least that large: true here and at 112.
  model = r2plus1d.R2Plus1D(depth=18)
  outputs = model.stage_outputs(keras.KerasTensor((None, 8, 224, 224, 3)))
  shapes = {k: tuple(v.shape) for k, v in outputs.items()}
  assert shapes == {
      "conv1": (None, 8, 112, 112, 64),
      "conv2x": (None, 8, 56, 56, 64),
      "conv3x": (None, 4, 28, 28, 128),
      "conv4x": (None, 2, 14, 14, 256),
      "conv5x": (None, 1, 7, 7, 512),
      "pool": (None, 512),
  }
  for name, target in zip(STAGES, (12, 8, 6, 4)):
    assert shapes[name][2] >= target and shapes[name][3] >= target


def test_odd_sizes_follow_pytorch_arithmetic():
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.0625)
  outputs = model.stage_outputs(random_video((1, 3, 23, 17, 3)))
  # H: 23 -> 12 -> 6 -> 3 -> 2 -> 1; W: 17 -> 9 -> 5 -> 3 -> 2 -> 1;
  # T: 3 -> 3 -> 3 -> 2 -> 1 -> 1.
  assert tuple(outputs["conv1"].shape[1:4]) == (3, 12, 9)
  assert tuple(outputs["conv2x"].shape[1:4]) == (3, 6, 5)
  assert tuple(outputs["conv3x"].shape[1:4]) == (2, 3, 3)
  assert tuple(outputs["conv4x"].shape[1:4]) == (1, 2, 2)
  assert tuple(outputs["conv5x"].shape[1:4]) == (1, 1, 1)


# --------------------------------------------------------------------------
# Numerics against the float64 reference.
# --------------------------------------------------------------------------
def test_stem_conv_uses_symmetric_pytorch_padding():
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.0625)
  video = random_video((1, 3, 10, 10, 3), seed=1)  # even H/W: Keras "same"
  model(video)                                     # would pad 2 / 3.
  kernel = np.random.default_rng(2).normal(size=(3, 7, 7, 3, 4))
  model.stem_conv.kernel.assign(kernel.astype(np.float32))
  expected = np_conv(video.astype(np.float64), kernel, (1, 2, 2), (1, 3, 3))
  actual = np.asarray(model.stem_conv(video))
  assert actual.shape == (1, 3, 5, 5, 4)
  assert_close(actual, expected)
  # The check can tell the paddings apart: Keras "same" differs.
  same = keras.layers.Conv3D(4, (3, 7, 7), strides=(1, 2, 2), padding="same",
                             use_bias=False)
  same.build(video.shape)
  same.kernel.assign(kernel.astype(np.float32))
  assert np.abs(np.asarray(same(video)) - expected).max() > 1e-2


def test_stem_max_pool_matches_minus_inf_padding_on_relu_inputs():
  pool = model_layers.PaddedMaxPool((1, 3, 3), strides=(1, 2, 2),
                                    padding=(0, 1, 1))
  x = relu(random_video((2, 3, 8, 7, 5), seed=3))
  expected = np_max_pool(x.astype(np.float64), (1, 3, 3), (1, 2, 2),
                         (0, 1, 1))
  actual = np.asarray(pool(x))
  assert actual.shape == (2, 3, 4, 4, 5)
  np.testing.assert_array_equal(actual, expected.astype(np.float32))
  assert pool.compute_output_shape((2, 3, 8, 7, 5)) == (2, 3, 4, 4, 5)


def test_conv_kernel_init_matches_pytorch_default():
  # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  conv = model_layers.PaddedConv(64, (3, 7, 7), strides=(1, 2, 2),
                                 padding=(1, 3, 3))
  conv.build((None, 4, 16, 16, 3))
  kernel = np.asarray(conv.kernel)
  bound = 1.0 / np.sqrt(3 * 7 * 7 * 3)
  assert kernel.shape == (3, 7, 7, 3, 64)
  assert np.abs(kernel).max() <= bound
  assert np.abs(kernel).max() > 0.99 * bound
  assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
  assert conv.get_config()["padding"] == [1, 3, 3]


@pytest.mark.parametrize("depth", [10, 18])
def test_forward_matches_float64_reference(depth):
  width = 0.125
  model = r2plus1d.R2Plus1D(depth=depth, width_multiplier=width)
  video = random_video((2, 4, 24, 24, 3), seed=depth)
  model(video)
  randomize_bn(model, seed=depth)
  expected = np_r2plus1d(model, video, depth, width)
  actual = model.stage_outputs(video, training=False)
  assert set(actual) == set(expected)
  for name in expected:
    assert_close(actual[name], expected[name])
  assert_close(model(video, training=False), expected["pool"])


def test_training_mode_uses_batch_statistics_and_pytorch_momentum():
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125)
  video = random_video((3, 4, 24, 24, 3), seed=5)
  model(video)
  randomize_bn(model, seed=5)
  old_mean = np.asarray(model.stem_bn.moving_mean, np.float64)
  expected = np_r2plus1d(model, video, 10, 0.125, batch_stats=True)
  # Pre-BN stem output, for the moving-average check.
  stem = np_conv(video.astype(np.float64),
                 np.asarray(model.stem_conv.kernel, np.float64), (1, 2, 2),
                 (1, 3, 3))
  actual = model(video, training=True)
  assert_close(actual, expected["pool"], rtol=1e-3)
  # PyTorch: running = 0.9 * running + 0.1 * batch_mean.
  assert_close(model.stem_bn.moving_mean,
               0.9 * old_mean + 0.1 * stem.mean(axis=(0, 1, 2, 3)))


# --------------------------------------------------------------------------
# BN configuration.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("synchronized", [False, True])
def test_bn_hyperparameters_and_synchronized_flag(synchronized):
  model = r2plus1d.R2Plus1D(depth=18, width_multiplier=0.0625,
                            synchronized_bn=synchronized)
  model(random_video((1, 2, 16, 16, 3)))
  bns = bn_layers(model)
  assert len(bns) == 1 + 8 * 4  # stem + 4 BN per block, 8 blocks.
  for bn in bns:
    assert bn.momentum == pytest.approx(0.9)
    assert bn.epsilon == pytest.approx(1e-5)
    assert bn.synchronized is synchronized
  assert model.get_config()["synchronized_bn"] is synchronized


def test_synchronized_bn_matches_single_device_under_mirrored_strategy():
  devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
  if len(devices) < 2:
    pytest.skip("needs two logical CPU devices (tests/conftest.py)")
  video = random_video((4, 2, 16, 16, 3), seed=7)
  reference = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.0625)
  reference(video)
  randomize_bn(reference, seed=7)
  weights = reference.get_weights()
  expected = np.asarray(reference(video, training=True))

  strategy = tf.distribute.MirroredStrategy(devices)

  def replica_outputs(synchronized):
    with strategy.scope():
      model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.0625,
                                synchronized_bn=synchronized)
      model.build(video.shape)
      model.set_weights(weights)
    halves = strategy.experimental_distribute_values_from_function(
        lambda ctx: video[2 * ctx.replica_id_in_sync_group:
                          2 * ctx.replica_id_in_sync_group + 2])
    result = strategy.run(
        lambda x: model(x, training=True), args=(halves,))
    return np.concatenate(
        [np.asarray(r) for r in strategy.experimental_local_results(result)])

  assert_close(replica_outputs(True), expected, rtol=1e-4)
  # Per-replica statistics give different numbers: the flag matters.
  assert np.abs(replica_outputs(False) - expected).max() > 1e-3


# --------------------------------------------------------------------------
# Virtual batches (bn_virtual_batch_size): BN statistics per group of clips.
# --------------------------------------------------------------------------
def test_virtual_batches_match_float64_reference_and_update_moving_stats():
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125,
                            bn_virtual_batch_size=2)
  # At 48 px the last stage still normalises 8 values per group (2 clips,
  # 2 x 2); at 24 px it would be 2, where rounding decides the output.
  video = random_video((6, 4, 48, 48, 3), seed=11)
  model(video)
  randomize_bn(model, seed=11)
  old = [np.asarray(w, np.float64) for w in (model.stem_bn.moving_mean,
                                             model.stem_bn.moving_variance)]
  expected = np_r2plus1d(model, video, 10, 0.125, batch_stats=True, group=2)
  whole_batch = np_r2plus1d(model, video, 10, 0.125, batch_stats=True)
  actual = model(video, training=True)
  assert_close(actual, expected["pool"], rtol=1e-3)
  # Groups of 2 are not the batch of 6: the setting changes the numbers.
  assert np.abs(whole_batch["pool"] - expected["pool"]).max() > 1e-2
  # Moving statistics move towards the mean of the three groups' (biased)
  # statistics.
  stem = np_conv(video.astype(np.float64),
                 np.asarray(model.stem_conv.kernel, np.float64), (1, 2, 2),
                 (1, 3, 3)).reshape(3, -1, 8)
  assert_close(model.stem_bn.moving_mean,
               0.9 * old[0] + 0.1 * stem.mean(axis=1).mean(axis=0))
  assert_close(model.stem_bn.moving_variance,
               0.9 * old[1] + 0.1 * stem.var(axis=1).mean(axis=0))
  # Inference ignores the groups.
  assert_close(model(video, training=False),
               np_r2plus1d(model, video, 10, 0.125)["pool"])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_bfloat16_training_bn_matches_float64_reference(jit_compile):
  # mixed_bfloat16 activations take the fused kernel: statistics and
  # normalisation in float32, one rounding of the output to bfloat16.
  shape = (4, 3, 5, 6, 3)
  x = tf.cast(random_video(shape, seed=14) * 3 + 1, tf.bfloat16)
  outer = tf.constant(random_video(shape, seed=15))
  layer = model_layers.batch_norm(dtype="mixed_bfloat16")
  layer.build(shape)
  gamma = np.linspace(0.5, 1.5, 3)
  layer.gamma.assign(gamma.astype(np.float32))

  def outputs_and_gradients(inputs):
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      outputs = layer(inputs, training=True)
      loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * outer)
    return [outputs] + tape.gradient(loss, [inputs, layer.gamma])

  run = (tf.function(outputs_and_gradients, jit_compile=True) if jit_compile
         else outputs_and_gradients)
  outputs, dx, dgamma = run(x)
  assert outputs.dtype == tf.bfloat16 and dx.dtype == tf.bfloat16
  assert layer.moving_mean.dtype == "float32"
  x64 = np.asarray(tf.cast(x, tf.float64))
  mean = x64.mean(axis=(0, 1, 2, 3))
  variance = x64.var(axis=(0, 1, 2, 3))
  normalised = (x64 - mean) / np.sqrt(variance + EPS)
  expected = normalised * gamma
  # bfloat16 keeps 8 significant bits: one rounding is < 2^-8 relative.
  np.testing.assert_allclose(np.asarray(tf.cast(outputs, tf.float64)),
                             expected, rtol=2**-8, atol=2**-8)
  # The output's gradient may arrive rounded to bfloat16 (eager; XLA drops
  # the round trip): at most 2^-8 of each term.
  terms = np.asarray(outer, np.float64) * normalised
  assert np.all(np.abs(dgamma - terms.sum(axis=(0, 1, 2, 3)))
                <= 2**-8 * np.abs(terms).sum(axis=(0, 1, 2, 3)))
  np.testing.assert_allclose(layer.moving_mean, 0.1 * mean, rtol=1e-5)
  # Keras averages the biased variance.
  np.testing.assert_allclose(layer.moving_variance,
                             0.9 + 0.1 * variance, rtol=1e-5)
  graph = tf.function(lambda v: layer(v, training=True)).get_concrete_function(
      x).graph
  assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("shape", [(4, 3, 5, 6, 3), (4, 7, 5, 3)])
def test_virtual_batch_layer_equals_batch_norm_of_each_group(shape):
  x = tf.constant(random_video(shape, seed=12) * 3 + 1)
  weights = tf.constant(random_video(shape, seed=13))
  grouped = model_layers.batch_norm(virtual_batch_size=2)
  plain = model_layers.batch_norm()
  grouped.build(shape)
  plain.build(shape)
  grouped.gamma.assign(np.linspace(0.5, 1.5, 3).astype(np.float32))
  plain.set_weights(grouped.get_weights())

  def outputs_and_gradients(layer, inputs, outer):
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      outputs = layer(inputs, training=True)
      loss = tf.reduce_sum(outputs * outer)
    return [outputs] + tape.gradient(loss, [inputs, layer.gamma, layer.beta])

  actual = outputs_and_gradients(grouped, x, weights)
  first, second = (outputs_and_gradients(plain, x[i:i + 2], weights[i:i + 2])
                   for i in (0, 2))
  # Outputs and input gradients concatenate; parameter gradients add up.
  for name, value, expected in zip(
      ("outputs", "dx", "dgamma", "dbeta"), actual,
      [np.concatenate([first[0], second[0]]),
       np.concatenate([first[1], second[1]]), first[2] + second[2],
       first[3] + second[3]]):
    np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-4,
                               err_msg=name)


def test_virtual_batches_identical_under_mirrored_strategy():
  from conftest import mirrored_strategy  # pylint: disable=g-import-not-at-top
  video = random_video((8, 2, 16, 16, 3), seed=14)
  weights = random_video((8, 32), seed=15)
  reference = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.0625,
                                bn_virtual_batch_size=2)
  reference(video)
  randomize_bn(reference, seed=14)
  initial = reference.get_weights()
  with tf.GradientTape() as tape:
    outputs = reference(video, training=True)
    loss = tf.reduce_sum(outputs * weights)
  expected_grads = tape.gradient(loss, reference.trainable_variables)

  strategy = mirrored_strategy()
  with strategy.scope():
    model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.0625,
                              bn_virtual_batch_size=2)
    model.build(video.shape)
    model.set_weights(initial)

  def step(inputs, step_weights):
    with tf.GradientTape() as replica_tape:
      features = model(inputs, training=True)
      replica_loss = tf.reduce_sum(features * step_weights)
    return features, replica_tape.gradient(replica_loss,
                                           model.trainable_variables)

  # Replica r gets clips 4r..4r+3: two groups of the global batch each.
  halves = [strategy.experimental_distribute_values_from_function(
      lambda ctx, a=a: a[4 * ctx.replica_id_in_sync_group:
                         4 * ctx.replica_id_in_sync_group + 4])
            for a in (video, weights)]
  features, grads = strategy.run(step, args=tuple(halves))
  np.testing.assert_allclose(np.concatenate(
      [np.asarray(f) for f in strategy.experimental_local_results(features)]),
                             outputs, rtol=1e-5, atol=1e-5)
  for grad, expected in zip(grads, expected_grads):
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, grad, axis=None)
    np.testing.assert_allclose(total, expected, rtol=1e-4, atol=1e-4)
  for variable, expected in zip(model.non_trainable_variables,
                                reference.non_trainable_variables):
    for copy in strategy.experimental_local_results(variable.value):
      np.testing.assert_allclose(copy, expected, rtol=1e-5, atol=1e-6)


def test_virtual_batch_errors():
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.0625,
                            bn_virtual_batch_size=4)
  video = random_video((6, 2, 16, 16, 3))
  model(video)  # inference: any batch
  with pytest.raises(ValueError, match="6 examples is not a multiple of "
                     "virtual_batch_size 4"):
    model(video, training=True)
  dynamic = tf.function(lambda x: model(x, training=True),
                        input_signature=[tf.TensorSpec((None, 2, 16, 16, 3))])
  assert dynamic(random_video((8, 2, 16, 16, 3))).shape == (8, 32)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="not a multiple of virtual_batch_size 4"):
    dynamic(video)
  with pytest.raises(ValueError, match="cannot be combined with synchronized"):
    r2plus1d.R2Plus1D(depth=10, synchronized_bn=True, bn_virtual_batch_size=4)
  with pytest.raises(ValueError, match="virtual_batch_size must be >= 1"):
    r2plus1d.R2Plus1D(depth=10, bn_virtual_batch_size=0)


def test_virtual_batches_under_jit_compile_and_mixed_precision():
  # As above, 48 px keeps the groups of the last stage well conditioned.
  video = random_video((4, 4, 48, 48, 3), seed=16)
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125,
                            bn_virtual_batch_size=2)
  model(video)
  weights = model.get_weights()
  eager = np.asarray(model(video, training=True))
  model.set_weights(weights)
  compiled = tf.function(lambda x: model(x, training=True), jit_compile=True)
  assert_close(compiled(video), eager, rtol=1e-3)
  half = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125,
                           bn_virtual_batch_size=2, dtype="mixed_float16")
  half(video)
  half.set_weights(weights)
  features = half(video, training=True)
  assert features.dtype == tf.float16
  assert np.all(np.isfinite(np.asarray(features, np.float32)))


# --------------------------------------------------------------------------
# Config, serialisation, XLA, mixed precision, errors.
# --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("virtual_batch_size", [None, 2])
def test_get_config_round_trip_and_keras_file(tmp_path, virtual_batch_size):
  model = r2plus1d.R2Plus1D(depth=18, width_multiplier=0.125, name="video",
                            bn_virtual_batch_size=virtual_batch_size)
  video = random_video((4, 2, 16, 16, 3), seed=8)
  model(video)
  randomize_bn(model, seed=8)
  config = model.get_config()
  json.dumps(config)
  assert (config["depth"], config["width_multiplier"],
          config["synchronized_bn"], config["bn_virtual_batch_size"],
          config["name"]) == (18, 0.125, False, virtual_batch_size, "video")
  clone = r2plus1d.R2Plus1D.from_config(config)
  clone.build(video.shape)
  assert clone.count_params() == model.count_params()
  assert [w.path for w in clone.weights] == [w.path for w in model.weights]
  assert {bn.virtual_batch_size for bn in bn_layers(clone)} == {
      virtual_batch_size}
  clone.set_weights(model.get_weights())
  np.testing.assert_array_equal(clone(video), model(video))
  np.testing.assert_array_equal(clone(video, training=True),
                                model(video, training=True))

  path = str(tmp_path / "video.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  assert isinstance(loaded, r2plus1d.R2Plus1D)
  assert loaded.bn_virtual_batch_size == virtual_batch_size
  np.testing.assert_array_equal(loaded(video), model(video))


@pytest.mark.slow
def test_call_under_jit_compile_matches_eager():
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125)
  video = random_video((2, 4, 16, 16, 3), seed=9)
  eager = np.asarray(model(video, training=False))
  compiled = tf.function(lambda x: model(x, training=False),
                         jit_compile=True)
  assert_close(compiled(video), eager)
  compiled_train = tf.function(lambda x: model(x, training=True),
                               jit_compile=True)
  assert compiled_train(video).shape == (2, 64)


def test_mixed_precision_policy():
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125,
                            dtype="mixed_float16")
  features = model(random_video((2, 4, 16, 16, 3)), training=True)
  assert features.dtype == tf.float16
  assert all(w.dtype == "float32" for w in model.weights)
  assert np.all(np.isfinite(np.asarray(features, np.float32)))
  clone = r2plus1d.R2Plus1D.from_config(model.get_config())
  assert clone.dtype_policy.name == "mixed_float16"


@pytest.mark.parametrize("kwargs", [{"depth": 50}, {"width_multiplier": 0}])
def test_invalid_arguments_raise(kwargs):
  with pytest.raises(ValueError):
    r2plus1d.R2Plus1D(**kwargs)
