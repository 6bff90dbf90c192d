"""Structuring a backend's options (a plain dict from a goal file, a plan or a CLI) into its
attrs ``Options`` class, with the same rules as goal files (:func:`~forgemind_core.base.convert.goal_converter`):
unknown keys are errors, text must be text, integers integers, numbers may be numeric strings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from forgemind_core.base.convert import goal_converter

__all__ = ["BACKEND_NOUN", "structure_options", "unknown_backend_message"]

#: What one backend of each pillar is called in messages ("no trainer named 'x'").
BACKEND_NOUN: dict[str, str] = {
    "generators": "generator",
    "filters": "filter",
    "trainers": "trainer",
    "runners": "runner",
    "scorers": "scorer",
    "adversaries": "adversary",
    "reviewers": "reviewer",
    "planners": "planner",
    "executors": "executor",
    "exporters": "exporter",
    "servers": "server",
}

T = TypeVar("T")


def structure_options(cls: type[T], options: Mapping[str, Any]) -> T:
    """Build ``cls`` from ``options``; raises cattrs' validation errors on bad keys or types."""
    return goal_converter().structure(dict(options), cls)


def unknown_backend_message(pillar: str, name: str, installed: Mapping[str, Any]) -> str:
    """``no trainer named 'hff'; installed: hf`` — the one sentence for a backend nobody offers."""
    names = ", ".join(sorted(installed)) or "none"
    return f"no {BACKEND_NOUN.get(pillar, pillar)} named {name!r}; installed: {names}"
