"""Parallel experimentation: K candidate plans per iteration, each a branch of the run.

With ``search.candidates: K`` (K > 1) an iteration's plan stage is followed by a ``candidates``
stage (docs/candidates.md):

1. :func:`propose` turns the planner's plan into K plans: the planner's own first, the others
   drawn (seeded) from ``search.space`` (``train.<option>``, ``dataset_size``, ``strategy``).
2. Each becomes a :class:`CandidateJob`: a picklable, self-contained unit (the goal, the plan, the
   parent run, the paths, and the kernel and loop classes by importable name) that the goal's
   executor backend runs (``executor.map``), in worker processes on this machine (``local``) or
   on a Ray cluster (``forgemind-ray``).
3. :func:`run_candidate` (in the worker) runs the candidate as a *branch* of the run: a child run
   whose folder starts with copies of the parent's records before this iteration (as
   ``forge fork`` does, forks.py) and whose iteration n is the candidate plan. It never touches
   the registry (DuckDB has one writer): its events go to a journal file in its own folder, and
   only when the run is finished does ``candidate.json`` appear (written under a temporary name
   and renamed). A worker killed midway leaves a folder without ``candidate.json``; the executor's
   retry resumes that child run (training resumes from its last checkpoint).
4. The driver (:func:`run_candidates`) ingests the journals of finished candidates into the
   registry, charges their cost to the run's budget, and picks the winner by the goal's success
   criterion (:func:`forgemind_core.brain.decide.rank`: met first, then the target tier's score,
   then the canary, then the lower cost, then the first proposed). The run adopts the
   winner's iteration: its stage records are copied into the run's iteration folder and
   re-recorded with ``inherited_from`` (the registry links them as *reused*), so the loop goes on
   to decide exactly as if it had run the winning plan itself. Losers stay inspectable and
   forkable runs (``forge runs --tree``, ``forge fork``).

A driver that crashes resumes the stage: candidates with a ``candidate.json`` are ingested, not
run again.

The driver sees its run through :class:`~forgemind_core.base.protocols.RunHandle`; the worker
builds its kernel and its loop from the classes the driver runs with, named in the job, so this
module imports neither the API nor the loop.
"""

from __future__ import annotations

import importlib
import itertools
import os
import random
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

from forgemind_core.base.events import branch_slug, overrides_text
from forgemind_core.base.fsio import append_jsonl, link_or_copy, read_json, read_jsonl, write_json
from forgemind_core.base.protocols import KernelHandle, RunHandle
from forgemind_core.base.runfolder import RECORDED_STAGES, RunFolder, run_dir
from forgemind_core.brain.decide import rank
from forgemind_core.brain.search import space_key_problem

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
#: The stage records of an iteration the run adopts from its winning candidate (all but its own
#: plan and decision).
_ADOPTED = tuple(s for s in RECORDED_STAGES if s not in ("plan", "decide"))


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

    ``kernel`` and ``loop`` are the driver's kernel (``Forge``) and loop classes as importable
    ``(module, qualified name)`` pairs; ``plugins`` are the driver's in-process plugins as such
    names (attribute ``""`` for a module); ``python_path`` is added to the worker's ``sys.path``.
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
    kernel: tuple[str, str]
    loop: tuple[str, str]
    adversarial_cases: tuple[Mapping[str, Any], ...] = ()
    changes: Mapping[str, Any] = Factory(dict)
    plugins: tuple[tuple[str, str], ...] = ()
    entry_points: bool = True
    builtins: bool = True
    blocked: tuple[str, ...] | None = None
    python_path: tuple[str, ...] = ()

    @property
    def run_folder(self) -> RunFolder:
        """The candidate's run folder, under ``storage``."""
        return RunFolder(Path(self.storage), self.run_id)

    @property
    def folder(self) -> Path:
        return run_dir(Path(self.storage), self.run_id)


