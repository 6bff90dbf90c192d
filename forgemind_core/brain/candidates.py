"""Parallel experimentation: K candidate plans per iteration, each a branch of the run.

With ``search.candidates: K`` (K > 1) an iteration's plan stage is followed by a ``candidates``
stage (docs/candidates.md):

1. :func:`propose` turns the planner's plan into K plans: the planner's own first, the others
   drawn (seeded) from ``search.space`` (``train.<option>``, ``dataset_size``, ``strategy``).
2. Each becomes a :class:`CandidateJob`: a picklable, self-contained unit (the goal, the plan, the
   parent run and the paths) that the goal's executor backend runs (``executor.map``), in worker
   processes on this machine (``local``) or on a Ray cluster (``forgemind-ray``).
3. :func:`run_candidate` (in the worker) runs the candidate as a *branch* of the run: a child run
   whose folder starts with copies of the parent's records before this iteration (as
   ``forge fork`` does, forks.py) and whose iteration n is the candidate plan. It never touches
   the registry (DuckDB has one writer): its events go to a journal file in its own folder, and
   only when the run is finished does ``candidate.json`` appear (written under a temporary name
   and renamed). A worker killed midway leaves a folder without ``candidate.json``; the executor's
   retry resumes that child run (training resumes from its last checkpoint).
4. The driver (:func:`run_candidates`) ingests the journals of finished candidates into the
   registry, charges their cost to the run's budget, and picks the winner by the goal's success
   criterion (met first, then the target tier's score, then the lower cost). The run adopts the
   winner's iteration: its stage records are copied into the run's iteration folder and
   re-recorded with ``inherited_from`` (the registry links them as *reused*), so the loop goes on
   to decide exactly as if it had run the winning plan itself. Losers stay inspectable and
   forkable runs (``forge runs --tree``, ``forge fork``).

A driver that crashes resumes the stage: candidates with a ``candidate.json`` are ingested, not
run again.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import Factory, evolve, frozen
from forgemind_hookspecs import (
    Event,
    ForgeError,
    Goal,
    Plan,
    SearchSection,
    StageContext,
    from_dict,
    to_dict,
)

__all__ = [
    "CandidateJob",
    "adopt_winner",
    "propose",
    "run_candidate",
    "run_candidates",
    "space_key_problem",
]

#: Files of a finished candidate folder.
DONE = "candidate.json"
JOURNAL = "journal.jsonl"
_TRAIN_KEY = re.compile(r"^train\.[A-Za-z_][A-Za-z0-9_]*$")
#: The stage records of an iteration the run adopts from its winning candidate.
_ADOPTED = ("generate", "filter", "review", "dataset", "estimate", "train", "evaluate")
_STAGE_FILES = {"generate": ("examples.jsonl",), "filter": ("verdicts.jsonl",)}


def space_key_problem(key: str, values: Sequence[Any]) -> str:
    """What is wrong with one ``search.space`` entry (one sentence), or ``""``."""
    if not (_TRAIN_KEY.match(key) or key in ("dataset_size", "strategy")):
        return "unknown search key; use train.<option> (e.g. train.learning_rate), dataset_size or strategy"
    if not values:
        return "expected a non-empty list of values to try"
    if key == "dataset_size" and not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        return "expected a list of positive integers (new examples per candidate)"
    if key == "strategy" and not all(isinstance(v, str) and v for v in values):
        return "expected a list of strategy names"
    return ""


# --------------------------------------------------------------------------------------------
# Proposing candidates.
# --------------------------------------------------------------------------------------------


def _apply(plan: Plan, changes: Mapping[str, Any]) -> Plan:
    train = dict(plan.train)
    generation = list(plan.generation)
    size = plan.dataset_size
    for key, value in changes.items():
        if key.startswith("train."):
            train[key.split(".", 1)[1]] = value
        elif key == "strategy":
            generation = [evolve(g, strategy=str(value)) for g in generation]
        elif key == "dataset_size":
            total = sum(g.count for g in generation) or 1
            generation = [evolve(g, count=max(1, round(int(value) * g.count / total))) for g in generation]
            size = int(value)
    return evolve(plan, train=train, generation=tuple(generation), dataset_size=size)


def _current(plan: Plan, key: str) -> Any:
    if key.startswith("train."):
        return plan.train.get(key.split(".", 1)[1])
    if key == "strategy":
        return plan.generation[0].strategy if plan.generation else None
    return sum(g.count for g in plan.generation)


def propose(search: SearchSection, plan: Plan, seed: int) -> list[tuple[Plan, dict[str, Any]]]:
    """``search.candidates`` plans with what each changes: the planner's ``plan`` first (no
    change), then distinct points of ``search.space`` in a seeded order (the same run gets the
    same candidates after a resume)."""
    out: list[tuple[Plan, dict[str, Any]]] = [(evolve(plan, candidate=0), {})]
    keys = sorted(search.space)
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(search.space[k] for k in keys))]
    random.Random(seed).shuffle(points)
    for point in points:
        if len(out) >= search.candidates:
            break
        changes = {k: v for k, v in point.items() if _current(plan, k) != v}
        if not changes or any(c == changes for _, c in out):
            continue
        out.append((evolve(_apply(plan, changes), candidate=len(out)), changes))
    return out


# --------------------------------------------------------------------------------------------
# The work unit and what runs in the worker.
# --------------------------------------------------------------------------------------------


@frozen
class CandidateJob:
    """One candidate, self-contained and picklable: what a worker needs to run it anywhere that
    can import forgemind_core and see ``storage`` (and ``home``, for the parent's records).

    ``plugins`` are the driver's in-process plugins as importable ``(module, attribute)`` names
    (attribute ``""`` for a module); ``python_path`` is added to the worker's ``sys.path``.
    """

    home: str
    storage: str
    parent_run: str
    parent_branch: str
    iteration: int
    candidate: int
    run_id: str
    branch: str
    goal: Mapping[str, Any]
    plan: Mapping[str, Any]
    adversarial_cases: tuple[Mapping[str, Any], ...] = ()
    changes: Mapping[str, Any] = Factory(dict)
    plugins: tuple[tuple[str, str], ...] = ()
    entry_points: bool = True
    builtins: bool = True
    blocked: tuple[str, ...] | None = None
    python_path: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return Path(self.storage) / "runs" / self.run_id


def _import_plugin(module: str, attribute: str) -> Any:
    import importlib

    obj: Any = importlib.import_module(module)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


def _journal_forge(job: CandidateJob, journal: Path) -> Any:
    """A kernel for the worker whose recorders are one append-only file, not the registry."""
    from forgemind_core.api import Forge

    class JournalForge(Forge):
        def record(self, events: Sequence[Event]) -> None:
            if not events:
                return
            with open(journal, "a", encoding="utf-8") as fh:
                for event in events:
                    fh.write(json.dumps(to_dict(event), sort_keys=True, default=str, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    plugins = [_import_plugin(m, a) for m, a in job.plugins]
    return JournalForge(home=job.storage, plugins=plugins, entry_points=job.entry_points,
                        builtins=job.builtins, blocked=job.blocked)


def _prepare(job: CandidateJob) -> dict[str, Any]:
    """Copy the parent's records before the candidate's iteration into the child's folder (as a
    fork does) and write the candidate's plan; return the fork's ``parent`` record."""
    from forgemind_core.brain.forks import _link_or_copy
    from forgemind_core.brain.loop import RECORDED_STAGES, _write_json

    parent_dir = Path(job.home) / "runs" / job.parent_run
    reused: dict[str, list[str]] = {}
    if (parent_dir / "base.json").is_file():
        _link_or_copy(parent_dir / "base.json", job.folder / "base.json")
        reused["0"] = ["base"]
    for k in range(1, job.iteration):
        names = [s for s in RECORDED_STAGES if (parent_dir / f"iter-{k}" / f"{s}.json").is_file()]
        for name in names:
            for file in (f"{name}.json", *_STAGE_FILES.get(name, ())):
                if (parent_dir / f"iter-{k}" / file).is_file():
                    _link_or_copy(parent_dir / f"iter-{k}" / file, job.folder / f"iter-{k}" / file)
        if names:
            reused[str(k)] = names
    _write_json(job.folder / f"iter-{job.iteration}" / "plan.json",
                {"plan": dict(job.plan), "adversarial_cases": list(job.adversarial_cases),
                 "candidate": job.candidate, "changes": dict(job.changes)})
    return {
        "run_id": job.parent_run,
        "iteration": job.iteration,
        "branch": job.branch,
        "parent_branch": job.parent_branch,
        "changed": sorted(job.changes),
        "rerun_from": "plan",
        "reused": reused,
        "candidate": job.candidate,
    }


def _limit_threads_from_env() -> None:
    threads = os.environ.get("FORGEMIND_WORKER_THREADS")
    if threads and "torch" in sys.modules:  # torch read OMP_NUM_THREADS at import; set it anyway
        sys.modules["torch"].set_num_threads(int(threads))


def run_candidate(job: CandidateJob) -> dict[str, Any]:
    """Run one candidate to its end in this process and return its ``candidate.json``.

    Idempotent: a finished candidate returns its record at once; one a dead worker left behind is
    resumed from its last finished stage. Exceptions of the candidate's own run are caught and
    recorded (status ``failed``); a killed process leaves no ``candidate.json``.
    """
    from forgemind_core.brain.loop import Loop, _read_json, _write_json

    for entry in job.python_path:
        if entry not in sys.path:
            sys.path.append(entry)
    _limit_threads_from_env()
    folder = job.folder
    done = _read_json(folder / DONE)
    if done is not None:
        return dict(done)
    (folder / ".attempts").mkdir(parents=True, exist_ok=True)
    (folder / ".attempts" / str(os.getpid())).write_text(str(os.getpid()))
    forge = _journal_forge(job, folder / JOURNAL)
    result: dict[str, Any] = {
        "run_id": job.run_id, "candidate": job.candidate, "iteration": job.iteration, "branch": job.branch,
        "changes": dict(job.changes), "plan": dict(job.plan), "status": "finished", "error": "",
        "pid": os.getpid(), "attempts": len(list((folder / ".attempts").iterdir())),
    }
    try:
        if (folder / "goal.json").is_file():
            loop = Loop.resume(forge, job.run_id)
        else:
            parent = _prepare(job)
            loop = Loop.start(forge, from_dict(Goal, dict(job.goal)), run_id=job.run_id, parent=parent)
        summary = loop.run()
        result.update(outcome=summary.get("outcome"), reasons=summary.get("reasons", []),
                      cost_usd=float(summary.get("cost_usd") or 0.0))
    except Exception as error:  # the candidate failed on its own terms: recorded, not retried
        result.update(status="failed", error=f"{type(error).__name__}: {error}", cost_usd=float(
            (_read_json(folder / "state.json") or {}).get("spent_usd", 0.0)))
    n = job.iteration
    ev = _read_json(folder / f"iter-{n}" / "evaluate.json") or {}
    tr = _read_json(folder / f"iter-{n}" / "train.json") or {}
    est = _read_json(folder / f"iter-{n}" / "estimate.json") or {}
    result.update(scores=dict(ev.get("scores") or {}), evaluated=bool(ev),
                  checkpoint_id=(tr.get("checkpoint") or {}).get("id"),
                  estimate_usd=float((est.get("estimate") or {}).get("cost_usd", 0.0) or 0.0))
    _write_json(folder / DONE, result)  # atomic: the candidate's record exists whole or not at all
    return result


# --------------------------------------------------------------------------------------------
# The driver's side.
# --------------------------------------------------------------------------------------------


def _plugin_names(forge: Any) -> tuple[tuple[str, str], ...]:
    names = []
    for plugin in forge._plugin_args["plugins"]:
        obj = plugin[1] if isinstance(plugin, tuple) else plugin
        if isinstance(obj, types.ModuleType):
            names.append((obj.__name__, ""))
        elif hasattr(obj, "__module__") and hasattr(obj, "__qualname__"):
            names.append((obj.__module__, obj.__qualname__))
        else:
            raise ForgeError(f"in-process plugin {obj!r} cannot be sent to candidate workers: "
                             "pass a module or a class")
    return tuple(names)


def _branch(n: int, k: int, changes: Mapping[str, Any]) -> str:
    what = ",".join(f"{key.split('.')[-1]}={value}" for key, value in changes.items()) or "planned"
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", f"candidate-{n}.{k}:{what}")[:60]


def _projected_costs(loop: Any, n: int, plans: Sequence[Plan]) -> list[float | None]:
    """Each candidate's cost, projected from the last trained iteration's estimate (cost per
    example of its dataset, times the dataset the candidate would train on); ``None`` with no
    such history (the per-candidate budget share still bounds the spend)."""
    last = next((h for h in reversed(loop.history(upto=n - 1)) if h.estimate is not None and h.kept), None)
    if last is None or last.estimate is None:
        return [None] * len(plans)
    previous = loop.latest_dataset(before=n)
    size = previous.n_examples if previous is not None else 0
    per_example = last.estimate.cost_usd / max(1, size)
    base_epochs = float(last.plan.train.get("epochs", 1) or 1)
    return [per_example * (size + sum(g.count for g in p.generation))
            * float(p.train.get("epochs", base_epochs) or base_epochs) / base_epochs for p in plans]


def _read_events(path: Path) -> list[Event]:
    events = []
    if path.exists():
        for raw in path.read_bytes().splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                break  # a torn last line: the writer died midway
            try:
                events.append(from_dict(Event, json.loads(raw)))
            except ValueError:
                continue
    return events


def _rank(goal: Goal, row: Mapping[str, Any]) -> tuple[Any, ...]:
    success = goal.success
    scores = row.get("scores") or {}
    target = scores.get(success.tier)
    met = (target is not None and target >= success.threshold
           and scores.get("canary", 1.0) >= success.canary_min
           and scores.get("adversarial", 1.0) >= success.adversarial_min)
    return (met, target if target is not None else -1.0, scores.get("canary", 0.0), -float(row.get("cost_usd") or 0.0),
            -int(row["candidate"]))


def run_candidates(loop: Any, n: int, plan: Plan, plan_data: Mapping[str, Any], ctx: StageContext) -> dict[str, Any]:
    """The ``candidates`` stage of iteration ``n``: propose, check the budget, run the candidates
    on the goal's executor, ingest the finished ones and pick the winner."""
    goal: Goal = loop.goal
    search = goal.search
    storage = Path(search.storage) if search.storage else Path(loop.forge.home)
    proposed = propose(search, plan, goal.seed * 1000 + n)
    remaining = loop.budget.remaining_usd()
    projected = _projected_costs(loop, n, [p for p, _ in proposed])
    notes: list[str] = []
    if remaining is not None and all(c is not None for c in projected):
        kept: list[tuple[Plan, dict[str, Any]]] = []
        total = 0.0
        for item, cost in zip(proposed, projected, strict=True):
            if total + float(cost or 0.0) <= remaining + 1e-12 or not kept:
                kept.append(item)
                total += float(cost or 0.0)
            else:
                notes.append(f"candidate {item[0].candidate} left out: the candidates' projected "
                             f"${total + float(cost or 0.0):.4f} would pass the ${remaining:.4f} left")
        proposed = kept
    share = remaining / len(proposed) if remaining is not None else None
    child_goal = evolve(goal, limits=evolve(goal.limits, max_iterations=n, budget_usd=share),
                        search=SearchSection(), source=goal.source)
    parent_branch = (loop.state.get("parent") or {}).get("branch") or "main"
    args = loop.forge._plugin_args
    jobs = [
        CandidateJob(
            home=str(loop.forge.home), storage=str(storage), parent_run=loop.run_id, parent_branch=parent_branch,
            iteration=n, candidate=p.candidate, run_id=f"{loop.run_id}-c{n}.{p.candidate}",
            branch=_branch(n, p.candidate, changes), goal=to_dict(child_goal), plan=to_dict(p),
            adversarial_cases=tuple(plan_data.get("adversarial_cases") or ()), changes=changes,
            plugins=_plugin_names(loop.forge), entry_points=bool(args["entry_points"]),
            builtins=bool(args["builtins"]), blocked=args["blocked"], python_path=tuple(sys.path),
        )
        for p, changes in proposed
    ]
    for note in notes:
        loop.reporter.line(f"  candidates: {note}")
    loop.record("candidates.launched", iteration=n, stage="candidates",
                 payload={"candidates": [{"candidate": j.candidate, "run_id": j.run_id, "branch": j.branch,
                                          "changes": dict(j.changes)} for j in jobs],
                          "projected_usd": projected[:len(jobs)], "budget_share_usd": share, "notes": notes,
                          "executor": goal.executor.backend})
    todo = [j for j in jobs if not (j.folder / DONE).is_file()]  # a resumed driver reruns no finished candidate
    loop.reporter.line(f"  candidates: {len(jobs)} on the '{goal.executor.backend}' executor "
                       f"({len(jobs) - len(todo)} already finished)")
    error = ""
    if todo:
        executor = loop.forge.backend("executors", goal.executor.backend, goal.executor.options, field="executor")
        try:
            executor.map(run_candidate, todo, ctx)
        except Exception as exc:  # some candidates did not finish even after retries
            error = f"{type(exc).__name__}: {exc}"
            loop.log.warning("candidates.executor_failed", error=error)
    rows = []
    for job in jobs:
        rows.append(_ingest(loop, job, storage, error))
    finished = [r for r in rows if r["status"] == "finished" and r.get("evaluated")]
    if not finished:
        return {"candidates": rows, "winner": None, "winner_run": None, "plan": to_dict(plan),
                "reason": "no candidate finished training and evaluation" + (f" ({error})" if error else "")}
    winner = max(finished, key=lambda r: _rank(goal, r))
    loop.reporter.line(f"  candidates: winner {winner['branch']} ({winner['run_id']})")
    return {"candidates": rows, "winner": winner["candidate"], "winner_run": winner["run_id"],
            "plan": winner["plan"], "reason": f"best of {len(finished)} by {goal.success.tier} {goal.success.metric}"}


