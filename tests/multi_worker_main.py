"""One worker of the two-process MultiWorkerMirroredStrategy test.

tests/test_multi_worker.py starts two of these with TF_CONFIG describing a
2-worker cluster on localhost. Each trains gin/tests/tiny.gin under
`train.strategy = 'multi_worker'` and saves its own copy of the final memory
banks, so the test can compare the workers' copies with each other. This
process sees one CPU device: it does not run tests/conftest.py.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from avid_tf.models import builders  # noqa: E402
from avid_tf.training import gin_utils  # noqa: E402
from avid_tf.training import train_lib  # noqa: E402

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Model folder shared by all workers of the run.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [],
    "Bindings applied after gin/tests/tiny.gin, e.g. "
    "\"train.dataset_dir = '/data/tiny/1.0.0'\" (required) and "
    "\"train.max_steps = 3\".")
_OUTPUT = flags.DEFINE_string(
    "output", None,
    "Path prefix of this worker's results: `<output>.npz` holds its final "
    "banks (keys 'video' and 'audio'), `<output>.json` the 'steps' and "
    "'final_logs' of train()'s summary.")
flags.mark_flags_as_required(["model_dir", "output"])


def main(argv):
  del argv
  gin_utils.parse_gin(
      [os.path.join(gin_utils.GIN_ROOT, "tests", "tiny.gin")],
      _GIN_BINDINGS.value + ["train.strategy = 'multi_worker'"])
  # train() does not return its model; keep the one it builds.
  models = []
  build_av_model = builders.build_av_model

  def build_and_keep(*args, **kwargs):
    models.append(build_av_model(*args, **kwargs))
    return models[-1]

  builders.build_av_model = build_and_keep
  summary = train_lib.train(_MODEL_DIR.value)
  banks = {name: np.asarray(bank.bank.numpy())
           for name, bank in models[-1].banks.items()}
  np.savez(_OUTPUT.value + ".npz", **banks)
  with open(_OUTPUT.value + ".json", "w") as f:
    json.dump({"steps": summary["steps"],
               "final_logs": summary["final_logs"]}, f)


if __name__ == "__main__":
  app.run(main)
