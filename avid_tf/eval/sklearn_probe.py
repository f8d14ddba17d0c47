"""Linear classifiers on frozen features (scikit-learn).

Features are standardised with the training split's mean and standard
deviation, then classified by a multinomial logistic regression (lbfgs) or a
one-vs-rest linear SVM. `clip_averaged_accuracy` follows the ESC-50 / DCASE
protocol: the classifier is trained on the features of single clips, and the
decision scores of a sample's clips are averaged before the argmax.
"""

import numpy as np
from sklearn import pipeline as sklearn_pipeline
from sklearn import preprocessing as sklearn_preprocessing
from sklearn import svm
from sklearn.linear_model import LogisticRegression

from avid_tf import errors

CLASSIFIERS = ("logistic", "svm")


def make_classifier(classifier="logistic", C=1.0, seed=0, max_iter=2000):  # pylint: disable=invalid-name
  """Returns an unfitted standardise -> linear classifier pipeline.

  Args:
    classifier: "logistic" (multinomial logistic regression, lbfgs) or "svm"
      (one-vs-rest linear SVM, squared hinge loss).
    C: inverse regularisation strength (scikit-learn's C).
    seed: seed of the solver's randomness (the SVM's coordinate order).
    max_iter: iteration limit of the solver.

  Raises:
    ValueError: an unknown classifier or a non-positive C.
  """
  if classifier not in CLASSIFIERS:
    raise errors.InvalidValueError(
        f"Unknown classifier '{classifier}'; choose one of "
        f"{list(CLASSIFIERS)}.")
  if not C > 0:
    raise errors.InvalidValueError(
        f"The regularisation C must be > 0, got {C}.")
  if classifier == "logistic":
    # lbfgs with more than two classes is the multinomial (softmax) model.
    model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
  else:
    model = svm.LinearSVC(C=C, max_iter=max_iter, random_state=seed)
  return sklearn_pipeline.make_pipeline(
      sklearn_preprocessing.StandardScaler(), model)


def _checked(features, labels, name, feature_rank):
  """The split as float64 features and int labels, or a clear error."""
  features = np.asarray(features, np.float64)
  labels = np.asarray(labels)
  if features.ndim != feature_rank:
    raise ValueError(f"The {name} features must have {feature_rank} "
                     f"dimensions, got shape {features.shape}.")
  if len(labels) == 0 or len(features) == 0:
    raise errors.InvalidValueError(
        f"The {name} split of the linear probe is empty.")
  if labels.ndim != 1 or len(labels) != len(features):
    raise ValueError(f"The {name} split has {len(features)} feature rows but "
                     f"labels of shape {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"The {name} labels must be integers, got {labels.dtype}.")
  if labels.min() < 0:
    raise errors.InvalidValueError(
        f"The {name} split has unlabelled examples (label < 0); "
        "the linear probe needs class labels.")
  if not np.all(np.isfinite(features)):
    raise ValueError(f"The {name} features hold NaN or infinite values.")
  return features, labels.astype(np.int64)


def fit_classifier(train_features, train_labels, classifier="logistic", C=1.0,  # pylint: disable=invalid-name
                   seed=0):
  """Fits `make_classifier(...)` on [N, D] features and [N] labels.

  Raises:
    ValueError: empty split, missing (negative) labels, fewer than two
      classes, or bad shapes.
  """
  features, labels = _checked(train_features, train_labels, "train", 2)
  if len(np.unique(labels)) < 2:
    raise errors.InvalidValueError(
        "The train split of the linear probe holds a single "
        "class; a classifier needs at least two.")
  return make_classifier(classifier, C, seed).fit(features, labels)


def decision_scores(model, features):
  """[N, C] decision scores of a fitted classifier (binary: [-s, s])."""
  scores = model.decision_function(np.asarray(features, np.float64))
  if scores.ndim == 1:
    scores = np.stack([-scores, scores], axis=1)
  return scores


def clip_averaged_scores(model, clip_features):
  """Decision scores of [N, clips, D] features averaged over the clips."""
  clip_features = np.asarray(clip_features, np.float64)
  num, clips, dim = clip_features.shape
  scores = decision_scores(model, clip_features.reshape(num * clips, dim))
  return scores.reshape(num, clips, -1).mean(axis=1)


def _top1(model, scores, labels):
  predictions = model.classes_[np.argmax(scores, axis=1)]
  return float(np.mean(predictions == labels))


def linear_probe_accuracy(train_features, train_labels, test_features,
                          test_labels, classifier="logistic", C=1.0, seed=0):  # pylint: disable=invalid-name
  """Trains a linear classifier on [N, D] features; returns test top-1.

  Args:
    train_features: float array [N, D] (e.g. clip-averaged features).
    train_labels: int array [N] of class ids >= 0.
    test_features: float array [M, D].
    test_labels: int array [M].
    classifier: "logistic" or "svm" (see `make_classifier`).
    C: inverse regularisation strength.
    seed: solver seed.

  Returns:
    Top-1 accuracy in [0, 1] on the test set.

  Raises:
    ValueError: if a split is empty, labels are missing (negative) or the
      shapes do not fit.
  """
  test_features, test_labels = _checked(test_features, test_labels, "test", 2)
  model = fit_classifier(train_features, train_labels, classifier, C, seed)
  return _top1(model, decision_scores(model, test_features), test_labels)


def clip_averaged_accuracy(train_features, train_labels, test_features,
                           test_labels, classifier="svm", C=1.0, seed=0):  # pylint: disable=invalid-name
  """The ESC-50 / DCASE protocol on [N, clips, D] features.

  Every clip of a training sample is a training example with the sample's
  label; a test sample's prediction is the argmax of its clips' decision
  scores averaged.

  Args:
    train_features: float array [N, clips, D].
    train_labels: int array [N].
    test_features: float array [M, clips', D] (clips' may differ).
    test_labels: int array [M].
    classifier: "svm" (the papers' protocol) or "logistic".
    C: inverse regularisation strength.
    seed: solver seed.

  Returns:
    Top-1 accuracy in [0, 1] of the clip-averaged predictions.

  Raises:
    ValueError: as `linear_probe_accuracy`.
  """
  train_features, train_labels = _checked(train_features, train_labels,
                                          "train", 3)
  test_features, test_labels = _checked(test_features, test_labels, "test", 3)
  num, clips, dim = train_features.shape
  model = fit_classifier(train_features.reshape(num * clips, dim),
                         np.repeat(train_labels, clips), classifier, C, seed)
  return _top1(model, clip_averaged_scores(model, test_features), test_labels)