def _ingest(loop: Any, job: CandidateJob, storage: Path, error: str) -> dict[str, Any]:
    """Bring one candidate's records into the registry and the run folder: only a finished one
    (``candidate.json`` present); a dead worker's partial folder is left as it is, unrecorded."""
    from forgemind_core.brain.loop import _read_json

    done = _read_json(job.folder / DONE)
    if done is None:
        return {"candidate": job.candidate, "run_id": job.run_id, "branch": job.branch, "status": "lost",
                "error": error or "the worker did not finish", "changes": dict(job.changes), "plan": dict(job.plan)}
    home = Path(loop.forge.home)
    if storage.resolve() != home.resolve():  # records into the home's run folder, weights stay shared
        shutil.copytree(job.folder, home / "runs" / job.run_id, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("train", ".lock"))
    events = _read_events(job.folder / JOURNAL)
    for i in range(0, len(events), 256):
        loop.forge.record(events[i:i + 256])
    ingested = loop.state.setdefault("candidates_ingested", {})
    cost = float(done.get("cost_usd") or 0.0)
    if job.run_id not in ingested:  # spend tracked once per candidate, as each is brought in
        ingested[job.run_id] = cost
        if cost:
            loop.budget.settle(0.0, cost)
        loop.save_state()
    loop.record("cost", iteration=job.iteration, stage="candidates", key=job.run_id,
                 payload={"usd": cost, "what": f"candidate {job.candidate}", "run": job.run_id,
                          "total_usd": loop.budget.spent_usd})
    loop.reporter.line(f"    {job.branch}: {done.get('status')} "
                       + " · ".join(f"{t} {s:.0%}" for t, s in (done.get("scores") or {}).items()))
    return dict(done)


def adopt_winner(loop: Any, n: int, data: Mapping[str, Any]) -> None:
    """Make the winning candidate's iteration the run's own: copy its stage records into the
    run's iteration folder (weights and snapshots stay where they are) and pin its plan, so the
    loop's later stages read them back and re-record them as reused from the winner's run."""
    from forgemind_core.brain.forks import _link_or_copy
    from forgemind_core.brain.loop import _read_json, _write_json

    winner_dir = Path(loop.forge.home) / "runs" / str(data["winner_run"])
    target = loop.iter_dir(n)
    for stage in _ADOPTED:
        for file in (f"{stage}.json", *_STAGE_FILES.get(stage, ())):
            if (winner_dir / f"iter-{n}" / file).is_file() and not (target / file).exists():
                _link_or_copy(winner_dir / f"iter-{n}" / file, target / file)
    plan_data = _read_json(target / "plan.json") or {}
    if plan_data.get("plan") != data["plan"]:
        _write_json(target / "plan.json", {**plan_data, "plan": data["plan"], "proposed": plan_data.get("plan")})
    adopted = loop.state.setdefault("adopted", {})
    if adopted.get(str(n)) != data["winner_run"]:
        adopted[str(n)] = data["winner_run"]
        loop.save_state()
