"""The arguments a run's model was built with, as plain JSON.

`train` writes `<model_dir>/builder_args.json` beside config.gin: every
argument of the model's builders (`build_encoders`, `build_av_model`,
`build_objective` and the chosen objective's builder), defaults included,
as the run's gin configuration set them. Rebuilding a run's model reads this
file, not the caller's gin configuration, so another program's bindings
play no part. Runs written before the file existed (and converted official
checkpoints) are read from their config.gin instead.
"""

import inspect
import json
import os

import gin

from avid_tf import errors
from avid_tf.models import builders
from avid_tf.training import gin_utils
from avid_tf.utils import files

FILE_NAME = "builder_args.json"
CONFIG_FILE = "config.gin"
# Given when the model is built, not configured.
_BUILD_TIME_ARGS = ("num_data", "seed", "objective", "encoders")
# The configurable builders by gin name, as defined (a caller that wraps a
# builder, as a test may, does not change what gin binds).
_MODEL_BUILDERS = {builder.__name__: builder for builder in (
    builders.build_encoders, builders.build_av_model,
    builders.build_objective)}


def _arguments(builder):
  """{argument: value} of a gin-configurable builder: defaults, then gin's.

  Args:
    builder: the configurable function.
  """
  values = {name: parameter.default
            for name, parameter in inspect.signature(builder).parameters.items()
            if name not in _BUILD_TIME_ARGS
            and parameter.default is not inspect.Parameter.empty}
  values.update({name: value for name, value in gin.get_bindings(builder).items()
                 if name not in _BUILD_TIME_ARGS})
  return values


def current():
  """The builders' arguments under the current gin configuration.

  Returns:
    {builder name: {argument: value}}, JSON-serialisable (tuples become
    lists).

  Raises:
    errors.UserError: an argument whose value JSON cannot hold (a gin
      reference, say).
  """
  objective = _arguments(_MODEL_BUILDERS["build_objective"])
  objective_builder = builders.OBJECTIVES.get(objective["name"])
  if objective_builder is None:  # build_objective reports it when training.
    raise errors.UserError(
        f"Unknown objective {objective['name']!r} (build_objective.name); "
        f"choose one of {sorted(builders.OBJECTIVES)}.")
  args = {name: _arguments(builder)
          for name, builder in _MODEL_BUILDERS.items()}
  args[objective_builder.__name__] = _arguments(objective_builder)
  try:
    return json.loads(json.dumps(args))
  except TypeError as error:
    raise errors.UserError(
        f"A model builder argument is not a plain value ({error}).") from None


def write(model_dir, args):
  """Writes `args` (see `current`) to `<model_dir>/builder_args.json`."""
  files.write_json(os.path.join(model_dir, FILE_NAME), args)


def read(model_dir):
  """The builders' arguments a run folder records.

  Args:
    model_dir: a training run or converted checkpoint folder.

  Returns:
    {builder name: {argument: value}}: builder_args.json, or for a folder
    without it, the arguments its config.gin sets (parsed in isolation).

  Raises:
    FileNotFoundError: the folder has neither file.
  """
  path = os.path.join(model_dir, FILE_NAME)
  if files.isfile(path):
    with files.open_file(path) as f:
      return json.load(f)
  config_path = os.path.join(model_dir, CONFIG_FILE)
  if not files.isfile(config_path):
    raise FileNotFoundError(f"{config_path} not found: is {model_dir} the "
                            "--model_dir of a training run?")
  with gin_utils.isolated_config():
    gin_utils.parse_gin([config_path], [], skip_unknown=True)
    return current()


def _as_gin_value(value):
  return tuple(_as_gin_value(v) for v in value) if isinstance(
      value, list) else value


def build_av_model(args, num_data, seed):
  """Builds the model `args` describe, whatever the caller's gin bindings.

  `build_av_model` calls the encoder and objective builders itself, so the
  arguments are bound in a fresh gin configuration, and the caller's is put
  back afterwards.

  Args:
    args: builder arguments (`read` or `current`).
    num_data: rows of the memory banks.
    seed: seed of the banks and the objective's draws.

  Returns:
    An unbuilt `AVModel`.

  Raises:
    errors.UserError: an argument the builders no longer take.
  """
  with gin_utils.isolated_config():
    gin.clear_config()
    for builder, values in args.items():
      for name, value in values.items():
        try:
          gin.bind_parameter(f"{builder}.{name}", _as_gin_value(value))
        except ValueError as error:
          raise errors.UserError(
              f"The run's {builder}.{name} is not an argument of this "
              f"version's builders ({error}).") from None
    return builders.build_av_model(num_data=num_data, seed=seed)
