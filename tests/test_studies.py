"""The studies end to end at toy size: every variant runs and is reported."""

import json
import os

import pytest

from avid_tf.studies import cma
from avid_tf.studies import robustness
from test_quickstart import TOY_BINDINGS

TOY_DATA = {"num_classes": 2, "videos_per_class": 6, "val_fraction": 0.34,
            "duration": 1.5, "size": 48, "num_workers": 1}
# The quickstart's toy settings without its data bindings (the studies make
# their datasets from TOY_DATA).
BINDINGS = tuple(b for b in TOY_BINDINGS if not b.startswith("run_quickstart"))


def test_robustness_study_reports_every_variant_and_rate(tmp_path):
  study = robustness.run_robustness_study(
      str(tmp_path), faulty_positive_rates=(0.0, 0.5),
      variants=("xid", "robust"), seeds=(0,), epochs=1,
      dataset_settings=TOY_DATA, gin_bindings=BINDINGS, eval_clips=2)
  with open(tmp_path / robustness.STUDY_FILE) as f:
    assert json.load(f) == json.loads(json.dumps(study))
  assert set(study["rates"]) == {"0", "0.5"}
  for rate, entry in study["rates"].items():
    assert set(entry["variants"]) == {"xid", "robust"}
    figures = entry["variants"]["robust"]
    assert 0.0 <= figures["linear_probe_video_top1"]["mean"] <= 1.0
    # Faulty videos exist only at rate 0.5: the AUC is defined there only.
    assert ("faulty_weight_auc" in figures) == (rate == "0.5")
    assert os.path.isfile(tmp_path / f"robustness_study_faulty_{rate}.png")
  table = robustness.format_study(study)
  assert "faulty-positive rate 0.5" in table and "random init" in table
  with pytest.raises(ValueError, match="Unknown Robust xID variant"):
    robustness.run_robustness_study(str(tmp_path), variants=("nope",))


def test_cma_study_compares_agreements_and_the_control(tmp_path):
  study = cma.run_cma_study(
      str(tmp_path), seeds=(0, 1), extra_epochs=1, ks=(1, 2),
      dataset_settings=TOY_DATA, gin_bindings=BINDINGS, eval_clips=2)
  precision = study["positive_set_precision"]
  assert set(precision) == {"consensus", "union", "video", "audio",
                            "random", "chance"}
  # 2 classes of 4 training videos: 3 of the 7 others share a class.
  assert precision["chance"]["2"] == pytest.approx(3 / 7)
  assert set(study["figures"]) == {"avid", "cma", "avid_continued"}
  assert len(study["figures"]["cma"]["linear_probe_video_top1"]["values"]) == 2
  assert "positive_set_precision" in study["figures"]["cma"]
  for name in ("cma_study_precision.png", "cma_study_figures.png"):
    assert os.path.isfile(tmp_path / name)
  assert "avid_continued" in cma.format_study(study)
