"""Atomic file writes: a reader never sees a half-written file.

Everything avid_tf writes (dataset shards and metadata, reports, configs,
summaries, plots, exported models) is first written under a temporary name
next to its destination and then renamed into place, which is atomic on
POSIX file systems.
"""

import contextlib
import json
import os
import shutil
import uuid

import tensorflow as tf


def is_url(path):
  """Whether `path` names a file system by scheme (gs://, s3://, ram://)."""
  return "://" in os.fspath(path)


def open_file(path, mode="r"):
  """Opens a local file with `open`, any other through `tf.io.gfile`."""
  if is_url(path):
    return tf.io.gfile.GFile(os.fspath(path), mode)
  return open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"}))


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path; moves it to `path` when the block succeeds.

  The temporary name sits in the same folder (so the rename is atomic) and
  keeps the file extension (writers such as PyAV and matplotlib choose the
  format from it). On an exception the temporary file or folder is removed
  and `path` is left as it was.

  Args:
    path: the destination file or folder. An existing file is replaced; an
      existing folder must be removed by the caller first.

  Yields:
    The temporary path to write.
  """
  root, ext = os.path.splitext(path)
  tmp_path = f"{root}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}"
  try:
    yield tmp_path
    os.replace(tmp_path, path)
  finally:
    if os.path.isdir(tmp_path):
      shutil.rmtree(tmp_path, ignore_errors=True)
    elif os.path.exists(tmp_path):
      os.remove(tmp_path)


def write_text(path, text):
  """Writes a text file atomically."""
  with atomic_path(path) as tmp_path:
    with open(tmp_path, "w", encoding="utf-8") as f:
      f.write(text)


def write_bytes(path, data):
  """Writes a binary file atomically."""
  with atomic_path(path) as tmp_path:
    with open(tmp_path, "wb") as f:
      f.write(data)


def write_json(path, payload, **json_kwargs):
  """Writes `payload` as JSON atomically (`json_kwargs` go to json.dump)."""
  json_kwargs.setdefault("indent", 1)
  with atomic_path(path) as tmp_path:
    with open(tmp_path, "w", encoding="utf-8") as f:
      json.dump(payload, f, **json_kwargs)
