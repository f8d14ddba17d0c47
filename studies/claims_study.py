"""Runs the claims study: trains what the claims need, evaluates, reports.

Every run's figures are cached in `<work_dir>/runs/<setting>_r<rate>/
<variant>_s<seed>/result.json` with a fingerprint of everything that made
them (the operative gin configuration, the data, the seed, the parent run),
so an interrupted study resumes and a rerun with other settings retrains
only what changed. Writes `claims.json`, `claims.md` and two plots.
"""

import dataclasses
import functools
import hashlib
import json
import os
import time

import numpy as np

from avid_tf import errors
from avid_tf.eval import plots
from avid_tf.losses import robust_xid
from avid_tf.utils import files

from studies import claims
from studies import claims_plan
from studies import latent_data
from studies import latent_eval
from studies import latent_training

RESULT_FILE = "result.json"
# Bumped when what a run's figures mean changes.
EVALUATION_VERSION = 1


def log(message):
  print(f"[claims] {message}", flush=True)


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """Everything a study depends on besides its plan.

  Attributes:
    work_dir: folder of the runs and the report.
    scale: a `claims_plan.Scale`.
    num_classes: classes of the settings that do not set their own.
    data_seed: the generator's seed.
    gin_files: extra gin files after each run's own.
    gin_bindings: extra bindings after them.
    data_overrides: ((name, value), ...) of `LatentDataConfig` set in every
      setting (tests use easier data).
  """

  work_dir: str
  scale: claims_plan.Scale = claims_plan.Scale()
  num_classes: int = 10
  data_seed: int = 0
  gin_files: tuple = ()
  gin_bindings: tuple = ()
  data_overrides: tuple = ()


DEFAULT_SEEDS = (100, 101, 102, 103, 104)
DEFAULT_RATES = (0.0, 0.1, 0.3, 0.5)
QUICK_SCALE = claims_plan.Scale(num_train=2000, num_test=1000, epochs=10,
                                batch_size=128)
QUICK_RATES = (0.0, 0.5)


def make_plan(quick=False, seeds=None, rates=None, claim_ids=None,
              soft_kind=None):
  """The study's plan and scale from its options, checked.

  Args:
    quick: fewer seeds, cells and a smaller scale (about 5 minutes).
    seeds: seeds of every cell (>= 2 distinct); None: DEFAULT_SEEDS, or
      their first two with `quick`.
    rates: faulty-positive rates in [0, 1); None: DEFAULT_RATES, or
      QUICK_RATES with `quick`.
    claim_ids: claims to test (of `claims.CLAIM_IDS`); None: all.
    soft_kind: soft-target kind of the soft and robust variants; None: the
      one `gin/robust_xid/robust.gin` ships.

  Returns:
    (plan, scale).

  Raises:
    errors.UserError: for any option out of range.
  """
  seeds = tuple(seeds or (DEFAULT_SEEDS[:2] if quick else DEFAULT_SEEDS))
  rates = tuple(sorted(set(rates or (QUICK_RATES if quick
                                     else DEFAULT_RATES))))
  if len(set(seeds)) < 2:
    raise errors.UserError(f"--seed: a 95% interval needs at least 2 "
                           f"distinct seeds, got {list(seeds)}")
  bad_rates = [r for r in rates if not 0.0 <= r < 1.0]
  if bad_rates:
    raise errors.UserError(f"--faulty_positive_rate must be in [0, 1), got "
                           f"{bad_rates}")
  unknown = set(claim_ids or ()) - set(claims.CLAIM_IDS)
  if unknown:
    raise errors.UserError(f"--claim: unknown {sorted(unknown)}; choose "
                           f"from {list(claims.CLAIM_IDS)}")
  soft_kind = soft_kind or claims_plan.default_soft_kind()
  if soft_kind not in claims_plan.SOFT_KINDS:
    raise errors.UserError(f"--soft_kind: unknown '{soft_kind}'; choose "
                           f"from {list(claims_plan.SOFT_KINDS)}")
  options = {}
  if quick:
    options = {"precision_settings": ("balanced",),
               "soft_settings": (("few_classes", "above"),
                                 ("balanced", "equivalent"))}
  plan = claims.Plan(seeds=seeds, rates=rates, soft_kind=soft_kind,
                     claims=tuple(claim_ids or claims.CLAIM_IDS), **options)
  return plan, (QUICK_SCALE if quick else claims_plan.Scale())


@functools.lru_cache(maxsize=8)
def _data(config, seed):
  return latent_data.make_latent_data(config, seed)


def run_data(study, run):
  """The `LatentData` of a run's setting and rate."""
  config = claims_plan.data_config(run.setting, run.rate, study.num_classes,
                                  study.scale)
  return _data(dataclasses.replace(config, **dict(study.data_overrides)),
               study.data_seed)


