"""The main job end to end on the embedded synthetic dataset.

generate synthetic videos -> ingest -> pretrain Cross-AVID -> frozen-feature
linear probes (pretrained vs randomly initialised encoders) and cross-modal
retrieval on the held-out split -> export -> table, plots, summary.json.
Every stage reuses what an earlier, interrupted run left behind.
"""

import os
import time

import gin

from avid_tf.data import ingest
from avid_tf.data import pipeline
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.data import schema
from avid_tf.data import synthetic
from avid_tf.eval import features
from avid_tf.eval import linear_probe
from avid_tf.eval import plots
from avid_tf.eval import retrieval
from avid_tf.export import saved_model
from avid_tf.training import gin_utils
from avid_tf.training import train_lib
from avid_tf.training import trained_model
from avid_tf.utils import files

QUICKSTART_GIN = os.path.join(gin_utils.GIN_ROOT, "quickstart.gin")
DATASET_NAME = "synthetic"


def _log(message):
  print(f"[quickstart] {message}", flush=True)


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
  return linear_probe.linear_probe_accuracy(
      train[key], train["label"], val[key], val["label"])


@gin.configurable(denylist=["work_dir"])
def run_quickstart(work_dir, num_classes=10, videos_per_class=40,
                   val_fraction=0.25, duration=3.0, size=128, num_workers=None,
                   eval_batch_size=16, eval_clips=4, seed=0):
  """Runs the whole pipeline on a synthetic dataset made in `work_dir`.

  Args:
    work_dir: folder for the videos, dataset, run, export and results.
    num_classes: synthetic classes.
    videos_per_class: synthetic videos per class.
    val_fraction: held-out fraction per class (the evaluation split).
    duration: seconds per synthetic video.
    size: synthetic frame size in pixels.
    num_workers: processes for generation and ingest (default: all cores).
    eval_batch_size: videos per evaluation batch.
    eval_clips: clips per video, uniformly spaced, averaged in evaluation.
    seed: seed of the synthetic data.

  Returns:
    The summary dict also written to `<work_dir>/summary.json`.
  """
  start = time.time()
  os.makedirs(work_dir, exist_ok=True)
  video_root = os.path.join(work_dir, "synthetic")
  labels_csv = os.path.join(video_root, "labels.csv")
  if not os.path.isfile(labels_csv):
    _log(f"generating {num_classes * videos_per_class} synthetic videos")
    synthetic.generate_dataset(
        video_root, num_classes=num_classes,
        videos_per_class=videos_per_class, duration=duration, size=size,
        val_fraction=val_fraction, seed=seed, num_workers=num_workers)
  dataset_dir = schema.dataset_dir(os.path.join(work_dir, "datasets"),
                                   DATASET_NAME)
  if not os.path.isfile(os.path.join(dataset_dir, schema.METADATA_FILE)):
    _log("ingesting videos")
    report = ingest.ingest(os.path.join(video_root, "videos"),
                           os.path.join(work_dir, "datasets"), DATASET_NAME,
                           labels_csv=labels_csv, num_workers=num_workers)
    _log(f"ingested {report['num_ingested']} videos, skipped "
         f"{report['num_skipped']}")

  model_dir = os.path.join(work_dir, "model")
  _log(f"pretraining Cross-AVID in {model_dir}")
  train_summary = train_lib.train(model_dir, dataset_dir=dataset_dir)
  history = train_summary["history"]

  _log("extracting frozen features (pretrained and random init)")
  dataset = schema.DatasetInfo.load(dataset_dir)
  preprocessing = preprocessing_lib.Preprocessing.read(model_dir)
  model = trained_model.load_trained_model(model_dir)
  num_data = model.num_data
  random_model = trained_model.build_model(model_dir, num_data,
                                           seed=seed + 12345)
  results = {}
  for name, net in (("pretrained", model), ("random", random_model)):
    results[name] = {
        split: _split_features(net, dataset, preprocessing, split,
                               eval_batch_size, eval_clips)
        for split in ("train", "val")}

  pretrained, random_init = results["pretrained"], results["random"]
  val = pretrained["val"]
  recall_v2a = retrieval.recall_at_k(val["video_embedding"],
                                     val["audio_embedding"])
  recall_a2v = retrieval.recall_at_k(val["audio_embedding"],
                                     val["video_embedding"])
  export_dir = os.path.join(work_dir, "export")
  _log(f"exporting encoders to {export_dir}")
  export_metadata = preprocessing.export_metadata()
  saved_model.export_encoders(model, export_dir,
                              video_preprocessing=export_metadata["video"],
                              audio_preprocessing=export_metadata["audio"],
                              overwrite=True)

  metadata = dataset.metadata
  plots.plot_loss_curve(history, os.path.join(work_dir, "loss_curve.png"),
                        keys=("loss", "loss_v2a", "loss_a2v"))
  plots.plot_embeddings(val["video"], val["label"],
                        os.path.join(work_dir, "val_video_features_pca.png"),
                        "Held-out video features (PCA), pretrained",
                        metadata["label_names"])
  summary = {
      "linear_probe_video_top1": _probe(pretrained["train"], val, "video"),
      "linear_probe_audio_top1": _probe(pretrained["train"], val, "audio"),
      "random_init_linear_probe_video_top1": _probe(
          random_init["train"], random_init["val"], "video"),
      "random_init_linear_probe_audio_top1": _probe(
          random_init["train"], random_init["val"], "audio"),
      "retrieval_v2a_r1": recall_v2a[1],
      "retrieval_a2v_r1": recall_a2v[1],
      "retrieval_v2a_r5": recall_v2a[5],
      "retrieval_a2v_r5": recall_a2v[5],
      "retrieval_chance_r1": 1.0 / len(val["label"]),
      "train_seconds": train_summary["train_seconds"],
      "train_steps": train_summary["steps"],
      "total_seconds": time.time() - start,
      "num_videos": int(sum(metadata["num_videos"].values())),
      "num_train_videos": num_data,
      "num_val_videos": int(len(val["label"])),
      "export_dir": export_dir,
      "model_dir": model_dir,
  }
  files.write_json(os.path.join(work_dir, "summary.json"), summary)
  return summary


def format_table(summary):
  """Returns the human-readable results table of a quickstart summary."""
  rows = [
      ("", "pretrained", "random init"),
      ("linear probe, video top-1",
       f"{summary['linear_probe_video_top1']:.1%}",
       f"{summary['random_init_linear_probe_video_top1']:.1%}"),
      ("linear probe, audio top-1",
       f"{summary['linear_probe_audio_top1']:.1%}",
       f"{summary['random_init_linear_probe_audio_top1']:.1%}"),
  ]
  lines = [f"{a:<28}{b:>12}{c:>14}" for a, b, c in rows]
  chance = summary["retrieval_chance_r1"]
  lines += [
      "",
      f"retrieval v->a R@1 {summary['retrieval_v2a_r1']:.1%}  R@5 "
      f"{summary['retrieval_v2a_r5']:.1%}",
      f"retrieval a->v R@1 {summary['retrieval_a2v_r1']:.1%}  R@5 "
      f"{summary['retrieval_a2v_r5']:.1%}   (chance R@1 {chance:.1%})",
      f"{summary['num_videos']} videos, {summary['train_steps']} training "
      f"steps in {summary['train_seconds']:.0f} s, total "
      f"{summary['total_seconds']:.0f} s",
      f"encoders exported to {summary['export_dir']}",
  ]
  return "\n".join(lines)
