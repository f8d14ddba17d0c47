"""Linear probe: softmax regression on frozen, clip-averaged features."""

import numpy as np
import tensorflow as tf


def linear_probe_accuracy(train_features, train_labels, test_features,
                          test_labels, l2=1e-3, steps=500,
                          learning_rate=0.01, seed=0):
  """Trains a multinomial logistic regression and returns test top-1.

  Features are standardised with the training mean and std; the classifier is
  trained full-batch with Adam and an L2 penalty on its weights.

  Args:
    train_features: float array [N, D].
    train_labels: int array [N] of class ids in [0, C).
    test_features: float array [M, D].
    test_labels: int array [M].
    l2: weight of the squared-norm penalty on the classifier weights.
    steps: number of full-batch optimisation steps.
    learning_rate: Adam learning rate.
    seed: seed of the weight initialisation.

  Returns:
    Top-1 accuracy in [0, 1] on the test set.

  Raises:
    ValueError: if a split is empty or labels are missing (negative).
  """
  train_labels = np.asarray(train_labels)
  test_labels = np.asarray(test_labels)
  if len(train_labels) == 0 or len(test_labels) == 0:
    raise ValueError("The linear probe needs non-empty train and test sets.")
  if train_labels.min() < 0 or test_labels.min() < 0:
    raise ValueError("The linear probe needs labelled data (labels >= 0).")
  mean = train_features.mean(axis=0)
  std = train_features.std(axis=0) + 1e-6
  x_train = tf.constant((train_features - mean) / std, tf.float32)
  x_test = tf.constant((test_features - mean) / std, tf.float32)
  y_train = tf.constant(train_labels, tf.int32)
  num_classes = int(max(train_labels.max(), test_labels.max())) + 1
  dim = x_train.shape[1]
  weights = tf.Variable(tf.random.stateless_normal(
      [dim, num_classes], seed=[seed, 0], stddev=0.01))
  bias = tf.Variable(tf.zeros([num_classes]))

  @tf.function
  def train():
    # Plain Adam written out so the probe holds no Keras optimizer state.
    m_w, m_b = tf.zeros_like(weights), tf.zeros_like(bias)
    v_w, v_b = tf.zeros_like(weights), tf.zeros_like(bias)
    loss = tf.constant(0.0)
    for step in tf.range(1, steps + 1):
      with tf.GradientTape() as tape:
        logits = x_train @ weights + bias
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(y_train, logits))
        loss += l2 * tf.reduce_sum(tf.square(weights))
      g_w, g_b = tape.gradient(loss, [weights, bias])
      t = tf.cast(step, tf.float32)
      m_w = 0.9 * m_w + 0.1 * g_w
      m_b = 0.9 * m_b + 0.1 * g_b
      v_w = 0.999 * v_w + 0.001 * tf.square(g_w)
      v_b = 0.999 * v_b + 0.001 * tf.square(g_b)
      scale = learning_rate * tf.sqrt(1 - 0.999**t) / (1 - 0.9**t)
      weights.assign_sub(scale * m_w / (tf.sqrt(v_w) + 1e-8))
      bias.assign_sub(scale * m_b / (tf.sqrt(v_b) + 1e-8))
    return loss

  train()
  predictions = tf.argmax(x_test @ weights + bias, axis=1).numpy()
  return float(np.mean(predictions == test_labels))
