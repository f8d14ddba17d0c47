"""Ingest: video files -> the on-disk TFDS dataset of `schema.py`.

Two phases, so that the memory-bank rows are contiguous and an interrupted
ingest resumes at video granularity:

1. Decode (parallel, `num_workers` processes). Each input file is decoded
   with PyAV: video frames resampled to `fps` (output frame k is the decoded
   frame nearest before k / fps, k over the video duration), resized to
   `short_side` keeping the aspect ratio and JPEG-encoded; audio downmixed
   to mono, resampled to `sample_rate` and stored as int16. The result is a
   serialized example (index and label unset) in the work folder
   `<dataset_dir>/.ingest_work/`, followed by a small JSON record (the
   "done" marker, also written for skipped files with the reason). A rerun
   skips files whose record exists. Records are keyed by the file's
   relative path, size, modification time and the decode settings, so a
   changed file or setting is decoded again.
2. Write (fast, one process). Successfully decoded videos of each split
   are put in a seeded random order (`shuffle_seed`: a permutation of the
   sorted video ids, so it depends only on the set of videos, the split and
   the seed) and get index 0..N-1 in that order, written across the shards
   in that order: any contiguous run of records, a shard or the reader's
   group of shards, is a uniform sample of the split, whatever the folder
   layout (class-sorted `class/video.mp4` trees included). Shards are
   written atomically
   with `schema.write_shard`; the per-frequency mean/std of the
   log-spectrogram (docs/methods.md, "Inputs and augmentation") over the
   train split and the metadata go to `avid_metadata.json`; `ingest_report.json` lists every
   input file with its status and reason. The work folder is deleted last.

Without a labels CSV a file's class is its folder's name (`class/video.mp4`)
and `val_fraction` carves a seeded, class-stratified validation split out
of train. A rerun into a dataset ingested with other settings refuses,
naming them, unless `overwrite` (runs may have trained on it).

Bad input is reported, never fatal. `IngestError` is raised only for
unusable arguments (missing or empty video folder, malformed labels CSV),
changed settings, or when no video at all could be ingested.
"""

import collections
import csv
import dataclasses
import hashlib
import io
import json
import os
import re

from absl import logging
import av
import numpy as np
from PIL import Image
import tensorflow as tf
from tensorflow_datasets.proto import tf_example_pb2

from avid_tf import errors
from avid_tf.data import audio_ops
from avid_tf.data import schema
from avid_tf.data import shard_check
from avid_tf.utils import files
from avid_tf.utils import parallel

REPORT_FILE = "ingest_report.json"
WORK_DIR = ".ingest_work"
MISSING_AUDIO_POLICIES = ("silence", "skip")
# Optional labels.csv column: 1 marks a video whose audio is known not to
# belong to it (controlled studies of faulty positives; see docs/methods.md).
FAULTY_COLUMN = "faulty"

# Kinds of outcome recorded per file (report "kind", "counts_by_status").
INGESTED = "ingested"
NO_AUDIO_SILENCED = "no_audio_silenced"
MISSING_FILE = "missing_file"
DUPLICATE = "duplicate"
ZERO_BYTE = "zero_byte"
CANNOT_OPEN = "cannot_open"
NO_VIDEO_STREAM = "no_video_stream"
DECODE_ERROR = "decode_error"
TOO_SHORT = "too_short"
NO_AUDIO = "no_audio"
UNEXPECTED_ERROR = "unexpected_error"
_INGESTED_KINDS = (INGESTED, NO_AUDIO_SILENCED)

# A decode that yields fewer frames than this fraction of the frame count the
# container declares is treated as a truncated file.
_MIN_DECODED_FRACTION = 0.9
# Spectrogram statistics process long waveforms in pieces of at least this
# many seconds (bounds memory; boundary frames differ negligibly).
_STATS_CHUNK_SECONDS = 600.0
_TIME_EPSILON = 1e-6
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")


class IngestError(errors.UserError):
  """The ingest cannot run or produced no video; the message is one line."""


class VideoDecodeError(Exception):
  """A file cannot be used; `kind` is one of the kinds above."""

  def __init__(self, kind, reason):
    super().__init__(reason)
    self.kind = kind
    self.reason = reason


@dataclasses.dataclass
class DecodedVideo:
  """One decoded video.

  Attributes:
    frames: list of JPEG bytes, one per output frame at the target fps.
    audio: int16 mono waveform at the target sample rate aligned with the
      first video frame, or None when the file has no audio stream.
    duration: seconds of video.
    num_decoded_frames: frames the decoder produced (before resampling).
    frame_size: (height, width) of the stored frames.
  """
  frames: list
  audio: np.ndarray | None
  duration: float
  num_decoded_frames: int
  frame_size: tuple


@dataclasses.dataclass(frozen=True)
class _DecodeOptions:
  fps: int
  short_side: int
  sample_rate: int
  jpeg_quality: int
  min_duration: float
  missing_audio: str


