"""The studies: what they train and how they report it.

Training is stubbed except in the AVID study's test, the one study test
that trains (tiny runs of 2 steps) and checks what the runs logged.
"""

import json
import os

import numpy as np
import pytest

from avid_tf import quickstart
from avid_tf import runs
from avid_tf.utils import settings_record
from studies import avid_variants
from studies import cma
from studies import harness
from studies import robustness
from test_quickstart import TOY_BINDINGS

TOY_DATA = {"num_classes": 2, "videos_per_class": 6, "val_fraction": 0.34,
            "duration": 1.5, "size": 48, "num_workers": 1}
# The quickstart's toy settings without its data bindings (the studies make
# their datasets from TOY_DATA).
BINDINGS = tuple(b for b in TOY_BINDINGS if not b.startswith("run_quickstart"))


class _StubbedRuns:
  """Stands in for the data, training and evaluation of a study.

  Records every run the study asks for and returns figures that depend on
  the run's folder, so the tests can check how the study combines them.
  Real training is tested by the AVID study's test and by test_train_lib.
  """

  def __init__(self, monkeypatch):
    self.datasets, self.runs, self.random_inits = [], [], []
    monkeypatch.setattr(quickstart, "prepare_dataset", self.prepare_dataset)
    monkeypatch.setattr(harness, "train_and_evaluate", self.train)
    monkeypatch.setattr(harness, "evaluate_run", self.evaluate)

  def prepare_dataset(self, work_dir, **settings):
    self.datasets.append((work_dir, settings))
    return os.path.join(work_dir, "dataset")

  def train(self, run_dir, dataset_dir, gin_files, gin_bindings=(),
            init_from=None, epoch_keys=(), eval_clips=4):
    self.runs.append({"run": os.path.basename(run_dir),
                      "dataset_dir": dataset_dir,
                      "gin_files": [os.path.basename(f) for f in gin_files],
                      "bindings": list(gin_bindings),
                      "init_from": init_from, "epoch_keys": epoch_keys,
                      "eval_clips": eval_clips})
    seed = int(run_dir[-1]) if run_dir[-1].isdigit() else 0
    result = {key: 0.01 * len(self.runs) + 0.001 * seed
              for key in harness.FIGURES}
    result.update({key: 0.5 + 0.1 * seed for key in epoch_keys},
                  train_steps=3)
    return result

  def evaluate(self, run_dir, dataset_dir, eval_batch_size=16, eval_clips=4,
               random_init=False):
    self.random_inits.append((os.path.basename(run_dir), random_init))
    return {key: 0.25 for key in harness.FIGURES}


def test_robustness_study_trains_every_variant_per_rate_and_seed(
    tmp_path, monkeypatch):
  stub = _StubbedRuns(monkeypatch)
  study = robustness.run_robustness_study(
      str(tmp_path), faulty_positive_rates=(0.0, 0.5),
      variants=("xid", "robust"), seeds=(0, 1), epochs=3,
      dataset_settings=TOY_DATA, gin_bindings=BINDINGS, eval_clips=2)
  with open(tmp_path / robustness.STUDY_FILE) as f:
    assert json.load(f) == json.loads(json.dumps(study))
  # One dataset per rate, with that rate of faulty positives.
  assert stub.datasets == [
      (str(tmp_path / f"faulty_{rate}"),
       dict(TOY_DATA, faulty_positive_rate=rate_value))
      for rate, rate_value in (("0", 0.0), ("0.5", 0.5))]
  assert [r["run"] for r in stub.runs] == [
      f"{variant}_seed{seed}" for _ in range(2)
      for variant in ("xid", "robust") for seed in (0, 1)]
  for run in stub.runs:
    variant, seed = run["run"].split("_seed")
    assert run["gin_files"] == ["quickstart.gin", f"{variant}.gin"]
    assert run["bindings"] == list(BINDINGS) + [
        "train.epochs = 3", f"train.seed = {seed}"]
    assert run["epoch_keys"] == robustness.EPOCH_KEYS
    assert run["init_from"] is None and run["eval_clips"] == 2
  # Per variant: the mean and spread over its two seeds.
  robust = study["rates"]["0.5"]["variants"]["robust"]
  auc = robust["faulty_weight_auc"]
  assert (auc["mean"], auc["min"], auc["max"]) == pytest.approx(
      (0.55, 0.5, 0.6))
  # The 7th and 8th runs (robust, seeds 0 and 1, at rate 0.5).
  video = robust["linear_probe_video_top1"]
  assert video["values"] == pytest.approx([0.07, 0.081])
  assert video["mean"] == pytest.approx(0.0755)
  # The random-init baseline is the first variant's architecture (at
  # runs.RANDOM_INIT_SEED, inside harness.evaluate_run).
  assert stub.random_inits == [("xid_seed0", True)] * 2
  assert study["rates"]["0"]["random_init"]["retrieval_v2a_r1"] == 0.25
  for rate in ("0", "0.5"):
    assert os.path.isfile(tmp_path / f"robustness_study_faulty_{rate}.png")
  table = robustness.format_study(study)
  assert "faulty-positive rate 0.5" in table and "random init" in table
  with pytest.raises(ValueError, match="Unknown Robust xID variant"):
    robustness.run_robustness_study(str(tmp_path), variants=("nope",))


