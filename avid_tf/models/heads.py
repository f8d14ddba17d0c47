"""Projection head g: MLP 512-512-128 then L2 normalisation.

See docs/methods.md, "Architectures".

Linear -> ReLU -> Linear -> ReLU -> Linear, no BN and no final activation,
every Dense with a bias; the output is L2-normalised in float32 so the
embeddings and their dot products with the memory banks stay float32 under
mixed precision.

Optionally (`batch_norm=True`, not the published head) every Linear is
followed by BatchNorm (before the ReLU of the hidden ones, before the L2
normalisation of the output one). The published head feeds
all-positive features (ReLU, then max pooling) to plain Linear layers, so
every gradient step moves all embeddings by nearly the same vector: at small
scale the embeddings of all inputs then align within a few dozen steps (see
docs/results.md, "Why the quickstart's heads use BatchNorm"). Normalising every
layer over the batch removes that shared component.
"""

import keras
from keras import ops

from avid_tf import errors
from avid_tf.models import layers as model_layers

# As torch.nn.functional.normalize: x / max(||x||, eps).
L2_EPSILON = 1e-12


def l2_normalize(x, epsilon: float = L2_EPSILON):
  """Returns x / max(||x||_2, epsilon) along the last axis, in float32."""
  x = ops.cast(x, "float32")
  norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
  return x / ops.maximum(norm, epsilon)


@keras.saving.register_keras_serializable(package="avid_tf")
class ProjectionHead(keras.layers.Layer):
  """MLP projection head with L2-normalised float32 output.

  Weights use PyTorch's default Linear initialisation for kernels
  (U(+-1/sqrt(fan_in))); biases start at zero (PyTorch draws them from the
  same uniform; the difference does not matter for training from scratch,
  and converted checkpoints overwrite both).
  """

  def __init__(self,
               hidden_dim: int = 512,
               output_dim: int = 128,
               num_hidden_layers: int = 2,
               batch_norm: bool = False,
               **kwargs):
    """Initialises the head.

    Args:
      hidden_dim: width of each hidden Dense layer (ReLU after each).
      output_dim: embedding size.
      num_hidden_layers: hidden Dense+ReLU layers before the output Dense
        (0 gives a linear projection).
      batch_norm: BatchNorm (PyTorch's defaults) after every Dense (before
        the ReLU of the hidden ones); False is the published head.
      **kwargs: base Layer arguments (name, dtype, trainable).

    Raises:
      ValueError: for non-positive sizes or a negative layer count.
    """
    super().__init__(**kwargs)
    if hidden_dim < 1 or output_dim < 1 or num_hidden_layers < 0:
      raise errors.InvalidValueError(
          f"ProjectionHead needs hidden_dim >= 1, output_dim >= 1 and "
          f"num_hidden_layers >= 0, got {hidden_dim}, {output_dim}, "
          f"{num_hidden_layers}")
    self.hidden_dim = int(hidden_dim)
    self.output_dim = int(output_dim)
    self.num_hidden_layers = int(num_hidden_layers)
    self.batch_norm = bool(batch_norm)
    dtype = self.dtype_policy
    initializer = model_layers.pytorch_default_kernel_initializer
    # With BN the ReLU follows the normalisation; the Dense bias is kept so
    # the variable layout does not depend on the option.
    self.hidden_layers = [
        keras.layers.Dense(
            self.hidden_dim, activation=None if self.batch_norm else "relu",
            use_bias=True, kernel_initializer=initializer(),
            name=f"hidden{index + 1}", dtype=dtype)
        for index in range(self.num_hidden_layers)
    ]
    self.hidden_norms = [
        model_layers.batch_norm(name=f"hidden{index + 1}_bn", dtype=dtype)
        for index in range(self.num_hidden_layers)
    ] if self.batch_norm else []
    self.output_norm = (model_layers.batch_norm(name="output_bn", dtype=dtype)
                        if self.batch_norm else None)
    self.output_layer = keras.layers.Dense(
        self.output_dim, use_bias=True,
        kernel_initializer=initializer(), name="output", dtype=dtype)

  def build(self, input_shape):
    shape = tuple(input_shape)
    for index, layer in enumerate(self.hidden_layers):
      layer.build(shape)
      shape = shape[:-1] + (self.hidden_dim,)
      if self.hidden_norms:
        self.hidden_norms[index].build(shape)
    self.output_layer.build(shape)
    if self.output_norm is not None:
      self.output_norm.build(shape[:-1] + (self.output_dim,))

  def call(self, features, training=None):
    """Maps [B, D] features to [B, output_dim] float32 unit vectors."""
    x = features
    for index, layer in enumerate(self.hidden_layers):
      x = layer(x)
      if self.hidden_norms:
        x = keras.ops.relu(self.hidden_norms[index](x, training=training))
    x = self.output_layer(x)
    if self.output_norm is not None:
      x = self.output_norm(x, training=training)
    return l2_normalize(x)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape)[:-1] + (self.output_dim,)

  def compute_output_spec(self, features):
    return keras.KerasTensor(
        self.compute_output_shape(features.shape), dtype="float32")

  def get_config(self):
    config = super().get_config()
    config.update({
        "hidden_dim": self.hidden_dim,
        "output_dim": self.output_dim,
        "num_hidden_layers": self.num_hidden_layers,
        "batch_norm": self.batch_norm,
    })
    return config
