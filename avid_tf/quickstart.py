"""The main job end to end on the embedded synthetic dataset.

generate synthetic videos -> ingest -> pretrain (one or more stages) ->
frozen-feature linear probes (pretrained vs randomly initialised encoders,
`runs.RANDOM_INIT_SEED`)
and cross-modal retrieval on the held-out split -> export -> table, plots,
summary.json. Every stage reuses what an earlier, interrupted run left
behind.

Methods (`run_quickstart(method=...)`) and their training stages:
  avid        Cross-AVID (gin/quickstart.gin)
  cma         Cross-AVID, then AVID+CMA from it (gin/cma/quickstart.gin)
  robust_xid  Robust xID (gin/robust_xid/quickstart.gin)
The Cross-AVID stage of "cma" is the "avid" run of the same work folder.
"""

import os
import time

import gin

from avid_tf import runs
from avid_tf import errors
from avid_tf.data import ingest
from avid_tf.data import schema
from avid_tf.data import synthetic
from avid_tf.eval import chance
from avid_tf.eval import frozen_evaluation
from avid_tf.eval import plots
from avid_tf.export import saved_model
from avid_tf.training import gin_utils
from avid_tf.training import train_lib
from avid_tf.utils import checks
from avid_tf.utils import files
from avid_tf.utils import settings_record

QUICKSTART_GIN = os.path.join(gin_utils.GIN_ROOT, "quickstart.gin")
DATASET_NAME = "synthetic"
SETTINGS_FILE = "quickstart_settings.json"
# A training stage's record in its run folder (`check_stage`).
STAGE_SETTINGS_FILE = "stage_settings.json"
# method -> its stages in order: (model folder in the work folder, gin file
# relative to gin/). A stage starts from the previous stage's run.
METHODS = {
    "avid": (("model", "quickstart.gin"),),
    "cma": (("model", "quickstart.gin"),
            ("model_cma", "cma/quickstart.gin")),
    "robust_xid": (("model_robust_xid", "robust_xid/quickstart.gin"),),
}


def _log(message):
  print(f"[quickstart] {message}", flush=True)


def stage_gin_file(method, stage=0):
  """The gin file of a method's stage (the first one by default)."""
  if method not in METHODS:
    raise errors.InvalidValueError(
        f"Unknown quickstart method '{method}'; choose one of "
        f"{sorted(METHODS)}.")
  return os.path.join(gin_utils.GIN_ROOT, METHODS[method][stage][1])


def prepare_dataset(work_dir, num_classes=10, videos_per_class=40,
                    val_fraction=0.25, duration=3.0, size=128,
                    faulty_positive_rate=0.0, seed=0, num_workers=None):
  """Generates and ingests the synthetic dataset in `work_dir`, once.

  A rerun reuses the videos and the dataset. The generation settings are
  recorded; a work folder made with other settings is an error rather than
  a silent reuse of the wrong data.

  Returns:
    The dataset folder.

  Raises:
    settings_record.SettingsMismatchError: `work_dir` holds a dataset made
      with other settings.
  """
  settings = dict(num_classes=num_classes, videos_per_class=videos_per_class,
                  val_fraction=val_fraction, duration=duration, size=size,
                  faulty_positive_rate=faulty_positive_rate, seed=seed)
  settings_record.record_or_check(work_dir, settings, "synthetic data",
                                  file_name=SETTINGS_FILE)
  video_root = os.path.join(work_dir, "synthetic")
  labels_csv = os.path.join(video_root, synthetic.LABELS_FILE)
  if not files.isfile(labels_csv):
    _log(f"generating {num_classes * videos_per_class} synthetic videos")
    synthetic.generate_dataset(
        video_root, num_classes=num_classes,
        videos_per_class=videos_per_class, duration=duration, size=size,
        val_fraction=val_fraction, faulty_positive_rate=faulty_positive_rate,
        seed=seed, num_workers=num_workers)
  output_dir = os.path.join(work_dir, "datasets")
  dataset_dir = schema.dataset_dir(output_dir, DATASET_NAME)
  if not files.isfile(os.path.join(dataset_dir, schema.METADATA_FILE)):
    _log("ingesting videos")
    report = ingest.ingest(os.path.join(video_root, synthetic.VIDEOS_DIR),
                           output_dir, DATASET_NAME, labels_csv=labels_csv,
                           num_workers=num_workers)
    _log(f"ingested {report['num_ingested']} videos, skipped "
         f"{report['num_skipped']}")
  return dataset_dir


