"""A new method needs an objective, not a new train_step.

The objective below is defined here, not in the library: a within-batch
cosine loss with a step counter kept as objective state. It trains with
`fit` under the default strategy and MirroredStrategy on two logical CPUs;
its logs appear, the banks move, and every replica holds the same state.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.losses import base
from avid_tf.models.av_model import AVModel
from conftest import mirrored_strategy

NUM_DATA, DIM, BATCH = 16, 8, 8


class _CosineObjective(base.Objective):
  """Pulls v_i towards a_bar_i and pushes it from one random audio row."""

  def __init__(self, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.seed = seed
    self.calls = self.add_state("calls", (), dtype="int64")

  def call(self, embeddings, banks, indices, step, training=True):
    negatives = banks["audio"].sample_negatives(indices, 1, self.seed, step)
    positive = tf.reduce_sum(
        embeddings["video"] * banks["audio"].gather(indices), axis=1)
    negative = tf.reduce_sum(
        embeddings["video"] * banks["audio"].gather(negatives[:, 0]), axis=1)
    self.calls.assign_add(1)
    loss = tf.reduce_mean(negative - positive)
    return loss, {"cosine_gap": tf.reduce_mean(positive - negative),
                  "objective_calls": tf.cast(self.calls, tf.float32)}


def _data():
  rng = np.random.default_rng(0)
  n = 3 * BATCH
  return {"video": rng.normal(size=(n, 2, 6, 6, 3)).astype(np.float32),
          "audio": rng.normal(size=(n, 10, 9, 1)).astype(np.float32),
          "index": rng.permutation(NUM_DATA + 8)[:n].astype(np.int32)
                   % NUM_DATA,
          "label": np.zeros(n, np.int32)}


def _model():
  keras.utils.set_random_seed(0)
  video_encoder = keras.Sequential([keras.layers.Conv3D(4, 3, padding="same"),
                                    keras.layers.GlobalMaxPool3D()])
  audio_encoder = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same"),
                                    keras.layers.GlobalMaxPool2D()])
  return AVModel(video_encoder, audio_encoder, keras.layers.Dense(DIM),
                 keras.layers.Dense(DIM), num_data=NUM_DATA,
                 objective=_CosineObjective(), embedding_dim=DIM,
                 weight_decay=0.0)


class _Logs(keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.steps = []

  def on_train_batch_end(self, batch, logs=None):
    self.steps.append(dict(logs))


def _fit(strategy):
  data = _data()
  with strategy.scope():
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model({k: v[:1] for k, v in data.items()}, training=False)
  initial_bank = model.audio_bank.bank.numpy().copy()
  logs = _Logs()
  model.fit(tf.data.Dataset.from_tensor_slices(data).batch(BATCH), epochs=1,
            verbose=0, callbacks=[logs])
  return model, logs.steps, initial_bank, data


@pytest.mark.parametrize("distributed", [False, True])
def test_custom_objective_trains_without_a_train_step_change(distributed):
  strategy = (mirrored_strategy() if distributed
              else tf.distribute.get_strategy())
  model, steps, initial_bank, data = _fit(strategy)
  assert len(steps) == 3
  for number, logs in enumerate(steps, start=1):
    assert {"loss", "cosine_gap", "objective_calls", "positive_agreement",
            "embedding_similarity_video", "embedding_similarity_audio",
            "learning_rate"} <= set(logs)
    # One call per replica and step: the state is the per-replica count.
    assert logs["objective_calls"] == pytest.approx(number)
  assert model.objective.calls.numpy() == 3
  assert model.objective.state == {"calls": model.objective.calls}
  bank = model.audio_bank.bank.numpy()
  visited = np.unique(data["index"])
  assert not np.allclose(bank[visited], initial_bank[visited])
  np.testing.assert_allclose(np.linalg.norm(bank, axis=1), 1.0, atol=1e-6)
  if distributed:
    for variable in (model.video_bank.bank, model.audio_bank.bank,
                     model.objective.calls):
      copies = strategy.experimental_local_results(variable.value)
      assert len(copies) == 2
      np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())


def test_mirrored_custom_objective_matches_the_default_strategy():
  single, single_steps, _, _ = _fit(tf.distribute.get_strategy())
  mirrored, mirrored_steps, _, _ = _fit(mirrored_strategy())
  for name in ("video_bank", "audio_bank"):
    np.testing.assert_allclose(getattr(mirrored, name).bank.numpy(),
                               getattr(single, name).bank.numpy(), atol=1e-6)
  for a, b in zip(mirrored_steps, single_steps):
    np.testing.assert_allclose(a["cosine_gap"], b["cosine_gap"], rtol=1e-5,
                               atol=1e-6)


def test_state_is_tracked_checkpointed_and_named_by_the_objective():
  model = _model()
  model({k: v[:1] for k, v in _data().items()}, training=False)
  paths = {v.path for v in model.variables}
  assert "objective/calls" in paths
  assert not model.objective.trainable_weights
  with pytest.raises(ValueError, match="already has a state variable"):
    model.objective.add_state("calls", ())


def test_state_is_float32_under_a_mixed_policy():
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("mixed_float16")
  try:
    objective = _CosineObjective()
    value = objective.add_state("moments", (2,))
  finally:
    keras.config.set_dtype_policy(previous)
  assert value.dtype == "float32"
  assert objective.compute_dtype == "float32"

