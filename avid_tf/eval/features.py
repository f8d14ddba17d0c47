"""Extracts clip-averaged features from evaluation datasets."""

import numpy as np
import tensorflow as tf
from tqdm import tqdm


def _merge_clips(fn, clips):
  """Runs `fn` on [B, clips, ...] inputs and averages its outputs over clips."""
  shape = tf.shape(clips)
  flat = tf.reshape(clips, tf.concat([[-1], shape[2:]], axis=0))
  outputs = fn(flat)
  outputs = tf.reshape(outputs, [shape[0], shape[1], -1])
  return tf.reduce_mean(tf.cast(outputs, tf.float32), axis=1)


def extract_features(dataset, extractors, progress=True):
  """Runs feature extractors over a multi-clip evaluation dataset.

  Args:
    dataset: finite `tf.data.Dataset` of dicts with "video" [B, clips, T, H,
      W, 3] and/or "audio" [B, clips, time, freq, 1], plus "label" and
      "index" [B].
    extractors: dict output name -> (input key, function). Each function maps
      a batch of single clips to [clips, D] features; its outputs are averaged
      over the clips of each video.
    progress: show a progress bar.

  Returns:
    Dict with one float32 array [N, D] per extractor and int arrays "label"
    and "index" [N].
  """
  steps = {name: tf.function(lambda x, fn=fn: _merge_clips(fn, x))
           for name, (_, fn) in extractors.items()}
  collected = {name: [] for name in list(extractors) + ["label", "index"]}
  for batch in tqdm(dataset, desc="features", disable=not progress,
                    leave=False):
    for name, (key, _) in extractors.items():
      collected[name].append(steps[name](batch[key]).numpy())
    collected["label"].append(batch["label"].numpy())
    collected["index"].append(batch["index"].numpy())
  return {name: np.concatenate(values) for name, values in collected.items()}