def stage_settings(dataset_dir, gin_files, gin_bindings=(), init_from=None):
  """What a training stage's results depend on, as its record holds them.

  Gin files inside the clone's gin/ folder are named relative to it, so a
  moved clone still matches its runs.
  """
  root = gin_utils.GIN_ROOT

  def name(path):
    path = os.path.abspath(path)
    inside = os.path.commonpath([path, root]) == root
    return os.path.relpath(path, root) if inside else path

  return {"dataset_dir": settings_record.absolute(dataset_dir),
          "gin_files": [name(path) for path in gin_files],
          "gin_bindings": list(gin_bindings),
          "init_from": settings_record.absolute(init_from)}


def check_stage(model_dir, dataset_dir, gin_files, gin_bindings=(),
                init_from=None):
  """Records a stage's settings in its run folder, or checks the record.

  Raises:
    settings_record.SettingsMismatchError: the folder holds a run trained
      with another recipe, dataset or starting point.
  """
  settings_record.record_or_check(
      model_dir, stage_settings(dataset_dir, gin_files, gin_bindings,
                                init_from),
      "a training run", file_name=STAGE_SETTINGS_FILE)


def train_stage(model_dir, dataset_dir, gin_files, gin_bindings=(),
                init_from=None):
  """Trains (or resumes) one run of a recipe; returns its train summary.

  The gin files and bindings are parsed in isolation (the caller's
  configuration is left as it was); a run folder of other settings is
  refused (`check_stage`) before anything is trained.
  """
  check_stage(model_dir, dataset_dir, gin_files, gin_bindings, init_from)
  with gin_utils.isolated_config():
    gin_utils.parse_gin(list(gin_files), list(gin_bindings))
    return train_lib.train(model_dir, dataset_dir=dataset_dir,
                           init_from=init_from)


def train_stages(work_dir, dataset_dir, method="avid", gin_files=(),
                 gin_bindings=()):
  """Trains every stage of a method; returns [(model_dir, train summary)].

  Each stage parses its own gin file, then `gin_files` and `gin_bindings`
  (`train_stage`), and starts from the previous stage's run. Finished
  stages resume at their last step, so nothing is trained twice.
  """
  stages = []
  previous = None
  for stage, (folder, _) in enumerate(METHODS[method]):
    model_dir = os.path.join(work_dir, folder)
    _log(f"training {folder} ({METHODS[method][stage][1]})")
    summary = train_stage(model_dir, dataset_dir,
                          [stage_gin_file(method, stage), *gin_files],
                          gin_bindings, init_from=previous)
    stages.append((model_dir, summary))
    previous = model_dir
  return stages


def _last_epoch_value(train_summary, key):
  """The newest epoch-level value of `key` a run logged, or None."""
  for _, values in reversed(train_summary.get("epoch_logs", [])):
    if key in values:
      return values[key]
  return None


@gin.configurable(denylist=["work_dir", "method", "gin_files",
                            "gin_bindings"])
