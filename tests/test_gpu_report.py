"""Tests for benchmarks.gpu_report and `benchmark.py --what=gpu_report`."""

import dataclasses
import json

import pytest

from benchmarks import gpu_report
from conftest import run_script


@pytest.mark.slow
def test_tiny_report_runs_every_section_on_the_cpu():
  result = run_script("benchmark.py", "--what=gpu_report", "--tiny",
                      check=True)
  report = json.loads(result.stdout)
  assert report["tiny"] is True
  for name in gpu_report.SECTIONS:
    assert report[name]["status"] == "ok", (name, report[name])
    assert report[name]["time_limit_seconds"] == (
        gpu_report.TINY.time_limits[name])
  assert report["devices"]["tensorflow"]
  assert report["devices"]["gpus"] == []
  steps = report["train_step"]["runs"]
  assert [run["geometry"] for run in steps] == ["2x32x32", "2x48x48"]
  assert all(run["status"] == "ok" and run["clips_per_second"] > 0
             and run["fraction_of_peak"] is None for run in steps)
  # The CPU against itself: the same weights and batch give the same step.
  for tf32 in ("tf32_on", "tf32_off"):
    comparison = report["gpu_vs_cpu"][tf32]
    assert comparison["loss"] == pytest.approx(comparison["loss_cpu"],
                                               rel=1e-6)
    assert comparison["gradient_norm_max_relative_difference"] < 1e-5
    assert comparison["gradient_global_norm"] > 0
  mirrored = report["mirrored"]
  first, second = mirrored["loss_abs_differences"]
  assert first < 1e-5 and second < 1e-2
  assert max(mirrored["bank_max_abs_difference"].values()) < 1e-2
  assert [run["num_data"] for run in report["cma_search"]["runs"]] == [
      500, 1500]
  assert all(run["peak_memory_bytes"] > 0
             for run in report["cma_search"]["runs"])
  for run, step in zip(report["input_pipeline"]["runs"], steps):
    assert run["fastest_step_clips_per_second"] == step["clips_per_second"]
    assert run["pipeline_over_step"] == pytest.approx(
        run["clips_per_second"] / step["clips_per_second"], rel=1e-2)


def test_a_section_past_its_time_limit_is_skipped_with_the_reason():
  sizes = dataclasses.replace(
      gpu_report.TINY, time_limits={**gpu_report.TINY.time_limits,
                                    "devices": -1})
  report = gpu_report.gpu_report(sizes, sections=["devices"])
  assert report["devices"]["status"] == "skipped"
  assert report["devices"]["reason"] == "time limit of -1 s reached"
  assert "train_step" not in report


def test_a_failing_measurement_is_skipped_and_the_rest_still_runs():
  deadline = gpu_report._Deadline(60)  # pylint: disable=protected-access

  def fails():
    raise RuntimeError("out of memory\nsecond line")

  measured = [gpu_report._measure(deadline, function)  # pylint: disable=protected-access
              for function in (fails, lambda: {"value": 1})]
  assert measured[0] == {"status": "skipped",
                         "reason": "RuntimeError: out of memory",
                         "where": "fails"}
  assert measured[1] == {"status": "ok", "value": 1}


def test_peak_is_looked_up_by_device_name_and_policy():
  assert gpu_report.peak_tflops("NVIDIA H100 PCIe", "mixed_bfloat16") == 756
  assert gpu_report.peak_tflops("NVIDIA H100 80GB HBM3",
                                "mixed_float16") == 989.5
  assert gpu_report.peak_tflops("Tesla V100-SXM2-16GB", "mixed_bfloat16") is (
      None)
  assert gpu_report.peak_tflops("Some future GPU", "none") is None
