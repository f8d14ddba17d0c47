"""The quickstart end to end at toy size: every stage runs, outputs exist."""

import json
import os
import re

import numpy as np
import pytest

from avid_tf import errors
from avid_tf import quickstart
from avid_tf.data import schema
from avid_tf.eval import report
from avid_tf.export import saved_model
from avid_tf.training import gin_utils

SUMMARY_KEYS = (
    "linear_probe_video_top1", "linear_probe_audio_top1",
    "random_init_linear_probe_video_top1",
    "random_init_linear_probe_audio_top1", "retrieval_v2a_r1",
    "retrieval_a2v_r1", "retrieval_v2a_r5", "train_seconds", "total_seconds",
    "num_videos", "export_dir")

TOY_BINDINGS = (
    "run_quickstart.num_classes = 2",
    "run_quickstart.videos_per_class = 6",
    "run_quickstart.val_fraction = 0.34",
    "run_quickstart.duration = 1.5",
    "run_quickstart.size = 48",
    "run_quickstart.num_workers = 1",
    "run_quickstart.eval_clips = 2",
    "build_encoders.width_multiplier = 0.125",
    "build_av_model.head_hidden_dim = 32",
    "build_av_model.embedding_dim = 16",
    "build_avid_objective.num_negatives = 4",
    "build_cma_objective.num_positives = 2",
    "build_cma_objective.num_negatives = 4",
    "build_cma_objective.num_positive_set_negatives = 2",
    "build_robust_xid_objective.num_negatives = 4",
    "clip_preprocessing.num_frames = 4",
    "clip_preprocessing.crop_size = 32",
    "clip_preprocessing.audio_seconds = 1.0",
    "train.batch_size = 4",
    "train.epochs = 1",
    "train.clips_per_video = 1",
    "train.verbose = 0",
)


def _run(work_dir, method="avid", bindings=TOY_BINDINGS):
  gin_utils.parse_gin([quickstart.stage_gin_file(method)], bindings)
  return quickstart.run_quickstart(work_dir, method=method,
                                   gin_bindings=bindings)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  work_dir = str(tmp_path_factory.mktemp("quickstart"))
  return work_dir, _run(work_dir)


@pytest.mark.slow
def test_summary_has_the_documented_keys_and_sane_values(toy_run):
  work_dir, summary = toy_run
  with open(os.path.join(work_dir, "summary.json")) as f:
    written = json.load(f)
  assert set(SUMMARY_KEYS) <= set(written)
  assert written["num_videos"] == 12
  # 8 train videos, batch 4, 1 clip per video, 1 epoch.
  assert written["train_steps"] == 2
  # 4 held-out videos: every accuracy and recall counts them.
  assert written["num_val_videos"] == 4
  for key in SUMMARY_KEYS:
    if key.startswith(("linear_probe", "random_init", "retrieval_v2a_r1",
                       "retrieval_a2v_r1")):
      assert written[key] * 4 == pytest.approx(round(written[key] * 4)), key
  # R@5 of 4 videos is 1 whatever the model: not applicable.
  assert written["retrieval_v2a_r5"] is None
  assert written["retrieval_chance_r1"] == pytest.approx(
      1.0 / written["num_val_videos"])
  # 2 balanced classes of 2 held-out videos each.
  assert written["linear_probe_chance"] == 0.5
  assert written["total_seconds"] >= written["train_seconds"] > 0
  assert summary["export_dir"] == written["export_dir"]
  table = quickstart.format_table(summary)
  assert "linear probe, video top-1" in table and "retrieval v->a" in table
  assert "R@5 n/a" in table and "chance" in table
  # scripts/report.py reads the work folder: the summary and the run.
  gathered = report.gather_run(work_dir)
  assert gathered["figures"]["quickstart avid probe video"] == {
      "value": written["linear_probe_video_top1"], "chance": 0.5,
      "source": "summary.json"}
  assert gathered["figures"]["quickstart avid retrieval v2a R@5"][
      "value"] is None
  assert gathered["training"]["model"]["steps"] == 2


