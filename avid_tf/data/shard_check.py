"""Damaged dataset shards: found, named, and the command that repairs them.

A shard file can be damaged after ingest wrote it (a disk or copy error, a
truncated transfer). TensorFlow's record reader then fails with "corrupted
record at <offset>", naming neither the file nor a remedy. This module

* reads every record of every shard back (each record's CRC, then the
  example's parse) and checks the record counts against the metadata
  (`verify_dataset`, behind `scripts/verify_dataset.py`);
* turns the reader's error during training into one line that names the
  shard, the offset and the ingest command that rewrites it
  (`damaged_shard_error`): rerunning ingest over the same inputs rewrites
  only the shards whose bytes differ (`ingest` keeps the others untouched).
"""

import json
import os
import re
import shlex
import struct

import tensorflow as tf

from avid_tf import errors
from avid_tf.data import schema

_RECORD_ERROR = re.compile(r"(corrupted|truncated) record at (\d+)")
# A TFRecord is: uint64 length, uint32 CRC of the length, the data, uint32
# CRC of the data.
_LENGTH_BYTES = 8
HEADER_BYTES = 12
FRAMING_BYTES = 16
# ingest.REPORT_FILE (ingest imports this module, not the other way).
_REPORT_FILE = "ingest_report.json"
# prepare_data flags and the avid_metadata.json keys that hold their values.
_INGEST_FLAGS = ("fps", "short_side", "sample_rate", "jpeg_quality",
                 "missing_audio", "min_duration")


class DamagedShardError(errors.UserError):
  """A dataset shard cannot be read back; the message says how to repair it."""


def error_offset(error):
  """The byte offset of a TFRecord reader's "corrupted record at N" error.

  Returns:
    (problem, offset): problem "corrupted" or "truncated"; (None, None) when
    the message names no record.
  """
  match = _RECORD_ERROR.search(str(error))
  if match is None:
    return None, None
  return match.group(1), int(match.group(2))


def check_shard(path):
  """Reads every record of a shard file: its CRC, then the example's parse.

  Args:
    path: a TFRecord shard of the `schema.features()` format.

  Returns:
    (records read, problem, offset): problem None for a good file, else
    "missing", "corrupted", "truncated" or "unparsable" (offset then the
    record's byte offset, or None when unknown).
  """
  if not tf.io.gfile.exists(path):
    return 0, "missing", None
  records = 0
  offset = 0
  # The parsed index is fetched only to make the parse run.
  lengths = tf.data.TFRecordDataset(path).map(
      lambda record: (tf.strings.length(record),
                      schema.parse_example(record)["index"]))
  try:
    for length, _ in lengths:
      records += 1
      offset += FRAMING_BYTES + int(length)
  except tf.errors.DataLossError as error:
    problem, offset = error_offset(error)
    return records, problem or "corrupted", offset
  except tf.errors.InvalidArgumentError:
    return records, "unparsable", offset
  return records, None, None


def check_records(path, serialized):
  """Whether a shard file holds exactly these serialized records.

  Returns:
    False as well when a record of the file fails its CRC.
  """
  try:
    stored = tf.data.TFRecordDataset(path).as_numpy_iterator()
    for record in serialized:
      if next(stored, None) != record:
        return False
    return next(stored, None) is None
  except tf.errors.DataLossError:
    return False


