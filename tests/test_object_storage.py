"""Datasets and runs on a file system TensorFlow registers (ram:// here).

One process, as a user with gs:// or s3:// paths would run it: videos
copied to ram://, ingested there, a tiny run trained with its model_dir on
ram://, resumed, exported, and the export loaded back.
"""

import os
import uuid

import numpy as np
import pytest
import tensorflow as tf

from avid_tf.data import synthetic
from avid_tf.export import saved_model
from avid_tf.training import gin_utils
from avid_tf.utils import files
from conftest import run_script

TINY_GIN = os.path.join(gin_utils.GIN_ROOT, "tests", "tiny.gin")


@pytest.mark.slow
def test_ingest_train_resume_export_and_load_on_ram(tmp_path):
  root = f"ram://avid-{uuid.uuid4().hex[:8]}"
  synthetic.generate_dataset(
      str(tmp_path), num_classes=2, videos_per_class=4, duration=1.5,
      size=48, val_fraction=0.0, seed=0, num_workers=1, progress=False)
  video_dir = f"{root}/videos"
  files.upload(str(tmp_path / synthetic.VIDEOS_DIR), video_dir)

  run_script("prepare_data.py", f"--video_dir={video_dir}",
             f"--output_dir={root}/data", "--name=tiny", "--num_workers=1",
             "--short_side=40", "--noprogress", check=True)
  dataset_dir = f"{root}/data/tiny/1.0.0"
  assert files.isfile(f"{dataset_dir}/dataset_info.json")

  model_dir = f"{root}/run"
  train_args = [f"--gin_file={TINY_GIN}", f"--model_dir={model_dir}",
                f"--gin_bindings=train.dataset_dir = '{dataset_dir}'"]
  run_script("train.py", *train_args, "--gin_bindings=train.max_steps = 2",
             check=True)
  first = tf.train.latest_checkpoint(f"{model_dir}/checkpoints")
  result = run_script("train.py", *train_args,
                      "--gin_bindings=train.epochs = 2", check=True)
  assert f"Resuming from {first} at step 2." in result.stdout
  resumed = tf.train.latest_checkpoint(f"{model_dir}/checkpoints")
  # 8 videos, batch 4: two steps an epoch; checkpoints are named by step.
  assert (first[-2:], resumed[-2:]) == ("-2", "-4")

  export_dir = f"{root}/export"
  run_script("export.py", f"--model_dir={model_dir}",
             f"--export_dir={export_dir}", check=True)
  layer = saved_model.load_encoder_layer(f"{export_dir}/video_encoder",
                                         trainable=False)
  features = layer(np.zeros([1, 4, 32, 32, 3], np.float32)).numpy()
  assert features.shape[0] == 1 and np.all(np.isfinite(features))
  assert not any(".tmp-" in path for path in tf.io.gfile.glob(f"{root}/*/*"))


@pytest.mark.parametrize("model_dir, dataset_dir, expected", [
    ("nosuchfs://bucket/run", None, ["'nosuchfs://'", "nosuchfs://bucket/run"]),
    ("ram://run", "ram://no/dataset", ["No dataset at ram://no/dataset"]),
])
def test_remote_mistakes_are_one_line_naming_the_path(
    tiny_dataset_dir, model_dir, dataset_dir, expected):
  result = run_script(
      "train.py", f"--gin_file={TINY_GIN}", f"--model_dir={model_dir}",
      f"--gin_bindings=train.dataset_dir = '{dataset_dir or tiny_dataset_dir}'")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  line = result.stderr.strip().splitlines()[-1]
  assert line.startswith("Error: ")
  for text in expected:
    assert text in line


def test_atomic_writes_on_ram_leave_no_temporary():
  folder = f"ram://atomic-{uuid.uuid4().hex[:8]}"
  files.makedirs(folder)
  files.write_json(f"{folder}/a.json", {"x": 1})
  files.write_json(f"{folder}/a.json", {"x": 2})
  with files.open_file(f"{folder}/a.json") as f:
    assert f.read().replace(" ", "").replace("\n", "") == '{"x":2}'
  with pytest.raises(RuntimeError):
    with files.atomic_path(f"{folder}/b.txt") as tmp_path_url:
      with files.open_file(tmp_path_url, "w") as f:
        f.write("half")
      raise RuntimeError("interrupted")
  with files.atomic_path(f"{folder}/tree", local=True) as tmp_dir:
    os.makedirs(os.path.join(tmp_dir, "sub"))
    with open(os.path.join(tmp_dir, "sub", "c.txt"), "w") as f:
      f.write("c")
  assert sorted(tf.io.gfile.glob(f"{folder}/*")) == [
      f"{folder}/a.json", f"{folder}/tree"]
  with files.open_file(f"{folder}/tree/sub/c.txt") as f:
    assert f.read() == "c"
