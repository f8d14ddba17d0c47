"""The AVID+CMA study: are agreement-based positive sets clean, and does
the CMA stage improve the representation beyond more training?

From one Cross-AVID run on the synthetic set (the quickstart's recipe):
1. positive-set precision (the fraction of P_i sharing i's class) of every
   agreement type and of random sets, at several k, from the AVID banks;
2. the probes and retrieval after AVID, after AVID+CMA (consensus), and
   after AVID continued with its own objective for the same number of extra
   steps: the control that separates CMA from more training. Both second
   stages start from the AVID run with a fresh optimizer and its Z, and are
   repeated over several seeds (data order, negatives).
The paper's claims under test: consensus gives the cleanest positive sets,
and CMA improves transfer.
"""

import os

import numpy as np

from avid_tf import quickstart
from avid_tf import runs
from avid_tf.eval import plots
from avid_tf.memory import agreement
from avid_tf.utils import files

from studies import harness

STUDY_FILE = "cma_study.json"


def _random_sets(num_rows, k, seed):
  """k distinct random rows j != i for every row i."""
  rng = np.random.default_rng(seed)
  sets = np.empty((num_rows, k), np.int64)
  for i in range(num_rows):
    choice = rng.choice(num_rows - 1, size=k, replace=False)
    sets[i] = choice + (choice >= i)
  return sets


def positive_set_precisions(avid_dir, labels, ks=(8, 32), seed=0):
  """Precision of every agreement type, and of random sets, per k.

  Returns:
    {agreement or "random": {k: precision}} plus {"chance": {k: ...}}.
  """
  model = runs.open_run(avid_dir).model()
  precisions = {}
  for name in agreement.AGREEMENTS:
    precisions[name] = {
        str(k): float(agreement.positive_set_precision(
            agreement.positive_sets(model.video_bank, model.audio_bank, k=k,
                                    agreement=name), labels))
        for k in ks}
  precisions["random"] = {
      str(k): float(agreement.positive_set_precision(
          _random_sets(model.num_data, k, seed), labels)) for k in ks}
  precisions["chance"] = {
      str(k): float(agreement.positive_set_precision_chance(labels, k))
      for k in ks}
  return precisions


def run_cma_study(work_dir, seeds=(0, 1, 2), extra_epochs=20, ks=(8, 32),
                  dataset_settings=None, gin_bindings=(), eval_clips=4):
  """Runs (or resumes) the study and writes its JSON file and PNGs.

  Args:
    work_dir: folder of the dataset, runs and results.
    seeds: seeds of the second stages (data order, negatives).
    extra_epochs: epochs of each second stage (CMA and the control).
    ks: positive-set sizes of the precision comparison.
    dataset_settings: keyword arguments of `quickstart.prepare_dataset`
      (e.g. videos_per_class); None keeps the quickstart's dataset.
    gin_bindings: extra bindings for every run.
    eval_clips: clips per video in evaluation.

  Returns:
    The study dict written to `<work_dir>/cma_study.json`.
  """
  dataset_dir = quickstart.prepare_dataset(work_dir,
                                           **(dataset_settings or {}))
  avid_gin = quickstart.stage_gin_file("avid")
  cma_gin = quickstart.stage_gin_file("cma", 1)
  avid_dir = os.path.join(work_dir, "avid")
  avid = harness.train_and_evaluate(avid_dir, dataset_dir, [avid_gin],
                                    gin_bindings, eval_clips=eval_clips)
  labels = harness.dataset_labels(dataset_dir)
  precisions = positive_set_precisions(avid_dir, labels, ks)

  stage_bindings = list(gin_bindings) + [f"train.epochs = {extra_epochs}"]
  stages = {"cma": (cma_gin, ("positive_set_precision",)),
            "avid_continued": (avid_gin, ())}
  results = {name: [] for name in stages}
  for seed in seeds:
    for name, (gin_file, epoch_keys) in stages.items():
      results[name].append(harness.train_and_evaluate(
          os.path.join(work_dir, f"{name}_seed{seed}"), dataset_dir,
          [gin_file], stage_bindings + [f"train.seed = {seed}"],
          init_from=avid_dir, epoch_keys=epoch_keys, eval_clips=eval_clips))
  summaries = {"avid": harness.summarize([avid])}
  summaries.update({name: harness.summarize(values)
                    for name, values in results.items()})
  study = {
      "settings": {"seeds": list(seeds), "extra_epochs": extra_epochs,
                   "ks": list(ks),
                   "dataset_settings": dict(dataset_settings or {}),
                   "gin_bindings": list(gin_bindings)},
      "positive_set_precision": precisions,
      "figures": summaries,
      "random_init": harness.evaluate_run(avid_dir, dataset_dir,
                                          eval_clips=eval_clips,
                                          random_init=True),
  }
  harness.plot_figures(os.path.join(work_dir, "cma_study_figures.png"),
                       "After AVID, AVID+CMA and AVID continued", summaries)
  names = list(agreement.AGREEMENTS) + ["random", "chance"]
  plots.plot_grouped_bars(
      os.path.join(work_dir, "cma_study_precision.png"),
      "Positive-set precision of the AVID banks", names,
      [f"k={k}" for k in ks],
      [[precisions[name][str(k)] for k in ks] for name in names])
  files.write_json(os.path.join(work_dir, STUDY_FILE), study)
  return study


def format_study(study):
  """Printable tables of the study."""
  ks = study["settings"]["ks"]
  lines = ["positive-set precision (AVID banks)",
           "  " + f"{'agreement':<12}" + "".join(f"{'k=' + str(k):>9}"
                                                 for k in ks)]
  for name, values in study["positive_set_precision"].items():
    lines.append("  " + f"{name:<12}" + "".join(
        f"{values[str(k)]:>9.1%}" for k in ks))
  lines += ["", f"  {'stage':<16}{'video':>8}{'audio':>8}{'v2a R@1':>9}"
                f"{'a2v R@1':>9}   (mean [min, max] over seeds)"]
  for name, figures in study["figures"].items():
    cells = []
    for key in ("linear_probe_video_top1", "linear_probe_audio_top1",
                "retrieval_v2a_r1", "retrieval_a2v_r1"):
      cells.append(f"{figures[key]['mean']:>8.1%}")
    spread = figures["linear_probe_video_top1"]
    lines.append(f"  {name:<16}{''.join(cells)}   video "
                 f"[{spread['min']:.1%}, {spread['max']:.1%}]")
  random_init = study["random_init"]
  lines.append(f"  {'random init':<16}"
               f"{random_init['linear_probe_video_top1']:>8.1%}"
               f"{random_init['linear_probe_audio_top1']:>8.1%}")
  return "\n".join(lines)
