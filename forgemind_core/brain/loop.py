"""The Brain's engine: one goal, many iterations, every stage boundary recorded and resumable.

One iteration is ``plan -> generate -> filter -> dataset -> estimate -> train -> evaluate ->
decide`` (DESIGN.md §4). Each stage writes its output into the run folder atomically
(``<home>/runs/<run>/iter-<n>/<stage>.json``) and records ``stage.finished`` before the next stage
starts. A run killed at any point resumes from its last finished stage (``forge resume RUN``):
finished stages are read back, not redone; generation skips examples it already has (and LLM
backends answer repeated requests from their cache); training resumes from its last checkpoint in
the stage's own folder. Event ids are deterministic, so what is recorded again after a crash is a
no-op for the recorders.

The run folder, not the registry, is what resume reads: it is a plain set of JSON files that any
process can read while the run writes (``forge status``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import evolve
from forgemind_hookspecs import (
    TIERS,
    Budget,
    BudgetExceeded,
    Checkpoint,
    DatasetRef,
    Decision,
    Estimate,
    EvalCase,
    EvalReport,
    Event,
    Example,
    ForgeError,
    GenerationPlan,
    Goal,
    IterationSummary,
    Plan,
    StageContext,
    SuccessCriterion,
    TaskPack,
    TrainRequest,
    UserError,
    Verdict,
    content_hash,
    from_dict,
    to_dict,
)
from forgemind_hookspecs.snapshots import read_snapshot, write_snapshot

from forgemind_core.base import VERSION as __version__
from forgemind_core.base.protocols import RunHandle
from forgemind_core.base.servers import ServerPool
from forgemind_core.brain.decide import best_try, meets_success

__all__ = ["STAGES", "Loop", "NullReporter", "read_status", "run_dir"]

#: The stages of one iteration, in order.
STAGES: tuple[str, ...] = ("plan", "generate", "filter", "dataset", "estimate", "train", "evaluate", "decide")
#: The stages an iteration may record, in order, for status and summaries: STAGES plus the
#: Warden's ``review``, which runs only for a goal with a policy (so it stays out of STAGES, the
#: stages every iteration has, which forks and the loop's tests rely on).
RECORDED_STAGES: tuple[str, ...] = (*STAGES[:3], "review", *STAGES[3:])

_BATCH = 256


def run_dir(home: Path, run_id: str) -> Path:
    return Path(home) / "runs" / run_id


# --------------------------------------------------------------------------------------------
# Small, crash-safe file helpers.
# --------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one.
    Secrets (an API key's value, a URL's ``user:pass@``) are redacted: no record stores one."""
    from forgemind_core.base.logs import redact

    data = redact(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True, default=str, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _read_jsonl_examples(path: Path) -> list[Example]:
    """Read the examples appended so far; a torn last line (crash mid-write) is cut off."""
    if not path.exists():
        return []
    examples: list[Example] = []
    good = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                examples.append(from_dict(Example, json.loads(raw)))
            except ValueError:
                break
            good += len(raw)
    if good != path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return examples


# --------------------------------------------------------------------------------------------
# Reporting (the CLI passes a rich reporter; the API default is silent).
# --------------------------------------------------------------------------------------------


class NullReporter:
    """Receives live output from the loop and shows none of it."""

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


# --------------------------------------------------------------------------------------------
# The run's history, as filters and the planner see it.
# --------------------------------------------------------------------------------------------


class _RunHistory:
    """Kept examples of earlier iterations and every evaluation case (for decontamination)."""

    def __init__(self, loop: Loop, iteration: int) -> None:
        self._loop = loop
        self._iteration = iteration

    def kept_examples(self) -> Iterator[Example]:
        previous = self._loop.latest_dataset(before=self._iteration)
        if previous is not None:
            yield from read_snapshot(previous.path)

    def eval_cases(self) -> Sequence[EvalCase]:
        return self._loop.all_eval_cases(self._iteration)


# --------------------------------------------------------------------------------------------
# The loop.
# --------------------------------------------------------------------------------------------


class Loop:
    """Drives one run. Build it with :meth:`start` or :meth:`resume`, then call :meth:`run`."""

    def __init__(self, forge: Any, goal: Goal, run_id: str, reporter: Any, on_event: Callable[[Event], None] | None) -> None:
        self.forge = forge
        self.goal = goal
        self.run_id = run_id
        self.dir = run_dir(forge.home, run_id)
        self.reporter = reporter or NullReporter()
        self.on_event = on_event
        self.state: dict[str, Any] = _read_json(self.dir / "state.json") or {}
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
        self.servers = ServerPool(forge, context=lambda: self.context(0, "servers"), record=self.record)

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def start(cls, forge: Any, goal: Goal, *, run_id: str | None = None, reporter: Any = None,
              on_event: Callable[[Event], None] | None = None, parent: Mapping[str, Any] | None = None) -> Loop:
        run_id = run_id or _new_run_id(goal.name)
        folder = run_dir(forge.home, run_id)
        if (folder / "goal.json").exists():
            raise ForgeError(f"run {run_id!r} already exists; use `forge resume {run_id}`")
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / "goal.json", to_dict(goal))
        loop = cls(forge, goal, run_id, reporter, on_event)
        loop.state = {
            "run_id": run_id,
            "goal": goal.name,
            "status": "running",
            "iteration": 0,
            "stage": "",
            "spent_usd": 0.0,
            "elapsed_s": 0.0,
            "started": time.time(),
            "parent": dict(parent or {}),
        }
        loop.save_state()
        loop.record(
            "run.started",
            payload={
                "goal": to_dict(goal),
                "goal_file": goal.source,
                "parent_run": (parent or {}).get("run_id"),
                "parent_iteration": (parent or {}).get("iteration"),
                "branch": (parent or {}).get("branch", "main"),
                "forgemind_version": __version__,
            },
        )
        return loop

    @classmethod
    def resume(cls, forge: Any, run_id: str, *, reporter: Any = None,
               on_event: Callable[[Event], None] | None = None) -> Loop:
        folder = run_dir(forge.home, run_id)
        data = _read_json(folder / "goal.json")
        if data is None:
            from forgemind_hookspecs import UserError

            raise UserError(f"no run {run_id!r} in {forge.home}")
        loop = cls(forge, _with_secrets(forge, from_dict(Goal, data), data), run_id, reporter, on_event)
        if loop.state.get("status") == "finished":  # nothing to resume; run() returns the summary
            # The same run.finished again (same id, so recorders that have it ignore it), in case
            # the process died between state.json and the event: the registry then agrees.
            loop.record("run.finished", payload={k: loop.state.get(k) for k in ("outcome", "reasons", "stable_checkpoint")})
            return loop
        loop.record(
            "run.resumed",
            key=str(time.time_ns()),
            payload={"from_iteration": loop.state.get("iteration", 0), "from_stage": loop.state.get("stage", "")},
        )
        return loop

    # --- bookkeeping --------------------------------------------------------------------------

    def save_state(self) -> None:
        """Write ``state`` (with the budget spent so far) to ``state.json``, atomically."""
        self.state["spent_usd"] = self.budget.spent_usd
        _write_json(self.dir / "state.json", self.state)

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

    def _event(self, kind: str, *, iteration: int = 0, stage: str = "", payload: Mapping[str, Any] | None = None,
               key: str = "") -> Event:
        return Event(
            run_id=self.run_id,
            kind=kind,
            iteration=iteration,
            stage=stage,
            payload=dict(payload or {}),
            seq=self._next_seq(),
            id=content_hash([self.run_id, iteration, stage, kind, key]),
        )

    def record(self, kind: str, *, iteration: int = 0, stage: str = "", payload: Mapping[str, Any] | None = None,
                key: str = "") -> None:
        """Record one event of this run (its id is deterministic in run, iteration, stage, kind, key)."""
        self._emit([self._event(kind, iteration=iteration, stage=stage, payload=payload, key=key)])

    def _emit(self, events: Sequence[Event]) -> None:
        from forgemind_core.base.logs import redact

        events = [evolve(e, payload=redact(dict(e.payload))) for e in events]
        self.forge.record(events)
        for event in events:
            self.reporter.event(event)
            if self.on_event is not None:
                self.on_event(event)

    @property
    def log(self) -> Any:
        if self._log is None:
            from forgemind_core.base.logs import make_logger

            self._log = make_logger(console=False, json_path=self.dir / "log.jsonl", run_id=self.run_id)
        return self._log

    def _lock(self) -> None:
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
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

    # --- what the stages share ----------------------------------------------------------------

    @property
    def pack(self) -> TaskPack | None:
        if self._pack is None and self.goal.pack is not None:
            self._pack = self.forge.load_pack(self.goal)
        return self._pack

    @property
    def policy(self) -> Any:
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

    def all_eval_cases(self, iteration: int) -> list[EvalCase]:
        cases = [c for tier in self.suites().values() for c in tier]
        for n in range(1, iteration + 1):
            plan = _read_json(self.iter_dir(n) / "plan.json")
            if plan:
                cases.extend(from_dict(EvalCase, c) for c in plan.get("adversarial_cases", []))
        return cases

    def iter_dir(self, iteration: int) -> Path:
        return self.dir / f"iter-{iteration}"

    def latest_dataset(self, *, before: int) -> DatasetRef | None:
        for n in range(before - 1, 0, -1):
            data = _read_json(self.iter_dir(n) / "dataset.json")
            if data is not None:
                return from_dict(DatasetRef, data["dataset"])
        return None

    def context(self, iteration: int, stage: str) -> StageContext:
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
            history=_RunHistory(self, iteration),
            policy=self.policy,
        )

    def _stage(self, iteration: int, stage: str, produce: Callable[[StageContext], dict[str, Any]],
               summary: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Run a stage unless its output file exists; record its boundaries either way."""
        folder = self.iter_dir(iteration) if iteration else self.dir
        path = folder / f"{stage}.json"
        data = _read_json(path)
        if data is None:
            self._check_wall_clock(stage)
            self.record("stage.started", iteration=iteration, stage=stage)
            started = time.monotonic()
            data = produce(self.context(iteration, stage))
            data["seconds"] = round(time.monotonic() - started, 3)
            _write_json(path, data)
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
        parent = self.state.get("parent") or {}
        reused = (parent.get("reused") or {}).get(str(iteration)) or ()
        return {"inherited_from": parent["run_id"]} if stage in reused and parent.get("run_id") else {}

    def _check_wall_clock(self, stage: str) -> None:
        limit = self.goal.limits.wall_clock_s
        if limit is not None and self._elapsed() > limit:
            raise _Stop(f"wall-clock limit of {limit:.0f} s reached before {stage}")

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self._lock()
        try:
            if self.state.get("status") == "finished":
                return self.summary()
            outcome, reasons, stable = "stopped", [], None
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
            except _Stop as stop:
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

    def _is_candidate(self) -> bool:
        return (self.state.get("parent") or {}).get("candidate") is not None

    def _needs_approval(self) -> bool:
        return bool(self.policy is not None and self.policy.approval_required)

    def trainer(self) -> Any:
        return self.forge.backend("trainers", self.goal.train.backend, self.goal.train.options, field="train")

    def _base(self) -> Checkpoint:
        goal = self.goal

        def produce(ctx: StageContext) -> dict[str, Any]:
            trainer = self.trainer()
            if goal.limits.base_model == "pretrain":
                self.reporter.line(f"base: pre-training a {goal.pretrain.preset} model on {goal.pretrain.corpus}")
                checkpoint = trainer.pretrain(goal.pretrain, ctx)
            else:
                checkpoint = trainer.load_base(goal.limits.base_model, ctx)
            return {"checkpoint": to_dict(checkpoint)}

        data = self._stage(0, "base", produce, lambda d: {"checkpoint_id": d["checkpoint"]["id"]})
        checkpoint = from_dict(Checkpoint, data["checkpoint"])
        self.record("checkpoint", stage="base", payload={"checkpoint": to_dict(checkpoint), **self._reused(0, "base")})
        self.reporter.line(f"base model: {checkpoint.path}")
        return checkpoint

    def _iteration(self, n: int, base: Checkpoint) -> Decision:
        self.reporter.line(f"\n[bold cyan]iteration {n}[/bold cyan]")
        plan_data = self._stage(n, "plan", lambda ctx: self._plan(n, ctx),
                                lambda d: {"reasons": d["plan"]["reasons"]})
        plan = from_dict(Plan, plan_data["plan"])
        self.record("plan", iteration=n, stage="plan", payload={"plan": to_dict(plan), "reasons": list(plan.reasons)})
        for reason in plan.reasons:
            self.reporter.line(f"  planner: {reason}")
        if self.goal.search.candidates > 1:  # K plans as branches of the run (forgemind_core/brain/candidates.py)
            from forgemind_core.brain.candidates import adopt_winner, run_candidates

            cand = self._stage(n, "candidates", lambda ctx: run_candidates(self, n, plan, plan_data, ctx),
                               lambda d: {"winner_run": d["winner_run"], "candidates": len(d["candidates"])})
            if cand["winner_run"] is None:
                return self._finish_iteration(n, Decision("stop", reasons=(cand["reason"],)))
            adopt_winner(self, n, cand)
            plan = from_dict(Plan, cand["plan"])

        gen = self._stage(n, "generate", lambda ctx: self._generate(n, plan, ctx), lambda d: {"generated": d["generated"]})
        self.reporter.line(f"  generate: {gen['generated']} examples" + (f" ({gen['note']})" if gen.get("note") else ""))
        filt = self._stage(n, "filter", lambda ctx: self._filter(n, ctx), lambda d: {"kept": d["kept"], "dropped": d["dropped"]})
        dropped = _drops(filt["dropped_by_reason"]) or "none"
        self.reporter.line(f"  filter: kept {filt['kept']}, dropped {filt['dropped']} ({dropped})")
        if self.policy is not None:  # the Warden: queue, decide or wait (forgemind_core/warden/review.py)
            from forgemind_core.warden.review import review_stage

            rev = self._stage(n, "review", lambda ctx: review_stage(self, n, ctx),
                              lambda d: {k: d[k] for k in ("items", "approved", "rejected", "edited", "pending")})
            if rev["items"]:
                self.reporter.line(f"  review: {rev['items']} items, {rev['approved']} approved, {rev['rejected']} rejected, "
                                   f"{rev['edited']} edited, {rev['pending']} pending")
        ds = self._stage(n, "dataset", lambda ctx: self._dataset(n, ctx), lambda d: {"dataset_id": d["dataset"]["id"]})
        dataset = from_dict(DatasetRef, ds["dataset"])
        self.record("dataset", iteration=n, stage="dataset", payload={"dataset": to_dict(dataset), **self._reused(n, "dataset")})
        self.reporter.line(f"  dataset: {dataset.n_examples} examples ({dataset.id})")

        request = self._train_request(n, plan, base, dataset)
        est = self._stage(n, "estimate", lambda ctx: self._estimate(request, ctx), lambda d: {"affordable": d["affordable"]})
        estimate = from_dict(Estimate, est["estimate"])
        self.record("estimate", iteration=n, stage="estimate",
                     payload={"estimate": to_dict(estimate), "budget_remaining_usd": self.budget.remaining_usd()})
        self.reporter.line(
            f"  estimate: {estimate.tokens:,} tokens, {estimate.steps} steps, ~{estimate.seconds:.0f} s, ${estimate.total_cost_usd:.4f}"
        )
        if not est["affordable"]:
            return self._finish_iteration(n, Decision("stop", reasons=(est["reason"],)))

        tr = self._stage(n, "train", lambda ctx: self._train(n, request, estimate, ctx), lambda d: {"checkpoint_id": d["checkpoint"]["id"]})
        checkpoint = from_dict(Checkpoint, tr["checkpoint"])
        self.record("checkpoint", iteration=n, stage="train", payload={"checkpoint": to_dict(checkpoint), **self._reused(n, "train")})
        curve = checkpoint.manifest.get("loss_curve") or []
        if curve:
            self.reporter.line(f"  train: loss {_first_loss(curve):.3f} -> {_last_loss(curve):.3f} ({checkpoint.path})")

        ev = self._stage(n, "evaluate", lambda ctx: self._evaluate(n, checkpoint, plan_data, ctx),
                         lambda d: {"scores": d["scores"]})
        for tier, report in ev["reports"].items():
            self.record("eval.report", iteration=n, stage="evaluate", key=tier,
                         payload={"report": report, **self._reused(n, "evaluate")})
        self.reporter.line("  scores: " + " · ".join(f"{t} {s:.0%}" for t, s in ev["scores"].items()))

        dec = self._stage(n, "decide", lambda ctx: self._decide(n, checkpoint, ev, ctx),
                          lambda d: {"action": d["decision"]["action"]})
        return self._finish_iteration(n, from_dict(Decision, dec["decision"]), recorded=True)

    def _finish_iteration(self, n: int, decision: Decision, *, recorded: bool = False) -> Decision:
        if not recorded:
            _write_json(self.iter_dir(n) / "decide.json", {"decision": to_dict(decision)})
        self.record("decision", iteration=n, stage="decide", payload={"decision": to_dict(decision)})
        if decision.action == "promote" and decision.checkpoint_id and self._needs_approval() and not self._is_candidate():
            from forgemind_core.warden.review import request_approval

            request_approval(self, n, decision.checkpoint_id, decision.reasons)
        elif decision.action == "promote" and decision.checkpoint_id and not self._is_candidate():
            self.record("promotion", iteration=n, stage="decide",
                         payload={"checkpoint_id": decision.checkpoint_id, "channel": "stable", "run_id": self.run_id})
        self.reporter.line(f"  decision: [bold]{decision.action}[/bold] - " + "; ".join(decision.reasons))
        return decision

    # --- stages -------------------------------------------------------------------------------

    def _plan(self, n: int, ctx: StageContext) -> dict[str, Any]:
        if n == 1:
            planner = self.forge.backend("planners", self.goal.planner.backend, self.goal.planner.options, field="planner")
            decision = planner.plan(self.goal, [], ctx)
            if decision.next_plan is None:
                raise _Stop("; ".join(decision.reasons) or "the planner proposed no plan")
            plan = decision.next_plan
        else:
            previous = _read_json(self.iter_dir(n - 1) / "decide.json")
            plan = from_dict(Decision, previous["decision"]).next_plan
            if plan is None:
                raise ForgeError(f"iteration {n - 1} decided to iterate without a next plan")
        plan = evolve(plan, iteration=n)
        adversarial = self._adversarial_cases(n, ctx)
        return {"plan": to_dict(plan), "adversarial_cases": [to_dict(c) for c in adversarial]}

    def _adversarial_cases(self, n: int, ctx: StageContext) -> list[EvalCase]:
        count = self.goal.evaluate.adversarial_per_iteration
        if count <= 0:
            return []
        source = self.suites().get("full") or self.suites().get("canary") or []
        if not source:
            return []
        adversary = self.servers.backend("adversaries", self.goal.evaluate.adversary.backend,
                                       self.goal.evaluate.adversary.options, field="evaluate.adversary")
        return list(adversary.perturb(source, count, ctx))

    def _generate(self, n: int, plan: Plan, ctx: StageContext) -> dict[str, Any]:
        path = ctx.work_dir.parent / "examples.jsonl"
        have = _read_jsonl_examples(path)
        seen = {e.id for e in have}
        by_generator: dict[str, int] = {}
        cost = 0.0
        for example in have:
            by_generator[example.source.generator] = by_generator.get(example.source.generator, 0) + 1
            cost += example.source.cost_usd
        if have:  # re-deliver what a crash may have left unrecorded; ids make it a no-op otherwise
            for i in range(0, len(have), _BATCH):
                batch = have[i:i + _BATCH]
                self.record("examples", iteration=n, stage="generate", key=f"{batch[0].id}:{len(batch)}",
                             payload={"examples": [to_dict(e) for e in batch]})
        note = ""
        pending: list[Example] = []
        total = sum(gp.count for gp in plan.generation)
        task = ctx.progress(f"iteration {n}: generating", total)
        task.advance(len(have))
        with open(path, "a", encoding="utf-8") as out:

            def flush() -> None:
                if not pending:
                    return
                out.flush()
                os.fsync(out.fileno())
                self.record("examples", iteration=n, stage="generate", key=f"{pending[0].id}:{len(pending)}",
                             payload={"examples": [to_dict(e) for e in pending]})
                pending.clear()

            try:
                for gp in plan.generation:
                    generator = self.servers.backend("generators", gp.generator, self._generator_options(gp),
                                                   field="generate")
                    for example in generator.generate(gp, ctx):
                        if example.id in seen:
                            continue
                        seen.add(example.id)
                        out.write(json.dumps(to_dict(example), ensure_ascii=False, sort_keys=True) + "\n")
                        out.flush()  # in the OS's hands at once: a killed process loses nothing
                        pending.append(example)
                        by_generator[gp.generator] = by_generator.get(gp.generator, 0) + 1
                        cost += example.source.cost_usd
                        task.advance(1)
                        if len(pending) >= _BATCH:
                            flush()
            except BudgetExceeded as error:
                note = f"stopped at the budget: {error}"
            finally:
                flush()
                task.close()
        return {"generated": len(seen), "by_generator": by_generator, "file": str(path), "note": note,
                "cost_usd": cost}

    def _generator_options(self, gp: GenerationPlan) -> dict[str, Any]:
        """A plan entry carries its generator's options (planners copy them from the goal's
        ``generate`` entry, so two entries of one backend keep theirs); an entry without any
        falls back to the goal's first entry of that backend."""
        if gp.options:  # read back from a record, redacted: the goal's values put back
            from forgemind_core.base.logs import restore

            return dict(restore(dict(gp.options), to_dict(self.goal)))
        choice = next((c for c in self.goal.generate if c.backend == gp.generator), None)
        return dict(choice.options) if choice is not None else {}

    def examples(self, n: int) -> list[Example]:
        """The examples the generate stage of iteration ``n`` wrote (a torn last line cut off)."""
        return _read_jsonl_examples(self.iter_dir(n) / "examples.jsonl")

    def _filter(self, n: int, ctx: StageContext) -> dict[str, Any]:
        examples = self.examples(n)
        kept = examples
        dropped_by_reason: dict[str, int] = {}
        verdict_path = self.iter_dir(n) / "verdicts.jsonl"
        with open(verdict_path, "w", encoding="utf-8") as out:
            for choice in self.goal.filter:
                filt = self.servers.backend("filters", choice.backend, choice.options, field="filter")
                verdicts: Sequence[Verdict] = filt.filter(kept, ctx) if kept else []
                if len(verdicts) != len(kept):
                    raise ForgeError(f"filter {choice.backend!r} returned {len(verdicts)} verdicts for {len(kept)} examples")
                survivors = []
                for example, verdict in zip(kept, verdicts, strict=True):
                    out.write(json.dumps(to_dict(verdict), sort_keys=True) + "\n")
                    if verdict.keep:
                        survivors.append(example)
                    else:
                        reason = f"{verdict.filter}.{verdict.rule}" if verdict.rule else verdict.filter
                        dropped_by_reason[reason] = dropped_by_reason.get(reason, 0) + 1
                for i in range(0, len(verdicts), _BATCH):
                    batch = list(verdicts[i:i + _BATCH])
                    self.record("verdicts", iteration=n, stage="filter", key=f"{choice.backend}:{i}",
                                 payload={"verdicts": [to_dict(v) for v in batch]})
                kept = survivors
            out.flush()
            os.fsync(out.fileno())
        kept_by_category: dict[str, int] = {}
        for example in kept:
            kept_by_category[example.category or ""] = kept_by_category.get(example.category or "", 0) + 1
        return {
            "kept": len(kept),
            "dropped": len(examples) - len(kept),
            "kept_ids": [e.id for e in kept],
            "kept_by_category": kept_by_category,
            "dropped_by_reason": dropped_by_reason,
        }

    def _dataset(self, n: int, ctx: StageContext) -> dict[str, Any]:
        filt = _read_json(self.iter_dir(n) / "review.json") or _read_json(self.iter_dir(n) / "filter.json")
        keep = set(filt["kept_ids"])
        new = [e for e in self.examples(n) if e.id in keep]
        new += [from_dict(Example, e) for e in filt.get("added_examples", [])]  # edited in review
        previous = self.latest_dataset(before=n)
        old = list(read_snapshot(previous.path)) if previous is not None else []
        old_ids = {e.id for e in old}
        examples = old + [e for e in new if e.id not in old_ids]
        if not examples:
            raise self._nothing_kept(n, filt)
        dataset = write_snapshot(
            examples,
            Path(self.forge.home) / "datasets",
            parents=(previous.id,) if previous is not None else (),
            stats={"new_examples": len(examples) - len(old), "run_id": self.run_id, "iteration": n},
        )
        return {"dataset": to_dict(dataset)}

    def _nothing_kept(self, n: int, filt: Mapping[str, Any]) -> UserError:
        """The error for a first dataset with no examples: which filters dropped how many, and
        where in the goal they are configured (rather than a trainer's complaint about an empty file)."""
        reasons = _drops(filt.get("dropped_by_reason") or {})
        generated = int(filt.get("kept", 0)) + int(filt.get("dropped", 0))
        message = (f"iteration {n}: nothing to train on: the filters kept none of the {generated} generated examples"
                   + (f" (dropped {reasons})" if reasons else "")
                   + "; loosen the filter options or fix the pack's templates")
        from forgemind_core.brain.goals import field_line

        source = self.goal.source
        return UserError(message, file=source, line=field_line(source, "filter") if source else None, field="filter")

    def _train_request(self, n: int, plan: Plan, base: Checkpoint, dataset: DatasetRef) -> TrainRequest:
        return TrainRequest(
            base=base,
            dataset=dataset,
            method=self.goal.limits.method,
            output_dir=str(self.iter_dir(n) / "train"),
            hyperparameters={**dict(self.goal.train.options), **dict(plan.train)},
            seed=self.goal.seed * 1000 + n,
        )

    def _estimate(self, request: TrainRequest, ctx: StageContext) -> dict[str, Any]:
        estimate = self.trainer().estimate(request, ctx)
        affordable, reason = True, ""
        if not self.budget.can_afford(estimate.cost_usd):
            affordable = False
            reason = (f"the try would cost ${estimate.cost_usd:.4f} but only "
                      f"${self.budget.remaining_usd() or 0.0:.4f} of the budget is left")
        limit = self.goal.limits.wall_clock_s
        if affordable and limit is not None and self._elapsed() + estimate.seconds > limit:
            affordable = False
            reason = f"training would take ~{estimate.seconds:.0f} s, past the wall-clock limit of {limit:.0f} s"
        tokens = self.goal.limits.max_tokens
        if affordable and tokens is not None and estimate.tokens > tokens:
            affordable = False
            reason = f"training would process {estimate.tokens:,} tokens, over the limit of {tokens:,}"
        return {"estimate": to_dict(estimate), "affordable": affordable, "reason": reason}

    def _train(self, n: int, request: TrainRequest, estimate: Estimate, ctx: StageContext) -> dict[str, Any]:
        checkpoint = self.trainer().train(request, ctx)
        cost = float(checkpoint.manifest.get("cost_usd", estimate.cost_usd) or 0.0)
        if cost:
            self.budget.settle(0.0, cost)
            self.record("cost", iteration=n, stage="train",
                         payload={"usd": cost, "what": "training", "total_usd": self.budget.spent_usd})
        return {"checkpoint": to_dict(checkpoint)}

    def _evaluate(self, n: int, checkpoint: Checkpoint, plan_data: Mapping[str, Any], ctx: StageContext) -> dict[str, Any]:
        from forgemind_core.trials.tiers import evaluate_checkpoint

        suites = {tier: list(cases) for tier, cases in self.suites().items()}
        extra = [from_dict(EvalCase, c) for c in plan_data.get("adversarial_cases", [])]
        if extra:
            suites.setdefault("adversarial", []).extend(extra)
        runner_choice = self.goal.evaluate.runner
        runner = self.servers.backend("runners", runner_choice.backend, runner_choice.options, field="evaluate.runner")
        scorers = {c.backend: self.forge.backend("scorers", c.backend, c.options, field="evaluate.scorers")
                   for c in self.goal.evaluate.scorers}
        for case in (c for cases in suites.values() for c in cases):
            if case.checker and case.checker not in scorers:
                scorers[case.checker] = self.forge.backend("scorers", case.checker, {}, field="evaluate.scorers")
        pack = self.pack
        reports: dict[str, EvalReport] = evaluate_checkpoint(
            checkpoint,
            suites,
            runner=runner,
            scorers=scorers,
            default_scorer=self.goal.evaluate.scorers[0].backend if self.goal.evaluate.scorers else "exact_match",
            prompt_format=pack.prompt_format if pack is not None else "{input}",
            ctx=ctx,
            canary_min=self.goal.success.canary_min,
            max_new_tokens=int(runner_choice.options.get("max_new_tokens", 64)),
        )
        metric = self.goal.success.metric
        scores = {tier: float(r.metrics.get(metric, 0.0)) for tier, r in reports.items()}
        return {"reports": {t: to_dict(r) for t, r in reports.items()}, "scores": scores}

    def _decide(self, n: int, checkpoint: Checkpoint, ev: Mapping[str, Any], ctx: StageContext) -> dict[str, Any]:
        goal = self.goal
        success = goal.success
        scores: Mapping[str, float] = ev["scores"]
        target = scores.get(success.tier)
        canary_ok = scores.get("canary", 1.0) >= success.canary_min
        met = meets_success(success, scores)
        history = self.history(upto=n)
        if met:
            reasons = (f"{success.tier} {success.metric} {target:.0%} >= {success.threshold:.0%}, canary green, "
                       f"adversarial {scores.get('adversarial', 1.0):.0%} >= {success.adversarial_min:.0%}",)
            return {"decision": to_dict(Decision("promote", reasons=reasons, checkpoint_id=checkpoint.id))}
        if not canary_ok:
            why = f"canary at {scores.get('canary', 0.0):.1%} < {success.canary_min:.0%}"
        elif target is None:
            why = f"no {success.tier} score"
        elif target < success.threshold:
            why = f"{success.tier} {success.metric} {target:.1%} < {success.threshold:.0%}"  # 89.8%, not "90% < 90%"
        else:
            why = f"adversarial {scores.get('adversarial', 0.0):.1%} < {success.adversarial_min:.0%}"
        gen_note = str((_read_json(self.iter_dir(n) / "generate.json") or {}).get("note", ""))
        if gen_note:  # generation stopped at the budget: nothing is left to pay for another try
            return {"decision": to_dict(Decision("stop", reasons=(why, gen_note)))}
        if n >= goal.limits.max_iterations:
            return {"decision": to_dict(Decision("stop", reasons=(why, f"reached max_iterations={goal.limits.max_iterations}")))}
        if _no_progress(history, success.tier, goal.limits.patience):
            return {"decision": to_dict(Decision("stop", reasons=(why, f"no progress in {goal.limits.patience} tries")))}
        planner = self.forge.backend("planners", goal.planner.backend, goal.planner.options, field="planner")
        decision = planner.plan(goal, history, ctx)
        if decision.action == "iterate" and decision.next_plan is not None:
            decision = evolve(decision, reasons=(why, *decision.reasons), checkpoint_id=checkpoint.id)
        else:
            decision = evolve(decision, action="stop", reasons=(why, *decision.reasons), checkpoint_id=checkpoint.id)
        return {"decision": to_dict(decision)}

    # --- history and summary ------------------------------------------------------------------

    def history(self, *, upto: int | None = None) -> list[IterationSummary]:
        """What the planner sees: one summary per iteration that got as far as a plan."""
        out: list[IterationSummary] = []
        n = 1
        while (self.iter_dir(n) / "plan.json").exists() and (upto is None or n <= upto):
            out.append(self._summary_of(n))
            n += 1
        return out

    def _summary_of(self, n: int) -> IterationSummary:
        folder = self.iter_dir(n)
        plan = from_dict(Plan, _read_json(folder / "plan.json")["plan"])
        gen = _read_json(folder / "generate.json") or {}
        filt = _read_json(folder / "review.json") or _read_json(folder / "filter.json") or {}
        ds = _read_json(folder / "dataset.json")
        est = _read_json(folder / "estimate.json")
        tr = _read_json(folder / "train.json")
        ev = _read_json(folder / "evaluate.json") or {}
        dec = _read_json(folder / "decide.json")
        checkpoint = from_dict(Checkpoint, tr["checkpoint"]) if tr else None
        scores: dict[str, dict[str, Any]] = {}
        for tier, report in (ev.get("reports") or {}).items():
            scores[tier] = dict(report.get("metrics", {}))
        cost = float(checkpoint.manifest.get("cost_usd", 0.0) or 0.0) if checkpoint else 0.0
        cost += float(gen.get("cost_usd", 0.0) or 0.0)
        return IterationSummary(
            iteration=n,
            plan=plan,
            generated=int(gen.get("generated", 0)),
            kept=int(filt.get("kept", 0)),
            dropped_by_reason=dict(filt.get("dropped_by_reason", {})),
            kept_by_category=dict(filt.get("kept_by_category", {})),
            dataset_id=ds["dataset"]["id"] if ds else None,
            estimate=from_dict(Estimate, est["estimate"]) if est else None,
            checkpoint_id=checkpoint.id if checkpoint else None,
            loss_curve=tuple(_loss_values(checkpoint.manifest.get("loss_curve") or [])) if checkpoint else (),
            scores=scores,
            cost_usd=cost,
            seconds=sum(float((_read_json(folder / f"{s}.json") or {}).get("seconds", 0.0)) for s in RECORDED_STAGES),
            decision=from_dict(Decision, dec["decision"]) if dec else None,
        )

    def summary(self) -> dict[str, Any]:
        """The run's summary: what ``forge run --json`` prints."""
        metric = self.goal.success.metric
        iterations = []
        checkpoints: dict[str, str] = {}
        for item in self.history():
            if item.checkpoint_id:
                tr = _read_json(self.iter_dir(item.iteration) / "train.json")
                checkpoints[item.checkpoint_id] = tr["checkpoint"]["path"]
            iterations.append({
                "iteration": item.iteration,
                "plan": to_dict(item.plan),
                "data": {"generated": item.generated, "kept": item.kept, "dropped": item.generated - item.kept,
                         "dropped_by_reason": dict(item.dropped_by_reason), "dataset_id": item.dataset_id},
                "estimate": to_dict(item.estimate) if item.estimate else None,
                "checkpoint": item.checkpoint_id,
                "cost_usd": item.cost_usd,
                "seconds": round(item.seconds, 2),
                "scores": {tier: float(m.get(metric, 0.0)) for tier, m in item.scores.items()},
                "decision": to_dict(item.decision) if item.decision else None,
            })
        stable_id = self.state.get("stable_checkpoint")
        stable = {"id": stable_id, "path": checkpoints.get(stable_id)} if stable_id else None
        best = best_try(iterations, self.goal.success)
        if best is not None:
            best = {**best, "path": checkpoints.get(best["id"])}
        return {
            "run_id": self.run_id,
            "goal": self.goal.name,
            "status": self.state.get("status"),
            "outcome": self.state.get("outcome"),
            "reasons": self.state.get("reasons", []),
            "stable_checkpoint": stable,
            "best_checkpoint": best,
            "iterations": iterations,
            "cost_usd": self.budget.spent_usd,
            "wall_s": round(float(self.state.get("elapsed_s", 0.0)), 2),
            "home": str(self.forge.home),
            "run_dir": str(self.dir),
        }


