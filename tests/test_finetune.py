"""Fine-tuning: encoder sources, fold data, protocol, scoring, resume, TFDS."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from avid_tf import errors
from avid_tf import runs
from avid_tf.data import pipeline
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.eval import finetune
from avid_tf.eval import finetune_data
from avid_tf.export import saved_model
from avid_tf.training import gin_utils
from avid_tf.utils import settings_record
from conftest import REPO
from conftest import run_script

# 4 frames of 32x32, one clip per video and epoch, batches of 4.
TINY_CLIPS = dict(num_frames=4, crop_size=32)
TINY_SCHEDULE = dict(batch_size=4, clips_per_video=1, num_test_clips=2,
                     eval_batch_size=8)
TINY_BINDINGS = (
    [f"finetune_clips.{key} = {value}" for key, value in TINY_CLIPS.items()] +
    [f"finetune_schedule.{key} = {value}"
     for key, value in TINY_SCHEDULE.items()] + ["finetune.verbose = False"])


def _tiny(**schedule):
  """finetune's tiny clips and schedule, with `schedule` changes."""
  return dict(clips=finetune_data.finetune_clips(**TINY_CLIPS),
              schedule=finetune.finetune_schedule(
                  **dict(TINY_SCHEDULE, **schedule)), verbose=False)
TINY_ENCODER_BINDINGS = ["build_encoders.video_depth = 10",
                         "build_encoders.width_multiplier = 0.125"]


@pytest.fixture(scope="module")
def export_dir(tiny_run_dir, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("export"))
  model = runs.open_run(tiny_run_dir).model()
  metadata = preprocessing_lib.Preprocessing.read(tiny_run_dir).export_metadata()
  saved_model.export_encoders(model, path,
                              video_preprocessing=metadata["video"],
                              audio_preprocessing=metadata["audio"],
                              overwrite=True)
  return path


def _write_csv(path, rows):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "label"])
    writer.writerows(rows)


@pytest.fixture(scope="module")
def split_csv_dir(tmp_path_factory):
  """Two folds over the tiny set's 24 videos (ids "train/3.mp4" ...).

  Paths are given without the extension and the labels are the videos'
  own (index % 4), so the folds mix the ingested splits.
  """
  directory = tmp_path_factory.mktemp("splits")
  videos = [(f"{split}/{i}", i % 4) for split, n in (("train", 16),
                                                      ("val", 8))
            for i in range(n)]
  _write_csv(directory / "trainlist01.csv", videos[:16])
  _write_csv(directory / "testlist01.csv", videos[16:])
  _write_csv(directory / "trainlist02.csv", videos[8:])
  _write_csv(directory / "testlist02.csv", videos[:8])
  return str(directory)


def _checkpoint_tensors(path, contains):
  return {name: tf.train.load_checkpoint(path).get_tensor(name)
          for name, _ in tf.train.list_variables(path)
          if name.startswith("model/") and contains in name}


def _checkpoint_key(variable_path):
  return ("model/" + variable_path.replace("/", ".S") +
          "/.ATTRIBUTES/VARIABLE_VALUE")


# --- scoring, schedule -------------------------------------------------------


def test_video_and_clip_scores_match_a_numpy_reference():
  rng = np.random.default_rng(0)
  num_videos, num_clips, num_classes = 9, 10, 7
  logits = rng.normal(size=(num_videos, num_clips, num_classes)) * 2
  probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  labels = rng.integers(0, num_classes, num_videos)
  scores = finetune.score_clips(probabilities.astype(np.float32), labels)

  video_hits1 = video_hits5 = clip_hits1 = clip_hits5 = 0
  for v in range(num_videos):
    mean = sum(np.float64(probabilities[v, c]) for c in range(num_clips))
    mean /= num_clips
    ranking = sorted(range(num_classes), key=lambda k: -mean[k])
    video_hits1 += ranking[0] == labels[v]
    video_hits5 += labels[v] in ranking[:5]
    for c in range(num_clips):
      clip_ranking = sorted(range(num_classes),
                            key=lambda k: -probabilities[v, c, k])
      clip_hits1 += clip_ranking[0] == labels[v]
      clip_hits5 += labels[v] in clip_ranking[:5]
  assert scores["video_top1"] == pytest.approx(video_hits1 / num_videos)
  assert scores["video_top5"] == pytest.approx(video_hits5 / num_videos)
  total = num_videos * num_clips
  assert scores["clip_top1"] == pytest.approx(clip_hits1 / total)
  assert scores["clip_top5"] == pytest.approx(clip_hits5 / total)
  # Averaging the clips is not a vote: a video can be right with most clips
  # wrong. Here clip 0 is confidently right, the others mildly wrong.
  one = np.full((1, 3, 3), 0.0)
  one[0, 0] = [0.98, 0.01, 0.01]
  one[0, 1:] = [0.3, 0.4, 0.3]
  assert finetune.score_clips(one, np.array([0]))["video_top1"] == 1.0
  assert finetune.score_clips(one, np.array([0]))["clip_top1"] == (
      pytest.approx(1 / 3))


