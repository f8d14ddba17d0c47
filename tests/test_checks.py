"""Tests of avid_tf.utils.checks: one-line errors naming the binding."""

import pytest

from avid_tf import errors
from avid_tf.utils import checks


def test_integers():
  assert checks.integer("a.b", 3, minimum=1) == 3
  assert checks.integer("a.b", None, optional=True) is None
  for value in (0, -1, "x", 2.0, True, None):
    with pytest.raises(errors.UserError,
                       match=r"^a\.b must be an integer >= 1, got "):
      checks.integer("a.b", value, minimum=1)


def test_numbers_and_ranges():
  assert checks.number("a.rate", 1, low=0, high=1) == 1.0
  with pytest.raises(errors.InvalidValueError,
                     match=r"a\.rate must be a number >= 0 and < 1, got 1"):
    checks.number("a.rate", 1, low=0, high=1, high_open=True)
  with pytest.raises(ValueError, match=r"a\.lr must be a number > 0, got 0"):
    checks.number("a.lr", 0, low=0, low_open=True)
  with pytest.raises(errors.UserError, match="got 'x'"):
    checks.number("a.lr", "x")


def test_choices_booleans_and_pairs():
  assert checks.choice("a.s", "b", ("a", "b")) == "b"
  with pytest.raises(errors.UserError, match=r"one of \['a', 'b'\], got 'c'"):
    checks.choice("a.s", "c", ("a", "b"))
  with pytest.raises(errors.UserError, match="True or False, got 1"):
    checks.boolean("a.f", 1)
  assert checks.numbers_pair("a.p", [0.5, 1]) == (0.5, 1.0)
  for value in ((1.0, 0.5), (0.5,), "ab", (-1.0, 1.0)):
    with pytest.raises(errors.UserError, match=r"a\.p must be a pair"):
      checks.numbers_pair("a.p", value, low=0)
