"""Memory and time of the memory-bank operations of one Cross-AVID step.

`benchmark_memory_bank` builds the two banks (`memory_bank.MemoryBank`) of
N rows and the Cross-AVID objective (`avid.AVIDObjective`: v2a and a2v,
K negatives shared by both terms) at a global batch of G anchors, and
times, one at a time and each as its own tf.function, the bank work of a
training step on random unit embeddings:

  sample_negatives       the [G, K] negative draw (stateless, never the
                         anchor);
  gathers                positive and negative rows of both banks
                         ([G, 1, D] and [G, K, D] each);
  scores                 `avid.memory_logits` of both terms from those rows;
  scores_batched_matmul  the same logits as one batched matrix-vector
                         product per term (not what training runs: it
                         needs no [G, K, D] product, but a GPU may run it
                         in TF32), and its largest difference from scores;
  nce                    `nce.weighted_nce_loss` of those logits;
  objective_gradient     the objective's call (draw, gathers, scores, Z,
                         NCE) and its gradient with respect to the
                         embeddings: the bank work inside the training
                         step's tape;
  bank_update            `MemoryBank.update` of both banks (EMA of G rows).

Each is run once untimed (tracing) and then `steps` times; the median is
reported. Timed outputs stay on the device: on a GPU every run is
synchronised before the clock stops.

Bytes are computed from the shapes: both banks (N x D each), the gathered
negative rows per bank ([G, K, D]) for the global batch and per replica
(each of R replicas gathers the rows of its G / R anchors; every replica
holds both full banks). The banks are float32 in avid_tf; the bfloat16
figures are what bfloat16 banks and gathers would take (computed, not run).
"""

import os
import statistics
import time

import numpy as np
import tensorflow as tf

from avid_tf import errors
from benchmarks import cma_search
from avid_tf.losses import avid
from avid_tf.losses import nce
from avid_tf.memory import memory_bank

# Bytes per element of a bank stored in each dtype.
BANK_DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
# Cross-AVID: video anchors score audio rows, audio anchors video rows.
_CROSS_TERMS = {"v2a": ("video", "audio"), "a2v": ("audio", "video")}


def _synchronise():
  if tf.config.list_logical_devices("GPU"):
    tf.test.experimental.sync_devices()


def _median_seconds(function, steps):
  """Median wall seconds of `function()` after one untimed (tracing) call."""
  function()
  _synchronise()
  seconds = []
  for _ in range(steps):
    start = time.perf_counter()
    function()
    _synchronise()
    seconds.append(time.perf_counter() - start)
  return statistics.median(seconds)


def bank_bytes(num_data, dim, num_negatives, batch_size, replicas):
  """Bytes of the banks and of the gathered negative rows, per bank dtype.

  Args:
    num_data: N, rows of each bank.
    dim: D, the embedding width.
    num_negatives: K negatives per anchor.
    batch_size: G, the global batch.
    replicas: R, devices the global batch is split over.

  Returns:
    {dtype: {"banks": both banks, "bank": one bank,
    "gathered_negatives_per_bank": [G, K, D] of one bank,
    "gathered_negatives": both banks' (Cross-AVID gathers one per bank),
    "gathered_negatives_per_replica_per_bank",
    "gathered_negatives_per_replica"}} in bytes.
  """
  sizes = {}
  for dtype, itemsize in BANK_DTYPE_BYTES.items():
    bank = num_data * dim * itemsize
    gathered = batch_size * num_negatives * dim * itemsize
    sizes[dtype] = {
        "bank": bank,
        "banks": 2 * bank,
        "gathered_negatives_per_bank": gathered,
        "gathered_negatives": 2 * gathered,
        "gathered_negatives_per_replica_per_bank": gathered // replicas,
        "gathered_negatives_per_replica": 2 * gathered // replicas,
    }
  return sizes


def _unit_rows(rng, rows, dim):
  values = rng.standard_normal((rows, dim), dtype=np.float32)
  return tf.constant(values / np.linalg.norm(values, axis=1, keepdims=True))