@dataclasses.dataclass(frozen=True)
class _Task:
  video_id: str   # path relative to the video folder (posix separators)
  path: str       # absolute path of the file
  work_prefix: str  # work folder path without extension


def _one_line(text):
  return " ".join(str(text).split())


def _resized_shape(height, width, short_side):
  """Returns (height, width) with the short side equal to `short_side`."""
  if height <= width:
    return short_side, max(1, round(width * short_side / height))
  return max(1, round(height * short_side / width)), short_side


class _FrameResampler:
  """Streams decoded frames into frames at a fixed rate.

  Output frame k shows the decoded frame whose timestamp is the nearest one
  at or before k / fps (relative to the first frame). Each decoded frame is
  resized and JPEG-encoded at most once, however often it is repeated.
  """

  def __init__(self, fps, short_side, jpeg_quality):
    self._fps = fps
    self._short_side = short_side
    self._jpeg_quality = jpeg_quality
    self.start_time = 0.0     # presentation time of the first frame (s)
    self._last_time = 0.0     # of the latest frame, relative to the first
    self._pending = None      # last decoded frame, not yet superseded
    self._pending_jpeg = None
    self.frames = []
    self.num_decoded = 0
    self.frame_size = None

  def add(self, frame, time):
    """Adds a decoded frame presented at `time` seconds (None: unknown)."""
    if self.num_decoded == 0:
      self.start_time = time or 0.0
    if time is None:
      relative = self._last_time + (1.0 / self._fps if self.num_decoded else 0)
    else:
      relative = max(time - self.start_time, self._last_time)
    if self._pending is not None:
      self._emit_until(relative)
    self._pending = frame
    self._pending_jpeg = None
    self._last_time = relative
    self.num_decoded += 1

  def finish(self, duration):
    """Emits the output frames up to `duration` seconds."""
    if self._pending is not None:
      self._emit_until(duration)
    self._pending = None

  @property
  def last_time(self):
    return self._last_time

  def _emit_until(self, end_time):
    while len(self.frames) / self._fps < end_time - _TIME_EPSILON:
      if self._pending_jpeg is None:
        self._pending_jpeg = self._encode(self._pending)
      self.frames.append(self._pending_jpeg)

  def _encode(self, frame):
    height, width = _resized_shape(frame.height, frame.width,
                                   self._short_side)
    self.frame_size = (height, width)
    shrinking = height < frame.height
    rgb = frame.reformat(width=width, height=height, format="rgb24",
                         interpolation="AREA" if shrinking else "BILINEAR")
    buffer = io.BytesIO()
    Image.fromarray(rgb.to_ndarray()).save(buffer, format="JPEG",
                                           quality=self._jpeg_quality)
    return buffer.getvalue()


def decode_video(path, fps=16, short_side=128, sample_rate=24000,
                 jpeg_quality=90):
  """Decodes a media file into JPEG frames at `fps` and int16 mono audio.

  Args:
    path: the media file.
    fps: output frame rate.
    short_side: output length of the shorter frame side (aspect kept).
    sample_rate: output audio sample rate in Hz.
    jpeg_quality: JPEG quality (1..100).

  Returns:
    A `DecodedVideo`.

  Raises:
    VideoDecodeError: the file is empty, not a media file, has no video
      stream, or fails to decode (corrupt or truncated).
  """
  if files.getsize(path) == 0:
    raise VideoDecodeError(ZERO_BYTE, "zero-byte file")
  try:
    container = av.open(files.media_source(path), metadata_errors="ignore")
  except Exception as e:  # pylint: disable=broad-except
    raise VideoDecodeError(
        CANNOT_OPEN, "cannot open (corrupt or not a media file): "
        f"{_one_line(e)}") from e
  with container:
    if not container.streams.video:
      kinds = sorted({s.type for s in container.streams}) or ["none"]
      raise VideoDecodeError(
          NO_VIDEO_STREAM,
          f"no video stream (streams found: {', '.join(kinds)})")
    video_stream = container.streams.best("video")
    audio_stream = None
    if container.streams.audio:
      audio_stream = container.streams.best("audio")
    resampler = _FrameResampler(fps, short_side, jpeg_quality)
    audio = _AudioCollector(sample_rate) if audio_stream is not None else None
    streams = [video_stream]
    if audio_stream is not None:
      streams.append(audio_stream)
    try:
      for packet in container.demux(streams):
        for frame in packet.decode():
          if packet.stream.type == "video":
            resampler.add(frame, frame.time)
          else:
            audio.add(frame)
      if audio is not None:
        audio.flush()
    except av.error.FFmpegError as e:
      raise VideoDecodeError(
          DECODE_ERROR, "truncated/corrupt: decoding failed after "
          f"{resampler.num_decoded} video frames: {_one_line(e)}") from e
    if resampler.num_decoded == 0:
      raise VideoDecodeError(DECODE_ERROR,
                             "truncated/corrupt: no video frame decoded")
    declared = video_stream.frames or 0
    if resampler.num_decoded < _MIN_DECODED_FRACTION * declared:
      raise VideoDecodeError(
          DECODE_ERROR, f"truncated: decoded {resampler.num_decoded} of "
          f"{declared} video frames declared by the container")
    if video_stream.average_rate:
      frame_period = 1.0 / float(video_stream.average_rate)
    elif resampler.num_decoded > 1:
      frame_period = resampler.last_time / (resampler.num_decoded - 1)
    else:
      frame_period = 1.0 / fps
    duration = resampler.last_time + frame_period
    resampler.finish(duration)
    waveform = None
    if audio is not None:
      waveform = audio.waveform(resampler.start_time, duration)
  return DecodedVideo(frames=resampler.frames, audio=waveform,
                      duration=duration,
                      num_decoded_frames=resampler.num_decoded,
                      frame_size=resampler.frame_size)


