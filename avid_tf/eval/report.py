"""Compares runs: every evaluation a run folder holds, in one table.

`gather_run(run_dir)` walks a run folder and the evaluation folders inside
it and reads the JSON files the evaluation scripts write:
  linear_probe.json   linear_probe.py: each stage's (or audio feature's)
                      top-1
  retrieval.json      retrieval.py: instance Recall@k and class-level mAP
  summary.json        finetune.py (it has "folds" and "mean"): the mean
                      Video@1 and Video@5 over folds
  summary*.json       the quickstart's summary: its probes and retrieval
  train_summary.json  a training run: steps and seconds; its TensorBoard
                      scalars (train/loss ...) give the training curves
Each figure keeps its chance level (None when the file has none) and the
file it came from. `build_report` puts several runs side by side,
`format_table` prints one row per run, `write_report` writes report.json
and training_curves.png. Paths are read through tf.io.gfile, so runs on any
file system TensorFlow reads are accepted.
"""

import json
import os

import tensorflow as tf

from avid_tf import errors
from avid_tf.eval import plots
from avid_tf.training import train_lib
from avid_tf.utils import files

REPORT_FILE = "report.json"
PLOT_FILE = "training_curves.png"
# Subfolders that hold no evaluation JSON (checkpoints, logs, exports).
_SKIPPED = frozenset({"checkpoints", "probe_checkpoints", "tensorboard",
                      "train", "variables", "assets"})
CURVE = "train/loss"


def _read_json(path):
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _figure(value, chance_level, source):
  return {"value": value, "chance": chance_level, "source": source}


def _probe_figures(payload, source):
  suffix = " (random init)" if payload.get("random_init") else ""
  level = payload.get("chance")
  if payload.get("modality") == "video":
    return {f"probe video {stage}{suffix}": _figure(values["top1"], level,
                                                     source)
            for stage, values in payload["stages"].items()}
  return {f"probe audio {name}{suffix}": _figure(
      values["mean"] if "mean" in values else values["top1"], level, source)
          for name, values in payload["features"].items()}


def _retrieval_figures(payload, source):
  figures = {}
  for direction, values in payload.get("instance", {}).items():
    for name, value in values.items():
      if name.startswith("r") and name[1:].isdigit():
        figures[f"retrieval {direction} R@{name[1:]}"] = _figure(
            value, values["chance"][name], source)
  for direction, values in payload.get("class", {}).items():
    figures[f"retrieval class {direction} mAP"] = _figure(
        values["map"], values.get("chance", {}).get("map"), source)
  return figures


def _finetune_figures(payload, source):
  suffix = " (random init)" if payload.get("random_init") else ""
  mean = payload["mean"]
  return {f"finetune {payload.get('dataset', '')} video top-{k}{suffix}":
          _figure(mean[f"video_top{k}"], mean.get(f"chance_top{k}"), source)
          for k in (1, 5)}


def _quickstart_figures(payload, source):
  name = f"quickstart {payload.get('method', 'avid')}"
  probe_chance = payload.get("linear_probe_chance")
  figures = {}
  for modality in ("video", "audio"):
    for prefix, label in (("", ""), ("random_init_", " (random init)")):
      figures[f"{name} probe {modality}{label}"] = _figure(
          payload[f"{prefix}linear_probe_{modality}_top1"], probe_chance,
          source)
  for direction in ("v2a", "a2v"):
    for k in (1, 5):
      figures[f"{name} retrieval {direction} R@{k}"] = _figure(
          payload.get(f"retrieval_{direction}_r{k}"),
          payload.get(f"retrieval_chance_r{k}"), source)
  return figures


def _figures_of(name, payload, source):
  """The figures of one evaluation JSON file, or None for other files."""
  if name == "linear_probe.json" and "modality" in payload:
    return _probe_figures(payload, source)
  if name == "retrieval.json" and "instance" in payload:
    return _retrieval_figures(payload, source)
  if name == "summary.json" and "folds" in payload and "mean" in payload:
    return _finetune_figures(payload, source)
  if (name.startswith("summary") and name.endswith(".json")
      and "linear_probe_video_top1" in payload):
    return _quickstart_figures(payload, source)
  return None


def training_curve(log_dir, tag=CURVE):
  """(steps, values) of a scalar in a run's TensorBoard folder.

  A step logged more than once (a resumed session) keeps its last value.
  """
  values = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(log_dir,
                                                   "events.out.tfevents.*"))):
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag == tag:
          values[int(event.step)] = float(tf.make_ndarray(value.tensor))
  steps = sorted(values)
  return steps, [values[step] for step in steps]


