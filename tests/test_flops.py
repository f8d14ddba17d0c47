"""Tests for avid_tf.models.flops."""

import keras
import pytest

from avid_tf.models import audio_cnn
from avid_tf.models import flops
from avid_tf.models import layers as model_layers
from avid_tf.models import r2plus1d


# Published forward GFLOP per clip (2 x multiply-adds).
@pytest.mark.slow
@pytest.mark.parametrize("depth,size,published", [
    (18, 112, 6.16),
    (18, 224, 24.25),
    (10, 112, 3.80),
])
def test_video_encoder_matches_published_figures(depth, size, published):
  model = r2plus1d.R2Plus1D(depth=depth)
  gflop = flops.forward_flops(model, (8, size, size, 3)) / 1e9
  assert gflop == pytest.approx(published, rel=0.02)


def test_audio_encoder_matches_published_figure():
  model = audio_cnn.AudioConvNet()
  gflop = flops.forward_flops(model, (200, 257, 1)) / 1e9
  assert gflop == pytest.approx(2.88, rel=0.02)


def _out(size, kernel, stride, pad):
  return (size + 2 * pad - kernel) // stride + 1


def spec_video_multiply_adds(blocks_per_stage, frames, size):
  """Multiply-adds of the R(2+1)D of docs/methods.md, layer by layer."""
  t, s = frames, _out(size, 7, 2, 3)
  total = t * s * s * 64 * (3 * 7 * 7 * 3)  # stem
  s = _out(s, 3, 2, 1)  # stem max-pool
  c = 64
  for stage, (channels, blocks) in enumerate(
      zip((64, 128, 256, 512), blocks_per_stage)):
    for block in range(blocks):
      stride = 2 if stage > 0 and block == 0 else 1
      s = _out(s, 3, stride, 1)
      total += t * s * s * channels * 9 * c  # spatial 1x3x3
      t = _out(t, 3, stride, 1)
      total += t * s * s * channels * 3 * channels  # temporal 3x1x1
      total += t * s * s * channels * 9 * channels
      total += t * s * s * channels * 3 * channels
      if stride != 1 or c != channels:
        total += t * s * s * channels * c  # 1x1x1 shortcut
      c = channels
  return total


def spec_audio_multiply_adds(time, freq):
  h, w = _out(time, 7, 2, 3), _out(freq, 7, 2, 3)
  total = h * w * 64 * 49
  c = 64
  for channels, stride in zip((64, 128, 256, 512), (2, 2, 2, 1)):
    h, w = _out(h, 3, stride, 1), _out(w, 3, stride, 1)
    total += h * w * channels * 9 * (c + channels)
    c = channels
  return total


@pytest.mark.parametrize("depth,frames,size", [(18, 8, 112), (10, 4, 64)])
def test_video_count_is_twice_the_layer_by_layer_multiply_adds(
    depth, frames, size):
  blocks = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2)}[depth]
  model = r2plus1d.R2Plus1D(depth=depth)
  assert flops.forward_flops(model, (frames, size, size, 3)) == (
      2 * spec_video_multiply_adds(blocks, frames, size))


def test_audio_count_is_twice_the_layer_by_layer_multiply_adds():
  model = audio_cnn.AudioConvNet()
  assert flops.forward_flops(model, (200, 257, 1)) == (
      2 * spec_audio_multiply_adds(200, 257))


def test_single_layers_follow_the_formula():
  # Conv3D 1x3x3 stride 1x2x2 pad 0x1x1, 5 -> 7 channels on 4x9x9:
  # output 4x5x5x7, each output sums 1*3*3*5 products.
  conv3d = model_layers.PaddedConv(7, (1, 3, 3), strides=(1, 2, 2),
                                   padding=(0, 1, 1))
  assert flops.forward_flops(conv3d, (4, 9, 9, 5)) == 2 * (4 * 5 * 5 * 7) * 45
  conv2d = model_layers.PaddedConv(6, (7, 7), strides=2, padding=3)
  assert flops.forward_flops(conv2d, (10, 11, 1)) == 2 * (5 * 6 * 6) * 49
  dense = keras.layers.Dense(3)
  assert flops.forward_flops(dense, (10,)) == 2 * 10 * 3


def test_elementwise_layers_are_not_counted():
  assert flops.forward_flops(keras.layers.BatchNormalization(),
                             (4, 4, 8)) == 0


def test_train_step_estimate_is_three_forwards_of_both_encoders():
  video = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125)
  audio = audio_cnn.AudioConvNet(width_multiplier=0.125)
  video_flops = flops.forward_flops(video, (4, 32, 32, 3))
  audio_flops = flops.forward_flops(audio, (40, 33, 1))
  estimate = flops.train_step_gflop_per_clip(video, audio, (4, 32, 32, 3),
                                             (40, 33, 1))
  assert estimate == pytest.approx(3 * (video_flops + audio_flops) / 1e9)
  assert estimate > 0


def test_unknown_shapes_are_rejected():
  model = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125)
  with pytest.raises(ValueError, match="static shapes"):
    flops.forward_flops(model, (None, 32, 32, 3))