# Robust xID parameters that have no effect when weighting is off, and when
# the targets are hard: a change of their defaults leaves such runs as they
# were.
_WEIGHT_PARAMETERS = ("weight_shift", "weight_scale", "min_weight",
                      "weighting_start_epoch", "running_statistics",
                      "statistics_momentum")
_TARGET_PARAMETERS = ("target_mix", "target_temperature", "pair_temperature")


def effective_config(operative_config):
  """The operative configuration without the parameters a run ignores."""
  lines = operative_config.splitlines()
  unused = ()
  if "build_robust_xid_objective.weighting = False" in lines:
    unused += _WEIGHT_PARAMETERS
  if "build_robust_xid_objective.soft_targets = None" in lines:
    unused += _TARGET_PARAMETERS
  ignored = tuple(f"build_robust_xid_objective.{p} =" for p in unused)
  return "\n".join(line for line in lines if not line.startswith(ignored))


def _fingerprint(configured, data, run, parent_fingerprint):
  text = json.dumps([effective_config(configured.operative_config),
                     dataclasses.asdict(data.config), data.seed, run.seed,
                     run.variant, parent_fingerprint, EVALUATION_VERSION])
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _figures(run, configured, data):
  """Held-out figures of a run, plus its weights' or positive sets'."""
  model = configured.model
  figures = latent_eval.transfer_figures(model, data)
  uses_weights = isinstance(model.objective, robust_xid.RobustXIDObjective)
  if uses_weights and data.config.faulty_positive_rate > 0:
    figures.update(latent_eval.weight_aucs(model, data))
  if run.variant == "avid_cross":
    precision = latent_eval.positive_set_precisions(model, data)
    figures.update({f"precision_{k}": v for k, v in precision.items()})
  return figures


def _run_dir(study, run):
  return os.path.join(study.work_dir, "runs", run.name)


def _cached(path, fingerprint):
  if not files.isfile(path):
    return None
  with files.open_file(path) as f:
    result = json.load(f)
  return result if result.get("fingerprint") == fingerprint else None


def train_and_evaluate(study, run, parents):
  """Trains (or reuses) one run and evaluates it.

  Args:
    study: the `StudyConfig`.
    run: a `claims_plan.Run`.
    parents: {Run: result} of finished runs (second stages read their
      parent's checkpoint and fingerprint).

  Returns:
    The run's result: its figures, "seconds", "fingerprint" and, for runs
    that later stages start from, "checkpoint".
  """
  data = run_data(study, run)
  variant = ("avid_cross" if run.variant == claims_plan.RANDOM_INIT
             else run.variant)
  gin_files, bindings = claims_plan.gin_config(
      dataclasses.replace(run, variant=variant), study.scale,
      study.gin_files, study.gin_bindings)
  parent = parents.get(run.parent) if run.parent else None
  start = time.time()
  configured = latent_training.configure_run(
      data, run.seed, gin_files, bindings,
      init_from=parent["checkpoint"] if parent else None)
  fingerprint = _fingerprint(configured, data, run,
                             parent["fingerprint"] if parent else None)
  path = os.path.join(_run_dir(study, run), RESULT_FILE)
  cached = _cached(path, fingerprint)
  if cached is not None and (
      "checkpoint" not in cached
      or files.exists(cached["checkpoint"] + ".index")):
    return cached
  result = {"fingerprint": fingerprint, "steps": 0}
  if run.variant != claims_plan.RANDOM_INIT:
    result.update(latent_training.fit_run(configured, data, run.seed))
    del result["logs"]
  if run.variant in claims_plan.STAGE_PARENTS.values():
    result["checkpoint"] = latent_training.save_model(configured.model,
                                                      _run_dir(study, run))
  result["seconds"] = time.time() - start
  result.update(_figures(run, configured, data))
  files.makedirs(os.path.dirname(path))
  files.write_json(path, result)
  return result


def calibration(study, settings):
  """Data-only difficulty figures of each setting at rate 0."""
  report = {}
  for setting in settings:
    run = claims_plan.Run(setting, 0.0, "avid_cross", 0)
    data = run_data(study, run)
    gin_files, bindings = claims_plan.gin_config(run, study.scale,
                                                 study.gin_files,
                                                 study.gin_bindings)
    model = latent_training.configure_run(data, 0, gin_files, bindings).model
    report[setting] = latent_eval.calibration(
        data, latent_training.encoder_features(model, data.test))
  return report


