"""The base class of errors that report a user's mistake, not a bug.

Scripts print such an error as one line on stderr and exit non-zero
(avid_tf.cli); the traceback is kept behind --debug.
"""


class UserError(Exception):
  """A mistake the user can fix: a bad path, binding, checkpoint or input."""