def _drops(by_reason: Mapping[str, int]) -> str:
    """``"rules.too_short: 16, dedupe.near_duplicate: 2"``: the filters' drops, sorted by reason."""
    return ", ".join(f"{k}: {v}" for k, v in sorted(by_reason.items()))


def _best_try(iterations: Sequence[Mapping[str, Any]], tier: str, canary_min: float) -> dict[str, Any] | None:
    """:func:`forgemind_core.brain.decide.best_try` for a tier and canary floor (kept for tests)."""
    return best_try(iterations, SuccessCriterion(tier=tier, canary_min=canary_min))


class _Stop(Exception):
    """Ends the run early with a reason (a limit was reached)."""


def _with_secrets(forge: Any, goal: Goal, recorded: Mapping[str, Any]) -> Goal:
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


def _new_run_id(name: str) -> str:
    slug = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")[:32] or "run"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _loss_values(curve: Sequence[Any]) -> list[float]:
    values = []
    for point in curve:
        if isinstance(point, Mapping):
            values.append(float(point.get("loss", 0.0)))
        elif isinstance(point, (list, tuple)):
            values.append(float(point[-1]))
        else:
            values.append(float(point))
    return values


def _first_loss(curve: Sequence[Any]) -> float:
    return _loss_values(curve)[0]