def benchmark_memory_bank(num_data=232067, dim=128, num_negatives=1024,
                          batch_size=1024, replicas=8, steps=5,
                          temperature=0.07, seed=0):
  """Times the bank operations of one Cross-AVID step and sizes them.

  Args:
    num_data: N, rows of each bank (232,067: Kinetics-400's training set).
    dim: D, the embedding width.
    num_negatives: K negatives per anchor.
    batch_size: G, the global batch (timed on this one device).
    replicas: R, for the per-replica bytes (not run on R devices).
    steps: timed runs of each operation (median reported).
    temperature: tau of the scores.
    seed: seed of the banks, the anchors' rows and the draws.

  Returns:
    dict: bytes (see `bank_bytes`), seconds ({operation: median seconds},
    the operations of the module docstring), bank_seconds_per_step
    (objective_gradient + bank_update: what one step pays),
    bank_dtype ("float32", the dtype the code runs),
    scores_batched_matmul_max_abs_difference, peak_memory_bytes with
    memory_measure (as `cma_search.peak_memory`: the process's peak RSS on
    CPU, banks and TensorFlow included), device, cores,
    load_average (1-minute load before and after), tensorflow version and
    the settings.

  Raises:
    ValueError: for num_data < 2, batch_size > num_data, batch_size not a
      multiple of replicas, or another non-positive size.
  """
  if min(dim, num_negatives, batch_size, replicas, steps) < 1:
    raise errors.InvalidValueError(
        "dim, num_negatives, batch_size, replicas and steps "
        "must be >= 1")
  if num_data < 2:
    raise errors.InvalidValueError(
        f"num_data must be >= 2 (negatives exclude the anchor),"
        f" got {num_data}")
  if batch_size > num_data:
    raise errors.InvalidValueError(
        f"batch_size {batch_size} exceeds num_data {num_data}: "
        "a batch holds distinct videos")
  if batch_size % replicas:
    raise errors.InvalidValueError(
        f"batch_size {batch_size} does not split over "
        f"{replicas} replicas")
  load_before = os.getloadavg()[0]
  rng = np.random.default_rng(seed)
  banks = {
      "video": memory_bank.MemoryBank(num_data, dim, seed=seed,
                                      name="video_bank"),
      "audio": memory_bank.MemoryBank(num_data, dim, seed=seed + 1,
                                      name="audio_bank")}
  objective = avid.AVIDObjective(
      cross_modal_weight=1.0, within_modal_weight=0.0,
      temperature=temperature, num_negatives=num_negatives, seed=seed)
  indices = tf.constant(rng.choice(num_data, batch_size, replace=False),
                        tf.int32)
  embeddings = {modality: _unit_rows(rng, batch_size, dim)
                for modality in ("video", "audio")}
  step = tf.constant(1, tf.int64)

  @tf.function
  def sample():
    return banks["video"].sample_negatives(indices, num_negatives, seed,
                                           step)

  negatives = sample()

  @tf.function
  def gather():
    return {modality: (bank.gather(indices)[:, None, :],
                       bank.gather(negatives))
            for modality, bank in banks.items()}

  rows = gather()

  @tf.function
  def scores():
    return {term: tuple(avid.memory_logits(embeddings[anchor], memory,
                                           temperature)
                        for memory in rows[memory_modality])
            for term, (anchor, memory_modality) in _CROSS_TERMS.items()}

  logits = scores()

  @tf.function
  def matmul_scores():
    return {term: tuple(tf.linalg.matvec(memory, embeddings[anchor])
                        / temperature for memory in rows[memory_modality])
            for term, (anchor, memory_modality) in _CROSS_TERMS.items()}

  matmul_difference = max(
      float(tf.reduce_max(tf.abs(a - b)))
      for term, value in matmul_scores().items()
      for a, b in zip(value, logits[term]))
  partition = nce.estimate_partition(logits["v2a"][1])

  @tf.function
  def loss():
    return nce.weighted_nce_loss(logits, objective.term_weights, partition)

  @tf.function
  def objective_gradient():
    with tf.GradientTape() as tape:
      tape.watch(embeddings)
      value, _ = objective(embeddings, banks, indices, step)
    return tape.gradient(value, embeddings)

  @tf.function
  def update():
    return [bank.update(indices, embeddings[modality])
            for modality, bank in banks.items()]

  seconds = {}
  for name, function in (("sample_negatives", sample), ("gathers", gather),
                         ("scores", scores),
                         ("scores_batched_matmul", matmul_scores),
                         ("nce", loss),
                         ("objective_gradient", objective_gradient),
                         ("bank_update", update)):
    seconds[name] = round(_median_seconds(function, steps), 5)
  gpus = tf.config.list_physical_devices("GPU")
  peak, measure = cma_search.peak_memory(bool(gpus))
  return {
      "bytes": bank_bytes(num_data, dim, num_negatives, batch_size,
                          replicas),
      "seconds": seconds,
      "bank_seconds_per_step": round(
          seconds["objective_gradient"] + seconds["bank_update"], 5),
      "bank_dtype": "float32",
      "scores_batched_matmul_max_abs_difference": matmul_difference,
      "peak_memory_bytes": int(peak),
      "memory_measure": measure,
      "device": (tf.config.experimental.get_device_details(gpus[0]).get(
          "device_name", "gpu") if gpus else "cpu"),
      "cores": os.cpu_count(),
      "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
      "tensorflow": tf.__version__,
      "num_data": num_data, "dim": dim, "num_negatives": num_negatives,
      "batch_size": batch_size, "replicas": replicas, "steps": steps,
      "seed": seed,
  }
