"""Tests of avid_tf.data.audio_files: both backends decode the same samples."""

import av
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.data import audio_files
from conftest import encode_audio_frame

RATE = 24000
LSB = 1 / 32768


def _stereo_tones(rate, seconds=0.5):
  t = np.arange(int(rate * seconds)) / rate
  left = 0.5 * np.sin(2 * np.pi * 440 * t)
  right = 0.3 * np.sin(2 * np.pi * 1000 * t + 0.5)
  return np.round(np.stack([left, right]) * 32767).astype(np.int16)


def _write(path, file_format, pcm, rate):
  """Writes [2, S] int16 stereo as wav (PCM), flac or ogg (Vorbis)."""
  codec = {"wav": "pcm_s16le", "flac": "flac", "ogg": "vorbis"}[file_format]
  with av.open(str(path), mode="w", format=file_format) as container:
    stream = container.add_stream(codec, rate=rate)
    stream.layout = "stereo"
    if file_format == "ogg":  # FFmpeg's own Vorbis encoder is experimental.
      stream.codec_context.options = {"strict": "experimental"}
      samples = pcm.astype(np.float32) / 32768
      frame_format = "fltp"
    else:
      samples, frame_format = pcm.T.reshape(1, -1), "s16"
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples),
                                       format=frame_format, layout="stereo")
    frame.sample_rate = rate
    encode_audio_frame(container, stream, frame)


def _backends():
  return [audio_files.PYAV] + (
      [audio_files.TENSORFLOW_IO] if audio_files.tensorflow_io_loads() else [])


def _decode(path, file_format, sample_rate, backend):
  contents = tf.io.read_file(str(path))
  rate = audio_files.file_rate(str(path))
  return audio_files.decode(contents, file_format, rate, sample_rate,
                            backend=backend).numpy()


@pytest.mark.parametrize("backend", _backends())
def test_lossless_files_decode_to_the_written_samples(tmp_path, backend):
  pcm = _stereo_tones(RATE)
  expected = pcm.astype(np.float32).mean(axis=0) / 32768
  for file_format in ("wav", "flac"):
    path = tmp_path / f"a.{file_format}"
    _write(path, file_format, pcm, RATE)
    assert audio_files.file_rate(str(path)) == RATE
    np.testing.assert_allclose(_decode(path, file_format, RATE, backend),
                               expected, atol=1e-7, err_msg=file_format)


@pytest.mark.parametrize("file_format", audio_files.FORMATS)
def test_both_backends_decode_within_one_lsb(tmp_path, file_format):
  if not audio_files.tensorflow_io_loads():
    pytest.skip("tensorflow-io's kernels do not load on this TensorFlow "
                "(the current stack); the pinned stack runs this test")
  path = tmp_path / f"a.{file_format}"
  _write(path, file_format, _stereo_tones(RATE), RATE)
  with_pyav = _decode(path, file_format, RATE, audio_files.PYAV)
  with_tfio = _decode(path, file_format, RATE, audio_files.TENSORFLOW_IO)
  assert with_pyav.shape == with_tfio.shape
  assert np.abs(with_pyav - with_tfio).max() <= LSB


@pytest.mark.parametrize("backend", _backends())
def test_resampling_keeps_length_and_tones(tmp_path, backend):
  path = tmp_path / "a.flac"
  _write(path, "flac", _stereo_tones(16000, seconds=1.0), 16000)
  resampled = _decode(path, "flac", RATE, backend)
  assert abs(resampled.size - RATE) <= 2
  spectrum = np.abs(np.fft.rfft(resampled[:RATE], n=RATE))
  assert abs(int(np.argmax(spectrum)) - 440) <= 1
  assert abs(int(np.argmax(spectrum[600:])) + 600 - 1000) <= 1


def test_tensorflow_io_is_the_default_where_its_kernels_load():
  assert audio_files.default_backend() == (
      audio_files.TENSORFLOW_IO if audio_files.tensorflow_io_loads()
      else audio_files.PYAV)


def test_unsupported_format_and_unreadable_file(tmp_path):
  with pytest.raises(ValueError, match="mp3"):
    audio_files.decode(tf.constant(b""), "mp3", RATE, RATE)
  broken = tmp_path / "broken.wav"
  broken.write_bytes(b"not audio")
  with pytest.raises(ValueError, match="broken.wav: cannot read"):
    audio_files.file_rate(str(broken))
