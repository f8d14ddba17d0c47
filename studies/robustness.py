"""The Robust xID study: faulty positives injected at known rates.

For each faulty-positive rate a synthetic dataset is made in which that
fraction of the videos carries the audio of a video of another class
(`faulty=1`). Every Robust xID variant (gin/robust_xid/<variant>.gin) is
trained on it with the same budget, from the same initialisation seed, and
evaluated with the quickstart's probes and retrieval. The paper's claims
under test: the agreement weights single out the faulty videos
(`faulty_weight_auc` well above 0.5), and the robust loss transfers at least
as well as plain xID, the more so as the rate grows.
"""

import os

from avid_tf import errors
from avid_tf import quickstart
from avid_tf.training import gin_utils
from avid_tf.utils import files

from studies import harness

VARIANTS = ("xid", "weighted", "soft_bootstrap", "soft_swapped",
            "soft_within_modal", "soft_cycle", "robust")
STUDY_FILE = "robustness_study.json"
EPOCH_KEYS = ("faulty_weight_auc", "bank_weight_ess",
              "bank_weight_low_decile_mass")


def _variant_gin(variant):
  return os.path.join(gin_utils.GIN_ROOT, "robust_xid", f"{variant}.gin")


def run_robustness_study(work_dir, faulty_positive_rates=(0.0, 0.5),
                         variants=VARIANTS, seeds=(0,), epochs=20,
                         dataset_settings=None, gin_bindings=(),
                         eval_clips=4):
  """Runs (or resumes) the study and writes its JSON file and PNG.

  Args:
    work_dir: folder of the datasets, runs and results.
    faulty_positive_rates: rates of the synthetic datasets.
    variants: names of gin/robust_xid/<variant>.gin files to compare.
    seeds: training seeds (weights, data order, negatives) per variant.
    epochs: training epochs of every variant (the same budget for all).
    dataset_settings: keyword arguments of `quickstart.prepare_dataset`
      (e.g. videos_per_class); None keeps the quickstart's dataset.
    gin_bindings: extra bindings for every run.
    eval_clips: clips per video in evaluation.

  Returns:
    The study dict written to `<work_dir>/robustness_study.json`.
  """
  for variant in variants:
    if not os.path.isfile(_variant_gin(variant)):
      raise errors.InvalidValueError(
          f"Unknown Robust xID variant '{variant}': no "
          f"{_variant_gin(variant)}; choose from {VARIANTS}.")
  base_gin = quickstart.stage_gin_file("robust_xid")
  bindings = list(gin_bindings) + [f"train.epochs = {int(epochs)}"]
  study = {"settings": {"faulty_positive_rates": list(faulty_positive_rates),
                        "variants": list(variants), "seeds": list(seeds),
                        "epochs": epochs,
                        "dataset_settings": dict(dataset_settings or {}),
                        "gin_bindings": list(gin_bindings)},
           "rates": {}}
  for rate in faulty_positive_rates:
    rate_dir = os.path.join(work_dir, f"faulty_{rate:g}")
    dataset_dir = quickstart.prepare_dataset(
        rate_dir, faulty_positive_rate=rate, **(dataset_settings or {}))
    variants_summary = {}
    for variant in variants:
      results = [
          harness.train_and_evaluate(
              os.path.join(rate_dir, f"{variant}_seed{seed}"), dataset_dir,
              [base_gin, _variant_gin(variant)],
              bindings + [f"train.seed = {seed}"], epoch_keys=EPOCH_KEYS,
              eval_clips=eval_clips)
          for seed in seeds]
      variants_summary[variant] = harness.summarize(results)
    random_dir = os.path.join(rate_dir, f"{variants[0]}_seed{seeds[0]}")
    study["rates"][f"{rate:g}"] = {
        "variants": variants_summary,
        "random_init": harness.evaluate_run(
            random_dir, dataset_dir, eval_clips=eval_clips, random_init=True),
    }
    harness.plot_figures(
        os.path.join(work_dir, f"robustness_study_faulty_{rate:g}.png"),
        f"Robust xID variants, faulty-positive rate {rate:g}",
        variants_summary)
  files.write_json(os.path.join(work_dir, STUDY_FILE), study)
  return study


def format_study(study):
  """Printable table of the study: figures per rate and variant."""
  lines = []
  for rate, entry in study["rates"].items():
    lines.append(f"faulty-positive rate {rate}")
    lines.append(f"  {'variant':<18}{'video':>8}{'audio':>8}{'v2a R@1':>9}"
                 f"{'a2v R@1':>9}{'weight AUC':>12}")
    rows = dict(entry["variants"])
    for variant, figures in rows.items():
      auc = figures.get("faulty_weight_auc", {}).get("mean")
      lines.append(
          f"  {variant:<18}"
          f"{figures['linear_probe_video_top1']['mean']:>8.1%}"
          f"{figures['linear_probe_audio_top1']['mean']:>8.1%}"
          f"{figures['retrieval_v2a_r1']['mean']:>9.1%}"
          f"{figures['retrieval_a2v_r1']['mean']:>9.1%}"
          f"{'' if auc is None else format(auc, '.3f'):>12}")
    random_init = entry["random_init"]
    lines.append(f"  {'random init':<18}"
                 f"{random_init['linear_probe_video_top1']:>8.1%}"
                 f"{random_init['linear_probe_audio_top1']:>8.1%}")
  return "\n".join(lines)