class _AudioCollector:
  """Downmixes and resamples decoded audio frames to int16 mono."""

  def __init__(self, sample_rate):
    self._sample_rate = sample_rate
    self._resampler = av.AudioResampler(format="s16", layout="mono",
                                        rate=sample_rate)
    self._chunks = []
    self._start_time = None

  def add(self, frame):
    if self._start_time is None and frame.time is not None:
      self._start_time = frame.time
    self._collect(self._resampler.resample(frame))

  def flush(self):
    self._collect(self._resampler.resample(None))

  def _collect(self, frames):
    for frame in frames:
      self._chunks.append(frame.to_ndarray().reshape(-1))

  def waveform(self, video_start_time, duration):
    """Returns the waveform aligned with the first video frame.

    Args:
      video_start_time: presentation time of the first video frame (s).
      duration: video duration (s); longer audio is trimmed to it.

    Returns:
      int16 array [S].
    """
    samples = (np.concatenate(self._chunks) if self._chunks
               else np.zeros(0, np.int16)).astype(np.int16, copy=False)
    start_time = (video_start_time if self._start_time is None
                  else self._start_time)
    offset = round((start_time - video_start_time) * self._sample_rate)
    if offset > 0:
      samples = np.concatenate([np.zeros(offset, np.int16), samples])
    elif offset < 0:
      samples = samples[-offset:]
    return samples[:round(duration * self._sample_rate)]


def _decode_to_work_file(task, options):
  """Phase-1 job: decodes one file and writes its work record.

  Returns:
    The record dict {"video_id", "kind", "reason", "duration",
    "num_frames", "num_audio_samples"}. Records of unexpected errors are not
    written, so a rerun tries the file again.
  """
  record = {"video_id": task.video_id, "kind": INGESTED, "reason": "",
            "duration": None, "num_frames": 0, "num_audio_samples": 0}
  try:
    if not files.isfile(task.path):
      raise VideoDecodeError(MISSING_FILE, f"missing file: {task.path}")
    if files.getsize(task.path) > 0 and options.missing_audio == "skip":
      _raise_if_no_audio_stream(task.path)
    decoded = decode_video(task.path, fps=options.fps,
                           short_side=options.short_side,
                           sample_rate=options.sample_rate,
                           jpeg_quality=options.jpeg_quality)
    record["duration"] = decoded.duration
    if decoded.duration < options.min_duration - _TIME_EPSILON:
      raise VideoDecodeError(
          TOO_SHORT, f"shorter than a clip: {decoded.duration:.3f} s < "
          f"min_duration {options.min_duration:.3f} s")
    audio = decoded.audio
    if audio is None:
      if options.missing_audio == "skip":
        raise VideoDecodeError(NO_AUDIO,
                               "no audio stream (--missing_audio=skip)")
      record["kind"] = NO_AUDIO_SILENCED
      record["reason"] = ("no audio stream: stored empty audio "
                          "(--missing_audio=silence)")
      audio = np.zeros(0, np.int16)
    serialized = schema.features().serialize_example({
        "video_id": task.video_id,
        "frames": decoded.frames,
        "audio": audio,
        "label": -1,
        "index": -1,
        "duration": decoded.duration,
    })
    record["num_frames"] = len(decoded.frames)
    record["num_audio_samples"] = int(audio.shape[0])
    files.write_bytes(task.work_prefix + ".example", serialized)
  except VideoDecodeError as e:
    record["kind"] = e.kind
    record["reason"] = e.reason
  except Exception as e:  # pylint: disable=broad-except
    record["kind"] = UNEXPECTED_ERROR
    record["reason"] = f"unexpected {type(e).__name__}: {_one_line(e)}"
    return record
  files.write_json(task.work_prefix + ".json", record, indent=None)
  return record


def _decode_job(args):
  return _decode_to_work_file(*args)


