"""Decodes audio files (wav, flac, ogg) to mono waveforms, in tf.data.

Two backends give the same samples: tensorflow-io's decoders and resampler
where its native kernels load (the pinned stack: tensorflow-io 0.37.1
loads them only on TF 2.17), and PyAV (FFmpeg) in a `tf.numpy_function`
elsewhere, e.g. on the current TensorFlow. Decoded samples agree within one
least significant bit of int16 (tests/test_audio_files.py); resampled ones
differ by the two resamplers' filters (tensorflow-io's against FFmpeg's
swresample, the one ingest uses), well below the spectrogram's resolution.
"""

import functools
import io
import wave

import av
import numpy as np
import tensorflow as tf

from avid_tf import errors
from avid_tf.utils import files

TENSORFLOW_IO = "tensorflow_io"
PYAV = "pyav"
BACKENDS = (TENSORFLOW_IO, PYAV)
FORMATS = ("wav", "flac", "ogg")
_INT16_SCALE = 32768.0


def _silent_wav():
  buffer = io.BytesIO()
  with wave.open(buffer, "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(8000)
    f.writeframes(b"\0\0" * 8)
  return buffer.getvalue()


@functools.cache
def tensorflow_io_loads():
  """Whether tensorflow-io is installed and its native kernels run here."""
  try:
    import tensorflow_io as tfio  # pylint: disable=g-import-not-at-top
    tfio.audio.decode_wav(tf.constant(_silent_wav()), dtype=tf.int16)
  except Exception:  # pylint: disable=broad-except
    # ImportError without the package; NotFoundError (undefined symbols)
    # from kernels built for another TensorFlow.
    return False
  return True


def default_backend():
  """tensorflow-io where its kernels load, else PyAV."""
  return TENSORFLOW_IO if tensorflow_io_loads() else PYAV


def file_rate(path):
  """The sample rate in Hz of an audio file's first audio stream.

  Raises:
    InvalidValueError: when the file has no audio stream or cannot be read.
  """
  try:
    with files.open_file(path, "rb") as f, av.open(f) as container:
      return int(container.streams.audio[0].sample_rate)
  except (av.error.FFmpegError, IndexError, ValueError) as error:
    raise errors.InvalidValueError(
        f"{path}: cannot read the audio file ({error}).") from None


def _decode_with_tensorflow_io(contents, file_format, rate, sample_rate):
  import tensorflow_io as tfio  # pylint: disable=g-import-not-at-top
  if file_format == "ogg":
    audio = tfio.audio.decode_vorbis(contents)
  else:
    decode = (tfio.audio.decode_wav if file_format == "wav"
              else tfio.audio.decode_flac)
    audio = tf.cast(decode(contents, dtype=tf.int16),
                    tf.float32) / _INT16_SCALE
  audio = tf.reduce_mean(tf.cast(audio, tf.float32), axis=-1)
  if int(rate) != int(sample_rate):
    audio = tfio.audio.resample(audio, rate_in=int(rate),
                                rate_out=int(sample_rate))
  return tf.reshape(audio, [-1])


def _float_channels(frame):
  """float32 [channels, samples] in [-1, 1] of a decoded PyAV frame."""
  array = frame.to_ndarray()
  if not frame.format.is_planar:
    array = array.reshape(-1, len(frame.layout.channels)).T
  if np.issubdtype(array.dtype, np.integer):
    return array.astype(np.float32) / -float(np.iinfo(array.dtype).min)
  return array.astype(np.float32)


def _resample_with_pyav(waveform, rate, sample_rate):
  resampler = av.AudioResampler(format="flt", layout="mono",
                                rate=sample_rate)
  frame = av.AudioFrame.from_ndarray(waveform[np.newaxis], format="flt",
                                     layout="mono")
  frame.sample_rate = rate
  frame.pts = 0
  chunks = [out.to_ndarray().reshape(-1)
            for out in resampler.resample(frame) + resampler.resample(None)]
  return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _decode_with_pyav(contents, rate, sample_rate):
  with av.open(io.BytesIO(contents)) as container:
    stream = container.streams.audio[0]
    chunks = [_float_channels(frame) for frame in container.decode(stream)]
    # FFmpeg's Vorbis decoder returns the last packet whole; the stream's
    # duration (the final granule position) ends it, as libvorbis does.
    length = None if stream.duration is None else round(
        float(stream.duration * stream.time_base) * stream.sample_rate)
  if not chunks:
    return np.zeros(0, np.float32)
  waveform = np.concatenate(chunks, axis=1)[:, :length].mean(
      axis=0, dtype=np.float32)
  if int(rate) != int(sample_rate):
    waveform = _resample_with_pyav(waveform, int(rate), int(sample_rate))
  return waveform.astype(np.float32)


def decode(contents, file_format, rate, sample_rate, backend=None):
  """Decodes a wav/flac/ogg file to a mono float waveform at `sample_rate`.

  `file_format` and `rate` are Python values (tensorflow-io's resampler
  takes the rates as attributes), so callers group files by them.

  Args:
    contents: scalar string tensor, the encoded file.
    file_format: "wav" or "flac" (16-bit PCM) or "ogg" (Vorbis).
    rate: the file's sample rate in Hz.
    sample_rate: the output sample rate in Hz.
    backend: one of `BACKENDS`; None for `default_backend()`.

  Returns:
    float32 [S] in [-1, 1], the channels averaged (downmix).

  Raises:
    InvalidValueError: for an unsupported format or backend.
  """
  if file_format not in FORMATS:
    raise errors.InvalidValueError(
        f"Unsupported audio format '{file_format}' (expected "
        f"{', '.join(FORMATS)}).")
  backend = default_backend() if backend is None else backend
  if backend == TENSORFLOW_IO:
    return _decode_with_tensorflow_io(contents, file_format, rate,
                                      sample_rate)
  if backend != PYAV:
    raise errors.InvalidValueError(
        f"Unknown audio backend '{backend}' (expected {BACKENDS}).")
  waveform = tf.numpy_function(
      # A scalar string arrives as bytes in tf.data, and eagerly as a 0-d
      # object array holding them.
      lambda data: _decode_with_pyav(
          data.item() if isinstance(data, np.ndarray) else data, rate,
          sample_rate),
      [contents],
      tf.float32, stateful=False)
  return tf.reshape(waveform, [-1])
