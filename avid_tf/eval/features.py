"""Extracts clip-averaged features from evaluation datasets."""

import numpy as np
import tensorflow as tf
from tqdm import tqdm


def _clip_averaged(fn, clips):
  """Runs `fn` on [B, clips, ...] inputs; averages each output over clips."""
  shape = tf.shape(clips)
  flat = tf.reshape(clips, tf.concat([[-1], shape[2:]], axis=0))
  outputs = fn(flat)
  return {name: tf.reduce_mean(
      tf.reshape(tf.cast(value, tf.float32), [shape[0], shape[1], -1]),
      axis=1) for name, value in outputs.items()}


def extract_features(dataset, extractors, progress=True):
  """Runs feature extractors over a multi-clip evaluation dataset.

  Args:
    dataset: finite `tf.data.Dataset` of dicts with "video" [B, clips, T, H,
      W, 3] and/or "audio" [B, clips, time, freq, 1], plus "label" and
      "index" [B].
    extractors: dict input key ("video" or "audio") -> function mapping a
      batch of single clips to a dict of named [clips, D] outputs. Each
      output is averaged over the clips of each video.
    progress: show a progress bar.

  Returns:
    Dict with one float32 array [N, D] per named output and int arrays
    "label" and "index" [N].
  """
  steps = {key: tf.function(lambda x, fn=fn: _clip_averaged(fn, x),
                            reduce_retracing=True)
           for key, fn in extractors.items()}
  collected = {}
  for batch in tqdm(dataset, desc="features", disable=not progress,
                    leave=False):
    for key, step in steps.items():
      for name, value in step(batch[key]).items():
        collected.setdefault(name, []).append(value.numpy())
    collected.setdefault("label", []).append(batch["label"].numpy())
    collected.setdefault("index", []).append(batch["index"].numpy())
  return {name: np.concatenate(values) for name, values in collected.items()}
