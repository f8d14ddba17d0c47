"""The pretraining optimizer: Adam with a choice of where epsilon goes.

Keras' Adam and PyTorch's Adam differ only in where epsilon enters:

  Keras:   w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
  PyTorch: w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

In PyTorch terms Keras' epsilon is eps / sqrt(1 - b2^t), which is ~32x
larger at step 1 and still ~1.3x larger after 1,000 steps (b2 = 0.999).
With Keras' default eps = 1e-7 against the reference's 1e-8, Keras' update
is damped ~10x to ~300x more wherever sqrt(v) is small. The released
recipe was trained with PyTorch's Adam, so "pytorch" placement with
eps = 1e-8 is the default (docs/methods.md, "Optimizer").
"""

import gin
import keras
from keras import ops

from avid_tf import errors

EPSILON_PLACEMENTS = ("pytorch", "keras")


@keras.saving.register_keras_serializable(package="avid_tf")
class PyTorchAdam(keras.optimizers.Adam):
  """Adam with PyTorch's update: epsilon added to the bias-corrected sqrt(v).

  Same slots (m, v) and hyper-parameters as `keras.optimizers.Adam`, so
  checkpoints of either read into the other; only the update differs (see
  the module docstring). amsgrad is not supported.
  """

  def __init__(self, *args, amsgrad=False, **kwargs):
    if amsgrad:
      raise ValueError("PyTorchAdam does not implement amsgrad.")
    super().__init__(*args, amsgrad=False, **kwargs)

  def update_step(self, gradient, variable, learning_rate):
    dtype = variable.dtype
    lr = ops.cast(learning_rate, dtype)
    gradient = ops.cast(gradient, dtype)
    step = ops.cast(self.iterations + 1, dtype)
    # convert_to_tensor, not cast: casting a Python float goes through
    # float32 first, which puts float64 runs 1e-5 off the reference.
    bias_correction_1 = 1 - ops.power(
        ops.convert_to_tensor(self.beta_1, dtype), step)
    bias_correction_2 = 1 - ops.power(
        ops.convert_to_tensor(self.beta_2, dtype), step)
    m = self._momentums[self._get_variable_index(variable)]
    v = self._velocities[self._get_variable_index(variable)]
    self.assign_add(m, ops.multiply(ops.subtract(gradient, m),
                                    1 - self.beta_1))
    self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v),
                                    1 - self.beta_2))
    denominator = ops.add(
        ops.divide(ops.sqrt(v), ops.sqrt(bias_correction_2)),
        ops.convert_to_tensor(self.epsilon, dtype))
    self.assign_sub(variable, ops.divide(
        ops.multiply(m, lr / bias_correction_1), denominator))


@gin.configurable
def build_optimizer(learning_rate, epsilon=1e-8, epsilon_placement="pytorch",
                    beta_1=0.9, beta_2=0.999):
  """Returns the pretraining Adam.

  Weight decay is not the optimizer's: the train step adds it to the
  gradients (coupled, as PyTorch's Adam `weight_decay` does).

  Args:
    learning_rate: float or Keras learning-rate schedule.
    epsilon: Adam epsilon (PyTorch's default 1e-8; Keras' is 1e-7).
    epsilon_placement: "pytorch" adds epsilon to the bias-corrected sqrt(v)
      (the reference's update); "keras" adds it to the raw sqrt(v)
      (`keras.optimizers.Adam`).
    beta_1: first-moment decay.
    beta_2: second-moment decay.

  Raises:
    ValueError: for an unknown `epsilon_placement`.
  """
  if epsilon_placement not in EPSILON_PLACEMENTS:
    raise errors.InvalidValueError(
        f"build_optimizer.epsilon_placement must be one of "
        f"{EPSILON_PLACEMENTS}, got '{epsilon_placement}'.")
  optimizer_class = (PyTorchAdam if epsilon_placement == "pytorch"
                     else keras.optimizers.Adam)
  return optimizer_class(learning_rate=learning_rate, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon)
