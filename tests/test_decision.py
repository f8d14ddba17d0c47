"""Tests of the claims' decision rule (studies/decision.py)."""

import math

import pytest

from studies import decision


def test_t_interval_matches_hand_computation():
  # mean 3, sample sd sqrt(2.5), se sqrt(0.5), t_{0.975, 4} = 2.776445.
  mean, (low, high) = decision.t_interval([1, 2, 3, 4, 5])
  half = 2.7764451052 * math.sqrt(0.5)
  assert mean == 3.0
  assert low == pytest.approx(3.0 - half, abs=1e-9)
  assert high == pytest.approx(3.0 + half, abs=1e-9)
  # Two values: t_{0.975, 1} = 12.7062047.
  mean, (low, high) = decision.t_interval([0.1, 0.3])
  assert mean == pytest.approx(0.2)
  assert high - mean == pytest.approx(12.7062047362 * 0.1, rel=1e-9)


@pytest.mark.parametrize("interval, side, verdict", [
    ([0.01, 0.2], "above", decision.HOLDS),
    ([-0.2, -0.01], "above", decision.REFUTED),
    ([-0.01, 0.2], "above", decision.INCONCLUSIVE),
    ([0.0, 0.2], "above", decision.INCONCLUSIVE),
    ([-0.005, 0.009], "equivalent", decision.HOLDS),
    ([0.02, 0.05], "equivalent", decision.REFUTED),
    ([-0.05, -0.011], "equivalent", decision.REFUTED),
    ([-0.02, 0.005], "equivalent", decision.INCONCLUSIVE),
])
def test_verdicts(interval, side, verdict):
  assert decision.verdict(interval, side, margin=0.01) == verdict


def test_paired_claim_pairs_by_seed_and_handles_thresholds():
  claimed = {0: 0.52, 1: 0.53, 2: 0.545, 7: 0.9}
  baseline = {2: 0.50, 1: 0.50, 0: 0.49}
  row = decision.paired_claim(claimed, baseline)
  assert row["seeds"] == [0, 1, 2]
  mean, interval = decision.t_interval([0.03, 0.03, 0.045])
  assert row["mean_difference"] == pytest.approx(mean)
  assert row["interval"] == pytest.approx(interval)
  assert row["verdict"] == decision.HOLDS
  threshold = decision.paired_claim({0: 0.8, 1: 0.85, 2: 0.82}, 0.9)
  assert threshold["verdict"] == decision.REFUTED
  assert threshold["mean_difference"] == pytest.approx(-0.0766667, abs=1e-6)


def test_combined_verdict_needs_every_row():
  holds, refuted, unsure = decision.HOLDS, decision.REFUTED, decision.INCONCLUSIVE
  assert decision.combined_verdict([holds, holds]) == holds
  assert decision.combined_verdict([holds, unsure]) == unsure
  assert decision.combined_verdict([holds, unsure, refuted]) == refuted
  assert decision.combined_verdict([]) == unsure


def test_too_few_or_bad_values_raise():
  with pytest.raises(ValueError, match="at least 2"):
    decision.t_interval([1.0])
  with pytest.raises(ValueError, match="finite"):
    decision.t_interval([1.0, float("nan")])
  with pytest.raises(ValueError, match="side"):
    decision.verdict([0.1, 0.2], side="below")