def _shard_videos(dataset_dir):
  """{split: {index: video path}} from ingest's report; {} without one."""
  path = os.path.join(dataset_dir, _REPORT_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    report = json.load(f)
  videos = {}
  for entry in report.get("files", []):
    if entry.get("status") == "ingested" and entry.get("index") is not None:
      videos.setdefault(entry["split"], {})[entry["index"]] = entry["path"]
  return videos


def verify_dataset(dataset_dir):
  """Reads back every shard of a dataset and compares counts to metadata.

  Args:
    dataset_dir: an avid_tf dataset folder (`<output_dir>/<name>/1.0.0`).

  Returns:
    JSON-serialisable dict: dataset_dir, ok, num_shards, num_damaged,
    splits {split: {"expected", "read"}}, damaged (one entry per damaged
    shard: path, split, problem, offset, records_read, expected_records,
    videos — the source videos the shard holds, per ingest's report) and
    repair_command (None when nothing is damaged).

  Raises:
    FileNotFoundError: no dataset at `dataset_dir`.
  """
  dataset = schema.DatasetInfo.load(dataset_dir)
  videos_by_split = _shard_videos(dataset.directory)
  splits, damaged, num_shards = {}, [], 0
  for split_name, split in sorted(dataset.splits.items()):
    first_index, read = 0, 0
    for path, expected in zip(split.paths, split.lengths):
      num_shards += 1
      records, problem, offset = check_shard(path)
      read += records
      if problem is None and records != expected:
        problem = "wrong_count"
      if problem is not None:
        names = videos_by_split.get(split_name, {})
        damaged.append({
            "path": path, "split": split_name, "problem": problem,
            "offset": offset, "records_read": records,
            "expected_records": expected,
            "videos": [names.get(i) for i in range(first_index,
                                                   first_index + expected)]})
      first_index += expected
    splits[split_name] = {"expected": split.num_examples, "read": read}
  return {"dataset_dir": dataset.directory, "ok": not damaged,
          "num_shards": num_shards, "num_damaged": len(damaged),
          "splits": splits, "damaged": damaged,
          "repair_command": repair_command(dataset) if damaged else None}


def repair_command(dataset):
  """The prepare_data command that rewrites a dataset's damaged shards.

  Args:
    dataset: a `schema.DatasetInfo`.

  Returns:
    The command line, from the settings ingest recorded in
    avid_metadata.json; a sentence naming the folder when they are missing
    (a dataset not written by ingest).
  """
  metadata = dataset.metadata
  if not metadata.get("video_dir"):
    return (f"rerun the ingest (scripts/prepare_data.py) that wrote "
            f"{dataset.directory}")
  output_dir = os.path.dirname(os.path.dirname(dataset.directory))
  arguments = [f"--video_dir={metadata['video_dir']}",
               f"--output_dir={output_dir}", f"--name={dataset.name}"]
  if metadata.get("labels_csv"):
    arguments.append(f"--labels_csv={metadata['labels_csv']}")
  arguments += [f"--{name}={metadata[name]}" for name in _INGEST_FLAGS
                if name in metadata]
  if "shuffle_seed" in metadata:
    seed = metadata["shuffle_seed"]
    arguments.append(f"--shuffle_seed={-1 if seed is None else seed}")
  return shlex.join(["python", "scripts/prepare_data.py"] + arguments)


def _reported_record_starts_at(path, offset):
  """Whether a record of a TFRecord file begins at a reader's offset.

  The reader reports the offset of the checksummed part that failed: the
  record's start (its length) or its data, `HEADER_BYTES` further. It
  reports the first bad record of a file, so every record before it is
  whole and walking the length headers reaches it exactly; in another file
  the walk lands there only if a record happens to start there.
  """
  with tf.io.gfile.GFile(path, "rb") as f:
    position = 0
    while position < offset - HEADER_BYTES:
      f.seek(position)
      header = f.read(_LENGTH_BYTES)
      if len(header) < _LENGTH_BYTES:
        return False
      position += FRAMING_BYTES + struct.unpack("<Q", header)[0]
    return position in (offset, offset - HEADER_BYTES)


def find_damaged_shard(paths, offset):
  """The shard among `paths` whose record at byte `offset` is damaged.

  Args:
    paths: the shard files the reader was reading.
    offset: the offset the reader reported.

  Returns:
    The path, or None when no file matches.
  """
  candidates = [path for path in paths
                if tf.io.gfile.exists(path)
                and tf.io.gfile.stat(path).length >= offset
                and _reported_record_starts_at(path, offset)]
  if len(candidates) > 1:
    # Rare: records start at that offset in several files; read them fully.
    candidates = [path for path in candidates
                  if check_shard(path)[2] == offset]
  return candidates[0] if candidates else None


def damaged_shard_error(dataset, error, last_checkpoint):
  """The one-line error for a reader's DataLossError during training.

  Args:
    dataset: the `schema.DatasetInfo` being read.
    error: the `tf.errors.DataLossError`.
    last_checkpoint: the run's newest checkpoint (kept), or None.

  Returns:
    A `DamagedShardError` naming the shard, the offset and the repair
    command.
  """
  problem, offset = error_offset(error)
  paths = [path for split in dataset.splits.values() for path in split.paths]
  shard = (find_damaged_shard(paths, offset) if offset is not None
           else None)
  where = (f"shard {shard}" if shard else
           f"a shard of {dataset.directory}")
  at = "" if offset is None else f" ({problem} record at byte {offset})"
  return DamagedShardError(
      f"Damaged dataset {where}{at}; training stopped, last good checkpoint "
      f"{last_checkpoint or 'none'} kept. Repair: {repair_command(dataset)}"
      f" (python scripts/verify_dataset.py --dataset_dir="
      f"{dataset.directory} lists every damaged shard), then rerun the same "
      "training command to resume.")
