"""Tests of avid_tf.data.video_ops: clip sampling and augmentation."""

import colorsys
import math

import numpy as np
import pytest
import tensorflow as tf

from avid_tf.data import video_ops


def _seed(i):
  return tf.constant([i, 12345], tf.int64)


# Graph functions: many seeded calls are much faster than eager op by op.
_av_offsets = tf.function(video_ops.sample_av_offsets)
_crop_window = tf.function(video_ops.random_resized_crop_window)


def test_sample_av_offsets_respect_the_offsync_window():
  video_len, audio_len, clip, window = 10.0, 10.0, 0.5, 2.0
  for max_offsync in (0.0, 0.5):
    offsets = np.array([
        [float(x) for x in _av_offsets(
            _seed(i), video_len, audio_len, clip, window, max_offsync)]
        for i in range(300)])
    video_start, audio_start = offsets[:, 0], offsets[:, 1]
    assert (audio_start >= 0).all() and (audio_start <= 8.0 + 1e-6).all()
    assert (video_start >= audio_start - max_offsync - 1e-6).all()
    assert (video_start + clip <= audio_start + window + max_offsync +
            1e-6).all()
    assert (video_start >= 0).all() and (video_start <= 9.5 + 1e-6).all()
    # Uniform-ish coverage of the audio range and of the offsync window.
    assert audio_start.min() < 0.5 and audio_start.max() > 7.5
    relative = video_start - audio_start
    assert relative.min() < -max_offsync + 0.1
    assert relative.max() > window - clip + max_offsync - 0.1


def test_sample_av_offsets_short_and_silent_videos():
  # Shorter than the clip: both start at 0.
  video_start, audio_start = video_ops.sample_av_offsets(
      _seed(0), 0.3, 0.3, 0.5, 2.0, 0.5)
  assert float(video_start) == 0.0 and float(audio_start) == 0.0
  # No audio: the video start covers the whole video.
  starts = [float(_av_offsets(_seed(i), 4.0, 0.0, 0.5, 2.0, 0.5)[0])
            for i in range(200)]
  assert min(starts) >= 0 and max(starts) <= 3.5 + 1e-6
  assert min(starts) < 0.3 and max(starts) > 3.2


def test_uniform_clip_offsets_share_centres():
  video_starts, audio_starts = video_ops.uniform_clip_offsets(5, 6.0, 6.0,
                                                              0.5, 2.0)
  centres = np.linspace(1.0, 5.0, 5)
  np.testing.assert_allclose(video_starts.numpy(), centres - 0.25, atol=1e-6)
  np.testing.assert_allclose(audio_starts.numpy(), centres - 1.0, atol=1e-6)
  # Short video, no audio: clipped to valid ranges.
  video_starts, audio_starts = video_ops.uniform_clip_offsets(3, 1.0, 0.0,
                                                              0.5, 2.0)
  np.testing.assert_allclose(video_starts.numpy(), [0.5, 0.5, 0.5])
  np.testing.assert_allclose(audio_starts.numpy(), [0.0, 0.0, 0.0])
  one, _ = video_ops.uniform_clip_offsets(1, 6.0, 6.0, 0.5, 2.0)
  np.testing.assert_allclose(one.numpy(), [2.75])


def test_frame_indices_nearest_preceding_and_looping():
  # 16 fps stored, sampled at 8 fps from t=1.0: every other frame from 16.
  np.testing.assert_array_equal(
      video_ops.frame_indices(1.0, 4, 8.0, 16.0, 100).numpy(),
      [16, 18, 20, 22])
  # 25 fps stored, 16 fps sampling: floor(t * 25).
  start = 0.37
  expected = np.floor((start + np.arange(8) / 16) * 25 + 1e-4).astype(int)
  np.testing.assert_array_equal(
      video_ops.frame_indices(start, 8, 16.0, 25.0, 100).numpy(), expected)
  # 5 stored frames, 8 needed: the clip loops over its own frames.
  np.testing.assert_array_equal(
      video_ops.frame_indices(0.0, 8, 16.0, 16.0, 5).numpy(),
      [0, 1, 2, 3, 4, 0, 1, 2])
  # Batched starts.
  np.testing.assert_array_equal(
      video_ops.frame_indices(tf.constant([0.0, 0.25]), 3, 16.0, 16.0,
                              6).numpy(), [[0, 1, 2], [4, 5, 4]])


def test_random_resized_crop_window_matches_torchvision_ranges():
  height, width = 120, 160
  windows = np.array([
      _crop_window(_seed(i), height, width).numpy() for i in range(300)])
  y, x, h, w = windows.T
  assert (y >= 0).all() and (x >= 0).all()
  assert (y + h <= height).all() and (x + w <= width).all()
  area = h * w / (height * width)
  ratio = w / h
  # Rounding of w and h to integers loosens the bounds slightly.
  assert area.min() >= 0.08 * 0.9 and area.max() <= 1.0
  assert ratio.min() >= 0.75 * 0.9 and ratio.max() <= 4 / 3 * 1.1
  assert area.min() < 0.15 and area.max() > 0.8
  assert len({tuple(win) for win in windows}) > 250
  # Same seed, same window.
  np.testing.assert_array_equal(
      video_ops.random_resized_crop_window(_seed(3), height, width).numpy(),
      windows[3])


