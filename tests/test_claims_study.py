"""Tests of the claims benchmark's study (studies/claims*.py)."""

import json
import os

import numpy as np
import pytest

from avid_tf import errors
from studies import claims
from studies import claims_plan
from studies import claims_study
from studies import latent_training
from conftest import run_script

TINY_SCALE = claims_plan.Scale(num_train=512, num_test=400, epochs=30,
                               batch_size=32)
# Easier data than the benchmark's and a faster learning rate, so that even
# a run of 480 steps learns.
EASY_DATA = (("video_informativeness", 0.5), ("audio_informativeness", 0.5),
             ("observation_noise", 0.2))
# Clearer pairs still for the weights at rate 0.5.
CLEAR_DATA = (("video_informativeness", 0.8), ("audio_informativeness", 0.8),
              ("observation_noise", 0.1))
FAST = ("latent_training.learning_rate = 3e-3",)


def _plan(**kwargs):
  options = dict(seeds=(0, 1), rates=(0.5,), soft_kind="swapped")
  options.update(kwargs)
  return claims.Plan(**options)


def _tiny_study(work_dir, data, claim_ids, rates=(0.5,)):
  study = claims_study.StudyConfig(
      work_dir=str(work_dir), scale=TINY_SCALE, num_classes=4,
      gin_bindings=FAST, data_overrides=data)
  plan = claims.Plan(seeds=(0, 1), rates=rates, soft_kind="swapped",
                     claims=claim_ids)
  report = claims_study.run_study(study, plan)
  with open(os.path.join(work_dir, "claims.json")) as f:
    written = json.load(f)
  assert written["verdicts"] == report["verdicts"]
  assert set(written) >= {"claims", "runs", "verdicts", "calibration",
                          "seconds", "config"}
  assert {row["id"] for row in written["claims"]} == set(claim_ids)
  for row in written["claims"]:
    low, high = row["interval"]
    assert low <= row["mean_difference"] <= high
    assert row["verdict"] in ("holds", "refuted", "inconclusive")
  for run in written["runs"]:
    assert 0.0 <= run["video_probe"] <= 1.0 and run["seconds"] > 0
    assert set(run) >= {"variant", "seed", "faulty_positive_rate",
                        "audio_probe"}
  return study, plan, written


def _mean(written, variant, figure):
  values = [r[figure] for r in written["runs"] if r["variant"] == variant]
  return sum(values) / len(values)


@pytest.mark.slow
def test_tiny_study_end_to_end_and_rerun_trains_nothing(tmp_path,
                                                        monkeypatch):
  study, plan, written = _tiny_study(tmp_path / "avid", EASY_DATA,
                                     ("avid_cross",))
  variants = {r["variant"] for r in written["runs"]}
  assert variants == {"avid_cross", "avid_self", "avid_joint",
                      "random_init"}
  table = (tmp_path / "avid" / "claims.md").read_text()
  assert table.count("| avid_cross |") == 5
  assert written["calibration"]["balanced"]["latent_probe"] > 0.9
  # Facts that hold even at this size: Cross-AVID learns something, and
  # the weights tell faulty pairs apart better than chance.
  assert (_mean(written, "avid_cross", "video_probe")
          > _mean(written, "random_init", "video_probe") + 0.02)
  _, _, weighted = _tiny_study(tmp_path / "weights", CLEAR_DATA,
                               ("weights_auc",))
  assert {(r["variant"], r["faulty_positive_rate"])
          for r in weighted["runs"]} == {("weighted", 0.5)}
  assert _mean(weighted, "weighted", "faulty_weight_auc") > 0.5
  assert "| weights_auc |" in (tmp_path / "weights" / "claims.md").read_text()

  def no_training(*args, **kwargs):
    raise AssertionError("a cached run was trained again")

  monkeypatch.setattr(latent_training, "fit_run", no_training)
  again = claims_study.run_study(study, plan)
  assert again["claims"] == written["claims"]


def test_required_runs_put_parents_first_without_repeats():
  plan = _plan(claims=("cma_transfer", "robust", "avid_cross"),
               rates=(0.0, 0.5))
  runs = claims.required_runs(plan)
  assert len(runs) == len(set(runs))
  for position, run in enumerate(runs):
    if run.parent is not None:
      assert runs.index(run.parent) < position
  assert {r.variant for r in runs} == {
      "avid_cross", "cma", "avid_continued", "weighted", "soft_swapped",
      "robust", "avid_self", "avid_joint", "random_init"}
  # Claim 7 runs at the faulty rates only.
  assert {r.rate for r in runs if r.variant == "robust"} == {0.5}


