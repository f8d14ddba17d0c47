"""Checks of the values given to the entry points, as one-line user errors.

A gin binding or flag of the wrong type or out of range (`train.epochs =
-1`, `train.batch_size = 'x'`) fails at once with a message naming it,
rather than deep inside TensorFlow or, worse, not at all.
"""

import numbers

from avid_tf import errors


def integer(name, value, minimum=None, optional=False):
  """Returns `value` as an int.

  Args:
    name: the binding or flag, e.g. "train.batch_size".
    value: the value given.
    minimum: the smallest value allowed, if any.
    optional: also accept None (returned as is).

  Raises:
    errors.InvalidValueError: a non-integer (a bool, a float, a string) or a value
      below `minimum`.
  """
  if optional and value is None:
    return None
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or (minimum is not None and value < minimum)):
    bound = "" if minimum is None else f" >= {minimum}"
    raise errors.InvalidValueError(
        f"{name} must be an integer{bound}, got {value!r}")
  return int(value)


def number(name, value, low=None, high=None, low_open=False,
           high_open=False):
  """Returns `value` as a float, checked against a range.

  Args:
    name: the binding or flag.
    value: the value given.
    low: lower bound, if any.
    high: upper bound, if any.
    low_open: exclude `low` itself.
    high_open: exclude `high` itself.

  Raises:
    errors.InvalidValueError: a non-number or a value out of range.
  """
  ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  if not ok:
    bounds = []
    if low is not None:
      bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
      bounds.append(f"{'<' if high_open else '<='} {high:g}")
    where = " " + " and ".join(bounds) if bounds else ""
    raise errors.InvalidValueError(f"{name} must be a number{where}, got {value!r}")
  return float(value)


def choice(name, value, choices):
  """Returns `value` when it is one of `choices`.

  Raises:
    errors.InvalidValueError: any other value, listing the choices.
  """
  if value not in choices:
    raise errors.InvalidValueError(f"{name} must be one of {list(choices)}, got "
                           f"{value!r}")
  return value


def boolean(name, value):
  """Returns `value` when it is a bool.

  Raises:
    errors.InvalidValueError: any other value.
  """
  if not isinstance(value, bool):
    raise errors.InvalidValueError(f"{name} must be True or False, got {value!r}")
  return value


def numbers_pair(name, value, low=None):
  """Returns a (min, max) pair of numbers with min <= max, as floats.

  Raises:
    errors.InvalidValueError: anything else, or a bound below `low`.
  """
  if (not isinstance(value, (tuple, list)) or len(value) != 2
      or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                 for v in value)
      or value[0] > value[1] or (low is not None and value[0] < low)):
    bound = "" if low is None else f", both >= {low:g}"
    raise errors.InvalidValueError(
        f"{name} must be a pair (min, max) of numbers with min <= max"
        f"{bound}, got {value!r}")
  return (float(value[0]), float(value[1]))


def field(settings, builder, name, checker, **kwargs):
  """Checks one field of a frozen settings dataclass, in place.

  Args:
    settings: the dataclass instance (in its `__post_init__`).
    builder: the gin name that binds the field, e.g. "clip_augmentation".
    name: the field.
    checker: one of this module's checks.
    **kwargs: the checker's bounds or choices.

  Raises:
    errors.InvalidValueError: naming `<builder>.<name>`.
  """
  object.__setattr__(settings, name, checker(
      f"{builder}.{name}", getattr(settings, name), **kwargs))