def _raise_if_no_audio_stream(path):
  """Skips decoding files without audio under the skip policy."""
  try:
    with av.open(files.media_source(path),
                 metadata_errors="ignore") as container:
      has_video = bool(container.streams.video)
      has_audio = bool(container.streams.audio)
  except Exception:  # pylint: disable=broad-except
    return  # decode_video reports why the file cannot be opened
  if has_video and not has_audio:
    raise VideoDecodeError(NO_AUDIO, "no audio stream (--missing_audio=skip)")


@dataclasses.dataclass
class _Entry:
  """One input file as listed (CSV row or file found in the folder)."""
  video_id: str
  path: str
  label: str
  split: str
  duplicate: bool = False
  faulty: int = -1  # the CSV's optional 0/1 column; -1 when not given


def _list_inputs(video_dir, labels_csv, exclude_dir):
  """Returns the input `_Entry`s in listing order."""
  if labels_csv is None:
    entries = []
    exclude_dir = os.path.realpath(exclude_dir)
    for root, dirs, file_names in files.walk(video_dir):
      dirs.sort()
      real_root = os.path.realpath(root)
      if os.path.commonpath([real_root, exclude_dir]) == exclude_dir:
        continue  # the output dataset itself, inside the video folder
      for file_name in sorted(file_names):
        path = os.path.join(root, file_name)
        video_id = os.path.relpath(path, video_dir).replace(os.sep, "/")
        entries.append(_Entry(video_id, path, _folder_label(video_id),
                              "train"))
    if not entries:
      raise IngestError(f"--video_dir {video_dir} contains no files.")
    return sorted(entries, key=lambda e: e.video_id)
  return _read_labels_csv(video_dir, labels_csv)


def _folder_label(video_id):
  """The class of a file listed without a CSV: its folder's name
  (`class/video.mp4`, Kinetics' layout); "" (no label) for a file at the
  top of the video folder."""
  parts = video_id.split("/")
  return parts[-2] if len(parts) > 1 else ""


def _split_off_val(entries, val_fraction, seed):
  """Moves a seeded, class-stratified `val_fraction` of train to "val".

  Each label's train videos (the unlabelled ones as one group) give
  round(val_fraction * n) to val, at least one and at most n - 1 when the
  group has two or more; the choice is a permutation of the sorted ids
  seeded by `seed`, so it depends only on the videos and the seed.

  Raises:
    IngestError: the labels CSV already has a split other than train.
  """
  other = sorted({e.split for e in entries} - {"train"})
  if other:
    raise IngestError(f"--val_fraction carves val out of train, but the "
                      f"labels CSV already gives split(s) {other}; use one "
                      "or the other.")
  groups = collections.defaultdict(list)
  for entry in entries:
    if not entry.duplicate:
      groups[entry.label].append(entry.video_id)
  rng = np.random.default_rng([int(seed or 0), 2])
  val_ids = set()
  for label in sorted(groups):
    ids = sorted(groups[label])
    count = int(round(val_fraction * len(ids)))
    if len(ids) >= 2:
      count = min(max(count, 1), len(ids) - 1)
    val_ids.update(ids[i] for i in rng.permutation(len(ids))[:count])
  return [dataclasses.replace(e, split="val") if e.video_id in val_ids
          else e for e in entries]


def _settings(options, shuffle_seed, val_fraction, video_dir, labels_csv):
  """What an ingest was asked for, as recorded in avid_metadata.json."""
  return {"fps": options.fps, "short_side": options.short_side,
          "sample_rate": options.sample_rate,
          "jpeg_quality": options.jpeg_quality,
          "min_duration": options.min_duration,
          "missing_audio": options.missing_audio,
          "shuffle_seed": shuffle_seed, "val_fraction": val_fraction,
          "video_dir": video_dir,
          "labels_csv": os.path.abspath(labels_csv) if labels_csv else None}


def _check_same_settings(directory, settings, overwrite):
  """Refuses to rebuild a dataset with other settings unless `overwrite`.

  Runs may have trained on the dataset already there; a silent rebuild
  would change the data under them.

  Raises:
    IngestError: naming each setting that differs from the recorded one.
  """
  path = os.path.join(directory, schema.METADATA_FILE)
  if overwrite or not files.isfile(path):
    return
  recorded = schema.read_metadata(directory)
  changed = [f"{key} {recorded[key]!r} there, {value!r} now"
             for key, value in settings.items()
             if key in recorded and recorded[key] != value]
  if changed:
    raise IngestError(
        f"{directory} was ingested with other settings ({'; '.join(changed)})"
        ": pass --overwrite to rebuild it, or choose another --output_dir or "
        "--name.")


