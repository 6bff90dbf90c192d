"""The Foundry's stages of one iteration: generate, filter, dataset.

The Brain's loop (:mod:`forgemind_core.brain.loop`) sequences them and records their boundaries;
the bodies live here and get what they need passed in: the goal, the stage's
:class:`~forgemind_hookspecs.StageContext`, the run's :class:`~forgemind_core.base.servers.ServerPool`
(backends, with any model server the goal asks for), the run's
:class:`~forgemind_core.base.runfolder.RunFolder` and a ``record`` callable for the events.

- :func:`generate`: each plan entry's generator writes examples, appended to ``examples.jsonl``
  as they come (fsynced per batch of :data:`BATCH`); a resumed stage skips those it has.
- :func:`filter_examples`: the goal's filters in order; every verdict to ``verdicts.jsonl``.
- :func:`build_dataset`: the kept examples (and a review's edits) added to the previous
  iteration's dataset, written as a content-addressed snapshot under ``<home>/datasets``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs import (
    BudgetExceeded,
    DatasetRef,
    Example,
    ForgeError,
    GenerationPlan,
    Goal,
    Plan,
    StageContext,
    UserError,
    Verdict,
    from_dict,
    to_dict,
)
from forgemind_hookspecs.snapshots import read_snapshot, write_snapshot

from forgemind_core.base.fsio import append_jsonl, dumps_line, read_json, read_jsonl
from forgemind_core.base.protocols import Record
from forgemind_core.base.runfolder import RunFolder
from forgemind_core.base.servers import ServerPool

__all__ = ["BATCH", "build_dataset", "drops", "filter_examples", "generate", "generator_options",
           "latest_dataset", "nothing_kept", "read_examples"]

#: Examples (or verdicts) per recorded event and per fsync.
BATCH = 256


def drops(by_reason: Mapping[str, int]) -> str:
    """``"rules.too_short: 16, dedupe.near_duplicate: 2"``: the filters' drops, sorted by reason."""
    return ", ".join(f"{k}: {v}" for k, v in sorted(by_reason.items()))


def read_examples(path: Path) -> list[Example]:
    """The examples appended to ``path`` so far; a torn last line (crash mid-write) is cut off."""
    return [from_dict(Example, record) for record in read_jsonl(path, repair=True)]


def generator_options(goal: Goal, gp: GenerationPlan) -> dict[str, Any]:
    """A plan entry carries its generator's options (planners copy them from the goal's
    ``generate`` entry, so two entries of one backend keep theirs); an entry without any
    falls back to the goal's first entry of that backend."""
    if gp.options:  # read back from a record, redacted: the goal's values put back
        from forgemind_core.base.logs import restore

        return dict(restore(dict(gp.options), to_dict(goal)))
    choice = next((c for c in goal.generate if c.backend == gp.generator), None)
    return dict(choice.options) if choice is not None else {}


def generate(n: int, plan: Plan, ctx: StageContext, *, goal: Goal, servers: ServerPool, record: Record,
             examples_file: Path) -> dict[str, Any]:
    """The generate stage of iteration ``n``: ``{"generated", "by_generator", "file", "note", "cost_usd"}``."""
    have = read_examples(examples_file)
    seen = {e.id for e in have}
    by_generator: dict[str, int] = {}
    cost = 0.0
    for example in have:
        by_generator[example.source.generator] = by_generator.get(example.source.generator, 0) + 1
        cost += example.source.cost_usd
    if have:  # re-deliver what a crash may have left unrecorded; ids make it a no-op otherwise
        for i in range(0, len(have), BATCH):
            batch = have[i:i + BATCH]
            record("examples", iteration=n, stage="generate", key=f"{batch[0].id}:{len(batch)}",
                   payload={"examples": [to_dict(e) for e in batch]})
    note = ""
    pending: list[Example] = []
    total = sum(gp.count for gp in plan.generation)
    task = ctx.progress(f"iteration {n}: generating", total)
    task.advance(len(have))
    examples_file.parent.mkdir(parents=True, exist_ok=True)
    with open(examples_file, "a", encoding="utf-8") as out:

        def flush() -> None:
            if not pending:
                return
            append_jsonl(out, ())  # flush and fsync what was written
            record("examples", iteration=n, stage="generate", key=f"{pending[0].id}:{len(pending)}",
                   payload={"examples": [to_dict(e) for e in pending]})
            pending.clear()

        try:
            for gp in plan.generation:
                generator = servers.backend("generators", gp.generator, generator_options(goal, gp), field="generate")
                for example in generator.generate(gp, ctx):
                    if example.id in seen:
                        continue
                    seen.add(example.id)
                    out.write(dumps_line(to_dict(example)))
                    out.flush()  # in the OS's hands at once: a killed process loses nothing
                    pending.append(example)
                    by_generator[gp.generator] = by_generator.get(gp.generator, 0) + 1
                    cost += example.source.cost_usd
                    task.advance(1)
                    if len(pending) >= BATCH:
                        flush()
        except BudgetExceeded as error:
            note = f"stopped at the budget: {error}"
        finally:
            flush()
            task.close()
    return {"generated": len(seen), "by_generator": by_generator, "file": str(examples_file), "note": note,
            "cost_usd": cost}


