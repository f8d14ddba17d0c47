"""Robust xID's defaults, chosen on the development configuration.

Development configuration: the latent benchmark's balanced setting at
faulty-positive rate 0.3, seeds 0-4, data seed 0. The claims study
reports the chosen defaults on separate test seeds and rates.

The rule (docs/methods.md, "Choosing Robust xID's defaults"), applied
stage by stage, each stage starting from the previous stage's choice:
1. weights (hard targets): delta over SHIFTS at kappa 0.5, w_min 0; then
   kappa over SCALES; then w_min over MIN_WEIGHTS;
2. soft targets (no weights): the kind over SOFT_KINDS at lambda 0.5,
   tau_s 0.035; then lambda over MIXES; then tau_s over TEMPERATURES;
3. schedule: the combined objective from scratch against an xID warm-up
   for half the epochs followed by it for the other half.
The score of a candidate is the mean over seeds of the mean of the video
and audio held-out probes; the highest score wins, ties to the earlier
candidate. The warm-up is adopted only when its paired 95% interval
against training from scratch lies above 0.
"""

import time

from studies import claims_plan
from studies import claims_study
from studies import decision

DEV_SEEDS = (0, 1, 2, 3, 4)
DEV_RATE = claims_plan.DEV_RATE
SHIFTS = (0.0, -0.5, -1.0, -1.5, -2.0)
SCALES = (0.5, 0.25, 1.0)
MIN_WEIGHTS = (0.0, 0.25)
MIXES = (0.5, 0.25, 0.75)
TEMPERATURES = (0.035, 0.07)


def score(results, runs):
  """{seed: mean of the two probes} of runs."""
  return {run.seed: 0.5 * (results[run]["video_probe"]
                           + results[run]["audio_probe"]) for run in runs}


class Sweep:
  """Trains candidates on the development configuration and keeps results."""

  def __init__(self, study, seeds=DEV_SEEDS, rate=DEV_RATE):
    self.study = study
    self.seeds = tuple(seeds)
    self.rate = rate
    self.results = {}
    self.stages = []

  def runs(self, variant, options):
    return [claims_plan.Run("balanced", self.rate, variant, seed,
                            tuple(options)) for seed in self.seeds]

  def train(self, runs):
    for run in runs:
      if run.parent is not None and run.parent not in self.results:
        self.train([run.parent])
      if run not in self.results:
        self.results[run] = claims_study.train_and_evaluate(
            self.study, run, self.results)
        claims_study.log(f"sweep {run.name}: "
                         f"{self.results[run]['video_probe']:.3f} / "
                         f"{self.results[run]['audio_probe']:.3f}")
    return score(self.results, runs)

  def choose(self, stage, variant, base, name, values):
    """Trains `base` with `name` set to each value; returns the best options.

    Args:
      stage: the stage's name in the report.
      variant: the variant trained.
      base: dict of options every candidate shares.
      name: the option swept.
      values: its candidate values, the preferred one first.
    """
    candidates = []
    for value in values:
      options = dict(base, **{name: value})
      scores = self.train(self.runs(variant, sorted(options.items())))
      mean = sum(scores.values()) / len(scores)
      candidates.append({"options": options, "score": mean,
                         "by_seed": scores})
    best = max(candidates, key=lambda c: c["score"])  # first of the ties
    self.stages.append({"stage": stage, "swept": name,
                        "candidates": candidates, "chosen": best["options"]})
    return best["options"]


def run_sweep(study, seeds=DEV_SEEDS, rate=DEV_RATE):
  """Applies the rule of the module docstring; returns the report."""
  start = time.time()
  sweep = Sweep(study, seeds, rate)
  baseline = sweep.train(sweep.runs("xid", ()))
  weights = {"weight_scale": 0.5, "min_weight": 0.0}
  weights = sweep.choose("weights", "weighted", weights, "weight_shift",
                         SHIFTS)
  weights = sweep.choose("weights", "weighted", weights, "weight_scale",
                         SCALES)
  weights = sweep.choose("weights", "weighted", weights, "min_weight",
                         MIN_WEIGHTS)
  soft = {"weighting": False, "target_mix": 0.5, "target_temperature": 0.035}
  soft = sweep.choose("soft targets", "xid", soft, "soft_targets",
                      claims_plan.SOFT_KINDS)
  soft = sweep.choose("soft targets", "xid", soft, "target_mix", MIXES)
  soft = sweep.choose("soft targets", "xid", soft, "target_temperature",
                      TEMPERATURES)
  combined = dict(weights, **{k: v for k, v in soft.items()
                              if k != "weighting"}, weighting=True)
  options = sorted(combined.items())
  scratch = sweep.train(sweep.runs("robust", options))
  warm = sweep.train(sweep.runs("robust_warm", options))
  schedule = decision.paired_claim(warm, scratch)
  return {"seeds": list(seeds), "rate": rate,
          "xid_score": sum(baseline.values()) / len(baseline),
          "stages": sweep.stages,
          "combined": combined,
          "schedule": {"from_scratch": scratch, "xid_warmup": warm,
                       **schedule,
                       "chosen": ("xid_warmup" if schedule["verdict"]
                                  == decision.HOLDS else "from_scratch")},
          "runs": [claims_study.run_record(run, sweep.results[run])
                   for run in sweep.results],
          "seconds": time.time() - start}


def format_sweep(report):
  """The sweep as Markdown: every candidate's score, the choices."""
  lines = [f"xID baseline: {report['xid_score']:.4f}", "",
           "| stage | swept | value | score (mean of the two probes) |",
           "|---|---|---|---|"]
  for stage in report["stages"]:
    for candidate in stage["candidates"]:
      value = candidate["options"][stage["swept"]]
      chosen = " (chosen)" if candidate["options"] == stage["chosen"] else ""
      lines.append(f"| {stage['stage']} | {stage['swept']} | {value}{chosen}"
                   f" | {candidate['score']:.4f} |")
  schedule = report["schedule"]
  low, high = schedule["interval"]
  lines += ["", f"Schedule: xID warm-up - from scratch "
            f"{schedule['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}]: "
            f"{schedule['verdict']}; chosen: {schedule['chosen']}."]
  return "\n".join(lines) + "\n"
