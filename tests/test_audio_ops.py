"""Tests of avid_tf.data.audio_ops against float64 NumPy references."""


import numpy as np
import pytest
import tensorflow as tf

from avid_tf.data import audio_ops

RATE = 24000


def reference_log_spectrogram(waveform, sample_rate=RATE, num_frames=None):
  """docs/methods.md's log-spectrogram in float64 NumPy (librosa 0.7)."""
  waveform = np.asarray(waveform, np.float64)
  padded = np.pad(waveform, 512, mode="reflect")
  hop = sample_rate // 100
  count = 1 + (len(padded) - 1024) // hop
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)  # periodic
  frames = np.stack([padded[i * hop:i * hop + 1024] for i in range(count)])
  power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
  if num_frames is not None:
    power = power[:num_frames]
  power = np.concatenate(
      [power[:, :1], power[:, 1:].reshape(len(power), 256, 2).mean(-1)], -1)
  db = 10 * np.log10(np.maximum(power, 1e-10))
  return np.maximum(db, db.max() - 100)


def assert_close_db(ours, expected):
  """float32 FFT rounding: ~1e-3 dB wherever the power is within 60 dB of the
  peak; bins far below it (deep sidelobes and spectral dips, where the float32
  FFT's ~-140 dB noise floor is relatively larger) move a little more."""
  error = np.abs(ours - expected)
  loud = expected > expected.max() - 60
  assert error[loud].max() < 1e-3
  assert error.max() < 2e-2
  assert np.median(error) < 1e-4


def _signals():
  rng = np.random.default_rng(0)
  t = np.arange(2 * RATE) / RATE
  return {
      "noise": 0.1 * rng.standard_normal(t.shape),
      "tone_plus_noise": (0.5 * np.sin(2 * np.pi * 1000 * t) +
                          0.01 * rng.standard_normal(t.shape)),
      "pure_tone": 0.5 * np.sin(2 * np.pi * 440 * t),
      "ramped_tone": np.linspace(0, 1, t.size) * np.sin(2 * np.pi * 300 * t),
  }


@pytest.mark.parametrize("name", sorted(_signals()))
def test_log_spectrogram_matches_float64_reference(name):
  signal = _signals()[name].astype(np.float32)
  ours = audio_ops.log_spectrogram(signal, RATE).numpy()
  expected = reference_log_spectrogram(signal)
  assert ours.shape == (201, 257) and ours.dtype == np.float32
  assert_close_db(ours, expected)


def test_log_spectrogram_frames_and_batch_dims():
  signal = _signals()["noise"].astype(np.float32)
  batch = np.stack([signal, 0.5 * signal, signal[::-1].copy()])
  ours = audio_ops.log_spectrogram(batch.reshape(3, 1, -1), RATE).numpy()
  assert ours.shape == (3, 1, 1 + batch.shape[-1] // 240, 257)
  for i in range(3):
    assert_close_db(ours[i, 0], reference_log_spectrogram(batch[i]))
  # Other lengths and sample rates: 1 + S // hop centred frames.
  short = np.random.default_rng(1).standard_normal(16000).astype(np.float32)
  spec = audio_ops.log_spectrogram(short, 16000).numpy()
  assert spec.shape == (1 + 16000 // 160, 257)
  assert_close_db(spec, reference_log_spectrogram(short, 16000))


def test_num_frames_crops_before_the_top_db_floor():
  rng = np.random.default_rng(2)
  # Quiet first 2 s, then a burst 150 dB louder: top_db must be relative to
  # the kept frames, not to the burst in frame 200.
  signal = np.concatenate([1e-6 * rng.standard_normal(2 * RATE),
                           np.ones(RATE // 100)]).astype(np.float32)
  ours = audio_ops.log_spectrogram(signal, RATE, num_frames=200).numpy()
  expected = reference_log_spectrogram(signal, num_frames=200)
  assert ours.shape == (200, 257)
  assert_close_db(ours, expected)
  full = audio_ops.log_spectrogram(signal, RATE).numpy()
  assert full[:200].min() > ours.min()  # the floor differs without cropping


def test_silence_gives_the_amin_floor_everywhere():
  spec = audio_ops.log_spectrogram(np.zeros(48000, np.float32)).numpy()
  np.testing.assert_array_equal(spec, np.full((201, 257), -100.0, np.float32))


def test_normalize_spectrogram_per_frequency():
  rng = np.random.default_rng(3)
  spec = rng.normal(size=(2, 200, 257)).astype(np.float32)
  mean = rng.normal(size=257)
  std = rng.uniform(0.5, 2.0, size=257)
  out = audio_ops.normalize_spectrogram(spec, mean, std).numpy()
  np.testing.assert_allclose(out, (spec - mean) / (std + 1e-5), rtol=1e-5,
                             atol=1e-5)
  # Zero std (a constant bin) stays finite.
  flat = audio_ops.normalize_spectrogram(spec, mean, np.zeros(257)).numpy()
  assert np.isfinite(flat).all()


def test_crop_waveform_scales_int16_and_zero_pads():
  pcm = np.arange(-5, 5, dtype=np.int16) * 3000
  clip = audio_ops.crop_waveform(pcm, 4, 8).numpy()
  np.testing.assert_allclose(clip, np.concatenate(
      [pcm[4:].astype(np.float64) / 32768, np.zeros(2)]))
  assert clip.dtype == np.float32
  empty = audio_ops.crop_waveform(np.zeros([0], np.int16), 0, 6).numpy()
  np.testing.assert_array_equal(empty, np.zeros(6))
  assert audio_ops.crop_waveform(pcm, -3, 2).numpy()[0] == pcm[0] / 32768


def test_random_gain_is_seeded_and_in_range():
  wave_ = tf.ones([100])
  gains = [float(audio_ops.random_gain(wave_, tf.constant([s, 0]))[0])
           for s in range(200)]
  assert 0.9 <= min(gains) and max(gains) <= 1.1
  assert max(gains) - min(gains) > 0.15  # spans the range
  again = float(audio_ops.random_gain(wave_, tf.constant([7, 0]))[0])
  assert again == gains[7]
