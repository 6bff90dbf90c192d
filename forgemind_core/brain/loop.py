"""The Brain's engine: one goal, many iterations, every stage boundary recorded and resumable.

One iteration is ``plan -> generate -> filter -> dataset -> estimate -> train -> evaluate ->
decide`` (DESIGN.md §4). :class:`Loop` only sequences the stages; each stage's body lives in its
pillar's room and gets what it needs passed in:

=========================  ==================================================
plan, decide               :mod:`forgemind_core.brain.decide`
generate, filter, dataset  :mod:`forgemind_core.foundry.stages`
review (with a policy)     :mod:`forgemind_core.warden.review`
base, estimate, train      :mod:`forgemind_core.forge.stages`
adversarial cases, eval    :mod:`forgemind_core.trials.stage`
candidates (search)        :mod:`forgemind_core.brain.candidates`
=========================  ==================================================

Each stage writes its output into the run folder atomically
(``<home>/runs/<run>/iter-<n>/<stage>.json``, :class:`~forgemind_core.base.runfolder.RunFolder`)
and records ``stage.finished`` before the next stage starts. A run killed at any point resumes
from its last finished stage (``forge resume RUN``): finished stages are read back, not redone;
generation skips examples it already has (and LLM backends answer repeated requests from their
cache); training resumes from its last checkpoint in the stage's own folder. Event ids are
deterministic (:func:`forgemind_core.base.events.event_id`), so what is recorded again after a
crash is a no-op for the recorders.

The run folder, not the registry, is what resume reads: it is a plain set of JSON files that any
process can read while the run writes (``forge status``, :mod:`forgemind_core.brain.summary`).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import evolve
from forgemind_hookspecs import (
    Budget,
    Checkpoint,
    DatasetRef,
    Decision,
    Estimate,
    EvalCase,
    Event,
    Example,
    ForgeError,
    Goal,
    IterationSummary,
    Plan,
    StageContext,
    SuccessCriterion,
    TaskPack,
    Trainer,
    UserError,
    from_dict,
    to_dict,
)
from forgemind_hookspecs.policy import Policy

from forgemind_core.base import VERSION as __version__
from forgemind_core.base.events import make_event
from forgemind_core.base.fsio import read_json, write_json
from forgemind_core.base.protocols import KernelHandle, NullReporter, Reporter, RunHandle
from forgemind_core.base.runfolder import RECORDED_STAGES, STAGES, RunFolder, run_dir
from forgemind_core.base.servers import ServerPool
from forgemind_core.brain import decide
from forgemind_core.brain.decide import best_try
from forgemind_core.brain.goalshape import served_models
from forgemind_core.brain.state import ParentLink, RunState, new_run_id, resumed_goal
from forgemind_core.brain.summary import (
    RunHistory,
    read_status,
    run_summary,
    stage_line,
)
from forgemind_core.brain.summary import history as folder_history
from forgemind_core.forge import stages as forge_stages
from forgemind_core.foundry import stages as foundry
from forgemind_core.lorekeeper.served import RegistryModels
from forgemind_core.trials import stage as trials

__all__ = ["RECORDED_STAGES", "STAGES", "Loop", "NullReporter", "read_status", "run_dir"]


class _Stop(Exception):
    """Ends the run early with a reason (a limit was reached)."""


class Loop:
    """Drives one run. Build it with :meth:`start` or :meth:`resume`, then call :meth:`run`."""

    def __init__(self, forge: KernelHandle, goal: Goal, run_id: str, reporter: Reporter | None,
                 on_event: Callable[[Event], None] | None) -> None:
        self.forge = forge
        self.goal = goal
        self.run_id = run_id
        self.folder = RunFolder(Path(forge.home), run_id)
        self.dir = self.folder.path
        self.reporter: Reporter = reporter or NullReporter()
        self.on_event = on_event
        self.state: dict[str, Any] = read_json(self.folder.state_file) or {}
        self._seq = 0
        self._lock_fd: int | None = None
        self._pack: TaskPack | None = None
        self._suites: dict[str, list[EvalCase]] | None = None
        self._log: Any = None
        self._started_clock = time.monotonic()
        self.budget = Budget(
            limit_usd=goal.limits.budget_usd,
            spent_usd=float(self.state.get("spent_usd", 0.0)),
            on_change=self._on_budget,
        )
        # Model servers the goal's `server:` keys ask for, stopped when run() ends (servers.py).
        self.servers = ServerPool(forge, context=lambda: self.context(0, "servers"), record=self.record,
                                  resolver=RegistryModels(forge),  # stable:GOAL, checkpoint ids
                                  base_dir=Path(goal.source).parent if goal.source else None)

    @classmethod
    def start(cls, forge: KernelHandle, goal: Goal, *, run_id: str | None = None, reporter: Reporter | None = None,
              on_event: Callable[[Event], None] | None = None, parent: Mapping[str, Any] | None = None) -> Loop:
        run_id = run_id or new_run_id(goal.name)
        folder = RunFolder(Path(forge.home), run_id)
        if folder.goal_file.exists():
            raise ForgeError(f"run {run_id!r} already exists; use `forge resume {run_id}`")
        folder.path.mkdir(parents=True, exist_ok=True)
        write_json(folder.goal_file, to_dict(goal))
        loop = cls(forge, goal, run_id, reporter, on_event)
        loop.state = RunState.new(run_id, goal.name, started=time.time(), parent=parent).to_json()
        loop.save_state()
        link = ParentLink.from_json(parent)
        loop.record(
            "run.started",
            payload={
                "goal": to_dict(goal),
                "goal_file": goal.source,
                "parent_run": link.run_id,
                "parent_iteration": link.iteration,
                "branch": (parent or {}).get("branch", "main"),
                "forgemind_version": __version__,
            },
        )
        return loop

    @classmethod
    def resume(cls, forge: KernelHandle, run_id: str, *, reporter: Reporter | None = None,
               on_event: Callable[[Event], None] | None = None) -> Loop:
        data = read_json(RunFolder(Path(forge.home), run_id).goal_file)
        if data is None:
            raise UserError(f"no run {run_id!r} in {forge.home}")
        loop = cls(forge, resumed_goal(forge, from_dict(Goal, data), data), run_id, reporter, on_event)
        state = RunState.from_json(loop.state) if loop.state else None
        if state is not None and state.status == "finished":  # nothing to resume; run() returns the summary
            # The same run.finished again (same id, so recorders that have it ignore it), in case
            # the process died between state.json and the event: the registry then agrees.
            loop.record("run.finished", payload={k: loop.state.get(k) for k in ("outcome", "reasons", "stable_checkpoint")})
            return loop
        loop.record(
            "run.resumed",
            key=str(time.time_ns()),
            payload={"from_iteration": state.iteration if state else 0, "from_stage": state.stage if state else ""},
        )
        return loop

    def save_state(self) -> None:
        """Write ``state`` (with the budget spent so far) to ``state.json``, atomically."""
        self.state["spent_usd"] = self.budget.spent_usd
        write_json(self.folder.state_file, RunState.from_json(self.state).to_json())

    def _on_budget(self, budget: Budget) -> None:
        self.state["spent_usd"] = budget.spent_usd
        self.save_state()

    def _elapsed(self) -> float:
        return float(self.state.get("elapsed_s", 0.0)) + (time.monotonic() - self._started_clock)

    def _next_seq(self) -> int:
        # Strictly increasing within the run, across resumes: microseconds, bumped on ties.
        now = time.time_ns() // 1000
        self._seq = max(self._seq + 1, now)
        return self._seq

    def record(self, kind: str, *, iteration: int = 0, stage: str = "", payload: Mapping[str, Any] | None = None,
               key: str = "") -> None:
        """Record one event of this run (its id is deterministic in run, iteration, stage, kind, key)."""
        from forgemind_core.base.logs import redact

        event = make_event(self.run_id, kind, iteration=iteration, stage=stage, payload=payload, key=key,
                           seq=self._next_seq())
        event = evolve(event, payload=redact(dict(event.payload)))
        self.forge.record([event])
        self.reporter.event(event)
        if self.on_event is not None:
            self.on_event(event)

    @property
    def log(self) -> Any:
        """The run's structlog logger (``log.jsonl`` in the run folder)."""
        if self._log is None:
            from forgemind_core.base.logs import make_logger

            self._log = make_logger(console=False, json_path=self.dir / "log.jsonl", run_id=self.run_id)
        return self._log

    def _lock(self) -> None:
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise ForgeError(f"run {self.run_id!r} is being driven by another process right now") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def pack(self) -> TaskPack | None:
        if self._pack is None and self.goal.pack is not None:
            self._pack = self.forge.load_pack(self.goal)
        return self._pack

    @property
    def policy(self) -> Policy | None:
        """The goal's safety policy (``review.policy``, see docs/warden.md), or ``None``."""
        if self.goal.review.policy is None:
            return None
        from forgemind_core.warden.policy import load_policy

        return load_policy(self.goal.review.policy)

    def suites(self) -> dict[str, list[EvalCase]]:
        """The pack's evaluation suites per tier (empty dict when the pack has none)."""
        if self._suites is None:
            from forgemind_core.foundry.packs import load_suites

            pack = self.pack
            self._suites = {t: list(c) for t, c in load_suites(pack).items()} if pack is not None else {}
        return self._suites

    def iter_dir(self, iteration: int) -> Path:
        """The folder of one iteration."""
        return self.folder.iter_dir(iteration)

    def latest_dataset(self, *, before: int) -> DatasetRef | None:
        """The dataset of the latest iteration before ``before`` that built one."""
        return foundry.latest_dataset(self.folder, before=before)

    def examples(self, n: int) -> list[Example]:
        """The examples the generate stage of iteration ``n`` wrote (a torn last line cut off)."""
        return foundry.read_examples(self.folder.examples_file(n))

    def history(self, *, upto: int | None = None) -> list[IterationSummary]:
        """What the planner sees: one summary per iteration that got as far as a plan."""
        return folder_history(self.folder, upto=upto)

    def summary(self) -> dict[str, Any]:
        """The run's summary: what ``forge run --json`` prints."""
        return run_summary(self.folder, self.goal, self.state, spent_usd=self.budget.spent_usd)

    def trainer(self) -> Trainer:
        """The goal's trainer backend."""
        return forge_stages.trainer(self.forge, self.goal)

    def context(self, iteration: int, stage: str) -> StageContext:
        """The :class:`StageContext` of ``stage`` (iteration 0: the run's own stages, e.g. base)."""
        work = self.iter_dir(iteration) / stage if iteration else self.dir / stage
        work.mkdir(parents=True, exist_ok=True)
        counter = {"n": 0}

        def emit(kind: str, payload: Mapping[str, Any]) -> None:
            counter["n"] += 1
            key = f"{payload.get('name', '')}:{payload.get('step', counter['n'])}" if kind == "metric" else str(counter["n"])
            self.record(kind, iteration=iteration, stage=stage, payload=payload, key=key)

        return StageContext(
            run_id=self.run_id,
            iteration=iteration,
            stage=stage,
            home=Path(self.forge.home),
            work_dir=work,
            cache_dir=Path(self.forge.home) / "cache",
            seed=self.goal.seed * 1000 + iteration,
            goal=self.goal,
            pack=self.pack,
            log=self.log.bind(iteration=iteration, stage=stage),
            emit=emit,
            progress=self.reporter.progress,
            budget=self.budget,
            history=RunHistory(self.folder, iteration, self.suites),
            policy=self.policy,
        )

    # --- stage boundaries ---------------------------------------------------------------------

    def _stage(self, iteration: int, stage: str, produce: Callable[[StageContext], dict[str, Any]],
               summary: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Run a stage unless its output file exists; record its boundaries either way."""
        path = self.folder.stage_file(iteration, stage) if iteration else self.dir / f"{stage}.json"
        data = read_json(path)
        if data is None:
            self._check_wall_clock(stage)
            self.record("stage.started", iteration=iteration, stage=stage)
            started = time.monotonic()
            data = produce(self.context(iteration, stage))
            data["seconds"] = round(time.monotonic() - started, 3)
            write_json(path, data)
        # Recorded after the output is safe on disk and before the next stage starts; a repeat
        # after a crash carries the same id, so recorders ignore it.
        self.record("stage.finished", iteration=iteration, stage=stage,
                    payload=dict(summary(data) if summary else {}))
        self.state.update(iteration=iteration, stage=stage, elapsed_s=self._elapsed())
        self._started_clock = time.monotonic()
        self.save_state()
        return dict(data)

    def _reused(self, iteration: int, stage: str) -> dict[str, Any]:
        """``{"inherited_from": parent run}`` for a stage a fork copied from its parent
        (forgemind_core/brain/forks.py), so recorders link it as reused rather than produced here."""
        adopted = (self.state.get("adopted") or {}).get(str(iteration))
        if adopted and stage != "plan":  # the winning candidate's work (forgemind_core/brain/candidates.py)
            return {"inherited_from": adopted}
        parent = self._parent()
        return {"inherited_from": parent.run_id} if stage in parent.reused_stages(iteration) and parent.run_id else {}

    def _parent(self) -> ParentLink:
        return ParentLink.from_json(self.state.get("parent"))

    def _check_wall_clock(self, stage: str) -> None:
        limit = self.goal.limits.wall_clock_s
        if limit is not None and self._elapsed() > limit:
            raise _Stop(f"wall-clock limit of {limit:.0f} s reached before {stage}")

    def _is_candidate(self) -> bool:
        return self._parent().is_candidate

    def _needs_approval(self) -> bool:
        policy = self.policy
        return bool(policy is not None and policy.approval_required)

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self._lock()
        try:
            if self.state.get("status") == "finished":
                return self.summary()
            outcome, reasons, stable = "stopped", [], None
            self.servers.check(served_models(self.goal))  # an unknown stable:GOAL stops the run now
            try:
                base = self._base()
                iteration = max(1, int(self.state.get("iteration") or 1))
                while True:
                    decision = self._iteration(iteration, base)
                    if decision.action == "iterate":
                        iteration += 1
                        continue
                    reasons = list(decision.reasons)
                    if decision.action == "promote" and self._is_candidate():  # its parent run decides
                        outcome = "met"
                    elif decision.action == "promote" and self._needs_approval():  # stays a candidate
                        outcome = "candidate"
                        reasons.append(f"checkpoint {decision.checkpoint_id} awaits approval: "
                                       f"forge approve {decision.checkpoint_id}")
                        self.state["candidate_checkpoint"] = decision.checkpoint_id
                    elif decision.action == "promote":
                        outcome, stable = "promoted", decision.checkpoint_id
                    break
            except (_Stop, decide.NoPlan) as stop:
                reasons = [str(stop)]
            self.state.update(status="finished", outcome=outcome, reasons=reasons, stable_checkpoint=stable,
                              elapsed_s=self._elapsed(), finished=time.time())
            self._started_clock = time.monotonic()
            self.save_state()
            self.record("run.finished", payload={"outcome": outcome, "reasons": reasons, "stable_checkpoint": stable})
            self.reporter.line(f"[bold]{outcome}[/bold]: " + "; ".join(reasons))
            return self.summary()
        finally:
            self.servers.close()
            self._unlock()

    def _base(self) -> Checkpoint:
        def produce(ctx: StageContext) -> dict[str, Any]:
            return forge_stages.base_checkpoint(self.goal, self.trainer(), ctx, self.reporter)

        data = self._stage(0, "base", produce, lambda d: {"checkpoint_id": d["checkpoint"]["id"]})
        checkpoint = from_dict(Checkpoint, data["checkpoint"])
        self.record("checkpoint", stage="base", payload={"checkpoint": to_dict(checkpoint), **self._reused(0, "base")})
        self.reporter.line(f"base model: {checkpoint.path}")
        return checkpoint

    def _iteration(self, n: int, base: Checkpoint) -> Decision:
        goal, folder, line = self.goal, self.folder, self.reporter.line
        line(f"\n[bold cyan]iteration {n}[/bold cyan]")
        plan_data = self._stage(n, "plan", lambda ctx: decide.plan_stage(
            n, ctx, goal=goal, forge=self.forge, folder=folder, suites=self.suites, servers=self.servers),
            lambda d: {"reasons": d["plan"]["reasons"]})
        plan = from_dict(Plan, plan_data["plan"])
        self.record("plan", iteration=n, stage="plan", payload={"plan": to_dict(plan), "reasons": list(plan.reasons)})
        for reason in plan.reasons:
            line(f"  planner: {reason}")
        if goal.search.candidates > 1:  # K plans as branches of the run (forgemind_core/brain/candidates.py)
            from forgemind_core.brain.candidates import adopt_winner, run_candidates

            cand = self._stage(n, "candidates", lambda ctx: run_candidates(self, n, plan, plan_data, ctx),
                               lambda d: {"winner_run": d["winner_run"], "candidates": len(d["candidates"])})
            if cand["winner_run"] is None:
                return self._finish_iteration(n, Decision("stop", reasons=(cand["reason"],)))
            adopt_winner(self, n, cand)
            plan = from_dict(Plan, cand["plan"])

        gen = self._stage(n, "generate", lambda ctx: foundry.generate(
            n, plan, ctx, goal=goal, servers=self.servers, record=self.record, examples_file=folder.examples_file(n)),
            lambda d: {"generated": d["generated"]})
        self._say("generate", gen)
        filt = self._stage(n, "filter", lambda ctx: foundry.filter_examples(
            n, ctx, goal=goal, servers=self.servers, record=self.record, folder=folder),
            lambda d: {"kept": d["kept"], "dropped": d["dropped"]})
        self._say("filter", filt)
        if self.policy is not None:  # the Warden: queue, decide or wait (forgemind_core/warden/review.py)
            from forgemind_core.warden.review import review_stage

            rev = self._stage(n, "review", lambda ctx: review_stage(self, n, ctx),
                              lambda d: {k: d[k] for k in ("items", "approved", "rejected", "edited", "pending")})
            self._say("review", rev)
        ds = self._stage(n, "dataset", lambda ctx: foundry.build_dataset(n, goal=goal, folder=folder),
                         lambda d: {"dataset_id": d["dataset"]["id"]})
        dataset = from_dict(DatasetRef, ds["dataset"])
        self.record("dataset", iteration=n, stage="dataset", payload={"dataset": to_dict(dataset), **self._reused(n, "dataset")})
        self._say("dataset", ds)

        request = forge_stages.train_request(n, plan, base, dataset, goal=goal, folder=folder)
        est = self._stage(n, "estimate", lambda ctx: forge_stages.estimate(
            request, ctx, goal=goal, backend=self.trainer(), budget=self.budget, elapsed_s=self._elapsed(),
            folder=folder, n=n),
            lambda d: {"affordable": d["affordable"]})
        estimate = from_dict(Estimate, est["estimate"])
        self.record("estimate", iteration=n, stage="estimate",
                    payload={"estimate": to_dict(estimate), "budget_remaining_usd": self.budget.remaining_usd()})
        self._say("estimate", est)
        if not est["affordable"]:
            return self._finish_iteration(n, Decision("stop", reasons=(est["reason"],)))

        tr = self._stage(n, "train", lambda ctx: forge_stages.train(
            n, request, estimate, ctx, backend=self.trainer(), budget=self.budget, record=self.record),
            lambda d: {"checkpoint_id": d["checkpoint"]["id"]})
        checkpoint = from_dict(Checkpoint, tr["checkpoint"])
        self.record("checkpoint", iteration=n, stage="train", payload={"checkpoint": to_dict(checkpoint), **self._reused(n, "train")})
        self._say("train", tr)

        pack = self.pack
        ev = self._stage(n, "evaluate", lambda ctx: trials.evaluate(
            checkpoint, plan_data, ctx, goal=goal, suites=self.suites(),
            prompt_format=pack.prompt_format if pack is not None else "{input}", forge=self.forge, servers=self.servers),
            lambda d: {"scores": d["scores"]})
        for tier, report in ev["reports"].items():
            self.record("eval.report", iteration=n, stage="evaluate", key=tier,
                        payload={"report": report, **self._reused(n, "evaluate")})
        self._say("evaluate", ev)

        def decide_stage(ctx: StageContext) -> dict[str, Any]:
            note = str((read_json(folder.stage_file(n, "generate")) or {}).get("note", ""))
            return decide.decide(n, checkpoint, ev["scores"], ctx, goal=goal, forge=self.forge,
                                 history=self.history(upto=n), generate_note=note, servers=self.servers)

        dec = self._stage(n, "decide", decide_stage, lambda d: {"action": d["decision"]["action"]})
        return self._finish_iteration(n, from_dict(Decision, dec["decision"]), recorded=True)

    def _say(self, stage: str, data: Mapping[str, Any]) -> None:
        if text := stage_line(stage, data):
            self.reporter.line(text)

    def _finish_iteration(self, n: int, decision: Decision, *, recorded: bool = False) -> Decision:
        if not recorded:
            write_json(self.folder.stage_file(n, "decide"), {"decision": to_dict(decision)})
        self.record("decision", iteration=n, stage="decide", payload={"decision": to_dict(decision)})
        if decision.action == "promote" and decision.checkpoint_id and self._needs_approval() and not self._is_candidate():
            from forgemind_core.warden.review import request_approval

            request_approval(self, n, decision.checkpoint_id, decision.reasons)
        elif decision.action == "promote" and decision.checkpoint_id and not self._is_candidate():
            self.record("promotion", iteration=n, stage="decide",
                        payload={"checkpoint_id": decision.checkpoint_id, "channel": "stable", "run_id": self.run_id})
        self.reporter.line(f"  decision: [bold]{decision.action}[/bold] - " + "; ".join(decision.reasons))
        return decision


def _best_try(iterations: Sequence[Mapping[str, Any]], tier: str, canary_min: float) -> dict[str, Any] | None:
    """:func:`forgemind_core.brain.decide.best_try` for a tier and canary floor (kept for tests)."""
    return best_try(iterations, SuccessCriterion(tier=tier, canary_min=canary_min))


if TYPE_CHECKING:  # mypy checks that Loop is what candidates and the Warden's review are written against
    def _is_run_handle(loop: Loop) -> RunHandle:
        return loop