def gather_run(run_dir):
  """Every evaluation figure and training record under a run folder.

  Args:
    run_dir: a training run folder, a quickstart or study work folder, or
      any folder holding evaluation output folders.

  Returns:
    {"run_dir", "figures": {column: {"value", "chance", "source"}},
    "training": {relative folder: {"steps", "train_seconds"}}, "curves":
    {relative folder: [steps, values]}}. A column found twice in one run
    gets its folder appended.

  Raises:
    FileNotFoundError: `run_dir` does not exist.
  """
  if not tf.io.gfile.isdir(run_dir):
    raise FileNotFoundError(f"{run_dir} does not exist.")
  run = {"run_dir": run_dir, "figures": {}, "training": {}, "curves": {}}
  for folder, subfolders, names in tf.io.gfile.walk(run_dir):
    subfolders[:] = sorted(d for d in subfolders if d not in _SKIPPED)
    relative = os.path.relpath(folder, run_dir)
    for name in sorted(n for n in names if n.endswith(".json")):
      path = os.path.join(folder, name)
      source = os.path.join(relative, name) if relative != "." else name
      if name == train_lib.SUMMARY_FILE:
        summary = _read_json(path)
        run["training"][relative] = {
            "steps": summary.get("steps"),
            "train_seconds": summary.get("train_seconds")}
        steps, values = training_curve(os.path.join(folder, "train"))
        if steps:
          run["curves"][relative] = [steps, values]
        continue
      figures = _figures_of(name, _read_json(path), source)
      for column, figure in (figures or {}).items():
        if column in run["figures"]:
          column = f"{column} [{relative}]"
        run["figures"][column] = figure
  return run


def build_report(run_dirs):
  """`gather_run` of every run, and the columns of their table in order."""
  if not run_dirs:
    raise errors.UserError("Give at least one run folder.")
  runs = [gather_run(run_dir) for run_dir in run_dirs]
  columns = []
  for run in runs:
    columns += [c for c in run["figures"] if c not in columns]
  return {"runs": runs, "columns": columns}


def _cell(figure):
  """'45.0 (10.0)': the figure and its chance level in percent."""
  if figure is None:
    return ""
  if figure["value"] is None:
    return "n/a"
  text = f"{100 * figure['value']:.1f}"
  if figure["chance"] is not None:
    text += f" ({100 * figure['chance']:.1f})"
  return text


def format_table(report):
  """One row per run and one column per figure (%, chance in brackets)."""
  header = ["run", "steps"] + report["columns"]
  rows = []
  for run in report["runs"]:
    steps = [str(t["steps"]) for t in run["training"].values()
             if t.get("steps") is not None]
    rows.append([run["run_dir"], "+".join(steps)] + [
        _cell(run["figures"].get(column)) for column in report["columns"]])
  widths = [max(len(row[i]) for row in [header] + rows)
            for i in range(len(header))]
  lines = ["  ".join(value.ljust(width) if i == 0 else value.rjust(width)
                     for i, (value, width) in enumerate(zip(row, widths)))
           for row in [header] + rows]
  lines.append("figures in %, chance level in brackets; n/a: not "
               "applicable (k >= the classes or items), blank: not run")
  return "\n".join(lines)


def default_output_dir(run_dirs):
  """<run>/report for one run; <their common parent>/report for several.

  Raises:
    errors.UserError: the runs share no folder but the file system root.
  """
  paths = [files.abspath(path) for path in run_dirs]
  parent = paths[0] if len(paths) == 1 else os.path.commonpath(paths)
  if os.path.dirname(parent) == parent:
    raise errors.UserError("The runs share no folder to put the report in; "
                           "give --output_dir.")
  return os.path.join(parent, "report")


def write_report(run_dirs, output_dir):
  """Builds the report, writes report.json and training_curves.png.

  Returns:
    The report dict, with "output_dir", "report_file" and "plot_file"
    (None when no run has training curves).
  """
  report = build_report(run_dirs)
  files.makedirs(output_dir)
  curves = {f"{run['run_dir']}/{folder}" if folder != "." else run["run_dir"]:
            curve for run in report["runs"]
            for folder, curve in run["curves"].items()}
  plot_path = None
  if curves:
    plot_path = os.path.join(output_dir, PLOT_FILE)
    plots.plot_curves(curves, plot_path, ylabel=CURVE,
                      title="Training curves")
  report.update(output_dir=output_dir, plot_file=plot_path,
                report_file=os.path.join(output_dir, REPORT_FILE))
  files.write_json(report["report_file"], report)
  return report
