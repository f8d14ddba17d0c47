"""Paths on any file system, and atomic writes: no half-written file.

Every path a user gives may be local or a URL of any file system that
`tf.io.gfile` reads and writes (gs://, s3://, hdfs://, ram://). The
functions here mirror `os`, `os.path`, `open`, `glob` and `shutil`: local
paths go to those exactly as before, URLs to `tf.io.gfile`.

Everything avid_tf writes (dataset shards and metadata, reports, configs,
summaries, plots, exported models) is first written under a temporary name
next to its destination and then renamed into place, which is atomic on
POSIX file systems (`atomic_path`).
"""

import contextlib
import glob as glob_lib
import json
import os
import posixpath
import shutil
import tempfile
import uuid

import tensorflow as tf

from avid_tf import errors


def is_url(path):
  """Whether `path` names a file system by scheme (gs://, s3://, ram://)."""
  return "://" in os.fspath(path)


def _load_tensorflow_io_file_systems():
  """Registers tensorflow-io's file systems (s3, hdfs, az, http) if it loads.
  """
  try:
    import tensorflow_io  # pylint: disable=g-import-not-at-top,unused-import
  except Exception:  # pylint: disable=broad-except
    pass  # Not installed, or built for another TensorFlow.


def check_file_system(path):
  """Raises a one-line error when TensorFlow has no file system for `path`.

  Raises:
    UserError: naming the scheme and the path, and what registers it.
  """
  path = os.fspath(path)
  if not is_url(path):
    return
  scheme = path.split("://", 1)[0]
  if scheme not in tf.io.gfile.get_registered_schemes():
    _load_tensorflow_io_file_systems()
  known = [name for name in tf.io.gfile.get_registered_schemes() if name]
  if scheme not in known:
    raise errors.UserError(
        f"{path}: TensorFlow has no file system for '{scheme}://' (known: "
        f"{', '.join(sorted(known))}); docs/training.md, \"Data and runs on "
        "object storage\", says which package registers which scheme.")


def join(path, *names):
  """`os.path.join`, also for URLs (their separator is always '/')."""
  if is_url(path):
    return "/".join([os.fspath(path).rstrip("/"), *names])
  return os.path.join(path, *names)


def abspath(path):
  """`os.path.abspath` of a local path; a URL as it is."""
  return os.fspath(path) if is_url(path) else os.path.abspath(path)


def normpath(path):
  """`os.path.normpath`, keeping a URL's scheme and '//'."""
  if is_url(path):
    scheme, rest = os.fspath(path).split("://", 1)
    return f"{scheme}://{posixpath.normpath(rest)}"
  return os.path.normpath(path)


def media_source(path):
  """What PyAV opens: a local path as it is, a URL as a binary file object."""
  return open_file(path, "rb") if is_url(path) else path


def exists(path):
  """`os.path.exists`, also for URLs."""
  if is_url(path):
    check_file_system(path)
    return tf.io.gfile.exists(path)
  return os.path.exists(path)


def isdir(path):
  """`os.path.isdir`, also for URLs."""
  if is_url(path):
    check_file_system(path)
    return tf.io.gfile.isdir(path)
  return os.path.isdir(path)


def isfile(path):
  """`os.path.isfile`, also for URLs."""
  if is_url(path):
    return exists(path) and not tf.io.gfile.isdir(path)
  return os.path.isfile(path)


def getsize(path):
  """`os.path.getsize`, also for URLs."""
  if is_url(path):
    return tf.io.gfile.stat(path).length
  return os.path.getsize(path)


def makedirs(path):
  """Creates a folder and its parents; an existing folder is fine.

  Raises:
    PermissionError: for a URL the file system refuses to create (a user
      error, reported in one line).
  """
  if not is_url(path):
    os.makedirs(path, exist_ok=True)
    return
  check_file_system(path)
  try:
    tf.io.gfile.makedirs(path)
  except (tf.errors.PermissionDeniedError, tf.errors.UnauthenticatedError,
          tf.errors.FailedPreconditionError) as error:
    raise PermissionError(
        f"{path}: cannot create the folder ({error.message})") from None


def listdir(path):
  """`os.listdir`, also for URLs."""
  if is_url(path):
    return [name.rstrip("/") for name in tf.io.gfile.listdir(path)]
  return os.listdir(path)


