"""scripts/linear_probe.py end to end on a tiny run and tiny datasets."""

import json
import os
import wave

import numpy as np
import pytest

from avid_tf import errors
from avid_tf.data import schema
from avid_tf.eval import probe_runner
from conftest import run_script
from conftest import write_tiny_dataset

RATE = 24000


@pytest.fixture(scope="module")
def esc_folder(tmp_path_factory):
  """12 one-second tones, 2 classes x 2 files in each of 3 folds."""
  folder = tmp_path_factory.mktemp("esc")
  rng = np.random.default_rng(0)
  t = np.arange(RATE) / RATE
  rows = ["filename,fold,target,category"]
  for fold in (1, 2, 3):
    for target in (0, 1):
      for copy in range(2):
        name = f"{fold}-{target}-{copy}.wav"
        tone = 0.4 * np.sin(2 * np.pi * (400 + 1200 * target) * t)
        tone += 0.02 * rng.normal(size=t.shape)
        with wave.open(str(folder / name), "wb") as f:
          f.setnchannels(1)
          f.setsampwidth(2)
          f.setframerate(RATE)
          f.writeframes((tone * 32767).astype(np.int16).tobytes())
        rows.append(f"{name},{fold},{target},c{target}")
  (folder / "folds.csv").write_text("\n".join(rows) + "\n")
  return str(folder)


def _script(*flags):
  return run_script("linear_probe.py", *flags)


def _report(output_dir):
  with open(os.path.join(output_dir, "linear_probe.json")) as f:
    return json.load(f)


@pytest.mark.slow
def test_video_probe_writes_per_stage_top1(tiny_run_dir, tiny_dataset_dir,
                                           tmp_path):
  output_dir = str(tmp_path / "video")
  result = _script(f"--model_dir={tiny_run_dir}", "--modality=video",
                   f"--dataset_dir={tiny_dataset_dir}",
                   f"--output_dir={output_dir}", "--num_clips=2",
                   "--gin_bindings=train_stage_probe.epochs = 2")
  assert result.returncode == 0, result.stderr
  # The default batch of 32 does not fit the 16 training videos.
  assert "the probe trains on batches of 16" in result.stderr
  report = _report(output_dir)
  assert set(report["stages"]) == {"conv2x", "conv3x", "conv4x", "conv5x"}
  for stage in report["stages"].values():
    # 8 test videos, 2 clips each.
    assert stage["top1"] * 8 == round(stage["top1"] * 8)
    assert stage["clip_top1"] * 16 == round(stage["clip_top1"] * 16)
  assert report["num_classes"] == 4 and report["num_clips"] == 2
  assert os.listdir(os.path.join(output_dir, "tensorboard"))
  # Every stage is reported and none is picked on the test split.
  assert "best_stage" not in report
  # 8 test videos, labels index % 4: the commonest class is 2 of 8.
  assert report["chance"] == 0.25


@pytest.mark.slow
def test_audio_probe_cross_validates_an_esc50_folder(tiny_run_dir, esc_folder,
                                                     tmp_path):
  output_dir = str(tmp_path / "audio")
  result = _script(f"--model_dir={tiny_run_dir}", "--modality=audio",
                   f"--audio_dir={esc_folder}",
                   f"--folds_csv={os.path.join(esc_folder, 'folds.csv')}",
                   f"--output_dir={output_dir}", "--num_clips=3",
                   "--random_init", "--audio_features=pool,conv3x")
  assert result.returncode == 0, result.stderr
  report = _report(output_dir)
  assert report["random_init"] and report["protocol"] == "folds"
  for name in ("pool", "conv3x"):
    folds = report["features"][name]["folds"]
    assert set(folds) == {"1", "2", "3"}
    assert report["features"][name]["mean"] == pytest.approx(
        np.mean(list(folds.values())))
  # Two tones an octave and more apart: even random features separate them.
  assert report["top1"] == report["features"]["pool"]["mean"] == 1.0
  # Each fold holds 2 files of each of 2 classes.
  assert report["chance"] == 0.5


def test_audio_probe_on_an_ingested_dataset(tiny_run_dir, tiny_dataset_dir):
  report = probe_runner.audio_probe(
      tiny_run_dir, dataset_dir=tiny_dataset_dir, num_clips=2,
      batch_size=8, classifier="logistic", progress=False)
  assert report["protocol"] == "split"
  assert 0.0 <= report["top1"] <= 1.0
  assert report["chance"] == 0.25  # 8 test videos, 2 of each of 4 classes.
  assert report["top1"] * 8 == round(report["top1"] * 8)


@pytest.mark.parametrize("flags, message", [
    (["--modality=video", "--dataset_dir=/nonexistent/ds"], "/nonexistent"),
    (["--modality=audio"], "either --dataset_dir or --audio_dir"),
])
def test_bad_paths_are_one_line_errors(tiny_run_dir, tmp_path, flags, message):
  result = _script(f"--model_dir={tiny_run_dir}", f"--output_dir={tmp_path}",
                   *flags)
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("Error:") and message in last, result.stderr


def test_unlabelled_dataset_is_a_clear_error(tiny_run_dir, tmp_path):
  dataset_dir = write_tiny_dataset(tmp_path, num_train=4, num_val=2,
                                   num_frames=4)
  path = os.path.join(dataset_dir, schema.INSTANCES_FILE)
  with np.load(path) as arrays:
    columns = {key: arrays[key] for key in arrays.files}
  columns["train_label"] = np.full_like(columns["train_label"], -1)
  np.savez(path, **columns)
  with pytest.raises(errors.UserError, match="unlabelled"):
    probe_runner.video_probe(tiny_run_dir, dataset_dir, str(tmp_path / "out"))


def _folder_state(folder):
  """{relative path: bytes} of every file under `folder`."""
  state = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        state[os.path.relpath(path, folder)] = f.read()
  return state


@pytest.mark.slow
def test_random_init_into_a_pretrained_probe_folder_is_refused(
    tiny_run_dir, tiny_dataset_dir, tmp_path):
  output_dir = str(tmp_path / "probe")
  flags = [f"--model_dir={tiny_run_dir}", "--modality=video",
           f"--dataset_dir={tiny_dataset_dir}", f"--output_dir={output_dir}",
           "--num_clips=1", "--batch_size=8",
           "--gin_bindings=train_stage_probe.epochs = 1",
           "--gin_bindings=train_stage_probe.stages = ('conv2x',)"]
  assert _script(*flags).returncode == 0
  before = _folder_state(output_dir)
  # Before the record, this exited 0: the pretrained classifiers were
  # tested on random-init features and the JSON overwritten.
  result = _script(*flags, "--random_init")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
  assert "random_init False there, True now" in lines[0]
  assert "checkpoint" in lines[0]
  # Nothing written: no report, checkpoint or TensorBoard event changed.
  assert _folder_state(output_dir) == before
  assert _report(output_dir)["random_init"] is False