def run_study(study, plan):
  """Trains and evaluates every run of the plan, then tests the claims.

  Args:
    study: a `StudyConfig`.
    plan: a `claims.Plan`.

  Returns:
    The report written to claims.json.
  """
  start = time.time()
  runs = claims.required_runs(plan)
  results = {}
  for number, run in enumerate(runs, 1):
    results[run] = train_and_evaluate(study, run, results)
    log(f"{number}/{len(runs)} {run.name}: video "
        f"{results[run]['video_probe']:.3f} audio "
        f"{results[run]['audio_probe']:.3f} "
        f"({results[run]['seconds']:.1f} s)")
  rows, verdicts = claims.evaluate_claims(plan, results)
  settings = sorted({run.setting for run in runs})
  report = {
      "config": {"scale": dataclasses.asdict(study.scale),
                 "num_classes": study.num_classes,
                 "data_seed": study.data_seed,
                 "gin_files": list(study.gin_files),
                 "gin_bindings": list(study.gin_bindings),
                 "seeds": list(plan.seeds), "rates": list(plan.rates),
                 "soft_kind": plan.soft_kind},
      "calibration": calibration(study, settings),
      "verdicts": verdicts,
      "claims": rows,
      "runs": [run_record(run, results[run]) for run in runs],
  }
  report["seconds"] = time.time() - start
  write_report(study.work_dir, report)
  return report


def run_record(run, result):
  """A run's entry in a report: its identity and figures."""
  record = {"variant": run.variant, "setting": run.setting,
            "seed": run.seed, "faulty_positive_rate": run.rate}
  if run.options:
    record["options"] = dict(run.options)
  record.update({k: v for k, v in result.items()
                 if k not in ("fingerprint", "checkpoint")})
  return record


def format_table(report):
  """The claims as a Markdown table, one row per comparison."""
  lines = ["| claim | setting | mean difference | 95% interval | verdict |",
           "|---|---|---|---|---|"]
  for row in report["claims"]:
    low, high = row["interval"]
    setting = row["setting"] + ("" if row["decides"] else " (context)")
    lines.append(f"| {row['id']} | {setting} | "
                 f"{row['mean_difference']:+.4f} | [{low:+.4f}, {high:+.4f}]"
                 f" | {row['verdict']} |")
  lines += ["", "| claim | verdict |", "|---|---|"]
  lines += [f"| {claim} | {verdict} |"
            for claim, verdict in report["verdicts"].items()]
  return "\n".join(lines) + "\n"


def write_report(work_dir, report):
  """claims.json, claims.md and the plots (where the runs allow them)."""
  files.write_json(os.path.join(work_dir, "claims.json"), report)
  files.write_text(os.path.join(work_dir, "claims.md"), format_table(report))
  _plot_probe_by_rate(work_dir, report["runs"])
  _plot_precision(work_dir, report["runs"])


def _mean_by(records, keys, figure):
  groups = {}
  for record in records:
    if record.get(figure) is not None:
      groups.setdefault(tuple(record[k] for k in keys), []).append(
          record[figure])
  return {key: float(np.mean(values)) for key, values in groups.items()}


def _plot_probe_by_rate(work_dir, records):
  """Mean probes against the faulty rate, per robust-family variant."""
  balanced = [r for r in records if r["setting"] == "balanced"]
  rates = sorted({r["faulty_positive_rate"] for r in balanced})
  variants = sorted({r["variant"] for r in balanced
                     if r["variant"] in ("xid", "weighted", "robust")
                     or r["variant"].startswith("soft_")})
  if len(rates) < 2 or not variants:
    return
  groups = [f"rate {rate:g}" for rate in rates]
  series = [f"{v} {p.split('_')[0]}" for v in variants
            for p in claims.PROBES]
  means = {p: _mean_by(balanced, ("faulty_positive_rate", "variant"), p)
           for p in claims.PROBES}
  values = [[means[p].get((rate, v), np.nan) for v in variants
             for p in claims.PROBES] for rate in rates]
  plots.plot_grouped_bars(os.path.join(work_dir, "probe_by_rate.png"),
                          "Held-out probes against the faulty-positive rate",
                          groups, series, values)


def _plot_precision(work_dir, records):
  """Positive-set precision per agreement and data setting (k = 32)."""
  cross = [r for r in records if r["variant"] == "avid_cross"
           and r.get("precision_consensus_k32") is not None]
  settings = sorted({r["setting"] for r in cross})
  if not settings:
    return
  series = list(latent_eval.AGREEMENTS) + ["chance"]
  values = []
  for setting in settings:
    rows = [r for r in cross if r["setting"] == setting]
    values.append([float(np.mean([r[f"precision_{a}_k32"] for r in rows]))
                   for a in latent_eval.AGREEMENTS]
                  + [float(np.mean([r["precision_chance"] for r in rows]))])
  plots.plot_grouped_bars(os.path.join(work_dir, "positive_set_precision.png"),
                          "Positive-set class precision (k = 32)", settings,
                          series, values)
