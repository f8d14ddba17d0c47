"""Tests for benchmarks.memory_bank (no timing assertions)."""

import json

import pytest

from benchmarks import memory_bank
from conftest import run_script

OPERATIONS = ("sample_negatives", "gathers", "scores",
              "scores_batched_matmul", "nce", "objective_gradient",
              "bank_update")


def test_bytes_follow_the_shapes():
  sizes = memory_bank.bank_bytes(num_data=232067, dim=128,
                                 num_negatives=1024, batch_size=1024,
                                 replicas=8)
  float32 = sizes["float32"]
  assert float32["bank"] == 232067 * 128 * 4
  assert float32["banks"] == 2 * float32["bank"]
  assert float32["gathered_negatives_per_bank"] == 2**29  # 512 MiB.
  assert float32["gathered_negatives"] == 2**30
  assert float32["gathered_negatives_per_replica"] == 2**30 // 8
  assert float32["gathered_negatives_per_replica_per_bank"] == 2**29 // 8
  for key, value in sizes["bfloat16"].items():
    assert 2 * value == float32[key], key


@pytest.mark.slow
def test_tiny_run_reports_every_operation():
  result = memory_bank.benchmark_memory_bank(
      num_data=40, dim=8, num_negatives=6, batch_size=8, replicas=2,
      steps=2)
  json.dumps(result)
  assert set(result["seconds"]) == set(OPERATIONS)
  assert all(value > 0 for value in result["seconds"].values())
  assert result["bank_seconds_per_step"] == pytest.approx(
      result["seconds"]["objective_gradient"]
      + result["seconds"]["bank_update"], abs=1e-5)
  assert result["bytes"]["float32"]["gathered_negatives_per_replica"] == (
      2 * 4 * 6 * 8 * 4)
  # The batched matrix-vector product scores what the product-and-sum does.
  assert result["scores_batched_matmul_max_abs_difference"] < 1e-5
  assert result["peak_memory_bytes"] > 0
  with pytest.raises(ValueError, match="does not split"):
    memory_bank.benchmark_memory_bank(num_data=40, batch_size=6, replicas=4)


def test_script_mode_prints_one_json_line():
  result = run_script(
      "benchmark.py", "--what=memory_bank", "--num_data=32", "--dim=4",
      "--batch_size=4", "--num_negatives=3", "--replicas=2", "--steps=1")
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert (report["num_data"], report["batch_size"], report["num_negatives"],
          report["replicas"]) == (32, 4, 3, 2)
  assert set(report["seconds"]) == set(OPERATIONS)
  assert set(report["bytes"]) == {"float32", "bfloat16"}
