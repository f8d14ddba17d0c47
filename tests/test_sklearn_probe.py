"""Tests of the scikit-learn linear probes on frozen features."""

import numpy as np
import pytest

from avid_tf.eval import sklearn_probe


def _blobs(num, num_classes=4, dim=16, scale=3.0, seed=0, clips=None):
  rng = np.random.default_rng(seed)
  centres = rng.normal(scale=scale, size=(num_classes, dim))
  labels = np.arange(num) % num_classes
  shape = (num, dim) if clips is None else (num, clips, dim)
  noise = rng.normal(size=shape)
  centre = centres[labels] if clips is None else centres[labels][:, None]
  return centre + noise, labels


def test_standardisation_matches_numpy_float64():
  rng = np.random.default_rng(1)
  x = rng.normal(loc=5.0, scale=[1.0, 10.0, 0.1], size=(50, 3))
  labels = np.arange(50) % 2
  model = sklearn_probe.fit_classifier(x, labels)
  scaled = model[:-1].transform(x[:7])
  expected = (x[:7] - x.mean(axis=0)) / x.std(axis=0)
  np.testing.assert_allclose(scaled, expected, rtol=1e-12)


@pytest.mark.parametrize("classifier", sklearn_probe.CLASSIFIERS)
def test_separable_classes_are_classified_perfectly(classifier):
  x, labels = _blobs(200, scale=6.0)
  acc = sklearn_probe.linear_probe_accuracy(x[:150], labels[:150], x[150:],
                                           labels[150:], classifier=classifier)
  assert acc == 1.0


@pytest.mark.parametrize("classifier", sklearn_probe.CLASSIFIERS)
def test_permuted_labels_give_near_chance(classifier):
  x, labels = _blobs(400, scale=6.0)
  shuffled = np.random.default_rng(3).permutation(labels)
  acc = sklearn_probe.linear_probe_accuracy(x[:300], shuffled[:300], x[300:],
                                           shuffled[300:],
                                           classifier=classifier)
  assert acc < 0.45  # Chance is 0.25.


def test_clip_averaging_equals_mean_of_per_clip_decision_scores():
  x, labels = _blobs(40, clips=3, scale=1.0, seed=2)
  test_x, test_labels = _blobs(12, clips=5, scale=1.0, seed=2)
  model = sklearn_probe.fit_classifier(x.reshape(-1, x.shape[-1]),
                                      np.repeat(labels, 3), "svm")
  averaged = sklearn_probe.clip_averaged_scores(model, test_x)
  expected = np.mean([model.decision_function(test_x[:, c])
                      for c in range(5)], axis=0)
  np.testing.assert_allclose(averaged, expected, rtol=1e-12)
  predictions = model.classes_[np.argmax(expected, axis=1)]
  acc = sklearn_probe.clip_averaged_accuracy(x, labels, test_x, test_labels,
                                            classifier="svm")
  assert acc == np.mean(predictions == test_labels)


def test_binary_scores_have_one_column_per_class():
  x, labels = _blobs(30, num_classes=2)
  model = sklearn_probe.fit_classifier(x, labels, "svm")
  scores = sklearn_probe.decision_scores(model, x)
  assert scores.shape == (30, 2)
  np.testing.assert_array_equal(model.classes_[scores.argmax(1)],
                                model.predict(x))


def test_bad_inputs_are_clear_errors():
  x, labels = _blobs(20)
  with pytest.raises(ValueError, match="empty"):
    sklearn_probe.linear_probe_accuracy(x[:0], labels[:0], x, labels)
  with pytest.raises(ValueError, match="empty"):
    sklearn_probe.linear_probe_accuracy(x, labels, x[:0], labels[:0])
  with pytest.raises(ValueError, match="unlabelled"):
    sklearn_probe.linear_probe_accuracy(x, labels - 1, x, labels)
  with pytest.raises(ValueError, match="single class"):
    sklearn_probe.linear_probe_accuracy(x, labels * 0, x, labels)
  with pytest.raises(ValueError, match="dimensions"):
    sklearn_probe.clip_averaged_accuracy(x, labels, x, labels)
  with pytest.raises(ValueError, match="Unknown classifier"):
    sklearn_probe.linear_probe_accuracy(x, labels, x, labels,
                                       classifier="mlp")