def run_quickstart(work_dir, method="avid", gin_files=(), gin_bindings=(),
                   num_classes=10, videos_per_class=40, val_fraction=0.25,
                   duration=3.0, size=128, faulty_positive_rate=0.0,
                   num_workers=None, eval_batch_size=16, eval_clips=4, seed=0):
  """Runs the whole pipeline on a synthetic dataset made in `work_dir`.

  Args:
    work_dir: folder for the videos, dataset, runs, export and results.
    method: "avid", "cma" or "robust_xid" (see the module docstring).
    gin_files: extra gin files applied after each stage's own.
    gin_bindings: extra gin bindings applied after them.
    num_classes: synthetic classes.
    videos_per_class: synthetic videos per class.
    val_fraction: held-out fraction per class (the evaluation split).
    duration: seconds per synthetic video.
    size: synthetic frame size in pixels.
    faulty_positive_rate: fraction of videos whose audio comes from another
      class (the Robust xID summary then reports faulty_weight_auc).
    num_workers: processes for generation and ingest (default: all cores).
    eval_batch_size: videos per evaluation batch.
    eval_clips: clips per video, uniformly spaced, averaged in evaluation.
    seed: seed of the synthetic data.

  Returns:
    The summary dict also written to `<work_dir>/summary.json` (for "cma":
    `<work_dir>/summary_cma.json`, and so on).
  """
  start = time.time()
  stage_gin_file(method)  # Fails early for an unknown method.
  _check_arguments(num_classes=num_classes, videos_per_class=videos_per_class,
                   val_fraction=val_fraction, duration=duration, size=size,
                   faulty_positive_rate=faulty_positive_rate,
                   eval_batch_size=eval_batch_size, eval_clips=eval_clips,
                   seed=seed)
  dataset_dir = prepare_dataset(
      work_dir, num_classes=num_classes, videos_per_class=videos_per_class,
      val_fraction=val_fraction, duration=duration, size=size,
      faulty_positive_rate=faulty_positive_rate, seed=seed,
      num_workers=num_workers)
  stages = train_stages(work_dir, dataset_dir, method, gin_files,
                        gin_bindings)
  model_dir, train_summary = stages[-1]
  dataset = schema.DatasetInfo.load(dataset_dir)
  run = runs.open_run(model_dir)
  model = run.model()
  _log("extracting frozen features (pretrained and random init)")
  figures, val = frozen_evaluation.evaluate_model(
      model, dataset, run.preprocessing, eval_batch_size, eval_clips)
  random_figures, _ = frozen_evaluation.evaluate_run(
      model_dir, dataset, eval_batch_size, eval_clips, random_init=True)
  suffix = "" if method == "avid" else f"_{method}"
  export_dir = os.path.join(work_dir, f"export{suffix}")
  _log(f"exporting encoders to {export_dir}")
  export_metadata = run.preprocessing.export_metadata()
  saved_model.export_encoders(model, export_dir,
                              video_preprocessing=export_metadata["video"],
                              audio_preprocessing=export_metadata["audio"],
                              overwrite=True, source=run.checkpoint_source())
  _plot(work_dir, suffix, method, train_summary, val, dataset)
  summary = dict(figures)
  summary.update({
      "random_init_linear_probe_video_top1":
          random_figures["linear_probe_video_top1"],
      "random_init_linear_probe_audio_top1":
          random_figures["linear_probe_audio_top1"],
      "method": method,
      "train_seconds": sum(s["train_seconds"] for _, s in stages),
      "train_steps": train_summary["steps"],
      "stages": [{"model_dir": stage_dir, "train_steps": s["steps"],
                  "train_seconds": s["train_seconds"]}
                 for stage_dir, s in stages],
      "total_seconds": time.time() - start,
      "num_videos": int(sum(dataset.metadata["num_videos"].values())),
      "num_train_videos": model.num_data,
      "num_val_videos": int(len(val["label"])),
      "export_dir": export_dir,
      "model_dir": model_dir,
  })
  summary.update(_method_figures(method, stages, dataset, eval_batch_size,
                                 eval_clips))
  files.write_json(os.path.join(work_dir, f"summary{suffix}.json"), summary)
  return summary


def _check_arguments(**values):
  """Raises errors.InvalidValueError naming the run_quickstart binding of a
  value of the wrong type or out of range."""
  names = {key: f"run_quickstart.{key}" for key in values}
  checks.integer(names["num_classes"], values["num_classes"], minimum=2)
  for key in ("videos_per_class", "size", "eval_batch_size", "eval_clips"):
    checks.integer(names[key], values[key], minimum=1)
  checks.integer(names["seed"], values["seed"], minimum=0)
  checks.number(names["val_fraction"], values["val_fraction"], low=0, high=1,
                low_open=True, high_open=True)
  checks.number(names["duration"], values["duration"], low=0, low_open=True)
  checks.number(names["faulty_positive_rate"],
                values["faulty_positive_rate"], low=0, high=1)