def filter_examples(n: int, ctx: StageContext, *, goal: Goal, servers: ServerPool, record: Record,
                    folder: RunFolder) -> dict[str, Any]:
    """The filter stage of iteration ``n``: ``{"kept", "dropped", "kept_ids", "kept_by_category",
    "dropped_by_reason"}``; each filter sees what the ones before it kept."""
    examples = read_examples(folder.examples_file(n))
    kept = examples
    dropped_by_reason: dict[str, int] = {}
    with open(folder.verdicts_file(n), "w", encoding="utf-8") as out:
        for choice in goal.filter:
            filt = servers.backend("filters", choice.backend, choice.options, field="filter")
            verdicts: Sequence[Verdict] = filt.filter(kept, ctx) if kept else []
            if len(verdicts) != len(kept):
                raise ForgeError(f"filter {choice.backend!r} returned {len(verdicts)} verdicts for {len(kept)} examples")
            survivors = []
            for example, verdict in zip(kept, verdicts, strict=True):
                out.write(dumps_line(to_dict(verdict)))
                if verdict.keep:
                    survivors.append(example)
                else:
                    reason = f"{verdict.filter}.{verdict.rule}" if verdict.rule else verdict.filter
                    dropped_by_reason[reason] = dropped_by_reason.get(reason, 0) + 1
            for i in range(0, len(verdicts), BATCH):
                batch = list(verdicts[i:i + BATCH])
                record("verdicts", iteration=n, stage="filter", key=f"{choice.backend}:{i}",
                       payload={"verdicts": [to_dict(v) for v in batch]})
            kept = survivors
        append_jsonl(out, ())  # flush and fsync
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


def latest_dataset(folder: RunFolder, *, before: int) -> DatasetRef | None:
    """The dataset of the latest iteration before ``before`` that built one."""
    for n in range(before - 1, 0, -1):
        data = read_json(folder.stage_file(n, "dataset"))
        if data is not None:
            return from_dict(DatasetRef, data["dataset"])
    return None


def build_dataset(n: int, *, goal: Goal, folder: RunFolder) -> dict[str, Any]:
    """The dataset stage of iteration ``n``: ``{"dataset": DatasetRef}``, the previous dataset
    plus what the filter (or the Warden's review, when there is one) kept."""
    filt = read_json(folder.stage_file(n, "review")) or read_json(folder.stage_file(n, "filter"))
    keep = set(filt["kept_ids"])
    new = [e for e in read_examples(folder.examples_file(n)) if e.id in keep]
    new += [from_dict(Example, e) for e in filt.get("added_examples", [])]  # edited in review
    previous = latest_dataset(folder, before=n)
    old = list(read_snapshot(previous.path)) if previous is not None else []
    old_ids = {e.id for e in old}
    examples = old + [e for e in new if e.id not in old_ids]
    if not examples:
        raise nothing_kept(n, goal, filt)
    dataset = write_snapshot(
        examples,
        Path(folder.home) / "datasets",
        parents=(previous.id,) if previous is not None else (),
        stats={"new_examples": len(examples) - len(old), "run_id": folder.run_id, "iteration": n},
    )
    return {"dataset": to_dict(dataset)}


def nothing_kept(n: int, goal: Goal, filt: Mapping[str, Any]) -> UserError:
    """The error for a first dataset with no examples: which filters dropped how many, and
    where in the goal they are configured (rather than a trainer's complaint about an empty file)."""
    reasons = drops(filt.get("dropped_by_reason") or {})
    generated = int(filt.get("kept", 0)) + int(filt.get("dropped", 0))
    message = (f"iteration {n}: nothing to train on: the filters kept none of the {generated} generated examples"
               + (f" (dropped {reasons})" if reasons else "")
               + "; loosen the filter options or fix the pack's templates")
    from forgemind_core.base.yamlfile import field_line

    source = goal.source
    return UserError(message, file=source, line=field_line(source, "filter") if source else None, field="filter")