def _import_name(module: str, attribute: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


def _importable_name(cls: type) -> tuple[str, str]:
    """``(module, qualified name)`` of ``cls``, or of its nearest base a worker can import by
    that name (a class made inside a function cannot be)."""
    for klass in cls.__mro__:
        try:
            if _import_name(klass.__module__, klass.__qualname__) is klass:
                return klass.__module__, klass.__qualname__
        except (ImportError, AttributeError):
            continue
    raise ForgeError(f"{cls!r} cannot be sent to candidate workers: no base of it is importable by name")


def _journal_forge(job: CandidateJob, journal: Path) -> KernelHandle:
    """A kernel for the worker, of the driver's kernel class, whose recorders are one
    append-only file (fsynced per batch), not the registry."""

    def record(self: KernelHandle, events: Sequence[Event]) -> None:
        if events:
            append_jsonl(journal, [to_dict(event) for event in events])

    kernel = type("JournalForge", (_import_name(*job.kernel),), {"record": record})
    plugins = [_import_name(m, a) for m, a in job.plugins]
    forge: KernelHandle = kernel(home=job.storage, plugins=plugins, entry_points=job.entry_points,
                                 builtins=job.builtins, blocked=job.blocked)
    return forge


def _prepare(job: CandidateJob) -> dict[str, Any]:
    """Copy the parent's records before the candidate's iteration into the child's folder (as a
    fork does) and write the candidate's plan; return the fork's ``parent`` record."""
    parent, child = RunFolder(Path(job.home), job.parent_run), job.run_folder
    reused: dict[str, list[str]] = {}
    if parent.base_file.is_file():
        link_or_copy(parent.base_file, child.base_file)
        reused["0"] = ["base"]
    for k in range(1, job.iteration):
        names = parent.finished_stages(k)
        for name in names:
            parent.copy_stage(k, name, child)
        if names:
            reused[str(k)] = names
    write_json(child.stage_file(job.iteration, "plan"),
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
    for entry in job.python_path:
        if entry not in sys.path:
            sys.path.append(entry)
    _limit_threads_from_env()
    run = job.run_folder
    folder = run.path
    done = read_json(folder / DONE)
    if done is not None:
        return dict(done)
    (folder / ".attempts").mkdir(parents=True, exist_ok=True)
    (folder / ".attempts" / str(os.getpid())).write_text(str(os.getpid()))
    read_jsonl(folder / JOURNAL, repair=True)  # a dead attempt's torn last event is cut off: appends start clean
    forge = _journal_forge(job, folder / JOURNAL)
    loop_class = _import_name(*job.loop)
    result: dict[str, Any] = {
        "run_id": job.run_id, "candidate": job.candidate, "iteration": job.iteration, "branch": job.branch,
        "changes": dict(job.changes), "plan": dict(job.plan), "status": "finished", "error": "",
        "pid": os.getpid(), "attempts": len(list((folder / ".attempts").iterdir())),
    }
    try:
        if run.goal_file.is_file():
            loop = loop_class.resume(forge, job.run_id)
        else:
            parent = _prepare(job)
            loop = loop_class.start(forge, from_dict(Goal, dict(job.goal)), run_id=job.run_id, parent=parent)
        summary = loop.run()
        result.update(outcome=summary.get("outcome"), reasons=summary.get("reasons", []),
                      cost_usd=float(summary.get("cost_usd") or 0.0))
    except Exception as error:  # the candidate failed on its own terms: recorded, not retried
        result.update(status="failed", error=f"{type(error).__name__}: {error}", cost_usd=float(
            (read_json(run.state_file) or {}).get("spent_usd", 0.0)))
    n = job.iteration
    ev = read_json(run.stage_file(n, "evaluate")) or {}
    tr = read_json(run.stage_file(n, "train")) or {}
    est = read_json(run.stage_file(n, "estimate")) or {}
    result.update(scores=dict(ev.get("scores") or {}), evaluated=bool(ev),
                  checkpoint_id=(tr.get("checkpoint") or {}).get("id"),
                  estimate_usd=float((est.get("estimate") or {}).get("cost_usd", 0.0) or 0.0))
    write_json(folder / DONE, result)  # atomic: the candidate's record exists whole or not at all
    return result


# --------------------------------------------------------------------------------------------
# The driver's side.
# --------------------------------------------------------------------------------------------


def _plugin_names(forge: KernelHandle) -> tuple[tuple[str, str], ...]:
    names = []
    for plugin in forge.plugin_args["plugins"]:
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
    return branch_slug(f"candidate-{n}.{k}:{overrides_text(changes) or 'planned'}")


def _projected_costs(loop: RunHandle, n: int, plans: Sequence[Plan]) -> list[float | None]:
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
    """The events of a candidate's journal, up to a torn last line (a worker that died midway)."""
    events = []
    for record in read_jsonl(path):
        try:
            events.append(from_dict(Event, record))
        except ValueError:
            continue
    return events


def _rank(goal: Goal, row: Mapping[str, Any]) -> tuple[bool, float, float, float, int]:
    """A finished candidate's sort key: the Brain's ranking of tries, the first proposed winning ties."""
    return rank(goal.success, row.get("scores") or {}, cost_usd=float(row.get("cost_usd") or 0.0),
                order=-int(row["candidate"]))


def run_candidates(loop: RunHandle, n: int, plan: Plan, plan_data: Mapping[str, Any], ctx: StageContext) -> dict[str, Any]:
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
    args = loop.forge.plugin_args
    kernel, loop_class = _importable_name(type(loop.forge)), _importable_name(type(loop))
    jobs = [
        CandidateJob(
            home=str(loop.forge.home), storage=str(storage), parent_run=loop.run_id, parent_branch=parent_branch,
            iteration=n, candidate=p.candidate, run_id=f"{loop.run_id}-c{n}.{p.candidate}",
            branch=_branch(n, p.candidate, changes), goal=to_dict(child_goal), plan=to_dict(p),
            kernel=kernel, loop=loop_class,
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


def _ingest(loop: RunHandle, job: CandidateJob, storage: Path, error: str) -> dict[str, Any]:
    """Bring one candidate's records into the registry and the run folder: only a finished one
    (``candidate.json`` present); a dead worker's partial folder is left as it is, unrecorded."""
    done = read_json(job.folder / DONE)
    if done is None:
        return {"candidate": job.candidate, "run_id": job.run_id, "branch": job.branch, "status": "lost",
                "error": error or "the worker did not finish", "changes": dict(job.changes), "plan": dict(job.plan)}
    home = Path(loop.forge.home)
    if storage.resolve() != home.resolve():  # records into the home's run folder, weights stay shared
        shutil.copytree(job.folder, run_dir(home, job.run_id), dirs_exist_ok=True,
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


def adopt_winner(loop: RunHandle, n: int, data: Mapping[str, Any]) -> None:
    """Make the winning candidate's iteration the run's own: copy its stage records into the
    run's iteration folder (weights and snapshots stay where they are) and pin its plan, so the
    loop's later stages read them back and re-record them as reused from the winner's run."""
    winner = RunFolder(Path(loop.forge.home), str(data["winner_run"]))
    own = RunFolder(Path(loop.forge.home), loop.run_id)
    for stage in _ADOPTED:
        winner.copy_stage(n, stage, own, overwrite=False)
    plan_file = own.stage_file(n, "plan")
    plan_data = read_json(plan_file) or {}
    if plan_data.get("plan") != data["plan"]:
        write_json(plan_file, {**plan_data, "plan": data["plan"], "proposed": plan_data.get("plan")})
    adopted = loop.state.setdefault("adopted", {})
    if adopted.get(str(n)) != data["winner_run"]:
        adopted[str(n)] = data["winner_run"]
        loop.save_state()
