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
