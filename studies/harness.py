"""What every study does: train variants on one dataset, evaluate, report.

A study trains several variants with the same budget on the same synthetic
dataset (`quickstart.prepare_dataset`), evaluates each with the
frozen-feature probes and retrieval (`eval.frozen_evaluation`), and writes a JSON file and
a PNG. Each variant's result is cached in its run folder, so an interrupted
study resumes where it stopped and a rerun only reports. A cached result
made by another evaluation (an older `EVALUATION_VERSION`, other clips) is
evaluated again from the finished run, without retraining.
"""

import json
import os

import numpy as np

from avid_tf import errors
from avid_tf import quickstart
from avid_tf.data import schema
from avid_tf.eval import frozen_evaluation
from avid_tf.eval import plots
from avid_tf.utils import files


RESULT_FILE = "study_result.json"
# The figures every variant reports (frozen_evaluation.evaluate_model).
FIGURES = ("linear_probe_video_top1", "linear_probe_audio_top1",
           "retrieval_v2a_r1", "retrieval_a2v_r1", "retrieval_v2a_r5",
           "retrieval_a2v_r5")
# Bumped whenever frozen_evaluation.evaluate_model changes what it computes; results
# cached without the key come from version 1.
EVALUATION_VERSION = 2  # 2: the scikit-learn probe.


def log(message):
  print(f"[study] {message}", flush=True)


def train_and_evaluate(run_dir, dataset_dir, gin_files, gin_bindings=(),
                       init_from=None, epoch_keys=(), eval_batch_size=16,
                       eval_clips=4):
  """Trains one variant (or reuses its result) and evaluates it.

  Args:
    run_dir: the variant's model_dir.
    dataset_dir: the study's dataset.
    gin_files: the variant's gin files, parsed in isolation. A run folder
      trained with other files, bindings, dataset or `init_from` is refused
      (`quickstart.check_stage`), its cached result included.
    gin_bindings: bindings applied after them.
    init_from: optional earlier run to start from (staged variants).
    epoch_keys: epoch-level values of the run to report (their last value),
      e.g. "faulty_weight_auc".
    eval_batch_size: videos per evaluation batch.
    eval_clips: clips per video in evaluation.

  Returns:
    Dict of FIGURES plus train_steps, train_seconds, the epoch keys and
    "evaluation" (the version and clips the figures were computed with).
  """
  quickstart.check_stage(run_dir, dataset_dir, gin_files, gin_bindings,
                         init_from)
  result_path = os.path.join(run_dir, RESULT_FILE)
  evaluation = {"version": EVALUATION_VERSION, "eval_clips": eval_clips}
  if files.isfile(result_path):
    with files.open_file(result_path) as f:
      result = json.load(f)
    if result.get("evaluation", {"version": 1, "eval_clips": 4}) == evaluation:
      return result
    log(f"evaluating {run_dir} again (the evaluation changed)")
    result.update(evaluate_run(run_dir, dataset_dir, eval_batch_size,
                               eval_clips), evaluation=evaluation)
    files.write_json(result_path, result)
    return result
  log(f"training {run_dir}")
  summary = quickstart.train_stage(run_dir, dataset_dir, gin_files,
                                   gin_bindings, init_from)
  result = evaluate_run(run_dir, dataset_dir, eval_batch_size, eval_clips)
  result.update(train_steps=summary["steps"],
                train_seconds=summary["train_seconds"], evaluation=evaluation)
  for key in epoch_keys:
    values = [v[key] for _, v in summary.get("epoch_logs", []) if key in v]
    result[key] = values[-1] if values else None
  files.write_json(result_path, result)
  return result


def evaluate_run(run_dir, dataset_dir, eval_batch_size=16, eval_clips=4,
                 random_init=False):
  """The frozen-feature figures of a run (or of its architecture at
  `runs.RANDOM_INIT_SEED`)."""
  figures, _ = frozen_evaluation.evaluate_run(
      run_dir, schema.DatasetInfo.load(dataset_dir), eval_batch_size,
      eval_clips, random_init=random_init)
  return figures


def summarize(results):
  """Mean and spread (min, max) over seeds of each figure.

  Args:
    results: list of per-seed result dicts.

  Returns:
    {figure: {"mean", "min", "max", "values"}} for every numeric key, all
    None for a key that is None (not applicable) in every result.
  """
  summary = {}
  for key in results[0]:
    values = [r[key] for r in results if isinstance(r.get(key), (int, float))]
    if len(values) == len(results):
      summary[key] = {"mean": float(np.mean(values)),
                      "min": float(np.min(values)),
                      "max": float(np.max(values)), "values": values}
    elif all(key in r and r[key] is None for r in results):
      # Not applicable (e.g. Recall@5 of 5 or fewer held-out videos).
      summary[key] = {"mean": None, "min": None, "max": None,
                      "values": [None] * len(results)}
  return summary


def plot_figures(path, title, summaries, keys=FIGURES):
  """Grouped bars of the mean figures per variant, with min-max ranges.

  Args:
    path: PNG to write.
    title: figure title.
    summaries: {variant: summarize(...)} in display order.
    keys: the figures to show (those not applicable are left out).
  """
  keys = [k for k in keys
          if all(summaries[v][k]["mean"] is not None for v in summaries)]
  plots.plot_grouped_bars(
      path, title, list(summaries), keys,
      [[summaries[v][k]["mean"] for k in keys] for v in summaries],
      [[(summaries[v][k]["min"], summaries[v][k]["max"]) for k in keys]
       for v in summaries])


def dataset_labels(dataset_dir):
  """Labels of the training split by memory row."""
  labels = schema.DatasetInfo.load(dataset_dir).instance_column("train",
                                                                "label")
  if labels is None:
    raise errors.InvalidValueError(
        f"{dataset_dir} records no labels per memory row.")
  return labels