def glob(pattern):
  """`glob.glob`, also for URL patterns."""
  if is_url(pattern):
    return tf.io.gfile.glob(pattern)
  return glob_lib.glob(pattern)


def walk(path):
  """`os.walk` (top-down), also for URLs."""
  if is_url(path):
    return tf.io.gfile.walk(path)
  return os.walk(path)


def remove(path):
  """`os.remove`, also for URLs."""
  if is_url(path):
    tf.io.gfile.remove(path)
  else:
    os.remove(path)


def rmtree(path):
  """Removes a folder and everything in it; a missing folder is fine."""
  if not is_url(path):
    shutil.rmtree(path, ignore_errors=True)
    return
  try:
    tf.io.gfile.rmtree(path)
  except tf.errors.NotFoundError:
    pass


def open_file(path, mode="r", **open_kwargs):
  """Opens a local file with `open`, any other through `tf.io.gfile`.

  Args:
    path: local path or URL.
    mode: as `open`'s.
    **open_kwargs: more arguments of `open` for a local file (encoding,
      newline); text defaults to UTF-8. A URL's text is UTF-8.

  Returns:
    A file object.
  """
  if is_url(path):
    check_file_system(path)
    return tf.io.gfile.GFile(os.fspath(path), mode)
  if "b" not in mode:
    open_kwargs.setdefault("encoding", "utf-8")
  return open(path, mode, **open_kwargs)


def _temporary_name(path):
  root, ext = os.path.splitext(os.fspath(path))
  return f"{root}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}"


def upload(local_path, path):
  """Copies a local file or folder to a URL, each file renamed into place."""
  if not os.path.isdir(local_path):
    tmp_path = _temporary_name(path)
    tf.io.gfile.copy(local_path, tmp_path, overwrite=True)
    tf.io.gfile.rename(tmp_path, path, overwrite=True)
    return
  for root, _, names in os.walk(local_path):
    relative = os.path.relpath(root, local_path)
    folder = path if relative == "." else join(path, *relative.split(os.sep))
    tf.io.gfile.makedirs(folder)
    for name in names:
      upload(os.path.join(root, name), join(folder, name))


@contextlib.contextmanager
def _atomic_url(path, local):
  if local:
    with tempfile.TemporaryDirectory() as folder:
      tmp_path = os.path.join(folder, os.path.basename(path.rstrip("/")))
      yield tmp_path
      upload(tmp_path, path)
    return
  tmp_path = _temporary_name(path)
  try:
    yield tmp_path
    tf.io.gfile.rename(tmp_path, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp_path):
      tf.io.gfile.remove(tmp_path)


@contextlib.contextmanager
def atomic_path(path, local=False):
  """Yields a temporary path; moves it to `path` when the block succeeds.

  The temporary name sits in the same folder (so the rename is atomic) and
  keeps the file extension (writers such as PyAV and matplotlib choose the
  format from it). On an exception the temporary file or folder is removed
  and `path` is left as it was.

  A `path` on another file system (a URL such as gs://...) gets a temporary
  name there, renamed with `tf.io.gfile.rename(..., overwrite=True)`; the
  writer must write through `tf.io.gfile` (`open_file`, TFRecord writers).
  With `local=True` the temporary is a local file or folder instead, for
  writers that only write local files (PyAV, matplotlib, SavedModel
  folders), copied to `path` when the block succeeds, each file renamed
  into place (object stores have no atomic folder rename).

  Args:
    path: the destination file or folder. An existing file is replaced; an
      existing folder must be removed by the caller first.
    local: for a URL `path`, yield a local temporary path.

  Yields:
    The temporary path to write.
  """
  if is_url(path):
    check_file_system(path)
    with _atomic_url(os.fspath(path), local) as tmp_path:
      yield tmp_path
    return
  tmp_path = _temporary_name(path)
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
    with open_file(tmp_path, "w") as f:
      f.write(text)


def write_bytes(path, data):
  """Writes a binary file atomically."""
  with atomic_path(path) as tmp_path:
    with open_file(tmp_path, "wb") as f:
      f.write(data)


def write_json(path, payload, **json_kwargs):
  """Writes `payload` as JSON atomically (`json_kwargs` go to json.dump)."""
  json_kwargs.setdefault("indent", 1)
  with atomic_path(path) as tmp_path:
    with open_file(tmp_path, "w") as f:
      f.write(json.dumps(payload, **json_kwargs))