def test_top5_of_4_classes_is_not_applicable_and_chance_is_reported():
  # 4 classes: top-5 was 1.0 whatever the model. Labels 0, 0, 0, 1, 2:
  # the best constant guess (class 0) is right 3 times in 5.
  probabilities = np.random.default_rng(1).dirichlet(np.ones(4), (5, 2))
  scores = finetune.score_clips(probabilities, np.array([0, 0, 0, 1, 2]))
  assert scores["video_top5"] is None and scores["clip_top5"] is None
  assert set(scores["not_applicable"]) == {"video_top5", "clip_top5"}
  assert "k = 5 >= 4 classes" in scores["not_applicable"]["video_top5"]
  assert scores["chance_top1"] == pytest.approx(3 / 5)
  assert scores["chance_top5"] is None
  assert scores["video_top1"] * 5 == round(scores["video_top1"] * 5)
  mean = finetune._mean_scores([scores])  # pylint: disable=protected-access
  summary = {"folds": {"1": scores}, "mean": mean}
  printed = finetune.format_summary(summary)
  assert "video top-5 n/a" in printed and "(chance 60.0%)" in printed


def test_learning_rate_follows_the_ucf_and_hmdb_milestones():
  ucf = [finetune.learning_rate_at(e, 1e-4, (6, 10, 14), 0.3)
         for e in range(16)]
  np.testing.assert_allclose(
      ucf, [1e-4] * 6 + [3e-5] * 4 + [9e-6] * 4 + [2.7e-6] * 2)
  hmdb = [finetune.learning_rate_at(e, 1e-4, (3, 6, 8), 0.3)
          for e in range(10)]
  np.testing.assert_allclose(
      hmdb, [1e-4] * 3 + [3e-5] * 3 + [9e-6] * 2 + [2.7e-6] * 2)


@pytest.mark.parametrize("name", ["ucf101_8f", "ucf101_32f", "hmdb51_8f",
                                  "hmdb51_32f"])
def test_protocol_gin_files_parse_with_their_values(name):
  gin_utils.parse_gin([os.path.join(gin_utils.GIN_ROOT, "eval",
                                    f"{name}.gin")])
  clips = finetune_data.finetune_clips()
  schedule = finetune.finetune_schedule()
  frames = 8 if name.endswith("8f") else 32
  assert clips.num_frames == frames
  assert schedule.batch_size == (64 if frames == 8 else 32)
  assert schedule.epochs == (16 if name.startswith("ucf") else 10)
  assert clips.brightness == (0.4 if name.startswith("ucf") else 1.0)
  assert clips.hue == 0.2


@pytest.mark.parametrize("binding, message", [
    ("finetune_schedule.epochs = 0",
     "finetune_schedule.epochs must be an integer >= 1, got 0"),
    ("finetune_schedule.frozen_epochs = 20",
     "finetune_schedule.frozen_epochs must be in [0, epochs=16], got 20"),
    ("finetune_schedule.dropout = 1.5",
     "finetune_schedule.dropout must be a number >= 0 and < 1, got 1.5"),
    ("finetune_clips.flip_probability = -0.5",
     "finetune_clips.flip_probability must be a number >= 0 and <= 1"),
    ("finetune_clips.crop_size = 'x'",
     "finetune_clips.crop_size must be an integer >= 1, got 'x'"),
])
def test_bad_finetune_values_are_user_errors_naming_the_binding(binding,
                                                                message):
  gin_utils.parse_gin([], [binding])
  with pytest.raises(errors.UserError) as error:
    finetune_data.finetune_clips()
    finetune.finetune_schedule()
  assert str(error.value).splitlines()[0].startswith(message)


