"""The studies end to end at toy size: every variant runs and is reported."""

import json
import os

import pytest

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


def test_robustness_study_reports_every_variant_and_rate(tmp_path):
  study = robustness.run_robustness_study(
      str(tmp_path), faulty_positive_rates=(0.0, 0.5),
      variants=("xid", "robust"), seeds=(0,), epochs=1,
      dataset_settings=TOY_DATA, gin_bindings=BINDINGS, eval_clips=2)
  with open(tmp_path / robustness.STUDY_FILE) as f:
    assert json.load(f) == json.loads(json.dumps(study))
  assert set(study["rates"]) == {"0", "0.5"}
  for rate, entry in study["rates"].items():
    assert set(entry["variants"]) == {"xid", "robust"}
    figures = entry["variants"]["robust"]
    assert 0.0 <= figures["linear_probe_video_top1"]["mean"] <= 1.0
    # Faulty videos exist only at rate 0.5: the AUC is defined there only.
    assert ("faulty_weight_auc" in figures) == (rate == "0.5")
    assert os.path.isfile(tmp_path / f"robustness_study_faulty_{rate}.png")
  table = robustness.format_study(study)
  assert "faulty-positive rate 0.5" in table and "random init" in table
  with pytest.raises(ValueError, match="Unknown Robust xID variant"):
    robustness.run_robustness_study(str(tmp_path), variants=("nope",))


def test_cma_study_compares_agreements_and_the_control(tmp_path):
  study = cma.run_cma_study(
      str(tmp_path), seeds=(0, 1), extra_epochs=1, ks=(1, 2),
      dataset_settings=TOY_DATA, gin_bindings=BINDINGS, eval_clips=2)
  precision = study["positive_set_precision"]
  assert set(precision) == {"consensus", "union", "video", "audio",
                            "random", "chance"}
  # 2 classes of 4 training videos: 3 of the 7 others share a class.
  assert precision["chance"]["2"] == pytest.approx(3 / 7)
  assert set(study["figures"]) == {"avid", "cma", "avid_continued"}
  assert len(study["figures"]["cma"]["linear_probe_video_top1"]["values"]) == 2
  assert "positive_set_precision" in study["figures"]["cma"]
  for name in ("cma_study_precision.png", "cma_study_figures.png"):
    assert os.path.isfile(tmp_path / name)
  assert "avid_continued" in cma.format_study(study)


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

  monkeypatch.setattr(harness.train_lib, "train", no_training)
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
