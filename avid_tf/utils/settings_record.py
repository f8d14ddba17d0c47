"""The settings a resumable job records in its output folder.

A job that resumes into a folder (features, probes, fine-tuning, a study's
or the quickstart's runs) first writes the settings its results depend on,
and a later run into the same folder must bring the same settings: a rerun
with other settings would otherwise mix the two (classifiers trained on one
model tested on another, a result cached for another recipe). The check
runs before anything is written, and a mismatch is one `UserError` line
naming every setting that differs.
"""

import json
import os

from avid_tf import errors
from avid_tf.utils import files

SETTINGS_FILE = "settings.json"


class SettingsMismatchError(errors.InvalidValueError):
  """An output folder holds results made with other settings."""


def normalized(settings):
  """`settings` as JSON reads them back (tuples become lists, keys str)."""
  return json.loads(json.dumps(settings))


def absolute(path):
  """A local path made absolute (a rerun from another folder matches); a
  URL-like path ("gs://...", "ram://...") or None as it is."""
  return None if path is None else files.abspath(path)


def differences(recorded, settings):
  """'key <recorded> there, <now> now' for every key whose value differs."""
  return [f"{key} {recorded.get(key)!r} there, {settings.get(key)!r} now"
          for key in sorted(set(recorded) | set(settings))
          if recorded.get(key) != settings.get(key)]


def check_same(recorded, settings, output_dir, what):
  """Raises `SettingsMismatchError` unless the two settings dicts are equal.

  Args:
    recorded: the settings found in `output_dir`.
    settings: the settings of this run (normalised, see `normalized`).
    output_dir: the folder, named in the message.
    what: what the folder holds, e.g. "features" or "a linear probe".
  """
  changed = differences(recorded, settings)
  if changed:
    raise SettingsMismatchError(
        f"{output_dir} holds {what} made with other settings "
        f"({'; '.join(changed)}); use another output folder or delete it")


def read(output_dir, file_name=SETTINGS_FILE):
  """The settings recorded in `output_dir`, or None."""
  path = os.path.join(output_dir, file_name)
  if not files.isfile(path):
    return None
  with files.open_file(path) as f:
    return json.load(f)


def record_or_check(output_dir, settings, what, file_name=SETTINGS_FILE):
  """Records `settings` in a new folder, or checks a folder's record.

  Args:
    output_dir: the job's output folder (created when missing).
    settings: JSON-able dict of everything the folder's results depend on.
    what: what the folder holds, for the message.
    file_name: the record's file name in `output_dir`.

  Returns:
    The settings, normalised.

  Raises:
    SettingsMismatchError: the folder holds a record of other settings;
      nothing is written then.
  """
  settings = normalized(settings)
  recorded = read(output_dir, file_name)
  if recorded is not None:
    check_same(recorded, settings, output_dir, what)
    return settings
  files.makedirs(output_dir)
  files.write_json(os.path.join(output_dir, file_name), settings)
  return settings