# --- encoder sources -----------------------------------------------------------


@pytest.mark.slow
def test_load_encoder_from_exports_and_run_folders(tiny_run_dir, export_dir):
  for path in (export_dir, os.path.join(export_dir, "video_encoder")):
    source = runs.load_encoder(path)
    assert source.kind == "export"
    assert source.preprocessing["crop_size"] == 32
  audio = runs.load_encoder(export_dir, "audio")
  assert audio.kind == "export" and len(audio.preprocessing[
      "spectrogram_mean"]) == 257
  assert runs.load_encoder(tiny_run_dir, "audio").preprocessing[
      "seconds"] == 1.0
  with pytest.raises(runs.NotARunError, match="audio"):
    runs.load_encoder(os.path.join(export_dir, "audio_encoder"))
  from_run = runs.load_encoder(tiny_run_dir)
  assert from_run.kind == "model_dir"
  assert from_run.preprocessing["num_frames"] == 4
  clips = tf.random.stateless_normal((2, 4, 32, 32, 3), [1, 2])
  np.testing.assert_allclose(
      runs.load_encoder(export_dir).encoder(clips).numpy(),
      from_run.encoder(clips, training=False).numpy(), atol=1e-4)
  random = runs.load_encoder(tiny_run_dir, random_init=True)
  assert random.kind == "random"
  assert not np.allclose(random.encoder(clips, training=False).numpy(),
                         from_run.encoder(clips, training=False).numpy())


def test_an_unknown_init_path_is_one_clear_error(tmp_path):
  with pytest.raises(runs.NotARunError,
                     match="neither a training run") as error:
    runs.load_encoder(str(tmp_path))
  assert "\n" not in str(error.value)


# --- data ------------------------------------------------------------------


def test_test_clips_equal_the_eval_pipelines_clips(tiny_dataset_dir):
  # With a 1 s video clip and 1 s of audio both pipelines centre the clips
  # on the same times.
  source = finetune_data.video_source(dataset_dir=tiny_dataset_dir)
  settings = finetune_data.finetune_clips(num_frames=16, crop_size=32)
  fold = source.fold_data(1)
  clips = list(finetune_data.test_clips(source, fold.test, settings, 3, 5))
  video = np.concatenate([c[0].numpy() for c in clips])
  labels = np.concatenate([c[1].numpy() for c in clips])
  positions = np.concatenate([c[2].numpy() for c in clips])
  assert video.shape == (8 * 3, 16, 32, 32, 3)
  np.testing.assert_array_equal(positions, np.repeat(np.arange(8), 3))
  np.testing.assert_array_equal(labels, np.repeat(np.arange(8) % 4, 3))
  geometry = preprocessing_lib.Preprocessing(
      num_frames=16, crop_size=32, frame_rate=16.0, audio_seconds=1.0,
      sample_rate=24000, spectrogram_mean=[0.0] * 257,
      spectrogram_std=[1.0] * 257)
  reference = np.concatenate([
      batch["video"].numpy() for batch in pipeline.make_eval_dataset(
          tiny_dataset_dir, "val", 4, geometry, num_clips=3)])
  np.testing.assert_allclose(video, reference.reshape(video.shape),
                             atol=1e-5)


def test_train_clips_are_augmented_deterministically_per_epoch(
    tiny_dataset_dir):
  source = finetune_data.video_source(dataset_dir=tiny_dataset_dir)
  settings = finetune_data.finetune_clips(num_frames=4, crop_size=24)
  fold = source.fold_data(1)

  def epoch(index):
    return [(v.numpy(), l.numpy()) for v, l in finetune_data.train_clips(
        source, fold.train, settings, 4, 2, seed=3, epoch=index)]

  first, again, second = epoch(0), epoch(0), epoch(1)
  assert len(first) == 16 * 2 // 4
  assert first[0][0].shape == (4, 4, 24, 24, 3)
  assert first[0][0].dtype == np.float32
  for (v, l), (v2, l2) in zip(first, again):
    np.testing.assert_array_equal(v, v2)
    np.testing.assert_array_equal(l, l2)
  assert not np.allclose(first[0][0], second[0][0])
  labels = np.concatenate([l for _, l in first])
  np.testing.assert_array_equal(np.bincount(labels), [8, 8, 8, 8])