def _last_loss(curve: Sequence[Any]) -> float:
    return _loss_values(curve)[-1]


def _no_progress(history: Sequence[IterationSummary], tier: str, patience: int) -> bool:
    """True when the last ``patience`` iterations did not beat the best score before them."""
    scores = [float(h.scores.get(tier, {}).get("accuracy", 0.0)) for h in history if h.scores]
    if patience <= 0 or len(scores) <= patience:
        return False
    best_before = max(scores[:-patience])
    return max(scores[-patience:]) <= best_before


def read_status(home: Path, run_id: str) -> dict[str, Any]:
    """A run's state from its folder alone (no database), safe while the run writes."""
    folder = run_dir(home, run_id)
    state = _read_json(folder / "state.json")
    if state is None:
        from forgemind_hookspecs import UserError

        raise UserError(f"no run {run_id!r} in {home}")
    iterations = []
    n = 1
    while folder.joinpath(f"iter-{n}").exists():
        done = [s for s in RECORDED_STAGES if (folder / f"iter-{n}" / f"{s}.json").exists()]
        ev = _read_json(folder / f"iter-{n}" / "evaluate.json") or {}
        iterations.append({"iteration": n, "stages_done": done, "scores": ev.get("scores", {})})
        n += 1
    driving = None
    lock = folder / ".lock"
    if lock.exists() and state.get("status") != "finished":
        with contextlib.suppress(OSError, ValueError):
            import fcntl

            fd = os.open(lock, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:
                driving = int(lock.read_text() or 0) or None
            finally:
                os.close(fd)
    return {**state, "iterations": iterations, "driven_by_pid": driving,
            "tiers": list(TIERS)}


if TYPE_CHECKING:  # mypy checks that Loop is what candidates and the Warden's review are written against
    def _is_run_handle(loop: Loop) -> RunHandle:
        return loop
