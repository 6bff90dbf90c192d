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

import attrs
from forgemind_hookspecs import (
    Budget,
    Checkpoint,
    DatasetRef,
    Event,
    Example,
    Goal,
    IterationSummary,
    StageContext,
    TaskPack,
)
from forgemind_hookspecs.policy import Policy

__all__ = ["KernelHandle", "ModelResolver", "NullReporter", "Record", "Reporter", "RunHandle", "ServedModel"]


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


@attrs.frozen
class ServedModel:
    """What the model a goal names beside ``server:`` resolved to (docs/servers.md, "Model
    references"): the file the server is started on and, for a recorded model, where it came from.

    :ivar ref: what the goal wrote (``stable:tickets``, a checkpoint id, ...).
    :ivar model: what the server backend is handed: a GGUF file once :meth:`ModelResolver.prepare`
        has run, the checkpoint's folder before.
    :ivar kind: the checkpoint's kind (``full``, ``lora``, ...) or ``gguf``.
    :ivar checkpoint_id: the checkpoint served, ``None`` for a GGUF file of unknown origin.
    :ivar run_id: the run that recorded (and promoted) the checkpoint.
    :ivar goal: that run's goal.
    :ivar version: its version on the channel (``stable:GOAL@VERSION``).
    :ivar checkpoint: the checkpoint record (what an exporter takes), ``None`` for a GGUF file.
    """

    ref: str
    model: str
    kind: str = "gguf"
    checkpoint_id: str | None = None
    run_id: str | None = None
    goal: str | None = None
    version: int | None = None
    checkpoint: Checkpoint | None = None


class ModelResolver(Protocol):
    """Resolves the model references of ``server:`` entries for a :class:`ServerPool
    <forgemind_core.base.servers.ServerPool>` (the base layer cannot read the registry itself:
    the Loop and the API inject the Lorekeeper's, ``forgemind_core.lorekeeper.served``)."""

    def resolve(self, model: str, *, base_dir: Path | None = None) -> ServedModel | None:
        """What ``model`` names in the registry, or ``None`` when it is not a reference (a
        catalogue name or a ``.gguf`` path, which the server backend takes as written).
        Cheap: no export. Raises a one-sentence ``UserError`` for an unknown reference."""
        ...

    def prepare(self, served: ServedModel, ctx: StageContext) -> ServedModel:
        """``served`` with :attr:`ServedModel.model` a GGUF file a server can load (exported on
        demand and cached under the home)."""
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
