"""The methods' claims, tested on the latent benchmark.

Each claim lists the runs it needs and turns their figures into rows: one
comparison (a setting), its mean paired difference over seeds, the 95%
t-interval and a verdict under `studies.decision`. A claim's own verdict
combines its deciding rows (`decision.combined_verdict`); rows marked
`decides: False` are reported for context only. The rules were written
before the study ran (docs/methods.md, "Claims benchmark").
"""

import dataclasses

from studies import claims_plan
from studies import decision

Run = claims_plan.Run
PROBES = ("video_probe", "audio_probe")
# Claim 4: the weights find faulty positives when their AUC is >= this.
AUC_TARGET = 0.9
# Claim 6, "match when rare": equivalence within +-1 probe point.
EQUIVALENCE_MARGIN = 0.01
CLAIM_IDS = ("avid_cross", "cma_precision", "cma_transfer", "weights_auc",
             "weighted_loss", "soft_targets", "robust")


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one study covers.

  Attributes:
    seeds: seeds of every cell (>= 2).
    rates: faulty-positive rates of claims 4, 5 and 7.
    soft_kind: the soft-target kind the soft and robust variants use.
    claims: ids of the claims to test.
    precision_settings: data settings of claim 2.
    soft_settings: {setting: side} of claim 6 ("above": soft beats hard;
      "equivalent": they match).
  """

  seeds: tuple
  rates: tuple
  soft_kind: str
  claims: tuple = CLAIM_IDS
  precision_settings: tuple = ("balanced", "video_dominant",
                               "audio_dominant")
  soft_settings: tuple = (("few_classes", "above"), ("duplicates", "above"),
                          ("balanced", "equivalent"))

  @property
  def soft_variant(self):
    return f"soft_{self.soft_kind}"

  @property
  def faulty_rates(self):
    return tuple(r for r in self.rates if r > 0)

  @property
  def test_rates(self):
    """Faulty rates other than the one Robust xID's defaults were chosen at
    (all faulty rates when that is the only one)."""
    others = tuple(r for r in self.faulty_rates
                   if r != claims_plan.DEV_RATE)
    return others or self.faulty_rates


def _runs(variants, setting, rates, seeds):
  return [Run(setting, rate, variant, seed) for variant in variants
          for rate in rates for seed in seeds]


def required_runs(plan):
  """Every run the plan's claims need, parents first, without repeats."""
  runs = []
  needs = {
      "avid_cross": lambda: _runs(("avid_cross", "avid_self", "avid_joint",
                                   claims_plan.RANDOM_INIT), "balanced", (0.0,),
                                  plan.seeds),
      "cma_precision": lambda: [r for s in plan.precision_settings
                                for r in _runs(("avid_cross",), s, (0.0,),
                                               plan.seeds)],
      "cma_transfer": lambda: _runs(("avid_cross", "cma", "avid_continued"),
                                    "balanced", (0.0,), plan.seeds),
      "weights_auc": lambda: _runs(("weighted",), "balanced",
                                   plan.faulty_rates, plan.seeds),
      "weighted_loss": lambda: _runs(("xid", "weighted"), "balanced",
                                     plan.rates, plan.seeds),
      "soft_targets": lambda: [r for s, _ in plan.soft_settings
                               for r in _runs(("xid", plan.soft_variant), s,
                                              (0.0,), plan.seeds)],
      "robust": lambda: _runs(("weighted", plan.soft_variant, "robust"),
                              "balanced", plan.test_rates, plan.seeds),
  }
  for claim in plan.claims:
    for run in needs[claim]():
      if run.parent is not None and run.parent not in runs:
        runs.append(run.parent)
      if run not in runs:
        runs.append(run)
  return runs


def _by_seed(results, setting, rate, variant, figure):
  return {run.seed: value[figure] for run, value in results.items()
          if (run.setting, run.rate, run.variant) == (setting, rate, variant)
          and value.get(figure) is not None}


def _row(claim, setting, claimed, baseline, side="above", margin=0.0,
         decides=True):
  row = decision.paired_claim(claimed, baseline, side, margin)
  return {"id": claim, "setting": setting, "decides": decides, **row}


def _compare(claim, results, cell, claimed, baseline, figures, side="above",
             decides=True, label=None):
  """Rows claimed - baseline of `figures` in one (setting, rate) cell."""
  setting, rate = cell
  rows = []
  for figure in figures:
    text = (f"{label or setting}, rate {rate:g}: {claimed} - {baseline}, "
            f"{figure}")
    rows.append(_row(claim, text,
                     _by_seed(results, setting, rate, claimed, figure),
                     _by_seed(results, setting, rate, baseline, figure),
                     side, EQUIVALENCE_MARGIN if side == "equivalent" else 0.0,
                     decides))
  return rows


def _avid_cross(plan, results):
  del plan
  return [row for other in ("avid_self", "avid_joint")
          for row in _compare("avid_cross", results, ("balanced", 0.0),
                              "avid_cross", other, PROBES)]


def _cma_precision(plan, results):
  rows = []
  for setting in plan.precision_settings:
    for k in (8, 32):
      for other in ("union", "video", "audio"):
        rows.append(_row(
            "cma_precision",
            f"{setting}: consensus - {other}, precision at k={k}",
            _by_seed(results, setting, 0.0, "avid_cross",
                     f"precision_consensus_k{k}"),
            _by_seed(results, setting, 0.0, "avid_cross",
                     f"precision_{other}_k{k}"),
            decides=setting == "balanced"))
  return rows


def _cma_transfer(plan, results):
  del plan
  return _compare("cma_transfer", results, ("balanced", 0.0), "cma",
                  "avid_continued", ("video_probe", "v2v_map"))


def _weights_auc(plan, results):
  rows = []
  for rate in plan.faulty_rates:
    for kind in ("mismatched", "uninformative"):
      figure = f"{kind}_weight_auc"
      rows.append(_row(
          "weights_auc", f"balanced, rate {rate:g}: weighted, {figure} - "
          f"{AUC_TARGET}",
          _by_seed(results, "balanced", rate, "weighted", figure),
          AUC_TARGET))
  return rows


def _weighted_loss(plan, results):
  top = max(plan.rates)
  return [row for rate in plan.rates
          for row in _compare("weighted_loss", results, ("balanced", rate),
                              "weighted", "xid", PROBES,
                              decides=rate == top)]


def _soft_targets(plan, results):
  return [row for setting, side in plan.soft_settings
          for row in _compare("soft_targets", results, (setting, 0.0),
                              plan.soft_variant, "xid", PROBES, side=side)]


def _robust(plan, results):
  return [row for rate in plan.test_rates
          for baseline in ("weighted", plan.soft_variant)
          for row in _compare("robust", results, ("balanced", rate),
                              "robust", baseline, PROBES)]


_ROWS = {"avid_cross": _avid_cross, "cma_precision": _cma_precision,
         "cma_transfer": _cma_transfer, "weights_auc": _weights_auc,
         "weighted_loss": _weighted_loss, "soft_targets": _soft_targets,
         "robust": _robust}


def evaluate_claims(plan, results):
  """Rows of every claim of the plan and each claim's verdict.

  Args:
    plan: a `Plan`.
    results: {Run: figures dict} of the plan's runs.

  Returns:
    (rows, verdicts): the rows in claim order; {claim id: verdict}.
  """
  rows = [row for claim in plan.claims for row in _ROWS[claim](plan, results)]
  verdicts = {claim: decision.combined_verdict(
      r["verdict"] for r in rows if r["id"] == claim and r["decides"])
              for claim in plan.claims}
  return rows, verdicts
