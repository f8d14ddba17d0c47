"""Test-session setup: runs before TensorFlow initialises its devices.

The CPU is split into two logical devices so distribution tests can compare
MirroredStrategy against the default strategy on any machine.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_env(**variables):
  """Environment for running the repository's scripts in a subprocess.

  Puts this checkout first on PYTHONPATH so a script imports the avid_tf
  under test even when the installed package points at another copy.
  """
  path = os.environ.get("PYTHONPATH")
  return dict(os.environ, PYTHONPATH=REPO + (os.pathsep + path if path else ""),
              **variables)


def write_tiny_dataset(directory, num_train=16, num_val=8, num_frames=24,
                       height=40, width=48, fps=16, sample_rate=24000,
                       num_classes=4, seed=0):
  """Writes a small dataset in the ingest format, with no media decoding.

  Frames are coloured noise per class; audio is a class-dependent tone.
  Labels (index % num_classes) and a faulty flag (every fourth video) are
  also written as per-row columns.

  Returns:
    The dataset folder.
  """
  from avid_tf.data import schema  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  name = "tiny"
  dataset_dir = schema.dataset_dir(str(directory), name)
  import os  # pylint: disable=g-import-not-at-top
  os.makedirs(dataset_dir, exist_ok=True)
  features = schema.features()
  seconds = num_frames / fps
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  lengths, columns = {}, {}
  for split, count in (("train", num_train), ("val", num_val)):
    records = []
    for index in range(count):
      label = index % num_classes
      frames = rng.integers(0, 255, size=(num_frames, height, width, 3),
                            dtype=np.uint8)
      frames[..., label % 3] //= 2
      jpegs = [tf.io.encode_jpeg(f).numpy() for f in frames]
      tone = 0.3 * np.sin(2 * np.pi * (300 + 200 * label) * t)
      tone += 0.05 * rng.normal(size=t.shape)
      audio = (np.clip(tone, -1, 1) * 32767).astype(np.int16)
      records.append(features.serialize_example({
          "video_id": f"{split}/{index}.mp4", "frames": jpegs, "audio": audio,
          "label": label, "index": index, "duration": seconds}))
    schema.write_shard(schema.shard_path(dataset_dir, name, split, 0, 1),
                       records)
    lengths[split] = [count]
    labels = np.arange(count) % num_classes
    # Every fourth video is flagged faulty (its audio is not really swapped).
    columns[split] = {"label": labels, "faulty": (np.arange(count) % 4 == 3)}
  schema.write_dataset_info(dataset_dir, name, lengths, {
      "fps": fps, "short_side": height, "sample_rate": sample_rate,
      "label_names": [f"class{i}" for i in range(num_classes)],
      "spectrogram_mean": [-20.0] * 257, "spectrogram_std": [20.0] * 257,
      "num_videos": {"train": num_train, "val": num_val}},
      instance_columns=columns)
  return dataset_dir


def mirrored_strategy():
  """MirroredStrategy over the two logical CPUs with its own collective keys.

  Every MirroredStrategy starts its collective group/instance keys at the
  same values, so two strategies in one process that run different
  collectives collide ("Collective instance 100 expected type ...").
  Bumping the class's key base before and after gives this one its own
  keys, apart from strategies created later.
  """
  tf.distribute.MirroredStrategy._collective_key_base += 10  # pylint: disable=protected-access
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  tf.distribute.MirroredStrategy._collective_key_base += 10  # pylint: disable=protected-access
  return strategy


@pytest.fixture(autouse=True)
def separate_collective_keys():
  """Gives the MirroredStrategies of each test their own collective keys.

  Every new MirroredStrategy numbers its collective ops from the same class
  attribute; two strategies in one process that run different collectives
  then abort with "Collective instance ... expected type". Moving the base
  per test keeps tests independent of each other's order.
  """
  tf.distribute.MirroredStrategy._collective_key_base += 100  # pylint: disable=protected-access
  yield


@pytest.fixture(autouse=True)
def clear_gin_config():
  """Keeps one test's gin bindings from configuring the next test."""
  yield
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory):
  """A 16-train / 8-val video dataset in the on-disk format, shared."""
  return write_tiny_dataset(tmp_path_factory.mktemp("tiny_dataset"))


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_dataset_dir):
  """A 2-step tiny.gin training run on the tiny dataset, shared read-only."""
  from avid_tf.training import gin_utils  # pylint: disable=g-import-not-at-top
  from avid_tf.training import train_lib  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path_factory.mktemp("tiny_run"))
  gin_utils.parse_gin(
      [os.path.join(gin_utils.GIN_ROOT, "tests", "tiny.gin")],
      [f"train.dataset_dir = '{tiny_dataset_dir}'", "train.max_steps = 2"])
  train_lib.train(model_dir)
  return model_dir


class ScriptResult:
  """What a script run in-process returned: like subprocess.CompletedProcess."""

  def __init__(self, returncode, stdout, stderr):
    self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_script(name, *arguments, check=False):
  """Runs `scripts/<name>` in this process, as `python scripts/<name> ...`.

  The script is loaded as a fresh module and run through `cli.run`, so its
  flags are parsed, user errors become one line on stderr and exit status 1,
  and any other exception is reported with its traceback and status 1.
  Flags the script (or a module it imported first) defined are removed
  afterwards, and every flag is reset, so scripts that define the same flag
  names run one after the other in one process.

  Returns:
    A ScriptResult with the exit status and the captured stdout and stderr.
  """
  import contextlib  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import traceback  # pylint: disable=g-import-not-at-top
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from avid_tf import cli  # pylint: disable=g-import-not-at-top
  # absl defines --help and its kin on its first run; they must outlive
  # this one.
  app.define_help_flags()
  path = os.path.join(REPO, "scripts", name)
  known_flags = set(flags.FLAGS)
  known_modules = set(sys.modules)
  saved_argv = sys.argv
  stdout, stderr = io.StringIO(), io.StringIO()
  returncode = 0
  try:
    sys.argv = [path, *arguments]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
      spec = importlib.util.spec_from_file_location(
          "script_" + name.replace(".py", ""), path)
      module = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(module)
      try:
        cli.run(module.main)
      except SystemExit as exit_request:
        code = exit_request.code
        returncode = code if isinstance(code, int) else int(code is not None)
      except Exception:  # pylint: disable=broad-except
        if check:
          raise
        traceback.print_exc()
        returncode = 1
  finally:
    sys.argv = saved_argv
    flags.FLAGS.unparse_flags()
    new_flags = set(flags.FLAGS) - known_flags
    # A library module that defined flags (the studies' shared flags) is
    # forgotten too, so the next script that imports it defines them again.
    for module_name, module_flags in flags.FLAGS.flags_by_module_dict().items():
      if module_name in sys.modules and module_name not in known_modules and (
          {f.name for f in module_flags} & new_flags):
        del sys.modules[module_name]
    for flag_name in new_flags:
      if flag_name in flags.FLAGS:  # Not yet gone with its long name.
        delattr(flags.FLAGS, flag_name)
  result = ScriptResult(returncode, stdout.getvalue(), stderr.getvalue())
  if check and returncode != 0:
    raise AssertionError(f"{name} exited with {returncode}:\n"
                         f"{result.stderr[-3000:]}")
  return result


def encode_audio_frame(container, stream, frame):
  """Encodes one PyAV audio frame as the whole stream and flushes it."""
  frame.pts = 0
  for packet in stream.encode(frame):
    container.mux(packet)
  for packet in stream.encode(None):
    container.mux(packet)
