"""The decision rule of a study's claims: paired 95% t-intervals.

A claim compares two variants trained from the same seeds (same data, same
initialisation). Its interval is the 95% t-interval of the mean paired
difference, claimed minus baseline (or of the mean of a figure minus a
threshold). The verdict, stated before any run:

* "holds" when the interval lies entirely on the claimed side of 0;
* "refuted" when it lies entirely on the other side;
* "inconclusive" otherwise.

The claimed side is "above" (claimed > baseline, or >= when the claim is
"at least as good": with a continuous interval the two read the same) or
"equivalent": the interval lies within +-margin (holds), entirely outside
it (refuted), or straddles an edge (inconclusive).
"""

import math

from scipy import stats

HOLDS, REFUTED, INCONCLUSIVE = "holds", "refuted", "inconclusive"
SIDES = ("above", "equivalent")
CONFIDENCE = 0.95


def t_interval(values, confidence=CONFIDENCE):
  """Mean and two-sided t-interval of the mean of `values`.

  Args:
    values: at least 2 finite numbers.
    confidence: coverage of the interval.

  Returns:
    (mean, [low, high]).

  Raises:
    ValueError: fewer than 2 values or a non-finite one.
  """
  values = [float(v) for v in values]
  if len(values) < 2:
    raise ValueError(f"an interval needs at least 2 values, got "
                     f"{len(values)}")
  if not all(math.isfinite(v) for v in values):
    raise ValueError(f"values must be finite, got {values}")
  count = len(values)
  mean = sum(values) / count
  variance = sum((v - mean)**2 for v in values) / (count - 1)
  half = stats.t.ppf(0.5 + confidence / 2, count - 1) * math.sqrt(
      variance / count)
  return mean, [mean - half, mean + half]


def verdict(interval, side="above", margin=0.0):
  """The verdict of an interval under the rule of the module docstring."""
  low, high = interval
  if side == "above":
    if low > 0:
      return HOLDS
    return REFUTED if high < 0 else INCONCLUSIVE
  if side == "equivalent":
    if -margin <= low and high <= margin:
      return HOLDS
    return REFUTED if high < -margin or low > margin else INCONCLUSIVE
  raise ValueError(f"side must be one of {SIDES}, got '{side}'")


def paired_claim(claimed, baseline, side="above", margin=0.0):
  """Mean paired difference, its interval and verdict.

  Args:
    claimed: {seed: figure} of the claimed variant.
    baseline: {seed: figure} of the baseline, or a number (a threshold).
    side: "above" or "equivalent".
    margin: half-width of equivalence ("equivalent" only).

  Returns:
    {"mean_difference", "interval", "verdict", "seeds"}.

  Raises:
    ValueError: fewer than 2 shared seeds.
  """
  if isinstance(baseline, dict):
    seeds = sorted(set(claimed) & set(baseline))
    differences = [claimed[s] - baseline[s] for s in seeds]
  else:
    seeds = sorted(claimed)
    differences = [claimed[s] - baseline for s in seeds]
  mean, interval = t_interval(differences)
  return {"mean_difference": mean, "interval": interval,
          "verdict": verdict(interval, side, margin), "seeds": seeds}


def combined_verdict(verdicts):
  """One verdict of a claim that needs several comparisons to hold.

  Holds when every comparison holds, refuted when any is refuted,
  inconclusive otherwise.
  """
  verdicts = list(verdicts)
  if verdicts and all(v == HOLDS for v in verdicts):
    return HOLDS
  return REFUTED if REFUTED in verdicts else INCONCLUSIVE
