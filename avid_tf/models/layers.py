"""Building blocks shared by the encoders: PyTorch-style padded layers and BN.

PyTorch pads convolutions and pools symmetrically by a fixed amount, while
Keras `padding="same"` with stride 2 on an even size pads only the
bottom/right, which shifts every strided layer by one pixel. The layers here
pad explicitly and then run a "valid" op, so a converted PyTorch checkpoint
produces the same numbers (ALGORITHMS.md §7).
"""

from typing import Optional, Sequence, Tuple, Union

import keras
from keras import ops

# PyTorch's BatchNorm default momentum 0.1 weights the *new* batch statistic;
# Keras' momentum weights the *old* moving average, so 1 - 0.1 = 0.9.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

IntOrTuple = Union[int, Sequence[int]]


def pytorch_default_kernel_initializer() -> keras.initializers.Initializer:
  """Returns PyTorch's default Conv/Linear weight initialiser.

  PyTorch uses kaiming_uniform(a=sqrt(5)), i.e. U(-b, b) with
  b = 1/sqrt(fan_in); VarianceScaling(1/3, "fan_in", "uniform") has the
  same bound sqrt(3 * (1/3) / fan_in).
  """
  return keras.initializers.VarianceScaling(
      scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def batch_norm(synchronized: bool = False,
               name: Optional[str] = None,
               dtype=None) -> keras.layers.BatchNormalization:
  """Returns a channels-last BatchNormalization with PyTorch's defaults.

  Args:
    synchronized: whether batch statistics are all-reduced across replicas
      under a tf.distribute strategy (SyncBatchNorm).
    name: layer name.
    dtype: dtype policy (None: the global policy).

  Returns:
    A `keras.layers.BatchNormalization` with momentum 0.9 and epsilon 1e-5.
  """
  return keras.layers.BatchNormalization(
      axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
      synchronized=synchronized, name=name, dtype=dtype)


def _to_tuple(value: IntOrTuple, rank: int, what: str) -> Tuple[int, ...]:
  """Expands an int to a rank-tuple and checks a sequence's length."""
  if isinstance(value, int):
    return (value,) * rank
  value = tuple(int(v) for v in value)
  if len(value) != rank:
    raise ValueError(f"{what} must have {rank} entries, got {value}")
  return value


def _padded_output_size(size: Optional[int], kernel: int, stride: int,
                        pad: int) -> Optional[int]:
  """PyTorch output size floor((n + 2p - k) / s) + 1 (None stays None)."""
  if size is None:
    return None
  return (size + 2 * pad - kernel) // stride + 1


@keras.saving.register_keras_serializable(package="avid_tf")
class PaddedConv(keras.layers.Layer):
  """Bias-free convolution with symmetric zero padding, as in PyTorch.

  Equivalent to `torch.nn.Conv{2,3}d(..., padding=p, stride=s, bias=False)`
  on channels-last tensors. The rank (2 or 3) follows `len(kernel_size)`.
  The kernel is stored as [*kernel_size, in_channels, filters].
  """

  def __init__(self,
               filters: int,
               kernel_size: Sequence[int],
               strides: IntOrTuple = 1,
               padding: IntOrTuple = 0,
               **kwargs):
    """Initialises the layer.

    Args:
      filters: number of output channels.
      kernel_size: kernel extent per spatial axis (length 2 or 3).
      strides: stride per spatial axis (int or tuple).
      padding: zeros added on *both* sides of each spatial axis.
      **kwargs: base Layer arguments (name, dtype, trainable).

    Raises:
      ValueError: for a rank other than 2 or 3 or inconsistent lengths.
    """
    super().__init__(**kwargs)
    kernel_size = tuple(int(k) for k in kernel_size)
    if len(kernel_size) not in (2, 3):
      raise ValueError(
          f"kernel_size must have 2 or 3 entries, got {kernel_size}")
    self.rank = len(kernel_size)
    self.filters = int(filters)
    self.kernel_size = kernel_size
    self.strides = _to_tuple(strides, self.rank, "strides")
    self.padding = _to_tuple(padding, self.rank, "padding")
    self.kernel = None

  def build(self, input_shape):
    in_channels = input_shape[-1]
    if in_channels is None:
      raise ValueError(f"{self.name}: the channel axis must be known")
    self.kernel = self.add_weight(
        name="kernel",
        shape=self.kernel_size + (int(in_channels), self.filters),
        initializer=pytorch_default_kernel_initializer(),
        trainable=True)

  def call(self, inputs):
    if any(self.padding):
      pads = [[0, 0]] + [[p, p] for p in self.padding] + [[0, 0]]
      inputs = ops.pad(inputs, pads)
    return ops.conv(inputs, self.kernel, strides=self.strides,
                    padding="valid", data_format="channels_last")

  def compute_output_shape(self, input_shape):
    spatial = [
        _padded_output_size(n, k, s, p) for n, k, s, p in zip(
            input_shape[1:-1], self.kernel_size, self.strides, self.padding)
    ]
    return (input_shape[0], *spatial, self.filters)

  def get_config(self):
    config = super().get_config()
    config.update({
        "filters": self.filters,
        "kernel_size": list(self.kernel_size),
        "strides": list(self.strides),
        "padding": list(self.padding),
    })
    return config


@keras.saving.register_keras_serializable(package="avid_tf")
class PaddedMaxPool(keras.layers.Layer):
  """Max pooling with symmetric padding, for non-negative inputs.

  PyTorch's MaxPool pads with -inf. This layer pads with zeros, which gives
  the same result only because its inputs come straight from a ReLU (>= 0):
  a zero pad can then never exceed the window's real maximum. Do not use it
  on inputs that can be negative.
  """

  def __init__(self,
               pool_size: Sequence[int],
               strides: IntOrTuple,
               padding: IntOrTuple = 0,
               **kwargs):
    """Initialises the layer.

    Args:
      pool_size: window extent per spatial axis (length 2 or 3).
      strides: stride per spatial axis.
      padding: zeros added on both sides of each spatial axis.
      **kwargs: base Layer arguments.
    """
    super().__init__(**kwargs)
    self.pool_size = tuple(int(k) for k in pool_size)
    self.rank = len(self.pool_size)
    if self.rank not in (2, 3):
      raise ValueError(
          f"pool_size must have 2 or 3 entries, got {self.pool_size}")
    self.strides = _to_tuple(strides, self.rank, "strides")
    self.padding = _to_tuple(padding, self.rank, "padding")

  def call(self, inputs):
    if any(self.padding):
      pads = [[0, 0]] + [[p, p] for p in self.padding] + [[0, 0]]
      inputs = ops.pad(inputs, pads)
    if (self.rank == 3 and self.pool_size[0] == 1 and self.strides[0] == 1):
      # A 1xKxK window pools each frame on its own: fold time into the batch
      # and use the 2D op, which (unlike TF's CPU MaxPool3D) has float16
      # kernels, so mixed_float16 also runs on CPU.
      shape = ops.shape(inputs)
      frames = ops.reshape(inputs, (-1, shape[2], shape[3], shape[4]))
      pooled = ops.max_pool(frames, pool_size=self.pool_size[1:],
                            strides=self.strides[1:], padding="valid",
                            data_format="channels_last")
      pooled_shape = ops.shape(pooled)
      return ops.reshape(pooled, (shape[0], shape[1], pooled_shape[1],
                                  pooled_shape[2], pooled_shape[3]))
    return ops.max_pool(inputs, pool_size=self.pool_size,
                        strides=self.strides, padding="valid",
                        data_format="channels_last")

  def compute_output_shape(self, input_shape):
    spatial = [
        _padded_output_size(n, k, s, p) for n, k, s, p in zip(
            input_shape[1:-1], self.pool_size, self.strides, self.padding)
    ]
    return (input_shape[0], *spatial, input_shape[-1])

  def get_config(self):
    config = super().get_config()
    config.update({
        "pool_size": list(self.pool_size),
        "strides": list(self.strides),
        "padding": list(self.padding),
    })
    return config


def global_max_pool(features):
  """Max over every axis between batch and channels: [B, ..., C] -> [B, C]."""
  return ops.max(features, axis=tuple(range(1, len(features.shape) - 1)))


def scaled_width(channels: int, width_multiplier: float) -> int:
  """Channel count scaled by the width multiplier, rounded, at least 1."""
  return max(1, int(round(channels * width_multiplier)))


def check_width_multiplier(width_multiplier: float) -> float:
  """Returns the multiplier as float or raises ValueError if not > 0."""
  width_multiplier = float(width_multiplier)
  if not width_multiplier > 0:
    raise ValueError(
        f"width_multiplier must be > 0, got {width_multiplier}")
  return width_multiplier