def test_split_csvs_select_and_relabel_the_ingested_videos(
    tiny_dataset_dir, split_csv_dir, tmp_path):
  source = finetune_data.video_source(dataset_dir=tiny_dataset_dir,
                                      split_csv_dir=split_csv_dir)
  fold = source.fold_data(2)
  assert (fold.num_train, fold.num_test) == (16, 8)
  assert [int(e["label"]) for e in fold.test()] == [i % 4 for i in range(8)]
  _write_csv(tmp_path / "trainlist01.csv", [("train/0", 1), ("gone/x", 0)])
  _write_csv(tmp_path / "testlist01.csv", [("val/0", 0)])
  lacking = finetune_data.video_source(dataset_dir=tiny_dataset_dir,
                                       split_csv_dir=str(tmp_path))
  with pytest.raises(finetune_data.FinetuneDataError, match="gone/x"):
    lacking.fold_data(1)


# --- the protocol end to end ---------------------------------------------------


@pytest.mark.slow
def test_frozen_epochs_keep_the_backbone_and_a_rerun_resumes(
    tiny_run_dir, tiny_dataset_dir, tmp_path):
  output_dir = str(tmp_path / "out")
  settings = dict(_tiny(epochs=2, frozen_epochs=1, keep_checkpoints=2),
                  init=tiny_run_dir, dataset_dir=tiny_dataset_dir, folds=(1,))
  summary = finetune.finetune(output_dir, **settings)
  checkpoints = os.path.join(output_dir, "fold_1", "checkpoints")
  initial = runs.load_encoder(tiny_run_dir).encoder
  after = {e: _checkpoint_tensors(os.path.join(checkpoints, f"epoch-{e}"),
                                  "video_encoder") for e in (1, 2)}
  changed = []
  for variable in initial.variables:
    key = _checkpoint_key(variable.path)
    # Weights and BN moving statistics: untouched while frozen.
    np.testing.assert_array_equal(after[1][key], variable.numpy(),
                                  err_msg=variable.path)
    changed.append(not np.array_equal(after[2][key], variable.numpy()))
  assert all(changed[i] for i, v in enumerate(initial.variables)
             if "kernel" in v.path or "moving_mean" in v.path)
  classifier = {e: _checkpoint_tensors(
      os.path.join(checkpoints, f"epoch-{e}"), "classifier") for e in (1, 2)}
  assert classifier[1] and all(
      not np.array_equal(classifier[1][k], classifier[2][k])
      for k in classifier[1])
  fold = summary["folds"]["1"]
  assert set(finetune.METRICS) <= set(fold)
  assert summary["mean"]["video_top1"] == fold["video_top1"]
  assert os.listdir(os.path.join(output_dir, "fold_1", "tensorboard"))

  # Interrupted after epoch 1: the rerun trains epoch 2 only, from there.
  resumed_dir = str(tmp_path / "resumed")
  shutil.copytree(output_dir, resumed_dir)
  fold_dir = os.path.join(resumed_dir, "fold_1")
  os.remove(os.path.join(fold_dir, finetune.RESULT_FILE))
  for name in os.listdir(os.path.join(fold_dir, "checkpoints")):
    if name.startswith("epoch-2"):
      os.remove(os.path.join(fold_dir, "checkpoints", name))
  with open(os.path.join(fold_dir, finetune.PROGRESS_FILE), "w") as f:
    json.dump({"epochs_done": 1}, f)
  resumed = finetune.finetune(resumed_dir, **settings)
  final = _checkpoint_tensors(os.path.join(fold_dir, "checkpoints",
                                           "epoch-2"), "")
  uninterrupted = _checkpoint_tensors(os.path.join(checkpoints, "epoch-2"),
                                      "")
  assert set(final) == set(uninterrupted)
  for key, value in uninterrupted.items():
    np.testing.assert_allclose(final[key], value, atol=1e-5, err_msg=key)
  for key in finetune.METRICS:
    assert resumed["folds"]["1"][key] == pytest.approx(fold[key])

  # The finished folder rerun from random weights: before the settings
  # record, the pretrained fold's result was returned as the baseline's.
  before = os.listdir(os.path.join(output_dir, "fold_1"))
  with pytest.raises(settings_record.SettingsMismatchError,
                     match="random_init False there, True now"):
    finetune.finetune(output_dir, **dict(settings, random_init=True))
  assert os.listdir(os.path.join(output_dir, "fold_1")) == before


