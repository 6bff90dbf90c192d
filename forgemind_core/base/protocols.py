"""What the rooms need from each other, as typed protocols (no private attributes cross rooms).

The Brain's ``Loop`` satisfies :class:`RunHandle`; the Warden's review and the candidates
executor are written against it, not against ``Loop``. :class:`KernelHandle` is the part of the
``Forge`` kernel that a room below the API uses (plugin backends, the home, recording).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from forgemind_hookspecs import Budget, DatasetRef, Event, Example, Goal, IterationSummary, TaskPack
from forgemind_hookspecs.policy import Policy

__all__ = ["KernelHandle", "NullReporter", "Record", "Reporter", "RunHandle"]


class KernelHandle(Protocol):
    """The ``Forge`` kernel as the rooms see it."""

    @property
    def home(self) -> Path:
        """The home folder (absolute)."""
        ...

    @property
    def plugin_args(self) -> Mapping[str, Any]:
        """What the kernel was built with (``plugins``, ``entry_points``, ``builtins``,
        ``blocked``): a worker process builds the same kernel from it."""
        ...

    def record(self, events: Sequence[Event]) -> None:
        """Hand events to every recorder."""
        ...

    def registry(self) -> Any:
        """The registry (``forgemind_registry``'s answer)."""
        ...

    def load_goal(self, path: str | os.PathLike[str]) -> Goal:
        """Read and validate a goal file against this kernel's backends."""
        ...

    def load_pack(self, goal: Goal) -> TaskPack | None:
        """The goal's task pack, if it names one."""
        ...

    def backend(self, pillar: str, name: str, options: Mapping[str, Any] | None = None, *,
                field: str | None = None) -> Any:
        """The backend ``name`` of ``pillar`` (``"reviewers"``, ``"executors"``, ...), built with ``options``."""
        ...


class Record(Protocol):
    """``record(kind, iteration=, stage=, payload=, key=)``: records one event of the run (the
    loop's :meth:`RunHandle.record`), as the rooms' stages get it."""

    def __call__(self, kind: str, *, iteration: int = 0, stage: str = "",
                 payload: Mapping[str, Any] | None = None, key: str = "") -> None: ...


class Reporter(Protocol):
    """Where a run's progress goes (the CLI's rich reporter, or a silent one)."""

    def line(self, text: str) -> None: ...

    def progress(self, description: str, total: float | None = None) -> Any: ...

    def event(self, event: Event) -> None: ...


class RunHandle(Protocol):
    """A running loop, as the Warden's review and the candidates executor use it."""

    goal: Goal
    run_id: str
    state: dict[str, Any]
    budget: Budget
    reporter: Reporter

    @property
    def forge(self) -> KernelHandle:
        """The kernel the run belongs to."""
        ...

    @property
    def dir(self) -> Path:
        """The run's folder."""
        ...

    @property
    def policy(self) -> Policy | None:
        """The goal's safety policy (``review.policy``), or ``None``."""
        ...

    @property
    def log(self) -> Any:
        """The run's structlog logger (``log.jsonl`` in the run folder)."""
        ...

    def iter_dir(self, iteration: int) -> Path:
        """The folder of one iteration."""
        ...

    def record(self, kind: str, *, iteration: int = 0, stage: str = "",
               payload: Mapping[str, Any] | None = None, key: str = "") -> None:
        """Record one event of this run (its id is deterministic in run, iteration, stage, kind, key)."""
        ...

    def save_state(self) -> None:
        """Write ``state`` (with the budget spent so far) to the run folder."""
        ...

    def examples(self, iteration: int) -> list[Example]:
        """The examples the generate stage of ``iteration`` wrote."""
        ...

    def history(self, *, upto: int | None = None) -> list[IterationSummary]:
        """The summaries of the finished iterations."""
        ...

    def latest_dataset(self, *, before: int) -> DatasetRef | None:
        """The dataset of the latest iteration before ``before`` that built one."""
        ...


class NullReporter:
    """A :class:`Reporter` that shows nothing (the API's default)."""

    def line(self, text: str) -> None:
        return None

    def progress(self, description: str, total: float | None = None) -> Any:
        return _NullTask()

    def event(self, event: Event) -> None:
        return None


class _NullTask:
    def advance(self, n: float = 1, **fields: Any) -> None:
        return None

    def close(self) -> None:
        return None
