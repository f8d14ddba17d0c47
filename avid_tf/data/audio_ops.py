"""Audio operations of the input pipeline: clip crop, gain, log-spectrogram.

Everything here is TensorFlow ops, usable inside `tf.data` map functions.
`log_spectrogram` is the one spectrogram of the project (docs/methods.md,
"Inputs and augmentation"): ingest computes the dataset statistics with it and the pipeline feeds the
audio network with it.
"""

import tensorflow as tf


N_FFT = 1024
NUM_BINS = N_FFT // 4 + 1  # DC + 512 bins averaged in pairs = 257
FRAMES_PER_SECOND = 100
AMIN = 1e-10
TOP_DB = 100.0
# The reference divides by (std + 1e-5); it also keeps bins with zero
# variance (e.g. silent datasets) finite.
STD_EPSILON = 1e-5


def hop_length(sample_rate):
  """Returns the STFT hop in samples (10 ms) for a sample rate."""
  return int(sample_rate) // FRAMES_PER_SECOND


def num_spectrogram_frames(seconds):
  """Returns the spectrogram frames kept for a clip of `seconds` (100/s)."""
  return int(round(seconds * FRAMES_PER_SECOND))


def log_spectrogram(waveform, sample_rate=24000, num_frames=None):
  """Returns the log-power spectrogram in dB (docs/methods.md, "Inputs").

  STFT with n_fft 1024, periodic Hann window, hop `sample_rate // 100`,
  centred frames (the waveform is reflect-padded by 512 samples on both
  sides, librosa's `center=True`), power |X|^2; bin 0 (DC) is kept and bins
  1..512 are averaged in adjacent pairs, giving 257 bins; then
  `power_to_db(ref=1, amin=1e-10, top_db=100)`, where the top_db floor is
  relative to the maximum of each spectrogram (over its frames and bins).

  Args:
    waveform: float [..., S] in [-1, 1], S > 512 (reflect padding needs it).
    sample_rate: sample rate of the waveform in Hz.
    num_frames: if given, only the first `num_frames` frames are kept, before
      the dB conversion (the reference crops first, so the top_db floor is
      relative to the maximum of the kept frames); None keeps all
      `1 + S // hop` frames.

  Returns:
    float32 [..., frames, 257] in dB.
  """
  waveform = tf.convert_to_tensor(waveform, tf.float32)
  rank = waveform.shape.rank
  pad = N_FFT // 2
  padded = tf.pad(waveform, [[0, 0]] * (rank - 1) + [[pad, pad]],
                  mode="REFLECT")
  stft = tf.signal.stft(padded, frame_length=N_FFT,
                        frame_step=hop_length(sample_rate), fft_length=N_FFT,
                        window_fn=tf.signal.hann_window, pad_end=False)
  if num_frames is not None:
    stft = stft[..., :num_frames, :]
  power = tf.math.square(tf.math.real(stft)) + tf.math.square(
      tf.math.imag(stft))
  dc = power[..., :1]
  pairs = power[..., 1:]
  pairs = tf.reshape(pairs, tf.concat(
      [tf.shape(pairs)[:-1], [N_FFT // 4, 2]], axis=0))
  power = tf.concat([dc, tf.reduce_mean(pairs, axis=-1)], axis=-1)
  return power_to_db(power)


def power_to_db(power):
  """librosa's `power_to_db(ref=1, amin=1e-10, top_db=100)` per spectrogram.

  Args:
    power: float [..., frames, bins] non-negative power.

  Returns:
    float32 [..., frames, bins] in dB, floored at (max - 100) of each
    spectrogram (the max over its last two axes).
  """
  log_spec = 10.0 * (tf.math.log(tf.maximum(power, AMIN)) /
                     tf.math.log(tf.constant(10.0, power.dtype)))
  peak = tf.reduce_max(log_spec, axis=[-2, -1], keepdims=True)
  return tf.maximum(log_spec, peak - TOP_DB)


def normalize_spectrogram(spectrogram, mean, std):
  """Per-frequency z-normalisation with dataset statistics.

  Args:
    spectrogram: float [..., frames, bins] in dB.
    mean: [bins] per-frequency mean (e.g. `spectrogram_mean` of
      avid_metadata.json).
    std: [bins] per-frequency standard deviation.

  Returns:
    float32 (spectrogram - mean) / (std + 1e-5), same shape.
  """
  mean = tf.convert_to_tensor(mean, tf.float32)
  std = tf.convert_to_tensor(std, tf.float32)
  return (spectrogram - mean) / (std + STD_EPSILON)


def crop_waveform(samples, start, length):
  """Crops `length` samples from `start`, padding with zeros past the end.

  Args:
    samples: [S] int16 PCM (or float) waveform; S may be 0 (no audio).
    start: int scalar start sample (clamped to >= 0).
    length: static int, the number of samples returned.

  Returns:
    float32 [length] in [-1, 1] (int16 divided by 32768).
  """
  samples = tf.convert_to_tensor(samples)
  scale = 1.0 / 32768.0 if samples.dtype == tf.int16 else 1.0
  start = tf.maximum(tf.cast(start, tf.int32), 0)
  clip = samples[start:start + length]
  clip = tf.pad(clip, [[0, length - tf.shape(clip)[0]]])
  clip = tf.cast(clip, tf.float32) * scale
  return tf.ensure_shape(clip, [length])


def random_gain(waveform, seed, min_gain=0.9, max_gain=1.1):
  """Multiplies a waveform by one gain drawn from U(min_gain, max_gain).

  Args:
    waveform: float [..., S].
    seed: stateless seed, int [2].
    min_gain: lower bound of the gain.
    max_gain: upper bound of the gain.

  Returns:
    The scaled waveform.
  """
  gain = tf.random.stateless_uniform([], seed, min_gain, max_gain)
  return waveform * gain
