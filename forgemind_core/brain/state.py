"""A run's state (``state.json``) and the parent link of forks and candidates, as typed records.

:class:`RunState` names every key a writer puts in ``state.json``: the loop (``start``, each
stage boundary, the end of the run), the candidates stage (``candidates_ingested``,
``adopted``), the Warden's review (``status: paused``; ``approval`` and the promotion on
``forge approve``). :class:`ParentLink` is its ``parent``: what a fork (``forge fork``,
:mod:`.forks`) or a candidate branch (:mod:`.candidates`) was made from.

The JSON on disk is unchanged: :meth:`RunState.to_json` writes the keys the record has, and
only those (a key is absent until its writer sets it, as before: ``outcome`` only once the run
finished, ``approval`` only once approved); keys this version does not know are kept in
``extra`` and written back as they were. The loop keeps the state as a plain dict in memory
(``Loop.state``, which other rooms update through :class:`~forgemind_core.base.protocols.RunHandle`)
and goes through these records where it reads and writes the file.

Also here: :func:`new_run_id` (a new run's id) and :func:`resumed_goal` (the goal a resumed run
continues with: the recorded one, or its file's where only a redacted secret differs).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen
from forgemind_hookspecs import ForgeError, Goal, to_dict

from forgemind_core.base.protocols import KernelHandle

__all__ = ["ParentLink", "RunState", "new_run_id", "resumed_goal"]


def _present(data: Mapping[str, Any], keys: tuple[str, ...]) -> frozenset[str]:
    return frozenset(k for k in keys if k in data)


@frozen
class ParentLink:
    """``state.json``'s ``parent``: empty for a run of its own; for a fork or a candidate branch,
    the run and iteration it was made from, its branch and its parent's, what changed, the stage
    it reran from, and ``reused`` (iteration as a string -> the stage files copied from the parent;
    ``"0"`` for the base). ``candidate`` is set for a candidate branch only."""

    run_id: str | None = None
    iteration: int | None = None
    branch: str | None = None
    parent_branch: str | None = None
    changed: tuple[str, ...] = ()
    rerun_from: str | None = None
    reused: Mapping[str, tuple[str, ...]] = field(factory=dict)
    candidate: int | None = None
    extra: Mapping[str, Any] = field(factory=dict)
    present: frozenset[str] = frozenset()

    KEYS = ("run_id", "iteration", "branch", "parent_branch", "changed", "rerun_from", "reused", "candidate")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ParentLink:
        data = dict(data or {})
        reused = {str(k): tuple(v) for k, v in (data.get("reused") or {}).items()}
        return cls(run_id=data.get("run_id"), iteration=data.get("iteration"), branch=data.get("branch"),
                   parent_branch=data.get("parent_branch"), changed=tuple(data.get("changed") or ()),
                   rerun_from=data.get("rerun_from"), reused=reused, candidate=data.get("candidate"),
                   extra={k: v for k, v in data.items() if k not in cls.KEYS}, present=_present(data, cls.KEYS))

    def to_json(self) -> dict[str, Any]:
        values = {"run_id": self.run_id, "iteration": self.iteration, "branch": self.branch,
                  "parent_branch": self.parent_branch, "changed": list(self.changed), "rerun_from": self.rerun_from,
                  "reused": {k: list(v) for k, v in self.reused.items()}, "candidate": self.candidate}
        return {**{k: v for k, v in values.items() if k in self.present}, **self.extra}

    @property
    def is_candidate(self) -> bool:
        """A candidate branch of its parent's iteration (its parent run decides on it)."""
        return self.candidate is not None

    def reused_stages(self, iteration: int) -> tuple[str, ...]:
        """The stages of ``iteration`` copied from the parent."""
        return tuple(self.reused.get(str(iteration)) or ())


@frozen
class RunState:
    """``state.json``. Always there: ``run_id``, ``goal``, ``status`` (``running``, ``paused``,
    ``finished``), ``iteration`` and ``stage`` (the last finished), ``spent_usd``, ``elapsed_s``,
    ``started`` (epoch seconds), ``parent``. Once finished: ``outcome`` (``promoted``, ``met``,
    ``candidate``, ``stopped``), ``reasons``, ``stable_checkpoint`` (may be null), ``finished``;
    ``candidate_checkpoint`` while a promotion awaits approval and ``approval`` once given. The
    candidates stage adds ``candidates_ingested`` (candidate run -> its cost, counted once) and
    ``adopted`` (iteration -> the winning candidate's run)."""

    run_id: str
    goal: str
    status: str = "running"
    iteration: int = 0
    stage: str = ""
    spent_usd: float = 0.0
    elapsed_s: float = 0.0
    started: float = 0.0
    parent: ParentLink = field(factory=ParentLink)
    outcome: str | None = None
    reasons: tuple[str, ...] = ()
    stable_checkpoint: str | None = None
    finished: float | None = None
    candidate_checkpoint: str | None = None
    approval: Mapping[str, Any] | None = None
    candidates_ingested: Mapping[str, float] | None = None
    adopted: Mapping[str, str] | None = None
    extra: Mapping[str, Any] = field(factory=dict)
    present: frozenset[str] = frozenset()

    KEYS = ("run_id", "goal", "status", "iteration", "stage", "spent_usd", "elapsed_s", "started", "parent",
            "outcome", "reasons", "stable_checkpoint", "finished", "candidate_checkpoint", "approval",
            "candidates_ingested", "adopted")
    #: The keys every state has (written by ``Loop.start``).
    ALWAYS = KEYS[:9]

    @classmethod
    def new(cls, run_id: str, goal: str, *, started: float, parent: Mapping[str, Any] | None = None) -> RunState:
        """The state of a run just started."""
        return cls(run_id=run_id, goal=goal, started=started, parent=ParentLink.from_json(parent),
                   present=frozenset(cls.ALWAYS))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunState:
        data = dict(data)
        known = {k: data[k] for k in cls.KEYS if k in data and k not in ("parent", "reasons")}
        return cls(**known, parent=ParentLink.from_json(data.get("parent")),
                   reasons=tuple(data.get("reasons") or ()),
                   extra={k: v for k, v in data.items() if k not in cls.KEYS}, present=_present(data, cls.KEYS))

    def to_json(self) -> dict[str, Any]:
        values: dict[str, Any] = {k: getattr(self, k) for k in self.KEYS}
        values["parent"] = self.parent.to_json()
        values["reasons"] = list(self.reasons)
        return {**{k: v for k, v in values.items() if k in self.present}, **self.extra}


def resumed_goal(forge: KernelHandle, goal: Goal, recorded: Mapping[str, Any]) -> Goal:
    """The recorded goal of a resumed run, or, where the record had a secret redacted (a
    ``base_url``'s ``user:pass@``), the goal read again from its file if that file still says
    the same apart from the secret: the credential lives in the user's file, never in the run."""
    from forgemind_core.base.logs import REDACTED, redact

    if REDACTED not in json.dumps(recorded) or not goal.source or not Path(goal.source).is_file():
        return goal
    try:
        fresh = forge.load_goal(goal.source)
    except ForgeError:
        return goal
    same = json.loads(json.dumps(redact(to_dict(fresh)), default=str)) == dict(recorded)
    return fresh if same else goal


def new_run_id(name: str) -> str:
    """A new run's id: the goal's name as a slug, the time, and four random hex digits."""
    slug = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")[:32] or "run"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
