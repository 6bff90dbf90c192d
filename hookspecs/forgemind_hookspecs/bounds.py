"""Allowed values of a record's or an ``Options`` class's fields, declared once on the field.

An attrs field says what it accepts with one of these validators; the same object checks a value
when the record is built (from a goal file, a plan or Python), writes the error a user sees and
writes the "allowed" column of the docs (:func:`describe`)::

    @frozen
    class Options:
        epochs: float = field(default=2.0, validator=above(0))
        batch_size: int = field(default=16, validator=at_least(1))
        warmup_ratio: float = field(default=0.05, validator=between(0, 1))
        strategy: str = field(default="basic", validator=one_of("basic", "varied"))
        strategies: tuple[str, ...] = field(default=("basic",), validator=each(one_of("basic", "varied")))

``None`` always passes (an optional field's "unlimited"); a float must be finite (NaN and
infinity are refused). A failing check raises :class:`FieldValueError`, a ``ValueError`` that
names the field, so a loader can point at the key's line (``train.epochs: expected a number
> 0, got -3``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from attrs import frozen

__all__ = ["FieldValueError", "above", "at_least", "between", "check", "describe", "each", "one_of"]


class FieldValueError(ValueError):
    """A field's value is outside what it allows; ``name`` is the attrs field's name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def _shown(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return repr(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


class _Check:
    """An attrs validator: ``problem(value)`` says what is wrong, ``__call__`` raises it."""

    def problem(self, value: Any) -> str | None:  # pragma: no cover - every check overrides it
        raise NotImplementedError

    def __call__(self, instance: Any, attribute: Any, value: Any) -> None:
        problem = self.problem(value)
        if problem:
            raise FieldValueError(attribute.name, problem)


@frozen
class Range(_Check):
    """A number in ``[low, high]`` (an end may be open or absent); always finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def text(self) -> str:
        """``> 0``, ``≥ 1``, ``0 to 1``, ``≥ 1 and ≤ 1000``."""
        low = None if self.low is None else ("> " if self.low_open else "≥ ") + _num(self.low)
        high = None if self.high is None else ("< " if self.high_open else "≤ ") + _num(self.high)
        if low and high and not self.low_open and not self.high_open:
            return f"{_num(self.low)} to {_num(self.high)}"  # type: ignore[arg-type]
        return " and ".join(p for p in (low, high) if p) or "any finite number"

    def problem(self, value: Any) -> str | None:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # the type is the converter's business
        kind = "an integer" if isinstance(value, int) else "a number"
        text = self.text()
        wanted = f"expected {kind} {'from ' if text[0].isdigit() or text[0] == '-' else ''}{text}, got {_shown(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return wanted
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return wanted
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return wanted
        return None


@frozen
class OneOf(_Check):
    """One of a fixed set of values (text choices such as strategies or tiers)."""

    choices: tuple[Any, ...]

    def text(self) -> str:
        return ", ".join(f"`{c}`" for c in self.choices)

    def problem(self, value: Any) -> str | None:
        if value is None or value in self.choices:
            return None
        return f"expected one of {', '.join(repr(c) for c in self.choices)}, got {_shown(value)}"


@frozen
class Each(_Check):
    """Every item of a list passes ``inner``; with ``non_empty`` the list has at least one."""

    inner: Range | OneOf
    non_empty: bool = True

    def text(self) -> str:
        return ("a non-empty list, each " if self.non_empty else "a list, each ") + self.inner.text()

    def problem(self, value: Any) -> str | None:
        if value is None or isinstance(value, str) or not isinstance(value, Sequence):
            return None
        if self.non_empty and not value:
            return "expected a non-empty list, got an empty one"
        for index, item in enumerate(value):
            problem = self.inner.problem(item)
            if problem:
                return f"{problem} at [{index}]"
        return None


def above(low: float, high: float | None = None) -> Range:
    """A finite number ``> low`` (and ``≤ high`` when given)."""
    return Range(low=low, high=high, low_open=True)


def at_least(low: float, high: float | None = None) -> Range:
    """A finite number ``≥ low`` (and ``≤ high`` when given)."""
    return Range(low=low, high=high)


def between(low: float, high: float) -> Range:
    """A finite number from ``low`` to ``high``, both included."""
    return Range(low=low, high=high)


def one_of(*choices: Any) -> OneOf:
    """One of ``choices``."""
    return OneOf(tuple(choices))


def each(inner: Range | OneOf, *, non_empty: bool = True) -> Each:
    """A list whose every item passes ``inner`` (and which has one item at least)."""
    return Each(inner, non_empty)


def _checks(validator: Any) -> list[Range | OneOf | Each]:
    if isinstance(validator, (Range, OneOf, Each)):
        return [validator]
    inner = getattr(validator, "_validators", None)  # attrs.validators.and_(...)
    if inner is None:
        inner = getattr(validator, "validators", None)
    out: list[Range | OneOf | Each] = []
    for v in inner or ():
        out.extend(_checks(v))
    return out


def describe(attribute: Any) -> str | None:
    """The allowed values of an attrs field in words (``> 0``, ```canary`, `full```), or ``None``
    when the field declares none of these checks. Docs tables are written from this."""
    texts = [c.text() for c in _checks(getattr(attribute, "validator", None))]
    return "; ".join(texts) or None


def check(attribute: Any, value: Any) -> str | None:
    """The problem of ``value`` for the field ``attribute`` (``None`` when it is allowed): the
    check without building the record, so a loader can report every bad field at once."""
    for c in _checks(getattr(attribute, "validator", None)):
        problem = c.problem(value)
        if problem:
            return problem
    return None
