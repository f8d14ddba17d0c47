"""Tests of avid_tf.data.shard_check, scripts/verify_dataset.py and the
repair of damaged shards: found, reported by training, rewritten by ingest."""

import csv
import json
import os
import shlex

import numpy as np
import pytest
import tensorflow as tf

from avid_tf.data import media
from avid_tf.data import pipeline
from avid_tf.data import schema
from avid_tf.data import shard_check
from avid_tf.training import gin_utils
from conftest import run_script
from conftest import write_tiny_dataset

_VIDEOS = (("a/a1.mp4", "a", "train"), ("b/b1.mp4", "b", "train"),
           ("a/a2.mp4", "a", "val"))


def _damage(path, num_bytes=200):
  """Writes zero bytes into the middle of a file, keeping its size."""
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.seek(size // 2)
    f.write(b"\0" * num_bytes)


def _shards(directory):
  return sorted(os.path.join(directory, f) for f in os.listdir(directory)
                if ".tfrecord-" in f)


def _read_bytes(path):
  with open(path, "rb") as f:
    return f.read()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
  """Three noise videos ingested by prepare_data.py (a train and a val
  shard); returns (video_dir, output_dir, dataset_dir)."""
  root = tmp_path_factory.mktemp("shards")
  video_dir = root / "videos"
  rng = np.random.default_rng(0)
  with open(root / "labels.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "label", "split"])
    for path, label, split in _VIDEOS:
      os.makedirs(video_dir / os.path.dirname(path), exist_ok=True)
      frames = rng.integers(0, 255, (20, 32, 48, 3), dtype=np.uint8)
      time = np.arange(19200) / 24000
      media.write_av_file(str(video_dir / path), frames, 25,
                          0.5 * np.sin(2 * np.pi * 440 * time), 24000)
      writer.writerow([path, label, split])
  output_dir = root / "out"
  run_script("prepare_data.py", f"--video_dir={video_dir}",
             f"--labels_csv={root / 'labels.csv'}",
             f"--output_dir={output_dir}", "--name=toy", "--short_side=16",
             "--num_workers=1", "--noprogress", check=True)
  return video_dir, output_dir, schema.dataset_dir(str(output_dir), "toy")


@pytest.mark.slow
def test_verify_finds_the_damage_and_reingest_repairs_only_it(ingested):
  _, _, directory = ingested
  result = run_script("verify_dataset.py", f"--dataset_dir={directory}")
  assert result.returncode == 0, result.stderr
  assert json.loads(result.stdout)["ok"]

  train_shard, val_shard = _shards(directory)
  assert "-train." in train_shard and "-val." in val_shard
  good_bytes = _read_bytes(val_shard)
  good_mtime = os.stat(val_shard).st_mtime_ns
  clean_train_bytes = _read_bytes(train_shard)
  _damage(train_shard)

  result = run_script("verify_dataset.py", f"--dataset_dir={directory}")
  assert result.returncode == 1
  summary = json.loads(result.stdout)
  assert not summary["ok"] and summary["num_damaged"] == 1
  assert summary["splits"]["val"] == {"expected": 1, "read": 1}
  damaged, = summary["damaged"]
  assert damaged["path"] == train_shard
  assert damaged["problem"] == "corrupted"
  assert 0 < damaged["offset"] < os.path.getsize(train_shard) // 2 + 200
  assert damaged["records_read"] < damaged["expected_records"] == 2
  assert sorted(damaged["videos"]) == ["a/a1.mp4", "b/b1.mp4"]

  # The printed repair command, run as printed.
  command = shlex.split(summary["repair_command"])
  assert command[:2] == ["python", "scripts/prepare_data.py"]
  run_script(os.path.basename(command[1]), *command[2:], "--noprogress",
             check=True)
  assert _read_bytes(train_shard) == clean_train_bytes
  assert _read_bytes(val_shard) == good_bytes
  assert os.stat(val_shard).st_mtime_ns == good_mtime
  assert run_script("verify_dataset.py",
                    f"--dataset_dir={directory}").returncode == 0


def test_wrong_record_count_and_missing_shard_are_damage(tmp_path):
  directory = write_tiny_dataset(tmp_path, num_train=4, num_val=2)
  train_shard, val_shard = _shards(directory)
  records = list(tf.data.TFRecordDataset(train_shard).as_numpy_iterator())
  schema.write_shard(train_shard, records[:3])
  os.remove(val_shard)
  summary = shard_check.verify_dataset(directory)
  problems = {d["split"]: (d["problem"], d["records_read"])
              for d in summary["damaged"]}
  assert problems == {"train": ("wrong_count", 3), "val": ("missing", 0)}
  # A dataset not written by ingest: the repair is named, not spelt out.
  assert summary["repair_command"].startswith("rerun the ingest")


def test_reader_error_is_traced_to_its_shard(tmp_path):
  directory = write_tiny_dataset(tmp_path, num_train=8, num_val=8)
  train_shard, val_shard = _shards(directory)
  _damage(val_shard)
  _damage(train_shard)
  dataset = schema.DatasetInfo.load(directory)
  for split, shard in (("train", train_shard), ("val", val_shard)):
    stream = pipeline.make_train_dataset(dataset, 2, split=split)
    with pytest.raises(tf.errors.DataLossError) as raised:
      next(iter(stream))
    _, offset = shard_check.error_offset(raised.value)
    assert shard_check.find_damaged_shard(_shards(directory),
                                          offset) == shard
    message = str(shard_check.damaged_shard_error(dataset, raised.value,
                                                  None))
    assert f"shard {shard} (corrupted record at byte {offset})" in message
    assert "\n" not in message


@pytest.mark.slow
def test_training_stops_in_one_line_and_keeps_the_checkpoint(tmp_path):
  directory = write_tiny_dataset(tmp_path / "data", num_train=8, num_val=2)
  model_dir = str(tmp_path / "run")
  tiny_gin = os.path.join(gin_utils.GIN_ROOT, "tests", "tiny.gin")
  arguments = [f"--gin_file={tiny_gin}",
               f"--gin_bindings=train.dataset_dir = '{directory}'",
               "--gin_bindings=train.epochs = 2", f"--model_dir={model_dir}"]
  run_script("train.py", *arguments, "--gin_bindings=train.max_steps = 2",
             check=True)
  train_shard = _shards(directory)[0]
  _damage(train_shard)
  # The rest of the run: 2 more steps.
  result = run_script("train.py", *arguments)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith(f"Error: Damaged dataset shard {train_shard} "
                             "(corrupted record at byte ")
  checkpoint = tf.train.latest_checkpoint(os.path.join(model_dir,
                                                       "checkpoints"))
  assert checkpoint.endswith("ckpt-2") and checkpoint in lines[0]