@pytest.mark.slow
def test_plots_and_exported_encoders_exist(toy_run):
  work_dir, summary = toy_run
  for name in ("loss_curve.png", "val_video_features_pca.png"):
    with open(os.path.join(work_dir, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  layer = saved_model.load_encoder_layer(
      os.path.join(summary["export_dir"], "video_encoder"), trainable=False)
  features = layer(np.zeros([1, 4, 32, 32, 3], np.float32))
  assert features.shape[0] == 1


@pytest.mark.slow
def test_rerun_reuses_the_finished_stages(toy_run):
  work_dir, first = toy_run
  videos = os.path.join(work_dir, "synthetic", "labels.csv")
  stamp = os.path.getmtime(videos)
  second = _run(work_dir)
  assert os.path.getmtime(videos) == stamp
  # Training resumed at its last step: nothing left to train.
  assert second["train_steps"] == first["train_steps"]
  # ... and its recorded training time is kept, not replaced by this run's.
  assert second["train_seconds"] == pytest.approx(first["train_seconds"],
                                                  abs=1.0)
  assert second["linear_probe_video_top1"] == first["linear_probe_video_top1"]


@pytest.mark.slow
def test_cma_reuses_the_avid_stage_and_reports_both(toy_run):
  work_dir, avid_summary = toy_run
  summary = _run(work_dir, "cma")
  with open(os.path.join(work_dir, "summary_cma.json")) as f:
    written = json.load(f)
  assert set(SUMMARY_KEYS) <= set(written)
  assert written["method"] == "cma"
  assert written["model_dir"] == os.path.join(work_dir, "model_cma")
  stage = written["avid_stage"]
  # The AVID stage is the finished avid run, evaluated again.
  assert stage["model_dir"] == avid_summary["model_dir"]
  assert stage["linear_probe_video_top1"] == pytest.approx(
      avid_summary["linear_probe_video_top1"])
  # 2 classes of 4 training videos, sets of 2: chance is 3 / 7.
  assert written["positive_set_precision_chance"] == pytest.approx(3 / 7)
  # 8 rows with sets of 2: the precision counts 16 set members.
  precision = written["positive_set_precision"]
  assert precision * 16 == pytest.approx(round(precision * 16))
  avid, cma = written["stages"]
  assert avid["train_steps"] == avid_summary["train_steps"]
  assert avid["train_seconds"] == pytest.approx(
      avid_summary["train_seconds"], abs=1.0)
  assert cma["model_dir"] == written["model_dir"]
  assert written["train_seconds"] == pytest.approx(
      avid["train_seconds"] + cma["train_seconds"])
  table = quickstart.format_table(summary)
  assert "positive-set precision" in table
  assert f"model {avid['train_steps']} steps" in table
  assert f"model_cma {cma['train_steps']} steps" in table


@pytest.mark.slow
def test_robust_xid_reports_the_faulty_weight_auc(tmp_path):
  bindings = TOY_BINDINGS + ("run_quickstart.faulty_positive_rate = 0.5",)
  summary = _run(str(tmp_path), "robust_xid", bindings)
  assert summary["method"] == "robust_xid"
  # A Mann-Whitney AUC over the faulty and clean rows counts their pairs,
  # ties as halves.
  dataset = schema.DatasetInfo.load(
      os.path.join(tmp_path, "datasets", "synthetic", "1.0.0"))
  faulty = dataset.instance_column("train", "faulty")
  pairs = 2 * np.sum(faulty == 1) * np.sum(faulty == 0)
  assert pairs > 0
  auc = summary["faulty_weight_auc"]
  assert auc * pairs == pytest.approx(round(auc * pairs))
  assert "faulty-positive weight AUC" in quickstart.format_table(summary)


@pytest.mark.slow
def test_other_settings_in_a_used_work_dir_are_an_error(toy_run):
  work_dir, _ = toy_run
  with pytest.raises(ValueError, match="other settings.*videos_per_class"):
    _run(work_dir, bindings=TOY_BINDINGS + (
        "run_quickstart.videos_per_class = 7",))


def _readme_keras_example():
  """The README's fine-tuning example (the block after "Fine-tune in Keras")."""
  with open(os.path.join(os.path.dirname(__file__), os.pardir,
                         "README.md")) as f:
    readme = f.read()
  section = readme[readme.index("Fine-tune in Keras with `model.fit`"):]
  return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_readme_keras_finetuning_example_runs(toy_run):
  work_dir, _ = toy_run
  code = _readme_keras_example()
  # The folders come from the variables at the top: the toy quickstart's.
  folders = {"dataset_dir": "datasets/synthetic/1.0.0", "model_dir": "model",
             "encoder_dir": "export/video_encoder"}
  for name, folder in folders.items():
    code, count = re.subn(rf'^{name} = "[^"]*"',
                          f"{name} = {os.path.join(work_dir, folder)!r}",
                          code, flags=re.MULTILINE)
    assert count == 1, name
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  losses = namespace["history"].history["loss"]
  assert len(losses) == 2 and np.isfinite(losses).all()
  # The exported encoder was fine-tuned, not just the head.
  exported = saved_model.load_encoder_layer(namespace["encoder_dir"])
  changes = [np.abs(w.numpy() - e.numpy()).max() for w, e in
             zip(namespace["encoder"].weights, exported.weights)]
  assert len(changes) == len(exported.weights) > 0
  assert max(changes) > 0


@pytest.mark.parametrize("changes, message", [
    ({"videos_per_class": 0},
     "run_quickstart.videos_per_class must be an integer >= 1, got 0"),
    ({"val_fraction": 1.0},
     "run_quickstart.val_fraction must be a number > 0 and < 1, got 1.0"),
    ({"eval_clips": "4"}, "run_quickstart.eval_clips must be an integer"),
])
def test_bad_quickstart_values_are_user_errors_naming_the_binding(
    tmp_path, changes, message):
  work_dir = tmp_path / "work"
  with pytest.raises(errors.UserError, match=re.escape(message)):
    quickstart.run_quickstart(str(work_dir), **changes)
  assert not work_dir.exists()
