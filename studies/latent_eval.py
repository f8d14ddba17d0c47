"""Evaluation of latent-benchmark runs on the clean held-out split.

The held-out split is halved: linear probes and the latent regression fit
on the first half and are scored on the second. Retrieval runs over the
whole split on the heads' embeddings (the space the two modalities share).
Weight AUCs and positive-set precision are read off the training banks,
whose faults and classes are known.
"""

import numpy as np
from sklearn import linear_model

from avid_tf.eval import sklearn_probe
from avid_tf.eval import retrieval
from avid_tf.losses import robust_xid
from avid_tf.memory import agreement

from studies import latent_data
from studies import latent_training

AGREEMENTS = ("consensus", "union", "video", "audio")


def _halves(values):
  half = len(values) // 2
  return values[:half], values[half:]


def probe_accuracy(features, labels):
  """Top-1 of a logistic probe fit on the first half, tested on the second."""
  (train_x, test_x), (train_y, test_y) = _halves(features), _halves(labels)
  return sklearn_probe.linear_probe_accuracy(train_x, train_y, test_x, test_y)


def latent_r2(features, latents):
  """R^2 on the second half of a linear map features -> z fit on the first."""
  (train_x, test_x), (train_z, test_z) = _halves(features), _halves(latents)
  regression = linear_model.Ridge(alpha=1e-3).fit(train_x, train_z)
  return float(regression.score(test_x, test_z))


def calibration(data, random_init_features):
  """Data-only difficulty figures: probes on z, raw observations, random init.

  Args:
    data: a `latent_data.LatentData`.
    random_init_features: {"video", "audio"} features of a randomly
      initialised encoder on the held-out split.

  Returns:
    Dict of probe accuracies: latent_probe, raw_video_probe,
    raw_audio_probe, random_video_probe, random_audio_probe, and chance.
  """
  test = data.test
  return {
      "latent_probe": probe_accuracy(test.latents, test.labels),
      "raw_video_probe": probe_accuracy(test.video, test.labels),
      "raw_audio_probe": probe_accuracy(test.audio, test.labels),
      "random_video_probe": probe_accuracy(random_init_features["video"],
                                           test.labels),
      "random_audio_probe": probe_accuracy(random_init_features["audio"],
                                           test.labels),
      "chance": 1.0 / data.config.num_classes}


def embeddings(model, split, batch_size=1024):
  """Head embeddings {"video", "audio"} [n, D] (unit rows) of a split."""
  outputs = [model({"video": split.video[i:i + batch_size],
                    "audio": split.audio[i:i + batch_size]}, training=False)
             for i in range(0, len(split), batch_size)]
  return {m: np.concatenate([np.asarray(o[m]) for o in outputs])
          for m in ("video", "audio")}


def transfer_figures(model, data):
  """Probes, latent R^2 and class retrieval mAP on the held-out split."""
  test = data.test
  features = latent_training.encoder_features(model, test)
  embedded = embeddings(model, test)
  figures = {
      "video_probe": probe_accuracy(features["video"], test.labels),
      "audio_probe": probe_accuracy(features["audio"], test.labels),
      "video_latent_r2": latent_r2(features["video"], test.latents),
      "audio_latent_r2": latent_r2(features["audio"], test.latents)}
  for name, queries, keys in (("v2v", "video", "video"),
                              ("a2a", "audio", "audio"),
                              ("v2a", "video", "audio")):
    figures[f"{name}_map"] = retrieval.class_retrieval(
        embedded[queries], embedded[keys], test.labels, test.labels, ks=(1,),
        leave_query_out=queries == keys)["map"]
  return figures


def weight_aucs(model, data, weight_settings=None):
  """ROC-AUC of low weights for faulty training instances, per kind.

  Args:
    model: a trained AVModel.
    data: its `latent_data.LatentData`.
    weight_settings: (delta, kappa, w_min) of the weights; None takes the
      run's own Robust xID objective's.

  Returns:
    {"faulty_weight_auc", "mismatched_weight_auc",
    "uninformative_weight_auc", "clean_weight_ess"}; AUCs are NaN when a
    kind is absent.
  """
  scores = robust_xid.bank_agreement(model.banks)
  mean, std = robust_xid.score_statistics(scores)
  if weight_settings is None:
    weights = model.objective.instance_weights(scores, mean, std)
  else:
    weights = robust_xid.agreement_weights(scores, mean, std,
                                           *weight_settings)
  weights = np.asarray(weights, np.float64)
  fault = data.train.fault
  clean = fault == latent_data.CLEAN
  figures = {"faulty_weight_auc": robust_xid.roc_auc(-weights, ~clean)}
  for kind, code in latent_data.FAULT_KINDS.items():
    kept = clean | (fault == code)
    figures[f"{kind}_weight_auc"] = robust_xid.roc_auc(-weights[kept],
                                                       fault[kept] == code)
  clean_weights = weights[clean]
  figures["clean_weight_ess"] = float(
      clean_weights.sum()**2 / (np.square(clean_weights).sum()
                                * len(clean_weights)))
  return figures


def positive_set_precisions(model, data, ks=(8, 32)):
  """Class precision of CMA positive sets from the banks, per agreement."""
  figures = {"chance": agreement.positive_set_precision_chance(
      data.train.labels)}
  for name in AGREEMENTS:
    sets = np.asarray(agreement.positive_sets(
        model.video_bank, model.audio_bank, k=max(ks), agreement=name))
    for k in ks:
      figures[f"{name}_k{k}"] = agreement.positive_set_precision(
          sets[:, :k], data.train.labels)
  return figures
