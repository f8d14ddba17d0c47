"""Stopping a training session cleanly on Ctrl-C (SIGINT) or SIGTERM.

Python's default Ctrl-C raises `KeyboardInterrupt` wherever the program
happens to be, possibly between two callbacks of one step. Here the signal
only sets a flag; the session stops after the step it arrived in has been
logged (or, on an epoch's last step, after the epoch-end callbacks, so that
an objective's epoch state is complete), and `train` then writes a
checkpoint and its summary before it exits. A second signal is not caught:
it stops the process at once.
"""

import contextlib
import signal
import threading

import keras

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
  """Raised out of `fit` by `InterruptWatch` when a signal arrived."""

  def __init__(self, signal_number):
    super().__init__(f"signal {signal_number}")
    self.signal_number = signal_number


class InterruptWatch(keras.callbacks.Callback):
  """Turns SIGINT/SIGTERM into a `StopRequested` at the next safe point.

  Put it last among `fit`'s callbacks, so that every other callback has
  handled the step (logged it, checkpointed it) before it stops the session.
  Use `watching()` to install the signal handlers.

  Args:
    steps_per_epoch: optimizer steps per epoch: a signal during an epoch's
      last step stops the session after that epoch's end.
  """

  def __init__(self, steps_per_epoch):
    super().__init__()
    self._steps_per_epoch = steps_per_epoch
    self.signal_number = None

  def _handle(self, signal_number, frame):
    del frame
    self.signal_number = signal_number

  @contextlib.contextmanager
  def watching(self):
    """Catches SIGINT and SIGTERM during the block (main thread only).

    After the first signal the previous handlers are back, so a second one
    interrupts at once. Outside the main thread Python cannot install
    handlers, and the block runs unwatched.
    """
    if threading.current_thread() is not threading.main_thread():
      yield
      return
    previous = {number: signal.getsignal(number) for number in SIGNALS}

    def handle_once(signal_number, frame):
      for number, handler in previous.items():
        signal.signal(number, handler)
      self._handle(signal_number, frame)

    for number in SIGNALS:
      signal.signal(number, handle_once)
    try:
      yield
    finally:
      for number, handler in previous.items():
        signal.signal(number, handler)

  def _stop_if_asked(self):
    if self.signal_number is not None:
      raise StopRequested(self.signal_number)

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    if step % self._steps_per_epoch:
      self._stop_if_asked()

  def on_epoch_end(self, epoch, logs=None):
    self._stop_if_asked()

