"""Tests of the rule that chooses Robust xID's defaults (studies/robust_sweep.py)."""

import pytest

from studies import claims_study
from studies import robust_sweep


def _fake_probes(best, warm_gain):
  """A fake study: a run scores 0.3 plus 0.01 per option value in `best`."""

  def train_and_evaluate(study, run, parents):
    del study, parents
    options = dict(run.options)
    score = 0.3 + 0.01 * sum(options.get(k) == v for k, v in best.items())
    if run.variant == "robust_warm":
      score += warm_gain + 0.001 * run.seed
    return {"video_probe": score, "audio_probe": score, "seconds": 1.0}

  return train_and_evaluate


@pytest.mark.parametrize("warm_gain, schedule", [(0.02, "xid_warmup"),
                                                 (-0.02, "from_scratch"),
                                                 (0.0, "from_scratch")])
def test_each_stage_keeps_the_best_candidate(monkeypatch, tmp_path,
                                             warm_gain, schedule):
  best = {"weight_shift": -1.5, "weight_scale": 1.0,
          "soft_targets": "pair_path", "target_mix": 0.25,
          "target_temperature": 0.07}
  monkeypatch.setattr(claims_study, "train_and_evaluate",
                      _fake_probes(best, warm_gain))
  study = claims_study.StudyConfig(work_dir=str(tmp_path))
  report = robust_sweep.run_sweep(study, seeds=(0, 1, 2))
  assert report["combined"] == dict(best, min_weight=0.0, weighting=True)
  assert [s["swept"] for s in report["stages"]] == [
      "weight_shift", "weight_scale", "min_weight", "soft_targets",
      "target_mix", "target_temperature"]
  # min_weight: both candidates score the same; the first listed wins.
  assert report["stages"][2]["candidates"][0]["score"] == pytest.approx(
      report["stages"][2]["candidates"][1]["score"])
  assert report["schedule"]["chosen"] == schedule
  assert report["rate"] == 0.3
  assert {r["seed"] for r in report["runs"]} == {0, 1, 2}
  table = robust_sweep.format_sweep(report)
  assert "| weights | weight_shift | -1.5 (chosen) |" in table
