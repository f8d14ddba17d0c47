"""A tiny AVModel and the checks every training-equivalence test makes.

The objective tests train the same tiny model twice (default strategy vs
MirroredStrategy on two logical CPUs, or graph vs XLA) and require the
same banks, objective state, weights and logs, and identical replica
copies.
"""

import keras
import numpy as np
import tensorflow as tf

from avid_tf.models.av_model import AVModel

BATCH = 8


def random_batches(num_data, seed=0, num_batches=3, batch_size=BATCH,
                   duplicates=((6, 1),)):
  """Random clips in the batch contract, with repeated memory rows.

  Args:
    num_data: memory rows to draw the indices from.
    seed: seed of everything.
    num_batches: batches of `batch_size`.
    batch_size: clips per batch.
    duplicates: (position, copied position) pairs: the first gets the
      second's index (position 6 copies 1: a duplicate split over the two
      replicas of a batch of 8).

  Returns:
    Dict of NumPy arrays video [n, 2, 6, 6, 3], audio [n, 10, 9, 1], index
    [n] and label [n], n = num_batches * batch_size.
  """
  rng = np.random.default_rng(seed)
  n = num_batches * batch_size
  indices = rng.permutation(num_data)[:n].astype(np.int32)
  for position, copied in duplicates:
    indices[position] = indices[copied]
  return {"video": rng.normal(size=(n, 2, 6, 6, 3)).astype(np.float32),
          "audio": rng.normal(size=(n, 10, 9, 1)).astype(np.float32),
          "index": indices,
          "label": np.zeros(n, np.int32)}


def first_batch(data, batch_size=BATCH):
  return {key: value[:batch_size] for key, value in data.items()}


def dataset(data, batch_size=BATCH, repeat=False):
  stream = tf.data.Dataset.from_tensor_slices(data).batch(
      batch_size, drop_remainder=True)
  return stream.repeat() if repeat else stream


def tiny_model(objective, num_data, dim=8, weight_decay=0.0, seed=0):
  """One-convolution encoders and linear heads around `objective`."""
  keras.utils.set_random_seed(seed)
  video_encoder = keras.Sequential(
      [keras.layers.Conv3D(4, 3, padding="same"),
       keras.layers.GlobalMaxPool3D()])
  audio_encoder = keras.Sequential(
      [keras.layers.Conv2D(4, 3, padding="same"),
       keras.layers.GlobalMaxPool2D()])
  return AVModel(video_encoder, audio_encoder, keras.layers.Dense(dim),
                 keras.layers.Dense(dim), num_data=num_data,
                 objective=objective, weight_decay=weight_decay,
                 embedding_dim=dim, seed=seed)


class StepLogs(keras.callbacks.Callback):
  """Keeps the logs of every training step."""

  def __init__(self):
    super().__init__()
    self.logs = []

  def on_train_batch_end(self, batch, logs=None):
    self.logs.append(dict(logs))


def fit(strategy, make_model, data, initial_weights, jit_compile=False,
        callbacks=lambda model: [], **fit_kwargs):
  """Builds a model under `strategy`, sets its weights and trains it.

  Args:
    strategy: the tf.distribute strategy.
    make_model: function returning an unbuilt model (called in the scope).
    data: the output of `random_batches`.
    initial_weights: `get_weights()` of a model of the same kind.
    jit_compile: compile the step with XLA.
    callbacks: function of the model returning extra callbacks (e.g. the
      objective's).
    **fit_kwargs: arguments of `fit` (epochs, steps_per_epoch); the data
      repeats when steps_per_epoch is given.

  Returns:
    (model, per-step logs).
  """
  with strategy.scope():
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  jit_compile=jit_compile)
    model(first_batch(data), training=False)
    model.set_weights(initial_weights)
  step_logs = StepLogs()
  model.fit(dataset(data, repeat="steps_per_epoch" in fit_kwargs),
            verbose=0, shuffle=False,
            callbacks=list(callbacks(model)) + [step_logs], **fit_kwargs)
  return model, step_logs.logs


def assert_same_training(model, logs, reference, reference_logs, num_steps,
                         log_atol=0.0):
  """Same banks, objective state, trainable weights and step logs."""
  for name in ("video_bank", "audio_bank"):
    np.testing.assert_allclose(getattr(model, name).bank.numpy(),
                               getattr(reference, name).bank.numpy(),
                               atol=1e-6)
  for name, variable in reference.objective.state.items():
    np.testing.assert_allclose(model.objective.state[name].numpy(),
                               variable.numpy(), rtol=1e-6, err_msg=name)
  for w, w_reference in zip(model.trainable_weights,
                            reference.trainable_weights):
    np.testing.assert_allclose(w.numpy(), w_reference.numpy(), atol=1e-5)
  assert len(logs) == len(reference_logs) == num_steps
  for step, reference_step in zip(logs, reference_logs):
    assert set(step) == set(reference_step)
    for key, value in reference_step.items():
      np.testing.assert_allclose(step[key], value, rtol=1e-5, atol=log_atol,
                                 err_msg=key)


def assert_replicas_identical(strategy, model):
  """Every replica holds the same banks and objective state."""
  variables = [model.video_bank.bank, model.audio_bank.bank]
  variables += list(model.objective.state.values())
  for variable in variables:
    copies = strategy.experimental_local_results(variable.value)
    assert len(copies) == strategy.num_replicas_in_sync
    for copy in copies[1:]:
      np.testing.assert_array_equal(copy.numpy(), copies[0].numpy())
