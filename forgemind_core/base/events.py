"""One event-id scheme and one branch slug, for every room that records or names a run.

An event's id is a hash of where it happened and what it is — ``(run, iteration, stage, kind,
key)`` — never of when, so an event recorded again after a crash has the same id and is a no-op
for the recorders. Its ``seq`` orders a run's events: strictly increasing microseconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from forgemind_hookspecs import Event, content_hash

__all__ = ["branch_slug", "event_id", "make_event", "overrides_text"]

_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")


def event_id(run_id: str, iteration: int, stage: str, kind: str, key: str = "") -> str:
    """The deterministic id of an event: the same place, kind and key give the same id."""
    return content_hash([run_id, iteration, stage, kind, key])


def make_event(run_id: str, kind: str, *, iteration: int = 0, stage: str = "",
               payload: Mapping[str, Any] | None = None, key: str = "", seq: int | None = None) -> Event:
    """An :class:`Event` with the deterministic id; ``seq`` defaults to the time in microseconds."""
    return Event(run_id=run_id, kind=kind, iteration=iteration, stage=stage, payload=dict(payload or {}),
                 seq=time.time_ns() // 1000 if seq is None else seq,
                 id=event_id(run_id, iteration, stage, kind, key))


def overrides_text(changes: Mapping[str, Any]) -> str:
    """``key=value,...`` with each dotted key's last part: ``lora_r=8,lr=0.001``."""
    return ",".join(f"{key.split('.')[-1]}={value}" for key, value in changes.items())


def branch_slug(text: str, *, limit: int = 60) -> str:
    """A branch name safe in a path and a table cell: runs of other characters become ``-``."""
    return _SLUG_UNSAFE.sub("-", text)[:limit]