def _resolve_listed_path(listed, video_dir, csv_dir):
  """Returns (file, video id) of a path listed in the labels CSV.

  The path is taken relative to `video_dir`; when no file is there but one
  is relative to the CSV's own folder, that one. So a CSV beside a folder
  of videos that lists paths through that folder works whether `video_dir`
  is the folder holding the CSV or the videos folder itself. The id of a
  file found under `video_dir` is its path relative to it (as for a listing
  without a CSV); otherwise, a missing file included, the listed path.
  """
  path = files.normpath(os.path.join(video_dir, listed))
  video_id = files.normpath(listed)
  if not files.isfile(path):
    beside_csv = files.normpath(os.path.join(csv_dir, listed))
    if not files.isfile(beside_csv):
      return path, video_id.replace(os.sep, "/")
    path = beside_csv
  relative = os.path.relpath(path, video_dir)
  if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
    video_id = relative
  return path, video_id.replace(os.sep, "/")


def _read_labels_csv(video_dir, labels_csv):
  if not files.isfile(labels_csv):
    raise IngestError(f"--labels_csv {labels_csv} does not exist.")
  with files.open_file(labels_csv, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if "path" not in columns:
      raise IngestError(f"--labels_csv {labels_csv} has no 'path' column "
                        f"(columns: {', '.join(columns) or 'none'}).")
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()}
            for row in reader]
  csv_dir = os.path.dirname(files.abspath(labels_csv))
  entries, seen = [], set()
  for line, row in enumerate(rows, start=2):
    if not row["path"]:
      raise IngestError(f"--labels_csv {labels_csv} line {line}: empty path.")
    split = row.get("split") or "train"
    if not _SPLIT_NAME.fullmatch(split):
      raise IngestError(f"--labels_csv {labels_csv} line {line}: split "
                        f"'{split}' must be letters, digits or '_'.")
    path, video_id = _resolve_listed_path(row["path"], video_dir, csv_dir)
    faulty = row.get(FAULTY_COLUMN, "")
    if faulty not in ("", "0", "1"):
      raise IngestError(f"--labels_csv {labels_csv} line {line}: "
                        f"{FAULTY_COLUMN} must be 0, 1 or empty, got "
                        f"'{faulty}'.")
    entry = _Entry(video_id, path, row.get("label", ""), split,
                   duplicate=video_id in seen,
                   faulty=int(faulty) if faulty else -1)
    seen.add(video_id)
    entries.append(entry)
  if not entries:
    raise IngestError(f"--labels_csv {labels_csv} lists no videos.")
  return entries


def _instance_columns(splits, entries):
  """Per-split label and (when the CSV has it) faulty columns by index."""
  faulty = {e.video_id: e.faulty for e in entries if not e.duplicate}
  has_faulty = any(value >= 0 for value in faulty.values())
  columns = {}
  for split, items in splits.items():
    columns[split] = {"label": [label for _, _, label in items]}
    if has_faulty:
      columns[split][FAULTY_COLUMN] = [faulty[video_id]
                                       for video_id, _, _ in items]
  return columns


def _work_key(entry, options):
  """Returns the work-file key: path, file identity and decode settings."""
  try:
    stat = os.stat(entry.path)
    identity = [stat.st_size, stat.st_mtime_ns]
  except OSError:
    identity = None
  text = json.dumps([entry.video_id, identity, dataclasses.asdict(options)])
  return hashlib.sha1(text.encode()).hexdigest()


def _run_decode_phase(tasks, options, work_dir, num_workers, show_progress):
  """Decodes every task without a record; returns {video_id: record}."""
  records, pending = {}, []
  for task in tasks:
    record_path = task.work_prefix + ".json"
    if files.isfile(record_path):
      with files.open_file(record_path) as f:
        records[task.video_id] = json.load(f)
    else:
      pending.append(task)
  if records:
    logging.info("Resuming: %d of %d files already decoded in %s.",
                 len(records), len(tasks), work_dir)
  jobs = [(task, options) for task in pending]
  for record in parallel.map_with_progress(
      _decode_job, jobs, num_workers, "Decoding videos", unit="video",
      show_progress=show_progress, done=len(records)):
    records[record["video_id"]] = record
  return records


