"""PNG plots: loss curves, 2-D maps of embeddings, grouped bars."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from avid_tf.utils import files  # pylint: disable=g-import-not-at-top


def _save(figure, path):
  with files.atomic_path(path, local=True) as tmp_path:
    figure.savefig(tmp_path, dpi=110, bbox_inches="tight")
  plt.close(figure)


def plot_curves(curves, path, ylabel="loss", title="Pretraining loss"):
  """Plots named curves against the training step.

  Args:
    curves: {label: (steps, values)}; None values are gaps.
    path: destination PNG.
    ylabel: y-axis label.
    title: plot title.
  """
  figure, axis = plt.subplots(figsize=(6, 4))
  for label, (steps, values) in curves.items():
    axis.plot(steps, [np.nan if v is None else v for v in values],
              label=label)
  axis.set_xlabel("step")
  axis.set_ylabel(ylabel)
  axis.set_title(title)
  if curves:
    axis.legend()
  axis.grid(alpha=0.3)
  _save(figure, path)


def plot_loss_curve(history, path, keys=("loss",)):
  """Plots training curves from (step, logs) pairs.

  Args:
    history: list of (step, dict of scalar logs).
    path: destination PNG.
    keys: log names to draw; names missing from the logs are skipped.
  """
  steps = [step for step, _ in history]
  curves = {}
  for key in keys:
    values = [logs.get(key) for _, logs in history]
    if any(v is not None for v in values):
      curves[key] = (steps, values)
  plot_curves(curves, path)


def pca_2d(features):
  """Projects rows of `features` onto their first two principal axes."""
  centred = features - features.mean(axis=0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  return centred @ vt[:2].T


def plot_embeddings(features, labels, path, title, label_names=None):
  """Scatter plot of a 2-D PCA projection of embeddings, coloured by class.

  Args:
    features: float array [N, D].
    labels: int array [N].
    path: destination PNG.
    title: plot title.
    label_names: optional class names indexed by label.
  """
  points = pca_2d(np.asarray(features, np.float64))
  figure, axis = plt.subplots(figsize=(6, 5))
  colours = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
  for label in np.unique(labels):
    mask = labels == label
    name = label_names[label] if label_names is not None else str(label)
    axis.scatter(points[mask, 0], points[mask, 1], s=12,
                 color=colours(int(label) % colours.N), label=name)
  axis.set_title(title)
  axis.legend(fontsize=7, markerscale=1.5, loc="best")
  _save(figure, path)


def plot_grouped_bars(path, title, groups, series, values, ranges=None):
  """Bars of several series per group, with optional min-max whiskers.

  Args:
    path: destination PNG.
    title: plot title.
    groups: names along the x axis (e.g. study variants).
    series: names of the bars within a group (e.g. figures).
    values: [len(groups)][len(series)] bar heights.
    ranges: optional [len(groups)][len(series)] (low, high) per bar.
  """
  values = np.asarray(values, np.float64)
  width = 0.8 / max(1, len(series))
  positions = np.arange(len(groups))
  figure, axis = plt.subplots(figsize=(max(6, 1.2 * len(groups) *
                                           max(1, len(series)) / 2), 4))
  for number, name in enumerate(series):
    x = positions + (number - (len(series) - 1) / 2) * width
    error = None
    if ranges is not None:
      low = np.array([ranges[g][number][0] for g in range(len(groups))])
      high = np.array([ranges[g][number][1] for g in range(len(groups))])
      error = np.stack([values[:, number] - low, high - values[:, number]])
    axis.bar(x, values[:, number], width, yerr=error, capsize=2, label=name)
  axis.set_xticks(positions)
  axis.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
  axis.set_title(title)
  axis.legend(fontsize=7)
  axis.grid(axis="y", alpha=0.3)
  _save(figure, path)
