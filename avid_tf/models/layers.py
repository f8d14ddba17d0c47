"""Building blocks shared by the encoders: PyTorch-style padded layers and BN.

PyTorch pads convolutions and pools symmetrically by a fixed amount, while
Keras `padding="same"` with stride 2 on an even size pads only the
bottom/right, which shifts every strided layer by one pixel. The layers here
pad the PyTorch way (explicitly, or with "SAME" where that is provably the
same), so a converted PyTorch checkpoint produces the same numbers
(docs/methods.md, "Architectures").

Speed on CPU (the weights and their names do not depend on it): 3D
convolutions run as 2D ones (`_conv3d`), and batch norm trains with TF's
fused kernel (`FusedBatchNormalization`). On 2 AVX2 cores with oneDNN on
(TF_ENABLE_ONEDNN_OPTS=1) a full R(2+1)D-18 + audio training step at batch 8,
8x112x112, takes ~1.69 s instead of ~1.78 s with Conv3D and Keras' unfused
batch norm (and degrades less when the cores are shared).
"""

import math
from typing import Optional, Sequence, Tuple, Union

import keras
from keras import ops
import tensorflow as tf

from avid_tf import errors

# PyTorch's BatchNorm default momentum 0.1 weights the *new* batch statistic;
# Keras' momentum weights the *old* moving average, so 1 - 0.1 = 0.9.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

IntOrTuple = Union[int, Sequence[int]]

# Input dtypes of the fused training kernel. With bfloat16 activations
# (mixed_bfloat16) it accumulates the statistics and normalises in float32,
# as Keras' path does after upcasting, and rounds the output to bfloat16
# once; Keras' path makes several float32 passes plus two casts, ~10x the
# time of the fused kernel on a CPU.
_FUSED_DTYPES = (tf.float32, tf.bfloat16)