def test_random_resized_crop_window_falls_back_to_central_crop():
  # A 10x1000 strip never fits a crop with ratio <= 4/3 and area >= 8 %:
  # torchvision falls back to the central crop with the ratio clamped.
  window = video_ops.random_resized_crop_window(_seed(0), 10, 1000).numpy()
  np.testing.assert_array_equal(window, [0, (1000 - 13) // 2, 10, 13])


def _encode(frames):
  return tf.stack([tf.io.encode_jpeg(f, quality=95) for f in frames])


def test_decode_jpeg_frames_crop_equals_decode_then_crop():
  rng = np.random.default_rng(0)
  base = np.clip(np.cumsum(rng.normal(size=(3, 48, 64, 3)) * 8, axis=2) + 128,
                 0, 255).astype(np.uint8)
  jpegs = _encode(base)
  full = video_ops.decode_jpeg_frames(jpegs).numpy()
  assert full.shape == (3, 48, 64, 3)
  window = tf.constant([8, 16, 24, 32])
  cropped = video_ops.decode_jpeg_frames(jpegs, window).numpy()
  assert cropped.shape == (3, 24, 32, 3)
  # Inside the window the pixels are the same; on its border libjpeg's
  # chroma upsampling lacks the neighbours outside the window.
  difference = np.abs(cropped.astype(int) - full[:, 8:32, 16:48].astype(int))
  assert difference[:, 1:-1, 1:-1].max() <= 1
  assert difference.max() <= 12
  dynamic = tf.function(video_ops.decode_jpeg_frames,
                        input_signature=[tf.TensorSpec([None], tf.string)])
  np.testing.assert_array_equal(dynamic(jpegs).numpy(), full)


def test_resize_frames_antialias_only_when_shrinking():
  frames = tf.constant(np.random.default_rng(0).integers(
      0, 255, size=(2, 20, 30, 3)), tf.uint8)
  up = video_ops.resize_frames(frames, 40, 40, antialias=True)
  np.testing.assert_allclose(
      up.numpy(), tf.image.resize(frames, [40, 40]).numpy(), atol=1e-4)
  down = video_ops.resize_frames(frames, 16, 16, antialias=True)
  np.testing.assert_allclose(
      down.numpy(),
      tf.image.resize(frames, [16, 16], antialias=True).numpy(), atol=1e-4)
  plain = video_ops.resize_frames(frames, 16, 16, antialias=False)
  assert np.abs(plain.numpy() - down.numpy()).max() > 1


def test_flip_is_seeded_and_flips_all_frames():
  frames = tf.reshape(tf.range(2 * 3 * 4 * 3), [2, 3, 4, 3])
  flips = []
  for i in range(50):
    out = video_ops.random_flip_left_right(frames, _seed(i)).numpy()
    flipped = np.array_equal(out, frames.numpy()[:, :, ::-1])
    assert flipped or np.array_equal(out, frames.numpy())
    flips.append(flipped)
  assert 10 < sum(flips) < 40


def _planes(frames):
  return video_ops.to_planes(tf.constant(frames, tf.float32))


def _numpy_gray(frames):
  return frames @ np.array([0.299, 0.587, 0.114])


def test_brightness_contrast_saturation_match_torchvision_formulas():
  rng = np.random.default_rng(1)
  frames = rng.uniform(size=(2, 5, 6, 3))
  planes = _planes(frames)
  out = video_ops.from_planes(video_ops.adjust_brightness(planes, 1.3))
  np.testing.assert_allclose(out.numpy(), np.clip(frames * 1.3, 0, 1),
                             atol=1e-6)
  out = video_ops.from_planes(video_ops.adjust_contrast(planes, 0.6))
  mean = _numpy_gray(frames).mean(axis=(1, 2))[:, None, None, None]
  np.testing.assert_allclose(
      out.numpy(), np.clip(0.6 * frames + 0.4 * mean, 0, 1), atol=1e-6)
  out = video_ops.from_planes(video_ops.adjust_saturation(planes, 1.4))
  gray = _numpy_gray(frames)[..., None]
  np.testing.assert_allclose(
      out.numpy(), np.clip(1.4 * frames - 0.4 * gray, 0, 1), atol=1e-6)


@pytest.mark.parametrize("delta", [0.0, 0.13, -0.2, 0.5, -0.5])
def test_adjust_hue_matches_colorsys(delta):
  rng = np.random.default_rng(2)
  frames = rng.uniform(size=(1, 6, 7, 3))
  frames[0, 0, :3] = [[0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [0.2, 0.2, 0.9]]
  out = video_ops.from_planes(video_ops.adjust_hue(_planes(frames), delta))
  expected = np.empty_like(frames)
  for index in np.ndindex(frames.shape[:-1]):
    h, s, v = colorsys.rgb_to_hsv(*frames[index])
    expected[index] = colorsys.hsv_to_rgb((h + delta) % 1.0, s, v)
  np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_color_jitter_draws_once_per_clip_in_random_order():
  frames = tf.random.stateless_uniform([3, 8, 8, 3], [0, 1])
  factors, order = video_ops.color_jitter_params(_seed(5))
  factors = factors.numpy()
  assert 0.6 <= factors[:3].min() and factors[:3].max() <= 1.4
  assert -0.2 <= factors[3] <= 0.2
  assert sorted(order.numpy()) == [0, 1, 2, 3]
  orders = {tuple(video_ops.color_jitter_params(_seed(i))[1].numpy())
            for i in range(100)}
  assert len(orders) > 12  # many of the 24 orders occur
  out = video_ops.color_jitter(frames, _seed(5)).numpy()
  # The same result by applying the drawn adjustments in the drawn order.
  adjustments = [video_ops.adjust_brightness, video_ops.adjust_contrast,
                 video_ops.adjust_saturation, video_ops.adjust_hue]
  planes = video_ops.to_planes(frames)
  for op in order.numpy():
    planes = adjustments[op](planes, factors[op])
  np.testing.assert_allclose(out, video_ops.from_planes(planes).numpy(),
                             atol=1e-6)
  assert 0.0 <= out.min() and out.max() <= 1.0
  np.testing.assert_array_equal(
      video_ops.color_jitter(frames, _seed(5)).numpy(), out)


def test_zero_strength_color_jitter_is_the_identity():
  frames = tf.random.stateless_uniform([2, 4, 4, 3], [0, 2])
  out = video_ops.color_jitter(frames, _seed(1), 0.0, 0.0, 0.0, 0.0)
  np.testing.assert_array_equal(out.numpy(), frames.numpy())


def test_normalize_imagenet_planes_and_interleaved_agree():
  frames = np.random.default_rng(3).uniform(size=(2, 3, 4, 3)).astype(
      np.float32)
  expected = (frames - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  np.testing.assert_allclose(
      video_ops.normalize_imagenet(tf.constant(frames)).numpy(), expected,
      atol=1e-5)
  np.testing.assert_allclose(
      video_ops.normalize_imagenet(_planes(frames)).numpy(), expected,
      atol=1e-5)


def test_augment_clip_shape_range_and_determinism():
  frames = tf.cast(tf.random.stateless_uniform([4, 30, 50, 3], [0, 3],
                                               maxval=256, dtype=tf.int32),
                   tf.uint8)
  out = video_ops.augment_clip(frames, _seed(0), 16)
  assert out.shape == (4, 16, 16, 3) and out.dtype == tf.float32
  unnormalised = (out.numpy() * [0.229, 0.224, 0.225] +
                  [0.485, 0.456, 0.406])
  assert unnormalised.min() >= -1e-5 and unnormalised.max() <= 1 + 1e-5
  np.testing.assert_array_equal(
      video_ops.augment_clip(frames, _seed(0), 16).numpy(), out.numpy())
  assert not np.array_equal(
      video_ops.augment_clip(frames, _seed(1), 16).numpy(), out.numpy())


def test_eval_resize_and_center_crop():
  frames = np.zeros((2, 64, 96, 3), np.uint8)
  frames[:, :, 48:] = 200  # right half bright
  out = video_ops.eval_resize_and_center_crop(tf.constant(frames), 56).numpy()
  assert out.shape == (2, 56, 56, 3)
  # Short side 64 -> 64 (56 / 0.875): no resize; centre crop columns 20..75.
  np.testing.assert_array_equal(out, frames[:, 4:60, 20:76])
  multi = video_ops.eval_resize_and_center_crop(
      tf.constant(np.stack([frames, frames])), 28).numpy()
  assert multi.shape == (2, 2, 28, 28, 3)
  # The edge sits between columns 13 and 14 (antialiasing blurs it).
  assert math.isclose(multi[..., :12, :].mean(), 0.0, abs_tol=1e-3)
  assert math.isclose(multi[..., 16:, :].mean(), 200.0, abs_tol=1e-3)


def test_evaluation_prepares_frames_as_the_training_step_finishes_them():
  frames = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8, 3),
                                             dtype=np.uint8)
  expected = ((frames / 255.0 - np.asarray(video_ops.IMAGENET_MEAN)) /
              np.asarray(video_ops.IMAGENET_STD))
  evaluated = video_ops.scale_and_normalize(tf.constant(frames)).numpy()
  np.testing.assert_allclose(evaluated, expected, rtol=0, atol=1e-5)
  # Training's finishing with identity jitter (factors 1, hue shift 0).
  identity = tf.constant([[1.0, 1.0, 1.0, 0.0]] * 2)
  order = tf.constant([[3, 0, 2, 1], [0, 1, 2, 3]])
  trained = video_ops.finish_batch(tf.constant(frames), identity,
                                   order).numpy()
  np.testing.assert_allclose(trained, expected, rtol=0, atol=2e-5)