@pytest.mark.slow
def test_script_two_folds_from_an_export_and_a_rerun_skips_them(
    export_dir, tiny_dataset_dir, split_csv_dir, tmp_path, monkeypatch):
  output_dir = str(tmp_path / "out")
  command = [f"--init={export_dir}", f"--dataset_dir={tiny_dataset_dir}",
             f"--split_csv_dir={split_csv_dir}", "--folds=1,2",
             f"--output_dir={output_dir}",
             f"--gin_file={os.path.join(REPO, 'gin/eval/ucf101_8f.gin')}",
             "--gin_bindings=finetune_schedule.epochs = 1",
             "--gin_bindings=finetune_schedule.frozen_epochs = 0"]
  command += [f"--gin_bindings={b}" for b in TINY_BINDINGS]
  run_script("finetune.py", *command, check=True)
  with open(os.path.join(output_dir, finetune.SUMMARY_FILE)) as f:
    summary = json.load(f)
  assert set(summary["folds"]) == {"1", "2"}
  for key in ("video_top1", "clip_top1"):
    values = [summary["folds"][fold][key] for fold in ("1", "2")]
    # 8 test videos of 2 clips each: accuracies are counts of them.
    count = 8 if key.startswith("video") else 16
    assert [round(v * count) for v in values] == pytest.approx(
        [v * count for v in values])
    assert summary["mean"][key] == pytest.approx(np.mean(values))
  # 4 classes: the top 5 always hold the right one, so top-5 says nothing.
  assert [summary["folds"][fold]["video_top5"] for fold in ("1", "2")] == [
      None, None]
  assert summary["mean"]["video_top5"] is None
  assert summary["folds"]["1"]["num_test_videos"] == 8
  assert summary["num_classes"] == 4

  def no_training(*args, **kwargs):
    raise AssertionError("a finished fold was retrained")

  monkeypatch.setattr(finetune, "_fold_model", no_training)
  rerun = run_script("finetune.py", *command, check=True)
  assert "video top-5 n/a" in rerun.stdout
  with open(os.path.join(output_dir, finetune.SUMMARY_FILE)) as f:
    assert json.load(f)["folds"] == summary["folds"]


def test_every_fold_is_checked_before_any_fold_trains(
    tiny_dataset_dir, tmp_path, monkeypatch):
  def no_training(*args, **kwargs):
    raise AssertionError("fold 1 trained before fold 2 was checked")
  monkeypatch.setattr(finetune, "_fold_model", no_training)
  output_dir = tmp_path / "out"
  # The tiny set has train/val (fold 1) but no train2/test2.
  with pytest.raises(finetune_data.FinetuneDataError,
                     match="no splits train2/test2"):
    finetune.finetune(str(output_dir), random_init=True,
                      dataset_dir=tiny_dataset_dir, folds=(1, 2), **_tiny())
  assert not output_dir.exists()


def test_script_reports_a_bad_init_in_one_line(tiny_dataset_dir, tmp_path):
  result = run_script("finetune.py", f"--init={tmp_path}",
                      f"--dataset_dir={tiny_dataset_dir}",
                      f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith("Error: ") and "neither" in lines[-1]


@pytest.mark.slow
def test_tfds_video_dataset_by_name(tmp_path):
  gin_utils.parse_gin([], TINY_ENCODER_BINDINGS)
  with tfds.testing.mock_data(num_examples=4,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    summary = finetune.finetune(
        str(tmp_path / "out"), random_init=True, tfds_name="ucf101",
        folds=(2,), **_tiny(epochs=2, frozen_epochs=1, batch_size=2))
  assert set(summary["folds"]) == {"2"}
  # Only the newest epoch's checkpoint is kept by default.
  names = os.listdir(tmp_path / "out" / "fold_2" / "checkpoints")
  assert names and all(name.startswith("epoch-2.") for name in names)
  assert summary["num_classes"] == 101
  assert summary["folds"]["2"]["num_test_videos"] == 4
  # 4 test videos of 2 clips each: accuracies are counts of them.
  for key in finetune.METRICS:
    count = 4 if key.startswith("video") else 8
    assert summary["mean"][key] * count == pytest.approx(
        round(summary["mean"][key] * count))