def test_cma_study_runs_both_stages_from_the_avid_run(tmp_path, monkeypatch):
  stub = _StubbedRuns(monkeypatch)
  labels = np.array([0, 0, 1, 1, 1, 0])
  monkeypatch.setattr(harness, "dataset_labels", lambda _: labels)
  asked = []

  def precisions(avid_dir, labels_, ks):
    asked.append((os.path.basename(avid_dir), list(labels_), ks))
    return {name: {str(k): 0.5 for k in ks}
            for name in ("consensus", "union", "video", "audio", "random",
                         "chance")}

  monkeypatch.setattr(cma, "positive_set_precisions", precisions)
  study = cma.run_cma_study(
      str(tmp_path), seeds=(0, 1), extra_epochs=2, ks=(1, 2),
      dataset_settings=TOY_DATA, gin_bindings=BINDINGS, eval_clips=2)
  assert stub.datasets == [(str(tmp_path), TOY_DATA)]
  assert asked == [("avid", list(labels), (1, 2))]
  avid_dir = str(tmp_path / "avid")
  assert stub.runs[0]["run"] == "avid" and stub.runs[0]["init_from"] is None
  assert stub.runs[0]["bindings"] == list(BINDINGS)
  # Both second stages start from the AVID run, with the same budget.
  assert [(r["run"], r["gin_files"][0], r["init_from"])
          for r in stub.runs[1:]] == [
              ("cma_seed0", "quickstart.gin", avid_dir),
              ("avid_continued_seed0", "quickstart.gin", avid_dir),
              ("cma_seed1", "quickstart.gin", avid_dir),
              ("avid_continued_seed1", "quickstart.gin", avid_dir)]
  assert [r["epoch_keys"] for r in stub.runs[1:3]] == [
      ("positive_set_precision",), ()]
  for run in stub.runs[1:]:
    seed = run["run"][-1]
    assert run["bindings"] == list(BINDINGS) + [
        "train.epochs = 2", f"train.seed = {seed}"]
  assert set(study["figures"]) == {"avid", "cma", "avid_continued"}
  assert study["figures"]["cma"]["positive_set_precision"]["values"] == [
      0.5, 0.6]
  assert study["random_init"]["linear_probe_video_top1"] == 0.25
  assert stub.random_inits == [("avid", True)]
  for name in ("cma_study_precision.png", "cma_study_figures.png"):
    assert os.path.isfile(tmp_path / name)
  assert "avid_continued" in cma.format_study(study)


@pytest.mark.slow
def test_positive_set_precisions_of_a_trained_run(tiny_run_dir,
                                                  tiny_dataset_dir):
  labels = harness.dataset_labels(tiny_dataset_dir)
  precisions = cma.positive_set_precisions(tiny_run_dir, labels, ks=(3,))
  assert set(precisions) == {"consensus", "union", "video", "audio",
                             "random", "chance"}
  # 16 training videos of 4 classes: 3 of the 15 others share a class.
  assert precisions["chance"] == {"3": pytest.approx(3 / 15)}
  # The video agreement's sets are the nearest bank rows, by brute force.
  model = runs.open_run(tiny_run_dir).model()
  bank = np.asarray(model.video_bank.bank.value, np.float64)
  similarity = bank @ bank.T
  np.fill_diagonal(similarity, -np.inf)
  nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :3]
  expected = np.mean(labels[nearest] == labels[:, None])
  assert precisions["video"]["3"] == pytest.approx(expected)


