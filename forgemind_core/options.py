"""Structuring a backend's options (a plain dict from a goal file or a CLI) into its attrs class."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

from cattrs import Converter
from forgemind_hookspecs import converter as base_converter

__all__ = ["options_converter", "structure_options"]

T = TypeVar("T")


@cache
def options_converter() -> Converter:
    """The shared converter with unknown keys forbidden and ints accepted for floats."""
    conv = base_converter.copy(forbid_extra_keys=True)

    def to_float(value: Any, _: Any) -> float:
        if isinstance(value, bool):
            raise TypeError(f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise TypeError(f"expected a number, got {value!r}")

    def to_int(value: Any, _: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError(f"expected an integer, got {value!r}")
        return value

    def to_bool(value: Any, _: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"expected true or false, got {value!r}")

    def to_str(value: Any, _: Any) -> str:
        if isinstance(value, str):
            return value
        raise TypeError(f"expected text, got {value!r}")

    conv.register_structure_hook(float, to_float)
    conv.register_structure_hook(int, to_int)
    conv.register_structure_hook(bool, to_bool)
    conv.register_structure_hook(str, to_str)
    return conv


def structure_options(cls: type[T], options: Mapping[str, Any]) -> T:
    """Build ``cls`` from ``options``; raises cattrs' validation errors on bad keys or types."""
    return options_converter().structure(dict(options), cls)
