"""Frozen-feature evaluation of a model: linear probes and retrieval.

The quickstart's and the studies' figures on an ingested dataset: both
modalities' encoder features and projection-head embeddings of the train
and held-out ("val") splits (clip-averaged, the run's clip geometry), a
scikit-learn linear probe per modality, and cross-modal retrieval of the
held-out embeddings.
"""

from avid_tf import runs
from avid_tf.data import pipeline
from avid_tf.eval import chance
from avid_tf.eval import features
from avid_tf.eval import retrieval
from avid_tf.eval import sklearn_probe


def _features_and_embeddings(modality, encoder, head):
  """Clip function: pooled encoder features and projection-head embeddings."""
  def fn(clips):
    pooled = encoder(clips, training=False)
    return {modality: pooled,
            f"{modality}_embedding": head(pooled, training=False)}
  return fn


def _split_features(model, dataset, preprocessing, split, batch_size,
                    num_clips):
  """Clip-averaged features and embeddings of both modalities of a split.

  Clips have the geometry the model was trained on (the run's record).
  """
  dataset = pipeline.make_eval_dataset(
      dataset, split, batch_size, preprocessing=preprocessing,
      num_clips=num_clips)
  return features.extract_features(dataset, {
      "video": _features_and_embeddings("video", model.video_encoder,
                                        model.video_head),
      "audio": _features_and_embeddings("audio", model.audio_encoder,
                                        model.audio_head),
  })


def _probe(train, val, key):
  return sklearn_probe.linear_probe_accuracy(
      train[key], train["label"], val[key], val["label"])


def evaluate_model(model, dataset, preprocessing, batch_size=16,
                   num_clips=4):
  """Frozen-feature probes and retrieval of a model on the held-out split.

  Args:
    model: an AVModel.
    dataset: the `schema.DatasetInfo` (its "train" and "val" splits).
    preprocessing: the run's `Preprocessing`.
    batch_size: videos per evaluation batch.
    num_clips: clips per video, uniformly spaced, averaged.

  Returns:
    (figures, val_features): the figures dict (linear_probe_video_top1,
    linear_probe_audio_top1, retrieval_{v2a,a2v}_r{1,5}, class-level
    retrieval_class_{v2v,a2a,v2a,a2v}_{r1,r5,map}, and the chance levels
    linear_probe_chance, retrieval_chance_r{1,5},
    retrieval_class_*_chance_*; a Recall@5 of 5 or fewer held-out videos
    is None, not applicable) and the held-out features.
  """
  splits = {split: _split_features(model, dataset, preprocessing, split,
                                   batch_size, num_clips)
            for split in ("train", "val")}
  train, val = splits["train"], splits["val"]
  recall_v2a = retrieval.recall_at_k(val["video_embedding"],
                                     val["audio_embedding"])
  recall_a2v = retrieval.recall_at_k(val["audio_embedding"],
                                     val["video_embedding"])
  num_classes = len(dataset.label_names) or int(
      max(train["label"].max(), val["label"].max())) + 1
  figures = {
      "linear_probe_chance": chance.top_k(val["label"], 1, num_classes),
      "retrieval_chance_r1": chance.instance_recall(1, len(val["label"])),
      "retrieval_chance_r5": chance.instance_recall(5, len(val["label"])),
      "linear_probe_video_top1": _probe(train, val, "video"),
      "linear_probe_audio_top1": _probe(train, val, "audio"),
      "retrieval_v2a_r1": recall_v2a[1],
      "retrieval_a2v_r1": recall_a2v[1],
      "retrieval_v2a_r5": recall_v2a[5],
      "retrieval_a2v_r5": recall_a2v[5],
  }
  figures.update(retrieval.class_figures(
      val["video_embedding"], val["audio_embedding"], val["label"]))
  return figures, val


def evaluate_run(model_dir, dataset, batch_size=16, num_clips=4,
                 random_init=False):
  """`evaluate_model` of a run's pretrained model or of its random init.

  Args:
    model_dir: a training run or converted checkpoint.
    dataset: the `schema.DatasetInfo` to evaluate on.
    batch_size: videos per evaluation batch.
    num_clips: clips per video.
    random_init: evaluate the run's architecture at
      `runs.RANDOM_INIT_SEED` instead (the baseline).

  Returns:
    (figures, val_features), as `evaluate_model`.
  """
  run = runs.open_run(model_dir)
  model = run.random_init_model() if random_init else run.model()
  return evaluate_model(model, dataset, run.preprocessing, batch_size,
                        num_clips)