@pytest.mark.slow
def test_avid_study_reports_every_variant_with_its_terms(tmp_path,
                                                        monkeypatch):
  # Real training; the evaluation (run by the other studies' tests) is
  # replaced by fixed figures to keep the test short.
  evaluated = []

  def evaluate_run(run_dir, dataset_dir, eval_batch_size=16, eval_clips=4,
                   random_init=False, seed=0):
    evaluated.append((os.path.basename(run_dir), random_init))
    return {key: 0.5 for key in harness.FIGURES + (
        "retrieval_class_v2a_map",)}

  monkeypatch.setattr(harness, "evaluate_run", evaluate_run)
  study = avid_variants.run_avid_study(
      str(tmp_path), seeds=(0,), epochs=1, dataset_settings=TOY_DATA,
      gin_bindings=BINDINGS + ("train.log_every_steps = 1",), eval_clips=2)
  with open(tmp_path / avid_variants.STUDY_FILE) as f:
    assert json.load(f) == json.loads(json.dumps(study))
  figures = study["variants"]
  assert list(figures) == ["self", "cross", "joint"]
  # Each variant computes exactly its own terms, with the same steps.
  terms = {"self": {"v2v", "a2a"}, "cross": {"v2a", "a2v"},
           "joint": {"v2a", "a2v", "v2v", "a2a"}}
  for variant, expected in terms.items():
    logged = {key[len("final_loss_"):] for key in figures[variant]
              if key.startswith("final_loss_")}
    assert logged == expected
    assert figures[variant]["train_steps"]["values"] == [2]
    assert figures[variant]["linear_probe_video_top1"]["values"] == [0.5]
  # Joint's loss is the mean of its four terms (coefficients 1/2, 1/2).
  joint = {key: value["mean"] for key, value in figures["joint"].items()}
  assert joint["final_loss"] == pytest.approx(sum(
      joint[f"final_loss_{term}"] for term in terms["joint"]) / 4, rel=1e-5)
  assert evaluated == [("self_seed0", False), ("cross_seed0", False),
                       ("joint_seed0", False), ("self_seed0", True)]
  assert os.path.isfile(tmp_path / avid_variants.PLOT_FILE)
  assert "random init" in avid_variants.format_study(study)
  with pytest.raises(ValueError, match="Unknown AVID variant"):
    avid_variants.run_avid_study(str(tmp_path), variants=("both",))


def test_cached_results_of_another_evaluation_are_evaluated_again(
    tmp_path, monkeypatch):
  run_dir = tmp_path / "xid_seed0"
  run_dir.mkdir()
  cached = {"linear_probe_video_top1": 0.1, "train_steps": 7,
            "faulty_weight_auc": 0.6}
  (run_dir / harness.RESULT_FILE).write_text(json.dumps(cached))

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")

  evaluated = []

  def evaluate_run(run_dir, dataset_dir, eval_batch_size, eval_clips):
    evaluated.append(eval_clips)
    return {"linear_probe_video_top1": 0.9}

  monkeypatch.setattr(quickstart.train_lib, "train", no_training)
  monkeypatch.setattr(harness, "evaluate_run", evaluate_run)
  monkeypatch.setattr(harness, "EVALUATION_VERSION", 2)
  result = harness.train_and_evaluate(str(run_dir), "unused", [],
                                      eval_clips=3)
  # New figures, the training's own values kept, the evaluation recorded.
  assert result == {"linear_probe_video_top1": 0.9, "train_steps": 7,
                    "faulty_weight_auc": 0.6,
                    "evaluation": {"version": 2, "eval_clips": 3}}
  with open(run_dir / harness.RESULT_FILE) as f:
    assert json.load(f) == result
  # The same evaluation again: the cached result, nothing recomputed.
  assert harness.train_and_evaluate(str(run_dir), "unused", [],
                                    eval_clips=3) == result
  assert evaluated == [3]


def test_a_cached_run_of_another_recipe_is_refused(tmp_path, monkeypatch):
  run_dir = str(tmp_path / "cross_seed0")
  trained = []

  def train(model_dir, dataset_dir, init_from):
    trained.append((model_dir, dataset_dir, init_from))
    return {"steps": 4, "train_seconds": 1.0}

  monkeypatch.setattr(quickstart.train_lib, "train", train)
  monkeypatch.setattr(harness, "evaluate_run",
                      lambda *args: {"linear_probe_video_top1": 0.5})
  first = harness.train_and_evaluate(run_dir, str(tmp_path / "data"), [],
                                     ["train.epochs = 2"])
  assert first["train_steps"] == 4 and len(trained) == 1
  # Before the record, a rerun with 3 epochs returned the 2-epoch result.
  with pytest.raises(settings_record.SettingsMismatchError,
                     match=r"gin_bindings \['train.epochs = 2'\] there, "
                     r"\['train.epochs = 3'\] now"):
    harness.train_and_evaluate(run_dir, str(tmp_path / "data"), [],
                               ["train.epochs = 3"])
  assert len(trained) == 1