def test_stage_runs_train_half_the_epochs_from_their_parent():
  run = claims_plan.Run("balanced", 0.0, "cma", 3)
  assert run.parent == claims_plan.Run("balanced", 0.0, "avid_cross", 3)
  files, bindings = claims_plan.gin_config(run, claims_plan.Scale(epochs=20))
  assert files[0] == claims_plan.BASE_GIN and files[1].endswith("cma.gin")
  assert "latent_training.epochs = 10" in bindings
  options = claims_plan.Run("balanced", 0.3, "weighted", 0,
                            (("weight_shift", -1.0),))
  assert ("build_robust_xid_objective.weight_shift = -1.0"
          in claims_plan.gin_config(options, TINY_SCALE)[1])
  assert options.name == "balanced_r0.3/weighted_weight_shift-1_s0"


@pytest.mark.parametrize("kwargs, message", [
    ({"rates": [0.1, 1.0]}, "faulty_positive_rate"),
    ({"rates": [-0.1]}, "faulty_positive_rate"),
    ({"seeds": [3]}, "at least 2"),
    ({"seeds": [3, 3]}, "at least 2"),
    ({"claim_ids": ["avid", "robust"]}, "unknown"),
    ({"soft_kind": "teacher"}, "soft_kind"),
])
def test_bad_options_are_user_errors(kwargs, message):
  with pytest.raises(errors.UserError, match=message):
    claims_study.make_plan(**kwargs)


def test_defaults_and_quick_plan():
  plan, scale = claims_study.make_plan()
  assert plan.seeds == (100, 101, 102, 103, 104)
  assert plan.rates == (0.0, 0.1, 0.3, 0.5)
  assert plan.soft_kind == claims_plan.default_soft_kind()
  assert (scale.num_train, scale.epochs, scale.batch_size) == (8000, 20, 256)
  quick, quick_scale = claims_study.make_plan(quick=True)
  assert quick.seeds == (100, 101) and quick.rates == (0.0, 0.5)
  assert quick_scale.num_train < scale.num_train


def test_script_writes_report_with_stubbed_study(tmp_path, monkeypatch):
  seen = {}

  def fake_run_study(study, plan):
    seen.update(study=study, plan=plan)
    return {"claims": [], "verdicts": {}}

  monkeypatch.setattr(claims_study, "run_study", fake_run_study)
  result = run_script("claims_study.py", f"--work_dir={tmp_path}", "--quick",
                      "--seed=5", "--seed=6", "--faulty_positive_rate=0.2",
                      "--claim=weights_auc", "--gin_bindings=a.b = 1",
                      check=True)
  assert result.returncode == 0, result.stderr
  assert seen["plan"].seeds == (5, 6) and seen["plan"].rates == (0.2,)
  assert seen["plan"].claims == ("weights_auc",)
  assert seen["study"].gin_bindings == ("a.b = 1",)
  assert seen["study"].scale == claims_study.QUICK_SCALE
  bad = run_script("claims_study.py", f"--work_dir={tmp_path}", "--seed=5")
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1].startswith("Error: --seed")


def test_a_second_stage_starts_from_its_parent_in_the_same_process(tmp_path):
  study = claims_study.StudyConfig(work_dir=str(tmp_path), scale=TINY_SCALE,
                                   num_classes=4)
  parent = claims_plan.Run("balanced", 0.0, "avid_cross", 0)
  data = claims_study.run_data(study, parent)
  files, bindings = claims_plan.gin_config(parent, TINY_SCALE)
  first = latent_training.configure_run(data, 0, files, bindings)
  prefix = latent_training.save_model(first.model, str(tmp_path / "parent"))
  stage = claims_plan.Run("balanced", 0.0, "cma", 0)
  files, bindings = claims_plan.gin_config(stage, TINY_SCALE)
  second = latent_training.configure_run(data, 1, files, bindings,
                                         init_from=prefix)
  for mine, theirs in zip(second.model.video_encoder.weights,
                          first.model.video_encoder.weights):
    assert mine.path == theirs.path
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
  np.testing.assert_array_equal(second.model.audio_bank.bank.numpy(),
                                first.model.audio_bank.bank.numpy())
  assert float(second.model.objective.state["partition"].numpy()) == float(
      first.model.objective.state["partition"].numpy())
