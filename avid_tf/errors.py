"""The errors that report a user's mistake, not a bug.

Scripts print such an error as one line on stderr and exit non-zero
(avid_tf.cli); the traceback is kept behind --debug. Any other exception,
a plain ValueError included, is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A mistake the user can fix: a bad path, binding, checkpoint or input."""


class InvalidValueError(UserError, ValueError):
  """A flag, gin binding or input file holds a value the library rejects.

  Also a ValueError, so callers that catch ValueError keep working.
  """


class Interrupted(Exception):
  """A run stopped by a signal (Ctrl-C, SIGTERM) after saving its state.

  Not an error of the user's nor a bug: scripts print the message alone and
  exit with status 128 + the signal's number, as a shell reports a process
  a signal ended.

  Attributes:
    signal_number: the signal that stopped the run.
  """

  def __init__(self, message, signal_number):
    super().__init__(message)
    self.signal_number = signal_number
