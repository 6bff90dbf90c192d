"""The ``search`` section of a goal (docs/candidates.md): what its values may be.

Pure checks, importing nothing of the loop or the candidates stage, so the goal reader
(:mod:`forgemind_core.brain.goals`) and the candidates stage (:mod:`forgemind_core.brain.candidates`)
both use them without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["TRAIN_KEY", "space_key_problem"]

#: A ``search.space`` key naming a trainer option: ``train.<option>``.
TRAIN_KEY = re.compile(r"^train\.[A-Za-z_][A-Za-z0-9_]*$")


def space_key_problem(key: str, values: Sequence[Any]) -> str:
    """What is wrong with one ``search.space`` entry (one sentence), or ``""``."""
    if not (TRAIN_KEY.match(key) or key in ("dataset_size", "strategy")):
        return "unknown search key; use train.<option> (e.g. train.learning_rate), dataset_size or strategy"
    if not values:
        return "expected a non-empty list of values to try"
    if key == "dataset_size" and not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        return "expected a list of positive integers (new examples per candidate)"
    if key == "strategy" and not all(isinstance(v, str) and v for v in values):
        return "expected a list of strategy names"
    return ""
