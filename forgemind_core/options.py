"""Structuring a backend's options (a plain dict from a goal file, a plan or a CLI) into its
attrs ``Options`` class, with the same rules as goal files (:func:`~forgemind_core.goals.goal_converter`):
unknown keys are errors, text must be text, integers integers, numbers may be numeric strings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["structure_options"]

T = TypeVar("T")


def structure_options(cls: type[T], options: Mapping[str, Any]) -> T:
    """Build ``cls`` from ``options``; raises cattrs' validation errors on bad keys or types."""
    from .goals import goal_converter

    return goal_converter().structure(dict(options), cls)
