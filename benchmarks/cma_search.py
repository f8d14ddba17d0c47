"""Time of the AVID+CMA positive-set search (avid_tf.memory.agreement).

`benchmark_cma_search` draws two banks of N random unit rows from a seeded
generator, runs `agreement.positive_sets` once on random banks of two
tiles (untimed warm-up: tracing and XLA compilation, which do not depend on
N) and then times one full search of all N rows, from the NumPy banks to
the sets fetched back to the host. Random rows are a typical case for the
search's filter; banks with many exact ties (duplicated rows) cost more.

A full search scores every pair: 4 N^2 D FLOPs for two modalities (two
matmuls of 2 N^2 D), 2 N^2 D for one. achieved_gflops is that over the
timed seconds, the rate of a full search that would take as long. The
search uses the symmetry of the agreement and runs about half of those
FLOPs (matmul_gflop, its T (T + 1) / 2 tiles of B x B); matmul_gflops is
that over the same seconds.
"""

import math
import os
import resource
import sys
import time

import numpy as np
import tensorflow as tf

from avid_tf.memory import agreement as agreement_lib


def _random_bank(rng, num_data, dim):
  rows = rng.standard_normal((num_data, dim), dtype=np.float32)
  return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def peak_memory(on_gpu):
  """(bytes, how it was measured) of the peak memory so far."""
  if on_gpu:
    return (tf.config.experimental.get_memory_info("GPU:0")["peak"],
            "gpu_peak_allocated")
  # ru_maxrss is in kilobytes on Linux, bytes on macOS.
  scale = 1 if sys.platform == "darwin" else 1024
  return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
          "cpu_peak_rss")


def benchmark_cma_search(num_data=100000, dim=128, k=32,
                         agreement="consensus", block_size=None, seed=0):
  """Times `agreement.positive_sets` on random banks.

  Args:
    num_data: N, rows of each bank.
    dim: D, the embedding width.
    k: positive set size.
    agreement: one of `agreement.AGREEMENTS`.
    block_size: rows per tile; None for the default of the device.
    seed: seed of the banks.

  Returns:
    dict: seconds (the timed search), achieved_gflops, gflop (4 or 2
    N^2 D), matmul_gflop and matmul_gflops (what the search ran),
    warmup_seconds, tile (B), peak_memory_bytes with memory_measure
    ("gpu_peak_allocated": tf.config.experimental.get_memory_info peak of
    GPU:0, reset before the timed run; "cpu_peak_rss": peak resident set
    of the process, banks and TensorFlow included), device, cores,
    load_average (1-minute load before and after), tensorflow version and
    the settings.

  Raises:
    ValueError: as `agreement.positive_sets` for bad settings.
  """
  rng = np.random.default_rng(seed)
  video, audio = _random_bank(rng, num_data, dim), _random_bank(
      rng, num_data, dim)
  gpus = tf.config.list_logical_devices("GPU")
  on_gpu = bool(gpus)
  tile = agreement_lib.tile_size(num_data, block_size, on_gpu)
  load_before = os.getloadavg()[0]
  start = time.perf_counter()
  # Two tiles of the timed run's size: the same graphs and XLA compilation
  # (they do not depend on N), so the timed run compiles nothing.
  agreement_lib.positive_sets(
      _random_bank(rng, 2 * tile, dim), _random_bank(rng, 2 * tile, dim),
      k=min(k, 2 * tile - 1), agreement=agreement, block_size=tile).numpy()
  warmup_seconds = time.perf_counter() - start
  if on_gpu:
    tf.config.experimental.reset_memory_stats("GPU:0")

  start = time.perf_counter()
  agreement_lib.positive_sets(
      video, audio, k=k, agreement=agreement, block_size=block_size).numpy()
  seconds = time.perf_counter() - start

  modalities = 1 if agreement in ("video", "audio") else 2
  gflop = 2 * modalities * num_data ** 2 * dim / 1e9
  num_tiles = math.ceil(num_data / tile)
  matmul_gflop = (num_tiles * (num_tiles + 1) // 2 * tile ** 2
                  * 2 * modalities * dim / 1e9)
  peak, measure = peak_memory(on_gpu)
  return {
      "seconds": seconds,
      "achieved_gflops": gflop / seconds,
      "gflop": gflop,
      "matmul_gflop": matmul_gflop,
      "matmul_gflops": matmul_gflop / seconds,
      "warmup_seconds": round(warmup_seconds, 2),
      "peak_memory_bytes": int(peak),
      "memory_measure": measure,
      "device": (tf.config.experimental.get_device_details(
          tf.config.list_physical_devices("GPU")[0]).get("device_name", "gpu")
                 if on_gpu else "cpu"),
      "tile": tile,
      "cores": os.cpu_count(),
      "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
      "tensorflow": tf.__version__,
      "num_data": num_data, "dim": dim, "k": k, "agreement": agreement,
      "block_size": block_size, "seed": seed,
  }