# A 3D conv whose temporal taps times input channels are at most this is run
# as a 2D conv over the taps stacked on the channel axis (the R(2+1)D stem:
# 3 taps x RGB); wider ones fall back to Conv3D.
_MAX_FOLDED_CHANNELS = 32


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
               dtype=None,
               virtual_batch_size: Optional[int] = None
               ) -> keras.layers.BatchNormalization:
  """Returns a channels-last BatchNormalization with PyTorch's defaults.

  Args:
    synchronized: whether batch statistics are all-reduced across replicas
      under a tf.distribute strategy (SyncBatchNorm).
    name: layer name.
    dtype: dtype policy (None: the global policy).
    virtual_batch_size: training statistics over consecutive groups of this
      many examples (see `FusedBatchNormalization`); None: the whole batch.

  Returns:
    A `keras.layers.BatchNormalization` with momentum 0.9 and epsilon 1e-5.
  """
  return FusedBatchNormalization(
      axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
      synchronized=synchronized, virtual_batch_size=virtual_batch_size,
      name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="avid_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization` whose training step uses TF's fused op.

  Keras 3 normalises with separate moments/normalise/scale ops (several
  passes over the activations forward and backward); the fused kernel (and
  its gradient) makes one or two, which matters on CPU, where these
  element-wise passes cost a large share of an R(2+1)D step. Same
  variables, same arithmetic (batch mean and biased batch variance, moving
  statistics updated as Keras does); training with float32 or bfloat16
  channels-last inputs without mask, renorm or cross-replica
  synchronisation takes the fused path, everything else is the parent's
  code.

  With `virtual_batch_size` G (ghost batch norm, Keras 2's argument of that
  name), training normalises each group of G consecutive examples of the
  batch with the group's own statistics, whatever the batch: the
  reference's BN statistics are those of its per-GPU batch, so a run on any
  number of devices can match them. The moving statistics take one update
  per step with the mean over the groups of their means and of their
  (biased) variances: the statistics that training normalised with, on
  average, where updating once per group would weight the last groups most.
  Under a multi-replica strategy that mean is over every group of the
  global batch (one all-reduce of 2 x channels values per layer and step,
  which the outputs do not wait for), so the moving statistics are those of
  one device and every replica's copy stays the same. This path is not
  fused (per-group moments, then one normalisation); a batch that is not a
  multiple of G is an error at trace time (or, for a batch size unknown
  there, at run time). Inference is unchanged.
  """

  def __init__(self, *args, virtual_batch_size: Optional[int] = None,
               **kwargs):
    """Initialises the layer.

    Args:
      *args: `keras.layers.BatchNormalization` arguments.
      virtual_batch_size: examples per group of training statistics (None:
        the whole batch).
      **kwargs: `keras.layers.BatchNormalization` arguments.

    Raises:
      ValueError: a group size below 1, or groups with synchronized or
        renormalised statistics.
    """
    super().__init__(*args, **kwargs)
    if virtual_batch_size is not None:
      virtual_batch_size = int(virtual_batch_size)
      if virtual_batch_size < 1:
        raise errors.InvalidValueError(
            f"virtual_batch_size must be >= 1 or None, got "
            f"{virtual_batch_size}")
      if self.synchronized or self.renorm:
        raise errors.InvalidValueError(
            "virtual_batch_size cannot be combined with "
            "synchronized or renorm batch norm: groups are "
            "normalised on their own.")
    self.virtual_batch_size = virtual_batch_size

  def call(self, inputs, training=None, mask=None):
    if (training and self.trainable and mask is None and
        self.virtual_batch_size is not None):
      return self._grouped_call(inputs)
    if not (training and self.trainable and mask is None and
            not self.synchronized and not self.renorm and
            self.axis in (-1, len(inputs.shape) - 1) and
            len(inputs.shape) in (4, 5) and inputs.dtype in _FUSED_DTYPES):
      return super().call(inputs, training=training, mask=mask)
    dims = _dims(inputs)
    channels = inputs.shape[-1]
    # Folding leading axes keeps the per-channel statistics and lets the
    # 4D (oneDNN) kernel run.
    flat = tf.reshape(inputs, [-1, dims[-3], dims[-2], channels])
    outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
        flat, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32),
        epsilon=self.epsilon, data_format="NHWC", is_training=True)
    count = tf.cast(tf.size(flat) // channels, tf.float32)
    # The op returns the Bessel-corrected variance; Keras averages the
    # biased one.
    variance = unbiased_variance * (count - 1.0) / tf.maximum(count, 1.0)
    self.moving_mean.assign(self.moving_mean * self.momentum +
                            mean * (1.0 - self.momentum))
    self.moving_variance.assign(self.moving_variance * self.momentum +
                                variance * (1.0 - self.momentum))
    return tf.cast(tf.reshape(outputs, dims), self.compute_dtype)

  def _grouped_call(self, inputs):
    """Training step with statistics per group of `virtual_batch_size`."""
    size = self.virtual_batch_size
    batch = inputs.shape[0]
    checks = []
    if batch is None:
      checks.append(tf.debugging.assert_equal(
          tf.shape(inputs)[0] % size, 0, message=(
              f"{self.name}: the batch is not a multiple of "
              f"virtual_batch_size {size}")))
    elif batch % size:
      raise ValueError(f"{self.name}: batch of {batch} examples is not a "
                       f"multiple of virtual_batch_size {size} (choose a "
                       "per-replica batch divisible by it)")
    dims = _dims(inputs)
    channels = inputs.shape[-1]
    compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
    # Examples are contiguous along the batch axis, so each row of
    # [groups, size * positions, channels] is one group.
    positions = math.prod(dims[1:-1])
    with tf.control_dependencies(checks):
      grouped = tf.reshape(tf.cast(inputs, compute_dtype),
                           [-1, size * positions, channels])
    mean, variance = tf.nn.moments(grouped, axes=[1], keepdims=True)
    outputs = tf.nn.batch_normalization(
        grouped, mean, variance, tf.cast(self.beta, compute_dtype),
        tf.cast(self.gamma, compute_dtype), self.epsilon)
    averages = tf.stop_gradient(tf.concat(
        [tf.reduce_mean(mean, axis=[0, 1]),
         tf.reduce_mean(variance, axis=[0, 1])], axis=0))
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
      # Every replica holds as many groups: the mean over replicas is the
      # mean over all groups of the global batch, as on one device, and the
      # replicas' copies of the moving statistics stay identical.
      averages = context.all_reduce(tf.distribute.ReduceOp.MEAN, averages)
    for moving, average in zip((self.moving_mean, self.moving_variance),
                               tf.split(averages, 2)):
      average = tf.cast(average, moving.dtype)
      moving.assign(moving * self.momentum + average * (1.0 - self.momentum))
    return tf.cast(tf.reshape(outputs, dims), self.compute_dtype)

  def get_config(self):
    config = super().get_config()
    config["virtual_batch_size"] = self.virtual_batch_size
    return config


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


def _dims(x):
  """Static sizes where known, else dynamic ones."""
  dynamic = tf.shape(x)
  return [size if size is not None else dynamic[axis]
          for axis, size in enumerate(x.shape)]


def _same_is_symmetric(kernel, stride, pad):
  """Whether TF "SAME" padding equals PyTorch's symmetric `pad` (any size).

  With stride 1 and an odd kernel "SAME" pads (k - 1) / 2 on both sides.
  With a stride it depends on the input size, and the layers take the
  same op path whether or not sizes are known at trace time (a SavedModel
  with dynamic sizes must compute exactly what the static model does), so
  strided convolutions always pad explicitly.
  """
  return stride == 1 and 2 * pad == kernel - 1


def _conv2d(x, kernel, strides, pads):
  """NHWC bias-free conv2d with PyTorch's symmetric zero padding.

  Lets the conv kernel pad ("SAME") when that is equivalent; otherwise pads
  explicitly and runs a "VALID" conv.
  """
  kernel_size = tuple(kernel.shape[:2])
  if not any(pads):
    padding = "VALID"
  elif all(_same_is_symmetric(k, s, p)
           for k, s, p in zip(kernel_size, strides, pads)):
    padding = "SAME"
  else:
    x = tf.pad(x, [[0, 0], [pads[0], pads[0]], [pads[1], pads[1]], [0, 0]])
    padding = "VALID"
  return tf.nn.conv2d(x, kernel, strides=[1, *strides, 1], padding=padding)


def _every_nth_frame(x, step):
  """x[:, ::step] of [B, T, ...] without TF's slow strided-slice kernel.

  A non-unit stride makes StridedSlice (and its gradient) copy element by
  element; reshaping to [B, T/step, step, rest] and slicing index 0 copies
  whole frames, and the gradient of tf.slice is a fast pad.
  """
  frames = x.shape[1]
  if step == 1:
    return x
  if frames is None:
    return x[:, ::step]
  padded = -(-frames // step) * step
  if padded != frames:
    x = tf.pad(x, [[0, 0], [0, padded - frames]] +
               [[0, 0]] * (len(x.shape) - 2))
  dims = _dims(x)
  grouped = tf.reshape(x, [dims[0], padded // step, step, -1])
  first = tf.slice(grouped, [0, 0, 0, 0], [-1, -1, 1, -1])
  return tf.reshape(first, [dims[0], padded // step] + dims[2:])


def _conv3d(x, kernel, strides, pads):
  """NTHWC bias-free conv3d with PyTorch's symmetric padding, via conv2d.

  TF's CPU Conv3D (and its gradients) is several times slower than Conv2D
  for the factorised (2+1)D kernels, so the same sums are computed with
  2D convolutions (identical arithmetic up to summation order):
  - 1xKxK (spatial): time folded into the batch, [B*T, H, W, C];
  - Kx1x1 (temporal): space flattened, [B, T, H*W, C] with a Kx1 kernel;
  - a temporal stride with a temporal kernel of 1 is a slice of frames;
  - a small full kernel (the stem's 3x7x7 on RGB): the K temporal taps
    stacked on the channel axis, [B*T', H, W, K*C] with a [7, 7, K*C] kernel.
  Anything else runs TF's Conv3D.
  """
  kt, kh, kw, cin, cout = kernel.shape
  st, sh, sw = strides
  pt, ph, pw = pads
  if kt == 1 and pt == 0 and st > 1:
    x = _every_nth_frame(x, st)
    st = 1
  batch, frames, height, width, _ = _dims(x)
  if kt == 1 and st == 1 and pt == 0:
    y = _conv2d(tf.reshape(x, [-1, height, width, cin]),
                tf.reshape(kernel, [kh, kw, cin, cout]), (sh, sw), (ph, pw))
    out_height, out_width = _dims(y)[1:3]
    return tf.reshape(y, [batch, frames, out_height, out_width, cout])
  if kh == kw == 1 and sh == sw == 1 and ph == pw == 0:
    y = _conv2d(tf.reshape(x, [batch, frames, height * width, cin]),
                tf.reshape(kernel, [kt, 1, cin, cout]), (st, 1), (pt, 0))
    return tf.reshape(y, [batch, _dims(y)[1], height, width, cout])
  if kt * cin <= _MAX_FOLDED_CHANNELS:
    out_frames = (frames + 2 * pt - kt) // st + 1
    x = tf.pad(x, [[0, 0], [pt, pt], [0, 0], [0, 0], [0, 0]])
    taps = [_every_nth_frame(x[:, i:i + st * (out_frames - 1) + 1], st)
            for i in range(kt)]
    stacked = tf.reshape(tf.concat(taps, axis=-1),
                         [-1, height, width, kt * cin])
    folded_kernel = tf.reshape(tf.transpose(kernel, [1, 2, 0, 3, 4]),
                               [kh, kw, kt * cin, cout])
    y = _conv2d(stacked, folded_kernel, (sh, sw), (ph, pw))
    out_height, out_width = _dims(y)[1:3]
    return tf.reshape(y, [batch, out_frames, out_height, out_width, cout])
  if any(pads):
    x = tf.pad(x, [[0, 0]] + [[p, p] for p in pads] + [[0, 0]])
  return tf.nn.conv3d(x, kernel, strides=[1, st, sh, sw, 1], padding="VALID")


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
    kernel = ops.cast(self.kernel, inputs.dtype)
    if self.rank == 2:
      return _conv2d(inputs, kernel, self.strides, self.padding)
    return _conv3d(inputs, kernel, self.strides, self.padding)

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
    raise errors.InvalidValueError(
        f"width_multiplier must be > 0, got {width_multiplier}")
  return width_multiplier
