"""Multi-clip audio dataset of an audio-only folder (the ESC-50 layout).

A folder of wav/flac/ogg files and a CSV of labels and folds, decoded by
`audio_files` (tensorflow-io where its kernels load, else PyAV) and turned into the normalised log-spectrograms of
pretraining (`audio_ops`), as evaluation batches of several clips a file.
"""

import csv
import os

import gin
import numpy as np
import tensorflow as tf

from avid_tf import errors
from avid_tf.data import audio_files
from avid_tf.data import audio_ops
from avid_tf.data import pipeline
from avid_tf.data import schema
from avid_tf.utils import files

_AUDIO_FORMATS = {".wav": "wav", ".flac": "flac", ".ogg": "ogg"}
_plain = tf.autograph.experimental.do_not_convert


def _read_audio_folder_csv(audio_dir, labels_csv, folds):
  """Rows (path, format, label, fold) of an ESC-50 style CSV."""
  if not files.isdir(audio_dir):
    raise FileNotFoundError(f"Audio folder {audio_dir} does not exist.")
  with files.open_file(labels_csv, newline="") as f:
    reader = csv.DictReader(f)
    missing = {"filename", "fold", "target"} - set(reader.fieldnames or ())
    if missing:
      raise errors.InvalidValueError(
          f"{labels_csv} lacks column(s) {sorted(missing)} (the ESC-50 "
          "layout: filename,fold,target,...).")
    rows = []
    for row in reader:
      fold = int(row["fold"])
      if folds is not None and fold not in folds:
        continue
      path = os.path.join(audio_dir, row["filename"])
      file_format = _AUDIO_FORMATS.get(os.path.splitext(path)[1].lower())
      if file_format is None:
        raise errors.InvalidValueError(
            f"{path}: unsupported audio file type (expected "
            f"{sorted(_AUDIO_FORMATS)}).")
      if not files.isfile(path):
        raise FileNotFoundError(f"{path} listed in {labels_csv} is missing.")
      rows.append((path, file_format, int(row["target"]), fold))
  if not rows:
    raise errors.InvalidValueError(
        f"{labels_csv} lists no files for folds {folds}.")
  return rows


@gin.configurable
def make_audio_folder_dataset(audio_dir, labels_csv, batch_size, folds=None,
                              num_clips=10, audio_seconds=2.0,
                              sample_rate=24000, normalization_dir=None,
                              spectrogram_mean=None, spectrogram_std=None,
                              num_parallel_calls=tf.data.AUTOTUNE):
  """Finite multi-clip dataset of an audio folder (ESC-50 layout).

  Files are decoded by `audio_files.decode` (16-bit wav/flac, ogg Vorbis),
  downmixed, resampled to `sample_rate`, and cut into `num_clips` clips of
  `audio_seconds` uniformly spaced over the file (zero-padded when shorter),
  each turned into a normalised log-spectrogram as in pretraining.

  Args:
    audio_dir: folder of the audio files.
    labels_csv: CSV with columns filename (relative to audio_dir), fold,
      target (class id), any others ignored.
    batch_size: files per batch.
    folds: optional collection of folds to keep; None keeps all.
    num_clips: clips per file.
    audio_seconds: clip length.
    sample_rate: rate the files are resampled to (the pretraining rate).
    normalization_dir: dataset folder whose avid_metadata.json provides the
      spectrogram statistics (the pretraining dataset's); overrides
      `spectrogram_mean`/`spectrogram_std`.
    spectrogram_mean: [257] statistics when `normalization_dir` is None;
      with neither, spectrograms stay in dB.
    spectrogram_std: [257], see `spectrogram_mean`.
    num_parallel_calls: parallelism of the per-file map.

  Returns:
    `tf.data.Dataset` of dicts: audio float32 [B, clips, audio_seconds *
    100, 257, 1], label int32 [B], fold int32 [B], index int32 [B] (row in
    the CSV order of the kept files); the last batch may be smaller.
  """
  rows = _read_audio_folder_csv(audio_dir, labels_csv, folds)
  if normalization_dir is not None:
    metadata = schema.read_metadata(normalization_dir)
    spectrogram_mean = metadata["spectrogram_mean"]
    spectrogram_std = metadata["spectrogram_std"]
  decoders = []
  branch = []
  for path, file_format, _, _ in rows:
    key = (file_format, audio_files.file_rate(path))
    if key not in decoders:
      decoders.append(key)
    branch.append(decoders.index(key))
  num_samples = int(round(audio_seconds * sample_rate))
  num_frames = audio_ops.num_spectrogram_frames(audio_seconds)

  def load(path, branch_index, label, fold, index):
    contents = tf.io.read_file(path)
    waveform = tf.switch_case(branch_index, [
        (lambda f=f, r=r: audio_files.decode(contents, f, r, sample_rate))
        for f, r in decoders])
    last_start = tf.maximum(tf.size(waveform) - num_samples, 0)
    starts = tf.cast(tf.round(tf.linspace(
        0.0, tf.cast(last_start, tf.float32), num_clips)), tf.int32)
    if num_clips == 1:
      starts = tf.reshape(last_start // 2, [1])
    waveforms = tf.stack([audio_ops.crop_waveform(
        waveform, starts[c], num_samples) for c in range(num_clips)])
    spec = audio_ops.log_spectrogram(waveforms, sample_rate,
                                     num_frames=num_frames)
    if spectrogram_mean is not None:
      spec = audio_ops.normalize_spectrogram(spec, spectrogram_mean,
                                             spectrogram_std)
    return {"audio": spec[..., tf.newaxis], "label": label, "fold": fold,
            "index": index}

  dataset = tf.data.Dataset.from_tensor_slices((
      [r[0] for r in rows], np.asarray(branch, np.int32),
      np.asarray([r[2] for r in rows], np.int32),
      np.asarray([r[3] for r in rows], np.int32),
      np.arange(len(rows), dtype=np.int32)))
  dataset = dataset.map(_plain(load), num_parallel_calls=num_parallel_calls,
                        deterministic=True)
  dataset = dataset.batch(batch_size, drop_remainder=False)
  dataset = dataset.prefetch(tf.data.AUTOTUNE)
  return dataset.with_options(pipeline.deterministic_options())
