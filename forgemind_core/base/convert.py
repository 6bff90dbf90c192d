"""The strict converter user files are structured with: goal files, policy files, backend options.

A copy of the shared :data:`forgemind_hookspecs.converter` with unknown keys forbidden and strict
scalar hooks, so a mistake in a file becomes one sentence (``expected a number, got 'fast'``)
instead of a silent coercion: text must be text, integers integers, ``true``/``false`` booleans,
lists lists; a number field takes ints, floats and numeric strings (``"1e-3"``).

Also here: how values and types are quoted back in those sentences (:func:`describe`,
:func:`expected`), shared by every reader of user files.
"""

from __future__ import annotations

import collections.abc
import types
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

import attrs
from cattrs import Converter
from forgemind_hookspecs import converter as base_converter

__all__ = ["Mismatch", "describe", "expected", "goal_converter", "is_plain_sequence"]


class Mismatch(TypeError):
    """Raised by the strict structure hooks; its text is already the user-facing sentence."""


# ------------------------------------------------------------------------------------------
# Describing values and types in messages.
# ------------------------------------------------------------------------------------------


def describe(value: Any) -> str:
    """How a value a user wrote is quoted back in a message (``'fast'``, ``12``, ``a list``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def expected(tp: Any) -> str:
    """Describe what a field of type ``tp`` accepts, in the words of the messages."""
    if isinstance(tp, str):
        return tp
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is str:
        return "text"
    if tp is bool:
        return "true or false"
    if tp is Any:
        return "any value"
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        parts = [expected(a) for a in get_args(tp) if a is not type(None)]
        nullable = type(None) in get_args(tp)
        return " or ".join(parts + (["null"] if nullable else []))
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence) or tp in (
        list,
        tuple,
    ):
        return "a list"
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return "a mapping"
    if isinstance(tp, type) and (attrs.has(tp) or issubclass(tp, Mapping)):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


# ------------------------------------------------------------------------------------------
# The structure hooks.
# ------------------------------------------------------------------------------------------


def _to_float(value: Any, _: Any) -> float:
    # ints are numbers too; numeric strings are accepted because '1e-3' is text in some YAML
    # readers and users write it often.
    if isinstance(value, bool):
        raise Mismatch(f"expected a number, got {describe(value)}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise Mismatch(f"expected a number, got {describe(value)}")


def _to_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise Mismatch(f"expected an integer, got {describe(value)}")


def _to_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Mismatch(f"expected true or false, got {describe(value)}")


def _to_str(value: Any, _: Any) -> str:
    # Silently turning 12 or [a, b] into text hides mistakes; quoting in YAML is explicit.
    if isinstance(value, str):
        return value
    raise Mismatch(f"expected text, got {describe(value)}")


def _is_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal


def _literal_factory(tp: Any, _: Converter) -> Callable[[Any, Any], Any]:
    allowed = get_args(tp)

    def structure(value: Any, _t: Any) -> Any:
        for choice in allowed:
            if value == choice and type(value) is type(choice):
                return choice
        raise Mismatch(f"expected {expected(tp)}, got {describe(value)}")

    return structure


def is_plain_sequence(tp: Any) -> bool:
    """Whether ``tp`` is a list-like type (``list[X]``, ``Sequence[X]``, ``tuple[X, ...]``)."""
    origin = get_origin(tp)
    if origin is tuple:
        args = get_args(tp)
        return len(args) == 2 and args[1] is Ellipsis
    return origin in (list, collections.abc.Sequence, collections.abc.MutableSequence)


def _sequence_factory(tp: Any, conv: Converter) -> Callable[[Any, Any], Any]:
    # cattrs would happily iterate a string into characters; a list field must get a list.
    from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory

    if get_origin(tp) is tuple:
        inner = homogenous_tuple_structure_factory(tp, conv)
    else:
        inner = list_structure_factory(tp, conv)

    def structure(value: Any, t: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise Mismatch(f"expected a list, got {describe(value)}")
        return inner(value, t)

    return structure


def _is_mapping_type(tp: Any) -> bool:
    origin = get_origin(tp)
    return origin is not None and isinstance(origin, type) and issubclass(origin, Mapping)


def _mapping_factory(tp: Any, conv: Converter) -> Callable[[Any, Any], Any]:
    from cattrs.cols import mapping_structure_factory

    inner = mapping_structure_factory(tp, conv)

    def structure(value: Any, t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise Mismatch(f"expected a mapping, got {describe(value)}")
        return inner(value, t)

    return structure


@cache
def goal_converter() -> Converter:
    """The converter goal files (and backend options and policy files) are structured with.

    A copy of the shared :data:`forgemind_hookspecs.converter` with unknown keys forbidden and
    strict hooks: text must be text, integers integers, ``true``/``false`` booleans, lists
    lists; a number field takes ints, floats and numeric strings. Built on first use, so that
    hooks the kernel registers on the shared converter at start-up are inherited.
    """
    conv = base_converter.copy(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(float, _to_float)
    conv.register_structure_hook(int, _to_int)
    conv.register_structure_hook(bool, _to_bool)
    conv.register_structure_hook(str, _to_str)
    conv.register_structure_hook_factory(_is_literal, _literal_factory)
    conv.register_structure_hook_factory(is_plain_sequence, _sequence_factory)
    conv.register_structure_hook_factory(_is_mapping_type, _mapping_factory)
    return conv
