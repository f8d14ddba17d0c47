"""Linear classifiers on frozen audio features (the ESC-50 / DCASE protocol).

Every clip of a file is encoded on its own; a linear SVM (or logistic
regression) is trained on single clips, and a file's prediction averages the
decision scores of its clips (`sklearn_probe.clip_averaged_accuracy`).
ESC-50 is scored by cross-validation over its folds (train on the others,
test on each fold, mean accuracy); an ingested dataset by its train and
test splits.
"""

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from avid_tf import errors
from avid_tf.eval import sklearn_probe
from avid_tf.models import layers as model_layers

POOLED = "pool"
STAGES = (POOLED, "conv2x", "conv3x", "conv4x", "conv5x")


def clip_features(encoder, dataset, stages=(POOLED,), progress=True):
  """Per-clip features of a multi-clip audio dataset.

  Args:
    encoder: the audio encoder (`AudioConvNet`); "pool" is its output, other
      stage names ("conv2x".."conv5x") are the global max of that stage's
      map (`stage_outputs`).
    dataset: finite dataset of dicts with "audio" [B, clips, time, freq, 1]
      and "label" [B], optionally "fold" [B].
    stages: the features to extract.
    progress: show a progress bar.

  Returns:
    {stage: float32 [N, clips, D]} plus int arrays "label" [N] and, when the
    dataset has it, "fold" [N].
  """
  stages = tuple(stages)

  @tf.function(reduce_retracing=True)
  def step(clips):
    shape = tf.shape(clips)
    flat = tf.reshape(clips, tf.concat([[-1], shape[2:]], axis=0))
    outputs = encoder.stage_outputs(flat, training=False)
    features = {}
    for stage in stages:
      value = outputs[stage]
      if stage != POOLED:
        value = model_layers.global_max_pool(value)
      features[stage] = tf.reshape(tf.cast(value, tf.float32),
                                   [shape[0], shape[1], -1])
    return features

  collected = {}
  for batch in tqdm(dataset, desc="audio features", disable=not progress,
                    leave=False):
    for stage, value in step(batch["audio"]).items():
      collected.setdefault(stage, []).append(value.numpy())
    for key in ("label", "fold"):
      if key in batch:
        collected.setdefault(key, []).append(batch[key].numpy())
  if not collected:
    raise errors.UserError("The audio probe's dataset holds no files.")
  return {key: np.concatenate(values) for key, values in collected.items()}


def cross_validate(features, labels, folds, classifier="svm", C=1.0, seed=0):  # pylint: disable=invalid-name
  """Leave-one-fold-out top-1 of clip-averaged predictions.

  Args:
    features: [N, clips, D] per-clip features.
    labels: [N] class ids.
    folds: [N] fold of each file.
    classifier: "svm" or "logistic".
    C: inverse regularisation strength.
    seed: solver seed.

  Returns:
    {"folds": {fold: top1}, "mean": mean over folds}.

  Raises:
    UserError: fewer than two folds.
  """
  folds = np.asarray(folds)
  names = sorted(int(f) for f in np.unique(folds))
  if len(names) < 2:
    raise errors.UserError(f"Cross-validation needs at least two folds, got "
                           f"{names}.")
  per_fold = {}
  for fold in names:
    test = folds == fold
    per_fold[str(fold)] = sklearn_probe.clip_averaged_accuracy(
        features[~test], labels[~test], features[test], labels[test],
        classifier=classifier, C=C, seed=seed)
  return {"folds": per_fold, "mean": float(np.mean(list(per_fold.values())))}
