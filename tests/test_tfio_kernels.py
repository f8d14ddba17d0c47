"""tensorflow-io's native kernels must load with the pinned TensorFlow.

The current stack (requirements-current.txt) does not install tensorflow-io;
there the module is skipped and audio files decode through PyAV.
"""

import wave

import numpy as np
import pytest
import tensorflow as tf

tfio = pytest.importorskip(
    "tensorflow_io", reason="tensorflow-io is not installed (current stack)")


def _write_wav(path, samples, sample_rate):
  pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
  with wave.open(str(path), "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(sample_rate)
    f.writeframes(pcm.tobytes())


def test_audio_io_tensor_decodes_and_resamples(tmp_path):
  rate = 16000
  t = np.arange(rate) / rate
  tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
  path = tmp_path / "tone.wav"
  _write_wav(path, tone, rate)

  audio = tfio.audio.AudioIOTensor(str(path))
  assert int(audio.rate) == rate
  decoded = tf.cast(audio.to_tensor()[:, 0], tf.float32) / 32768.0
  np.testing.assert_allclose(decoded.numpy(), tone, atol=1e-4)

  resampled = tfio.audio.resample(decoded, rate_in=rate, rate_out=24000)
  assert abs(int(resampled.shape[0]) - 24000) <= 1
  # The tone survives resampling: its dominant frequency stays at 440 Hz.
  spectrum = np.abs(np.fft.rfft(resampled.numpy()[:24000], n=24000))
  assert abs(int(np.argmax(spectrum)) - 440) <= 1
