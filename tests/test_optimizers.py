"""The pretraining Adam against a float64 NumPy copy of PyTorch's update."""

import gin
import keras
import numpy as np
import pytest

from avid_tf.training import optimizers

BETA_1, BETA_2 = 0.9, 0.999


def pytorch_adam_reference(weights, gradients, learning_rate, epsilon):
  """torch.optim.Adam's single-tensor update (no weight decay), float64."""
  w = np.array(weights, np.float64)
  m = np.zeros_like(w)
  v = np.zeros_like(w)
  for step, grad in enumerate(gradients, start=1):
    m = BETA_1 * m + (1 - BETA_1) * grad
    v = BETA_2 * v + (1 - BETA_2) * grad**2
    step_size = learning_rate / (1 - BETA_1**step)
    denominator = np.sqrt(v) / np.sqrt(1 - BETA_2**step) + epsilon
    w = w - step_size * m / denominator
  return w


def _apply(optimizer, weights, gradients):
  variable = keras.Variable(weights, dtype="float64")
  for grad in gradients:
    optimizer.apply_gradients([(keras.ops.convert_to_tensor(grad), variable)])
  return np.asarray(variable.numpy())


@pytest.fixture(name="problem")
def _problem():
  rng = np.random.default_rng(0)
  weights = rng.normal(size=(64,))
  # Gradient scales from 1e-9 to 1: where sqrt(v) is near epsilon the two
  # placements differ most.
  scales = 10.0**rng.uniform(-9, 0, size=(64,))
  gradients = [rng.normal(size=(64,)) * scales for _ in range(6)]
  return weights, gradients


def test_pytorch_placement_matches_the_reference_update(problem):
  weights, gradients = problem
  got = _apply(optimizers.build_optimizer(1e-3), weights, gradients)
  # Keras holds the learning rate in a float32 variable.
  want = pytorch_adam_reference(weights, gradients, float(np.float32(1e-3)),
                                1e-8)
  np.testing.assert_allclose(got - weights, want - weights, rtol=1e-10,
                             atol=1e-15)


def test_keras_placement_is_a_different_update(problem):
  weights, gradients = problem
  got = _apply(optimizers.build_optimizer(1e-3, epsilon=1e-7,
                                          epsilon_placement="keras"),
               weights, gradients)
  want = pytorch_adam_reference(weights, gradients, 1e-3, 1e-8)
  # Keras' placement damps small-gradient coordinates by up to ~300x.
  ratio = np.abs(got - weights) / np.abs(want - weights)
  assert ratio.min() < 0.01


def test_base_gin_selects_the_pytorch_update():
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(
        ["gin/base.gin"], [], skip_unknown=True)
    optimizer = optimizers.build_optimizer(1e-3)
  finally:
    gin.clear_config()
  assert isinstance(optimizer, optimizers.PyTorchAdam)
  assert optimizer.epsilon == pytest.approx(1e-8)


def test_unknown_placement_is_refused():
  with pytest.raises(ValueError, match="epsilon_placement"):
    optimizers.build_optimizer(1e-3, epsilon_placement="tf1")
