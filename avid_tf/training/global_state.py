"""Saves and puts back the process-wide state a training run sets.

`train` sets the Keras precision policy and reseeds every random generator
(`keras.utils.set_random_seed`); a program that trains and then evaluates
(the quickstart, a study) must find both as they were, or its evaluation
runs in bfloat16 and draws from the run's seed.
"""

import contextlib
import random

import keras
# Keras keeps its global seed and seed generator in a private registry
# that `keras.utils.set_random_seed` writes; no public API reads it back.
from keras.src.backend.common import global_state as keras_global_state
import numpy as np
import tensorflow as tf

_KERAS_SEED_ATTRIBUTES = ("global_random_seed", "global_seed_generator")


@contextlib.contextmanager
def restored():
  """Restores the precision policy and the random generators on exit.

  Whichever way the block exits (return or exception), the Keras global
  precision policy, Python's and NumPy's random states, TensorFlow's global
  seed and Keras' global seed and seed generator are put back as they were
  on entry.

  Yields:
    None.
  """
  policy = keras.mixed_precision.global_policy()
  python_state = random.getstate()
  numpy_state = np.random.get_state()
  tensorflow_seed, _ = tf.compat.v1.get_seed(None)
  keras_seeds = {name: keras_global_state.get_global_attribute(name)
                 for name in _KERAS_SEED_ATTRIBUTES}
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(policy)
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    tf.random.set_seed(tensorflow_seed)
    for name, value in keras_seeds.items():
      keras_global_state.set_global_attribute(name, value)
