"""The settings record of resumable output folders."""

import json
import os

import pytest

from avid_tf.utils import settings_record


def test_a_folder_keeps_its_first_settings(tmp_path):
  folder = str(tmp_path / "out")
  settings = {"stages": ("conv2x",), "random_init": False, "seed": 0}
  assert settings_record.record_or_check(folder, settings, "a probe") == {
      "stages": ["conv2x"], "random_init": False, "seed": 0}
  path = os.path.join(folder, settings_record.SETTINGS_FILE)
  with open(path) as f:
    written = f.read()
  # The same settings again (tuples read back as lists): accepted.
  settings_record.record_or_check(folder, settings, "a probe")
  changed = dict(settings, random_init=True, extra=1)
  with pytest.raises(settings_record.SettingsMismatchError) as caught:
    settings_record.record_or_check(folder, changed, "a probe")
  assert str(caught.value) == (
      f"{folder} holds a probe made with other settings (extra None there, "
      "1 now; random_init False there, True now); use another output folder "
      "or delete it")
  with open(path) as f:
    assert f.read() == written
  assert json.loads(written)["random_init"] is False


def test_absolute_leaves_urls_alone(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert settings_record.absolute("runs/a") == str(tmp_path / "runs" / "a")
  assert settings_record.absolute("gs://bucket/runs/a") == "gs://bucket/runs/a"
  assert settings_record.absolute(None) is None