def _plot(work_dir, suffix, method, train_summary, val, dataset):
  """The loss curves of the last stage and the held-out features' PCA."""
  history = train_summary["history"]
  curve_path = os.path.join(work_dir, f"loss_curve{suffix}.png")
  # A rerun that trained nothing keeps the curve of the session that did.
  if history or not files.exists(curve_path):
    loss_keys = sorted({key for _, logs in history for key in logs
                        if key.startswith("loss_")})
    plots.plot_loss_curve(history, curve_path, keys=["loss"] + loss_keys)
  plots.plot_embeddings(
      val["video"], val["label"],
      os.path.join(work_dir, f"val_video_features_pca{suffix}.png"),
      f"Held-out video features (PCA), pretrained ({method})",
      dataset.metadata["label_names"])


def _method_figures(method, stages, dataset, eval_batch_size, eval_clips):
  """What a method adds to the summary: for "cma", the AVID stage's figures
  and the positive-set precision; the faulty-weight AUC when logged."""
  train_summary = stages[-1][1]
  figures = {}
  if method == "cma":
    avid_dir = stages[0][0]
    avid_figures, _ = frozen_evaluation.evaluate_run(
        avid_dir, dataset, eval_batch_size, eval_clips)
    figures["avid_stage"] = dict(avid_figures, model_dir=avid_dir,
                                 train_steps=stages[0][1]["steps"])
    for key in ("positive_set_precision", "positive_set_precision_chance"):
      figures[key] = _last_epoch_value(train_summary, key)
  auc = _last_epoch_value(train_summary, "faulty_weight_auc")
  if auc is not None:
    figures["faulty_weight_auc"] = auc
  return figures


def format_table(summary):
  """Returns the human-readable results table of a quickstart summary."""
  pct = chance.format_figure
  probe_chance = pct(summary.get("linear_probe_chance"))
  rows = [
      ("", "pretrained", "random init", "chance"),
      ("linear probe, video top-1", pct(summary["linear_probe_video_top1"]),
       pct(summary["random_init_linear_probe_video_top1"]), probe_chance),
      ("linear probe, audio top-1", pct(summary["linear_probe_audio_top1"]),
       pct(summary["random_init_linear_probe_audio_top1"]), probe_chance),
  ]
  if "avid_stage" in summary:
    stage = summary["avid_stage"]
    rows.insert(1, ("", "(after CMA)", "", ""))
    rows += [("after the AVID stage: video",
              pct(stage["linear_probe_video_top1"]), "", probe_chance),
             ("after the AVID stage: audio",
              pct(stage["linear_probe_audio_top1"]), "", probe_chance)]
  lines = [f"{a:<28}{b:>12}{c:>14}{d:>10}" for a, b, c, d in rows]
  lines += [""] + [
      f"retrieval {arrow} R@1 {pct(summary[f'retrieval_{key}_r1'])}  R@5 "
      f"{pct(summary[f'retrieval_{key}_r5'])}"
      for arrow, key in (("v->a", "v2a"), ("a->v", "a2v"))]
  lines += [
      f"retrieval chance: R@1 {pct(summary['retrieval_chance_r1'])}  R@5 "
      f"{pct(summary.get('retrieval_chance_r5'))}",
      f"{summary['num_videos']} videos; training: " + ", ".join(
          f"{os.path.basename(stage['model_dir'])} {stage['train_steps']} "
          f"steps in {stage['train_seconds']:.0f} s"
          for stage in summary["stages"]) +
      f"; this run {summary['total_seconds']:.0f} s",
      f"encoders exported to {summary['export_dir']}",
  ]
  if summary.get("positive_set_precision") is not None:
    lines.append(
        f"positive-set precision {summary['positive_set_precision']:.1%} "
        f"(chance {summary['positive_set_precision_chance']:.1%})")
  if "faulty_weight_auc" in summary:
    lines.append("faulty-positive weight AUC "
                 f"{summary['faulty_weight_auc']:.3f} (chance 0.5)")
  return "\n".join(lines)
