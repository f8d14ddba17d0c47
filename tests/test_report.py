"""scripts/report.py on two tiny runs with real evaluation outputs."""

import json
import os
import shutil

import pytest

from avid_tf.eval import probe_runner
from avid_tf.eval import report
from conftest import run_script


@pytest.mark.slow
def test_report_of_two_runs(tiny_run_dir, tiny_dataset_dir, tmp_path):
  runs = [str(tmp_path / name) for name in ("run_a", "run_b")]
  for run_dir in runs:
    shutil.copytree(tiny_run_dir, run_dir)
  run_script("linear_probe.py", f"--model_dir={runs[1]}", "--modality=audio",
             f"--dataset_dir={tiny_dataset_dir}", "--num_clips=1",
             "--classifier=logistic", "--random_init",
             f"--output_dir={runs[1]}/probe_audio", check=True)
  run_script("retrieval.py", f"--model_dir={runs[0]}",
             f"--dataset_dir={tiny_dataset_dir}", "--num_clips=1",
             f"--output_dir={runs[0]}/retrieval", check=True)
  output_dir = str(tmp_path / "report")
  result = run_script("report.py", *runs, f"--output_dir={output_dir}",
                      check=True)

  with open(os.path.join(output_dir, report.REPORT_FILE)) as f:
    written = json.load(f)
  with open(os.path.join(runs[0], "retrieval", "retrieval.json")) as f:
    retrieval = json.load(f)
  with open(os.path.join(runs[1], "probe_audio",
                         probe_runner.REPORT_FILE)) as f:
    probe = json.load(f)
  first, second = written["runs"]
  v2a = first["figures"]["retrieval v2a R@1"]
  assert v2a == {"value": retrieval["instance"]["v2a"]["r1"],
                 "chance": 1 / 8, "source": "retrieval/retrieval.json"}
  # 8 items: R@10 is not applicable.
  assert first["figures"]["retrieval v2a R@10"]["value"] is None
  audio = second["figures"]["probe audio pool (random init)"]
  assert audio["value"] == probe["top1"] and audio["chance"] == 0.25
  assert "probe audio pool (random init)" not in first["figures"]
  assert first["training"] == {".": {"steps": 2,
                                     "train_seconds": pytest.approx(
                                         second["training"]["."][
                                             "train_seconds"])}}
  # tiny.gin logs every step: the curve has steps 1 and 2.
  assert first["curves"]["."][0] == [1, 2]
  with open(os.path.join(output_dir, report.PLOT_FILE), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  lines = result.stdout.strip().splitlines()
  header, row_a, row_b = lines[:3]
  assert row_a.startswith(runs[0]) and row_b.startswith(runs[1])
  assert "retrieval v2a R@1" in header
  cells = row_a.split()
  assert f"{100 * v2a['value']:.1f}" in cells and "(12.5)" in cells
  assert "n/a" in cells


def test_no_run_folder_is_a_one_line_error(tmp_path):
  result = run_script("report.py", str(tmp_path / "missing"),
                      f"--output_dir={tmp_path}")
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
  assert not os.path.exists(tmp_path / report.REPORT_FILE)
  assert report.default_output_dir(["/a/runs/x", "/a/runs/y"]) == (
      "/a/runs/report")
  assert report.default_output_dir(["/a/runs/x"]) == "/a/runs/x/report"
