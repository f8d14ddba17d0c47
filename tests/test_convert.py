"""Import of official AVID-CMA PyTorch checkpoints (avid_tf.convert).

The tests marked by a `torch` fixture need PyTorch (requirements-convert.txt)
and skip without it; the others check the layout, the key errors and the
model_dir with NumPy checkpoints made from a Keras model.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from avid_tf import runs
from avid_tf.convert import official_layout as layout
from avid_tf.convert import pytorch_checkpoint
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.models import builders
from avid_tf.training import gin_utils
from avid_tf.training import train_lib
from conftest import REPO
from conftest import run_script
from conftest import script_env

TINY_GIN = os.path.join(gin_utils.GIN_ROOT, "tests", "tiny.gin")
# The architecture of gin/tests/tiny.gin, so that its CMA stage can start
# from a converted checkpoint.
TINY = layout.Architecture(video_depth=10, width_multiplier=0.125,
                           head_hidden_dim=32, head_hidden_layers=2,
                           embedding_dim=16)
# tiny.gin's clips: 4 frames of 32x32, 1 s of audio (100 x 257 spectrograms).
TINY_CLIPS = {"crop_size": 32, "num_frames": 4, "audio_seconds": 1.0}
NUM_DATA = 16  # Training videos of conftest's tiny dataset.
PARTITION = 12.5
SCRIPT = os.path.join(REPO, "scripts", "convert_pytorch_checkpoint.py")


@pytest.fixture
def torch():
  return pytest.importorskip("torch")


def _unit_rows(rng, rows, dim):
  values = rng.normal(size=(rows, dim)).astype(np.float32)
  return values / np.linalg.norm(values, axis=1, keepdims=True)


def _tiny_preprocessing():
  record, _ = pytorch_checkpoint.conversion_preprocessing(**TINY_CLIPS)
  return record


@pytest.fixture(scope="module")
def keras_model():
  """A tiny.gin model with random weights and BN statistics."""
  gin_utils.parse_gin([TINY_GIN])
  model = builders.build_av_model(num_data=NUM_DATA, seed=3)
  train_lib.build_variables(model, _tiny_preprocessing())
  rng = np.random.default_rng(0)
  for variable in model.variables:
    if variable.path.endswith(("moving_mean", "beta")):
      variable.assign(rng.normal(0, 0.3, variable.shape))
    elif variable.path.endswith(("moving_variance", "gamma")):
      variable.assign(rng.uniform(0.5, 1.5, variable.shape))
  model.objective.partition.assign(PARTITION)
  return model


def _official_state(model, arch=TINY):
  """The checkpoint dict the official code would save for `model`."""
  values = {v.path: v.numpy() for v in model.variables}
  state = {f"module.{key}": layout.from_keras(values[target.path], target.kind)
           for key, target in layout.weight_map(arch).items()}
  for key in layout.optional_model_keys(arch):
    state[f"module.{key}"] = np.array(7, np.int64)
  return {
      "epoch": 30,
      "model": state,
      "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]},
      "train_criterion": {
          layout.VIDEO_BANK_KEY: values[layout.KERAS_VIDEO_BANK],
          layout.AUDIO_BANK_KEY: values[layout.KERAS_AUDIO_BANK],
          layout.PARTITION_KEY: np.array(PARTITION, np.float32),
      },
  }


def _write(state, model_dir, **kwargs):
  official = pytorch_checkpoint.from_state(state, "test checkpoint")
  return pytorch_checkpoint.write_model_dir(
      official, str(model_dir), _tiny_preprocessing(), verify=False, **kwargs)


def test_detects_every_official_architecture():
  for depth in (10, 18, 34):
    for arch in (
        layout.Architecture(depth, 1.0, 512, 2, 128),
        layout.Architecture(depth, 0.25, 64, 1, 32),
        layout.Architecture(depth, 0.5, 128, 0, 128)):
      shapes = {key: (1,) * (5 if target.kind == layout.CONV3D else 2)
                for key, target in layout.weight_map(arch).items()}
      shapes["video_model.conv1.0.weight"] = (
          arch.channels(64), 3, 3, 7, 7)
      for index in range(arch.head_hidden_layers + 1):
        out = (arch.embedding_dim if index == arch.head_hidden_layers
               else arch.head_hidden_dim)
        shapes[f"video_proj.projection.{2 * index}.weight"] = (out, 1)
      detected = layout.detect_architecture(shapes)
      if arch.head_hidden_layers == 0:
        arch = layout.Architecture(depth, arch.width_multiplier,
                                   arch.embedding_dim, 0, arch.embedding_dim)
      assert detected == arch


def test_layouts_are_inverse():
  rng = np.random.default_rng(0)
  for kind, shape in ((layout.CONV3D, (5, 4, 3, 2, 6)),
                      (layout.CONV2D, (5, 4, 3, 7)), (layout.LINEAR, (5, 4)),
                      (layout.VECTOR, (5,))):
    value = rng.normal(size=shape)
    np.testing.assert_array_equal(
        layout.from_keras(layout.to_keras(value, kind), kind), value)
  conv3d = rng.normal(size=(8, 3, 3, 7, 5))  # [out, in, t, h, w]
  assert layout.to_keras(conv3d, layout.CONV3D).shape == (3, 7, 5, 3, 8)
  assert layout.to_keras(conv3d, layout.CONV3D)[1, 2, 3, 0, 4] == conv3d[
      4, 0, 1, 2, 3]


def test_round_trip_writes_a_model_dir_that_loads(keras_model, tmp_path):
  summary = _write(_official_state(keras_model), tmp_path / "converted")
  model_dir = str(tmp_path / "converted")
  assert sorted(os.listdir(model_dir)) == [
      "builder_args.json", "checkpoints", "config.gin", "conversion.json",
      "preprocessing.json"]
  assert os.path.basename(summary["checkpoint"]) == "ckpt-0"
  assert summary["num_data"] == NUM_DATA
  assert summary["partition"] == PARTITION
  assert summary["not_converted"] == ["optimizer",
                                      "BatchNorm num_batches_tracked"]
  with open(os.path.join(model_dir, "conversion.json")) as f:
    assert json.load(f)["architecture"]["width_multiplier"] == 0.125
  loaded = runs.open_run(model_dir).model()
  assert loaded.num_data == NUM_DATA
  expected = {v.path: v.numpy() for v in keras_model.variables}
  actual = {v.path: v.numpy() for v in loaded.variables}
  assert set(actual) == set(expected)
  for path, value in expected.items():
    np.testing.assert_array_equal(actual[path], value, err_msg=path)


def test_missing_and_unknown_keys_are_one_line_errors(keras_model, tmp_path):
  state = _official_state(keras_model)
  del state["model"]["module.video_model.conv3x.tmp_bn1.running_var"]
  del state["model"]["module.audio_proj.projection.4.bias"]
  state["model"]["module.video_model.fc.weight"] = np.zeros((3, 3))
  with pytest.raises(layout.CheckpointLayoutError) as error:
    _write(state, tmp_path / "bad")
  message = str(error.value)
  assert "\n" not in message
  assert "2 missing keys" in message and "1 unknown keys" in message
  for key in ("video_model.conv3x.tmp_bn1.running_var",
              "audio_proj.projection.4.bias", "video_model.fc.weight"):
    assert key in message
  assert isinstance(error.value, pytorch_checkpoint.errors.UserError)
  assert not os.path.exists(tmp_path / "bad")


@pytest.mark.parametrize("change, words", [
    (lambda s: s.pop("train_criterion"), "missing 'train_criterion'"),
    (lambda s: s.update(scheduler={}), "unknown 'scheduler'"),
    (lambda s: s["train_criterion"].pop(layout.PARTITION_KEY),
     "missing 'criterion.avg_exp_score'"),
    (lambda s: s["train_criterion"].update(extra=np.zeros(2)),
     "unknown 'extra'"),
    (lambda s: s["train_criterion"].update(
        {layout.AUDIO_BANK_KEY: 2 * s["train_criterion"][
            layout.AUDIO_BANK_KEY]}), "unit norm"),
    (lambda s: s["model"].update({
        "module.audio_model.block2.conv1.weight": np.zeros((16, 8, 5, 5))}),
     "audio_model.block2.conv1.weight"),
    (lambda s: s["model"].pop("module.video_model.conv1.0.weight"),
     "video_model.conv1.0.weight"),
])
def test_checkpoints_of_another_layout_are_clear_errors(
    keras_model, tmp_path, change, words):
  state = _official_state(keras_model)
  change(state)
  with pytest.raises(layout.CheckpointLayoutError, match=words) as error:
    _write(state, tmp_path / "bad")
  assert "\n" not in str(error.value)


def test_an_unestimated_z_converts_to_zero(keras_model, tmp_path):
  state = _official_state(keras_model)
  state["train_criterion"][layout.PARTITION_KEY] = np.array(-1.0)
  assert _write(state, tmp_path / "z")["partition"] == 0.0


def test_existing_model_dir_is_kept_unless_overwrite(keras_model, tmp_path):
  model_dir = tmp_path / "converted"
  model_dir.mkdir()
  (model_dir / "mine.txt").write_text("keep")
  state = _official_state(keras_model)
  with pytest.raises(FileExistsError, match="--overwrite"):
    _write(state, model_dir)
  assert (model_dir / "mine.txt").read_text() == "keep"
  _write(state, model_dir, overwrite=True)
  assert not (model_dir / "mine.txt").exists()
  assert (model_dir / "config.gin").exists()
  assert [n for n in os.listdir(tmp_path) if ".tmp-" in n] == []


def test_spectrogram_statistics_sources(tiny_dataset_dir, tmp_path):
  record, source = pytorch_checkpoint.conversion_preprocessing(
      normalization_dataset_dir=tiny_dataset_dir)
  assert record.spectrogram_mean == (-20.0,) * 257
  assert record.spectrogram_std == (20.0,) * 257
  assert source.startswith("dataset ")
  assert (record.num_frames, record.frame_rate, record.crop_size,
          record.audio_seconds, record.sample_rate) == (8, 16.0, 224, 2.0,
                                                        24000)
  stats = tmp_path / "stats.npz"
  np.savez(stats, mean=np.arange(257.0), std=np.full(257, 3.0))
  record, source = pytorch_checkpoint.conversion_preprocessing(
      112, spectrogram_statistics=str(stats))
  assert record.spectrogram_mean[5] == 5.0 and record.crop_size == 112
  record, source = pytorch_checkpoint.conversion_preprocessing()
  assert record.spectrogram_std == (1.0,) * 257 and source.startswith("none")
  with pytest.raises(ValueError, match="not both"):
    pytorch_checkpoint.conversion_preprocessing(
        normalization_dataset_dir=tiny_dataset_dir,
        spectrogram_statistics=str(stats))
  np.savez(stats, mean=np.zeros(513), std=np.ones(513))
  with pytest.raises(ValueError, match="513 entries"):
    pytorch_checkpoint.conversion_preprocessing(
        spectrogram_statistics=str(stats))


def test_without_torch_reading_is_a_clear_error(monkeypatch, tmp_path):
  path = tmp_path / "checkpoint.pth.tar"
  path.write_bytes(b"")
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(pytorch_checkpoint.TorchNotAvailableError,
                     match="requirements-convert.txt"):
    pytorch_checkpoint.read_checkpoint(str(path))


def test_script_help_explains_every_flag_without_torch():
  # Importing torch fails as if it were not installed. (A None entry in
  # sys.modules would break scipy, which Keras imports when scikit-learn is
  # installed: scipy looks up torch.Tensor whenever "torch" is in sys.modules.)
  code = ("import importlib.abc, runpy, sys\n"
          "class NoTorch(importlib.abc.MetaPathFinder):\n"
          "  def find_spec(self, name, path, target=None):\n"
          "    if name.split('.')[0] == 'torch':\n"
          "      raise ModuleNotFoundError(f'No module named {name!r}')\n"
          "sys.meta_path.insert(0, NoTorch())\n"
          f"sys.argv = [{SCRIPT!r}, '--help']\n"
          f"runpy.run_path({SCRIPT!r}, run_name='__main__')\n")
  result = subprocess.run([sys.executable, "-c", code], env=script_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "--model_dir:" in result.stdout
  for flag in ("checkpoint", "model_dir", "crop_size",
               "normalization_dataset_dir", "spectrogram_statistics",
               "overwrite", "verify"):
    assert f"--{flag}:" in result.stdout or f"--[no]{flag}:" in result.stdout


# With PyTorch: the reference architecture, parity and the whole route.


@pytest.mark.slow
def test_reference_has_the_official_keys_and_sizes(torch):
  from avid_tf.convert import torch_reference  # pylint: disable=g-import-not-at-top
  for depth, video_parameters in ((10, 7_015_616), (18, 15_379_136)):
    arch = layout.Architecture(depth, 1.0, 512, 2, 128)
    reference = torch_reference.AVModel(arch)
    assert set(reference.state_dict()) == (
        set(layout.weight_map(arch)) | set(layout.optional_model_keys(arch)))
    assert torch_reference.num_parameters(
        reference.video_model) == video_parameters
    assert torch_reference.num_parameters(reference.audio_model) == 4_725_696
  assert "video_model.conv2x.spt_conv1.weight" in layout.weight_map(
      layout.Architecture(10, 1.0, 512, 2, 128))
  assert "video_model.conv5x.1.out_bn.running_var" in layout.weight_map(
      layout.Architecture(18, 1.0, 512, 2, 128))


@pytest.mark.slow
def test_a_full_size_avid_cma_checkpoint_converts(torch, tmp_path):
  """R(2+1)D-18 at the published widths, as AVID+CMA saves it (positive
  sets, Z of shape [1]), on the official inputs (8 x 224 x 224, 2 s)."""
  from avid_tf.convert import torch_reference  # pylint: disable=g-import-not-at-top
  arch = layout.Architecture(18, 1.0, 512, 2, 128)
  torch.manual_seed(1)
  reference = torch_reference.AVModel(arch)
  rng = np.random.default_rng(2)
  path = str(tmp_path / "cma.pth.tar")
  torch.save({
      "epoch": 20,
      "model": {f"module.{k}": v for k, v in reference.state_dict().items()},
      "optimizer": torch.optim.Adam(reference.parameters()).state_dict(),
      "train_criterion": {
          layout.VIDEO_BANK_KEY: torch.from_numpy(_unit_rows(rng, 40, 128)),
          layout.AUDIO_BANK_KEY: torch.from_numpy(_unit_rows(rng, 40, 128)),
          layout.PARTITION_KEY: torch.tensor([PARTITION]),
          layout.POSITIVE_SET_KEY: torch.zeros(40, 32, dtype=torch.int32),
      }}, path)
  summary = pytorch_checkpoint.convert_checkpoint(path,
                                                  str(tmp_path / "model"))
  assert summary["parameters"] == {
      "video_encoder": 15_379_136, "audio_encoder": 4_725_696,
      "video_head": 590_976, "audio_head": 590_976}
  assert summary["architecture"]["video_depth"] == 18
  assert (summary["num_data"], summary["partition"]) == (40, PARTITION)
  assert "train_criterion.nce_average.positive_set" in summary[
      "not_converted"]
  assert max(summary["verification_relative_errors"].values()) <= 1e-4


@pytest.fixture(scope="module")
def official(tmp_path_factory):
  """A randomly initialised tiny model saved in the official layout."""
  torch = pytest.importorskip("torch")
  from avid_tf.convert import torch_reference  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  reference = torch_reference.AVModel(TINY)
  with torch.no_grad():
    for module in reference.modules():
      if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
        module.running_mean.normal_(0.0, 0.3)
        module.running_var.uniform_(0.5, 1.5)
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.3)
  reference.eval()
  optimizer = torch.optim.Adam(reference.parameters(), lr=2e-4,
                               weight_decay=1e-5)
  rng = np.random.default_rng(1)
  banks = {"video": _unit_rows(rng, NUM_DATA, TINY.embedding_dim),
           "audio": _unit_rows(rng, NUM_DATA, TINY.embedding_dim)}
  checkpoint = {
      "epoch": 30,
      # DataParallel's prefix, as main-avid.py saves it.
      "model": {f"module.{k}": v for k, v in reference.state_dict().items()},
      "optimizer": optimizer.state_dict(),
      "train_criterion": {
          layout.VIDEO_BANK_KEY: torch.from_numpy(banks["video"]),
          layout.AUDIO_BANK_KEY: torch.from_numpy(banks["audio"]),
          layout.PARTITION_KEY: torch.tensor(PARTITION),
      },
  }
  path = str(tmp_path_factory.mktemp("official") / "checkpoint.pth.tar")
  torch.save(checkpoint, path)
  return {"path": path, "reference": reference, "banks": banks}


@pytest.fixture(scope="module")
def converted(official, tmp_path_factory, tiny_dataset_dir):
  model_dir = str(tmp_path_factory.mktemp("converted") / "model")
  summary = pytorch_checkpoint.convert_checkpoint(
      official["path"], model_dir,
      normalization_dataset_dir=tiny_dataset_dir, **TINY_CLIPS)
  return {"model_dir": model_dir, "summary": summary}


@pytest.mark.slow
def test_features_agree_with_pytorch(torch, official, converted):
  model = runs.open_run(converted["model_dir"]).model()
  rng = np.random.default_rng(5)
  video = rng.standard_normal((2, 4, 32, 32, 3)).astype(np.float32)
  # Time x frequency, as both frameworks take it; not square, so a kernel
  # transposed between the two axes gives other numbers.
  audio = rng.standard_normal((2, 100, 257, 1)).astype(np.float32)
  with torch.no_grad():
    expected = official["reference"](
        torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy()),
        torch.from_numpy(audio.transpose(0, 3, 1, 2).copy()))
  embeddings = model({"video": video, "audio": audio}, training=False)
  actual = {
      "video_features": model.video_encoder(video, training=False),
      "audio_features": model.audio_encoder(audio, training=False),
      "video_embeddings": embeddings["video"],
      "audio_embeddings": embeddings["audio"],
  }
  for name, value in actual.items():
    reference = expected[name].numpy()
    error = np.max(np.abs(np.asarray(value) - reference)) / np.max(
        np.abs(reference))
    assert error <= 1e-4, (name, error)
  for name, error in converted["summary"][
      "verification_relative_errors"].items():
    assert error <= 1e-4, (name, error)


def test_banks_z_and_preprocessing_come_through(official, converted):
  model_dir = converted["model_dir"]
  model = runs.open_run(model_dir).model()
  np.testing.assert_array_equal(model.video_bank.bank.numpy(),
                                official["banks"]["video"])
  np.testing.assert_array_equal(model.audio_bank.bank.numpy(),
                                official["banks"]["audio"])
  assert float(model.objective.partition.numpy()) == PARTITION
  record = preprocessing_lib.Preprocessing.read(model_dir)
  assert record.spectrogram_mean == (-20.0,) * 257
  assert (record.num_frames, record.crop_size) == (4, 32)
  summary = converted["summary"]
  assert summary["epoch"] == 30
  assert summary["parameters"]["video_encoder"] == sum(
      int(np.prod(v.shape)) for v in model.video_encoder.trainable_variables)
  assert summary["source_sha256"] and summary["not_converted"] == [
      "optimizer", "BatchNorm num_batches_tracked"]


def test_a_kernel_transposed_between_time_and_frequency_is_caught(
    torch, official, monkeypatch, tmp_path):
  del torch
  monkeypatch.setitem(layout._TO_KERAS, layout.CONV2D, (3, 2, 1, 0))  # pylint: disable=protected-access
  with pytest.raises(pytorch_checkpoint.ConversionVerificationError,
                     match="audio"):
    pytorch_checkpoint.convert_checkpoint(official["path"],
                                          str(tmp_path / "model"),
                                          **TINY_CLIPS)
  assert not os.path.exists(tmp_path / "model")


class _InitialState(keras.callbacks.Callback):

  def on_train_begin(self, logs=None):
    if not hasattr(self, "bank"):
      self.bank = self.model.audio_bank.bank.numpy()
      self.partition = float(self.model.objective.partition.numpy())


@pytest.mark.slow
def test_a_cma_stage_starts_from_the_converted_model(
    official, converted, tiny_dataset_dir, tmp_path):
  gin_utils.parse_gin([TINY_GIN], [
      f"train.dataset_dir = '{tiny_dataset_dir}'", "train.max_steps = 1",
      "build_objective.name = 'cma'", "build_cma_objective.num_positives = 2",
      "build_cma_objective.num_negatives = 6",
      "build_cma_objective.num_positive_set_negatives = 3"])
  recorder = _InitialState()
  summary = train_lib.train(str(tmp_path / "cma"),
                            init_from=converted["model_dir"],
                            callbacks=[recorder])
  assert summary["steps"] == 1
  np.testing.assert_array_equal(recorder.bank, official["banks"]["audio"])
  assert recorder.partition == PARTITION


@pytest.mark.slow
def test_script_writes_a_model_dir_that_export_accepts(official, tmp_path):
  model_dir = str(tmp_path / "model")
  stats = str(tmp_path / "stats.npz")
  np.savez(stats, mean=np.full(257, -30.0), std=np.full(257, 12.0))
  command = [f"--checkpoint={official['path']}",
             f"--model_dir={model_dir}", "--crop_size=112",
             f"--spectrogram_statistics={stats}"]
  result = run_script("convert_pytorch_checkpoint.py", *command, check=True)
  assert json.loads(result.stdout)["partition"] == PARTITION

  export_dir = str(tmp_path / "export")
  run_script("export.py", f"--model_dir={model_dir}",
             f"--export_dir={export_dir}", check=True)
  with open(os.path.join(export_dir, "video_encoder",
                         "avid_encoder.json")) as f:
    assert json.load(f)["preprocessing"]["crop_size"] == 112
  with open(os.path.join(export_dir, "audio_encoder",
                         "avid_encoder.json")) as f:
    assert json.load(f)["preprocessing"]["spectrogram_mean"][0] == -30.0

  result = run_script("convert_pytorch_checkpoint.py", *command)
  assert result.returncode == 1
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith("Error:") and "--overwrite" in last_line