class _SpectrogramStats:
  """Per-frequency mean/std of the log-spectrogram, accumulated in float64."""

  def __init__(self, sample_rate):
    self._sample_rate = sample_rate
    self._sum = None
    self._sum_squares = None
    self.num_frames = 0
    self.num_videos = 0
    self._spectrogram = tf.function(
        lambda waveform: audio_ops.log_spectrogram(waveform, sample_rate),
        input_signature=[tf.TensorSpec([None], tf.float32)])

  def add(self, audio):
    """Adds the frames of one int16 waveform.

    Waveforms shorter than one FFT window (empty: no audio) are ignored;
    the centred STFT's reflect padding needs more than n_fft / 2 samples.
    """
    if audio.size < audio_ops.N_FFT:
      return
    waveform = audio.astype(np.float32) / 32768.0
    chunk = int(_STATS_CHUNK_SECONDS * self._sample_rate)
    for piece in np.array_split(waveform, max(1, len(waveform) // chunk)):
      spectrogram = self._spectrogram(tf.constant(piece)).numpy()
      spectrogram = spectrogram.astype(np.float64)
      if self._sum is None:
        self._sum = np.zeros(spectrogram.shape[-1])
        self._sum_squares = np.zeros(spectrogram.shape[-1])
      self._sum += spectrogram.sum(axis=0)
      self._sum_squares += np.square(spectrogram).sum(axis=0)
      self.num_frames += spectrogram.shape[0]
    self.num_videos += 1

  def result(self):
    """Returns (mean, std) lists, or None when no audio was added."""
    if not self.num_frames:
      return None
    mean = self._sum / self.num_frames
    variance = np.maximum(self._sum_squares / self.num_frames - mean**2, 0.0)
    return mean.tolist(), np.sqrt(variance).tolist()


def _record_order(items, split, seed):
  """A split's items in a random order seeded by (seed, split name)."""
  if seed is None:
    return items
  split_key = int.from_bytes(hashlib.sha256(split.encode()).digest()[:8],
                             "little")
  order = np.random.default_rng([int(seed), split_key]).permutation(
      len(items))
  return [items[i] for i in order]


def _plan_shards(items, max_videos, max_bytes):
  """Splits a list of (video_id, work_file, ...) items into shard lists."""
  shards, current, current_bytes = [], [], 0
  for item in items:
    size = files.getsize(item[1])
    if current and (len(current) >= max_videos
                    or current_bytes + size > max_bytes):
      shards.append(current)
      current, current_bytes = [], 0
    current.append(item)
    current_bytes += size
  if current:
    shards.append(current)
  return shards


def _write_dataset(directory, name, splits, stats, videos_per_shard,
                   max_shard_bytes):
  """Writes the shards of every split; returns {split: shard lengths}.

  Args:
    directory: dataset folder.
    name: dataset name.
    splits: dict split -> list of (video_id, work_file, label) in record
      order.
    stats: `_SpectrogramStats` fed with the train split's audio.
    videos_per_shard: most videos per shard.
    max_shard_bytes: most (approximate) bytes per shard.

  Returns:
    dict split -> list of examples per shard.
  """
  shard_lengths = {}
  for split, items in splits.items():
    shards = _plan_shards(items, videos_per_shard, max_shard_bytes)
    index = 0
    for shard_id, shard_items in enumerate(shards):
      serialized = []
      for _, work_file, label in shard_items:
        with files.open_file(work_file, "rb") as f:
          example = tf_example_pb2.Example.FromString(f.read())
        feature = example.features.feature
        feature["index"].int64_list.value[:] = [index]
        feature["label"].int64_list.value[:] = [label]
        if split == "train":
          stats.add(_example_audio(feature["audio"]))
        serialized.append(example.SerializeToString())
        index += 1
      _write_shard_unless_identical(
          schema.shard_path(directory, name, split, shard_id, len(shards)),
          serialized)
    shard_lengths[split] = [len(s) for s in shards]
  return shard_lengths


def _write_shard_unless_identical(path, serialized):
  """Writes a shard, unless the file already holds exactly these records.

  A rerun over the same inputs thus rewrites only damaged or changed shards
  (`shard_check`); the good ones keep their bytes and modification time.
  The comparison reads the file through the record reader, which checks
  every record's CRC, and its size, which the records fix exactly.
  """
  expected_size = sum(shard_check.FRAMING_BYTES + len(record)
                      for record in serialized)
  if (files.isfile(path) and files.getsize(path) == expected_size
      and shard_check.check_records(path, serialized)):
    return
  schema.write_shard(path, serialized)


def _example_audio(feature):
  """Returns the int16 waveform of a serialized `audio` feature.

  Handles both encodings tfds can give an int16 Tensor feature: an
  int64_list of samples (the default) or raw bytes (Encoding.BYTES).
  """
  if feature.WhichOneof("kind") == "bytes_list":
    return np.frombuffer(b"".join(feature.bytes_list.value), np.int16)
  return np.asarray(feature.int64_list.value, np.int16)


def _remove_stale_shards(directory, name, shard_lengths):
  """Deletes shard files of this dataset that the new metadata omits."""
  keep = {os.path.basename(schema.shard_path(directory, name, split, i,
                                             len(lengths)))
          for split, lengths in shard_lengths.items()
          for i in range(len(lengths))}
  prefix = f"{name}-"
  for file_name in files.listdir(directory):
    if (file_name.startswith(prefix) and ".tfrecord-" in file_name
        and file_name not in keep):
      files.remove(os.path.join(directory, file_name))


def ingest(video_dir, output_dir, name, labels_csv=None, fps=16,
           short_side=128, sample_rate=24000, jpeg_quality=90,
           num_workers=None, missing_audio="skip", min_duration=0.5,
           videos_per_shard=256, max_shard_bytes=256 * 2**20,
           shuffle_seed=0, show_progress=True, val_fraction=0.0,
           overwrite=False):
  """Decodes a folder of videos into the on-disk dataset of `schema.py`.

  Args:
    video_dir: folder of video files.
    output_dir: the dataset is written to `<output_dir>/<name>/1.0.0`.
    name: dataset name.
    labels_csv: optional CSV with columns path,label[,split][,faulty]
      (paths relative to `video_dir`, or to the CSV's own folder for a file
      not found under `video_dir`; faulty 0/1 marks videos whose audio is
      known to be wrong, kept per memory row in instances.npz; other
      columns ignored). Without it every file under `video_dir` is
      ingested into the train split, labelled by its folder's name
      (`class/video.mp4`; a file at the top of `video_dir` gets label -1).
    fps: frame rate of the stored frames.
    short_side: shorter side of the stored frames in pixels.
    sample_rate: sample rate of the stored audio in Hz.
    jpeg_quality: JPEG quality of the stored frames (1..95).
    num_workers: decoding processes; None uses os.cpu_count(). 1 decodes in
      this process.
    missing_audio: "skip" (default) leaves out a video without an audio
      stream, as the reference cannot load one; "silence" keeps it with an
      empty waveform (the pipeline pads zeros, so every such clip has the
      same spectrogram).
    min_duration: videos shorter than this many seconds are skipped.
    videos_per_shard: most videos per shard file.
    max_shard_bytes: approximate largest shard file size.
    shuffle_seed: seed of each split's record order (and so of the memory
      index of each video); None keeps the sorted video-id order.
    show_progress: whether to show a progress bar.
    val_fraction: moves this fraction of each class's train videos to a
      "val" split (seeded by `shuffle_seed`); 0 keeps the splits given.
    overwrite: rebuild a dataset already in place although it was ingested
      with other settings (otherwise an `IngestError` names them).

  Returns:
    The report dict also written to `<dataset_dir>/ingest_report.json`:
    {"dataset_dir", "num_ingested", "num_skipped", "num_no_audio_skipped",
    "num_no_audio_silenced", "counts_by_status",
    "files": [{"path", "status", "kind", "reason", "split", "index"}]}.

  Raises:
    IngestError: missing or empty `video_dir`, malformed `labels_csv`, bad
      arguments, a dataset in place ingested with other settings, or no
      video could be ingested.
  """
  _check_arguments(video_dir, fps, short_side, sample_rate, jpeg_quality,
                   missing_audio, val_fraction)
  video_dir = files.abspath(video_dir)
  directory = schema.dataset_dir(files.abspath(output_dir), name)
  entries = _list_inputs(video_dir, labels_csv,
                         exclude_dir=os.path.join(files.abspath(output_dir),
                                                  name))
  options = _DecodeOptions(fps=int(fps), short_side=int(short_side),
                           sample_rate=int(sample_rate),
                           jpeg_quality=int(jpeg_quality),
                           min_duration=float(min_duration),
                           missing_audio=missing_audio)
  if val_fraction:
    entries = _split_off_val(entries, val_fraction, shuffle_seed)
  settings = _settings(options, shuffle_seed, float(val_fraction), video_dir,
                       labels_csv)
  _check_same_settings(directory, settings, overwrite)
  work_dir = os.path.join(directory, WORK_DIR)
  files.makedirs(work_dir)
  tasks = [_Task(e.video_id, e.path, os.path.join(work_dir,
                                                  _work_key(e, options)))
           for e in entries if not e.duplicate]
  records = _run_decode_phase(tasks, options, work_dir,
                              num_workers or os.cpu_count() or 1,
                              show_progress)

  label_names = sorted({e.label for e in entries if e.label})
  splits = _ingested_splits(entries, records, tasks, label_names)
  report_path = os.path.join(directory, REPORT_FILE)
  if not splits:
    report = _make_report(directory, entries, records, {})
    files.write_json(report_path, report)
    files.rmtree(work_dir)
    raise IngestError(
        f"No video ingested from {video_dir}: {report['num_skipped']} files "
        f"skipped ({_format_counts(report['counts_by_status'])}); see "
        f"{report_path}.")
  split_order = sorted(splits, key=lambda s: (s != "train", s))
  splits = {s: _record_order(sorted(splits[s]), s, shuffle_seed)
            for s in split_order}
  indices = {item[0]: (split, i) for split, items in splits.items()
             for i, item in enumerate(items)}

  stats = _SpectrogramStats(options.sample_rate)
  shard_lengths = _write_dataset(directory, name, splits, stats,
                                 videos_per_shard, max_shard_bytes)
  metadata = _metadata(settings, stats, label_names, splits)
  schema.write_dataset_info(
      directory, name, shard_lengths, metadata,
      description=f"Videos of {video_dir} ingested by avid_tf.",
      instance_columns=_instance_columns(splits, entries))
  _remove_stale_shards(directory, name, shard_lengths)
  report = _make_report(directory, entries, records, indices)
  files.write_json(report_path, report)
  files.rmtree(work_dir)
  logging.info("Ingested %d videos into %s (%d skipped).",
               report["num_ingested"], directory, report["num_skipped"])
  return report


def _check_arguments(video_dir, fps, short_side, sample_rate, jpeg_quality,
                     missing_audio, val_fraction):
  """Raises IngestError for a bad setting or a missing input folder."""
  if not 0 <= val_fraction < 1:
    raise IngestError(f"val_fraction must be in [0, 1), got {val_fraction}.")
  if missing_audio not in MISSING_AUDIO_POLICIES:
    raise IngestError(f"missing_audio must be one of {MISSING_AUDIO_POLICIES},"
                      f" got '{missing_audio}'.")
  if not 1 <= jpeg_quality <= 100:
    raise IngestError(f"jpeg_quality must be in 1..100, got {jpeg_quality}.")
  if fps <= 0 or short_side <= 0 or sample_rate <= 0:
    raise IngestError(f"fps, short_side and sample_rate must be positive, got "
                      f"{fps}, {short_side}, {sample_rate}.")
  if not video_dir or not files.isdir(video_dir):
    raise IngestError(f"--video_dir {video_dir} does not exist or is not a "
                      "folder.")


def _ingested_splits(entries, records, tasks, label_names):
  """{split: [(video id, decoded example file, label id)]} of the videos
  that were ingested, in input order."""
  label_ids = {label: i for i, label in enumerate(label_names)}
  splits = collections.defaultdict(list)
  work_files = {t.video_id: t.work_prefix + ".example" for t in tasks}
  for entry in entries:
    if not entry.duplicate and records[entry.video_id]["kind"] in (
        _INGESTED_KINDS):
      splits[entry.split].append((entry.video_id, work_files[entry.video_id],
                                  label_ids.get(entry.label, -1)))
  return splits


def _metadata(settings, stats, label_names, splits):
  """The dataset's avid metadata: the ingest's settings (`_settings`),
  labels, statistics."""
  spectrogram_stats = stats.result()
  if spectrogram_stats is None:
    logging.warning("No train video has audio: spectrogram statistics set to "
                    "mean 0, std 1.")
    spectrogram_stats = ([0.0] * audio_ops.NUM_BINS,
                         [1.0] * audio_ops.NUM_BINS)
  return dict(settings, **{
      "label_names": label_names,
      "spectrogram_mean": spectrogram_stats[0],
      "spectrogram_std": spectrogram_stats[1],
      "spectrogram_stats_num_frames": stats.num_frames,
      "spectrogram_stats_num_videos": stats.num_videos,
      "num_videos": {split: len(items) for split, items in splits.items()},
  })


def _make_report(directory, entries, records, indices):
  file_entries = []
  for entry in entries:
    if entry.duplicate:
      kind, reason = DUPLICATE, "listed again in --labels_csv (first kept)"
    else:
      kind = records[entry.video_id]["kind"]
      reason = records[entry.video_id]["reason"]
    ingested = kind in _INGESTED_KINDS and not entry.duplicate
    file_entries.append({
        "path": entry.video_id,
        "status": "ingested" if ingested else "skipped",
        "kind": kind,
        "reason": reason,
        "split": entry.split,
        "index": indices.get(entry.video_id, (None, None))[1]
                 if ingested else None,
    })
  counts = collections.Counter(f["kind"] for f in file_entries)
  num_ingested = sum(f["status"] == "ingested" for f in file_entries)
  return {
      "dataset_dir": directory,
      "num_ingested": num_ingested,
      "num_skipped": len(file_entries) - num_ingested,
      "num_no_audio_skipped": counts[NO_AUDIO],
      "num_no_audio_silenced": counts[NO_AUDIO_SILENCED],
      "counts_by_status": dict(sorted(counts.items())),
      "files": file_entries,
  }


def _format_counts(counts):
  return ", ".join(f"{count} {kind}" for kind, count in counts.items())


def summarize(report):
  """Returns printable lines summarising an ingest report."""
  lines = [f"Dataset: {report['dataset_dir']}",
           f"Ingested: {report['num_ingested']}  Skipped: "
           f"{report['num_skipped']}",
           f"By status: {_format_counts(report['counts_by_status'])}",
           f"Without audio: {report['num_no_audio_skipped']} skipped, "
           f"{report['num_no_audio_silenced']} kept with silence"]
  skipped = [f for f in report["files"] if f["status"] == "skipped"]
  for file in skipped[:20]:
    lines.append(f"  skipped {file['path']}: {file['reason']}")
  if len(skipped) > 20:
    lines.append(f"  ... {len(skipped) - 20} more in "
                 f"{os.path.join(report['dataset_dir'], REPORT_FILE)}")
  return lines
