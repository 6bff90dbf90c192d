"""Human review and approval: the loop's review stage and the queue's API.

Review items and decisions are events (``review.item``, ``review.decision``) recorded in the
item's run, like everything else a run does, so the registry's ``reviews`` table is the queue
and the journal is its source of truth: a decision made in another process (``forge review``
over SSH, the dashboard, an imported JSONL file) reaches a waiting loop through the registry.

- :func:`review_stage` (between ``filter`` and ``dataset``): queues kept examples whose
  verdicts asked for review (a score in the policy's grey band) plus a seeded random sample,
  lets the goal's reviewer backend decide what it can (``human`` decides nothing), then waits
  for, skips or keeps the undecided ones as the policy says. Rejections and edits become
  ``review`` verdicts (``forge show RUN --rejections``); an edit replaces the example.
- :func:`request_approval` / :func:`approve`: a policy with ``approval_required`` turns the
  loop's promotion into a ``promotion`` review item; ``forge approve CHECKPOINT`` records the
  approval (reviewer, time) and then the promotion.

The stage sees its run through :class:`~forgemind_core.base.protocols.RunHandle` and the kernel
through :class:`~forgemind_core.base.protocols.KernelHandle`: the Warden imports nothing of the
Brain that drives it.
"""

from __future__ import annotations

import getpass
import json
import os
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs import (
    DataError,
    Example,
    ForgeError,
    Message,
    ReviewDecision,
    ReviewItem,
    StageContext,
    UserError,
    Verdict,
    content_hash,
    to_dict,
)
from forgemind_hookspecs.policy import Policy

from forgemind_core.base.events import make_event
from forgemind_core.base.fsio import dumps_line, read_json, read_jsonl, write_json
from forgemind_core.base.protocols import KernelHandle, RunHandle
from forgemind_core.base.runfolder import RunFolder

__all__ = [
    "ACTIONS",
    "ReviewPending",
    "approve",
    "decide",
    "default_reviewer",
    "export_queue",
    "import_decisions",
    "queue",
    "request_approval",
    "review_stage",
]

#: What a reviewer may decide. ``skip`` is recorded but leaves the item pending.
ACTIONS: tuple[str, ...] = ("approve", "reject", "edit", "skip")
_BATCH = 256


class ReviewPending(ForgeError):
    """The loop waited ``review.wait_timeout_s`` and items are still undecided; the run is
    paused, not finished: decide them (``forge review RUN``), then ``forge resume RUN``."""


def default_reviewer() -> str:
    """``$USER`` (or the login name): who a decision is recorded as when nobody says."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


# --------------------------------------------------------------------------------------------
# Recording.
# --------------------------------------------------------------------------------------------


def _record_decision(forge: KernelHandle, row: Mapping[str, Any], decision: ReviewDecision) -> None:
    event = make_event(row["run_id"], "review.decision", iteration=int(row.get("iteration") or 0), stage="review",
                       payload={"decision": to_dict(decision)},
                       key=f"{decision.item_id}:{decision.time!r}:{decision.action}")
    forge.record([event])


# --------------------------------------------------------------------------------------------
# The queue (what Forge.review_queue / review / approve call).
# --------------------------------------------------------------------------------------------


def queue(forge: KernelHandle, run_id: str | None = None, *, status: str | None = "pending",
          subject_kind: str | None = None) -> list[dict[str, Any]]:
    """Review items, oldest first, each with its latest decision and ``status``."""
    return list(forge.registry().reviews(run_id, status=status, subject_kind=subject_kind))


def _find(forge: KernelHandle, item_id: str) -> dict[str, Any]:
    rows = queue(forge, status=None)
    exact = [r for r in rows if r["item_id"] == item_id]
    matches = exact or [r for r in rows if item_id and r["item_id"].startswith(item_id)]
    if not matches:
        raise UserError(f"no review item {item_id!r} in {forge.home}", field="item")
    if len(matches) > 1:
        shown = ", ".join(r["item_id"] for r in matches[:5])
        raise UserError(f"the review item prefix {item_id!r} is ambiguous: it matches {shown}", field="item")
    return matches[0]


def decide(forge: KernelHandle, item_id: str, action: str, *, reason: str | None = None, reviewer: str | None = None,
           edit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Record a decision on one review item (a unique id prefix will do).

    :param action: ``approve``, ``reject``, ``edit`` (with ``edit``: the new ``completion`` and/or
        ``prompt``; for a chat example the new ``messages``) or ``skip``.
    :returns: the item row with the decision applied.
    :raises UserError: unknown item or action, an edit without content, or an example decision
        on a promotion (use :func:`approve`, which also promotes).
    """
    if action not in ACTIONS:
        raise UserError(f"unknown review action {action!r}; use one of {', '.join(ACTIONS)}", field="action")
    row = _find(forge, item_id)
    if action == "edit":
        if row["subject_kind"] != "example":
            raise UserError("only examples can be edited; a promotion is approved or rejected", field="edit")
        allowed = {"prompt", "completion", "messages", "category"}
        if not edit or not set(edit) <= allowed:
            raise UserError(f"an edit needs new values for some of: {', '.join(sorted(allowed))}", field="edit")
    decision = ReviewDecision(item_id=row["item_id"], action=action,  # type: ignore[arg-type]
                              reviewer=reviewer or default_reviewer(), reason=reason or "",
                              edited=dict(edit) if action == "edit" and edit else None)
    if row["subject_kind"] == "promotion" and action == "approve":
        return approve(forge, row["subject_id"], reviewer=decision.reviewer, reason=decision.reason)
    _record_decision(forge, row, decision)
    return {**row, "action": action, "reviewer": decision.reviewer, "reason": decision.reason,
            "edited": decision.edited, "decided": decision.time,
            "status": "pending" if action == "skip" else "decided"}


def request_approval(loop: RunHandle, n: int, checkpoint_id: str, reasons: Sequence[str]) -> ReviewItem:
    """Queue the promotion of ``checkpoint_id`` for a human's approval (the loop calls this
    instead of recording the promotion when the policy says ``approval_required``)."""
    evaluate = read_json(loop.iter_dir(n) / "evaluate.json") or {}
    item = ReviewItem(
        id=content_hash([loop.run_id, n, "promotion", checkpoint_id]),
        run_id=loop.run_id, subject_kind="promotion", subject_id=checkpoint_id,
        payload={"iteration": n, "channel": "stable", "checkpoint_id": checkpoint_id,
                 "policy": getattr(loop.policy, "source", None)},
        scores={str(k): float(v) for k, v in (evaluate.get("scores") or {}).items()},
        reasons=(*reasons, "the policy requires a human's approval before promotion"),
    )
    loop.record("review.item", iteration=n, stage="decide", key=item.id, payload={"item": to_dict(item)})
    return item


def approve(forge: KernelHandle, checkpoint: str, *, reviewer: str | None = None, reason: str = "") -> dict[str, Any]:
    """Approve a candidate's promotion: record the decision (reviewer, time), then promote it
    to the stable channel. ``checkpoint`` may be a unique prefix of the checkpoint id.

    :raises UserError: no promotion of that checkpoint awaits approval.
    """
    rows = [r for r in queue(forge, status=None, subject_kind="promotion")
            if r["subject_id"] == checkpoint or r["subject_id"].startswith(checkpoint)]
    ids = {r["subject_id"] for r in rows}
    if len(ids) > 1:
        raise UserError(f"the checkpoint prefix {checkpoint!r} is ambiguous: it matches {', '.join(sorted(ids))}",
                        field="checkpoint")
    pending = [r for r in rows if r["status"] == "pending"]
    if not pending:
        if rows and rows[-1]["action"] == "approve":
            raise UserError(f"checkpoint {rows[-1]['subject_id']} was already approved by {rows[-1]['reviewer']}",
                            field="checkpoint")
        raise UserError(f"no promotion of checkpoint {checkpoint!r} awaits approval", field="checkpoint")
    row = pending[-1]
    decision = ReviewDecision(item_id=row["item_id"], action="approve", reviewer=reviewer or default_reviewer(),
                              reason=reason)
    _record_decision(forge, row, decision)
    payload = row.get("payload") or {}
    cid = row["subject_id"]
    forge.record([make_event(row["run_id"], "promotion",
                             iteration=int(row.get("iteration") or payload.get("iteration") or 0), stage="decide",
                             payload={"checkpoint_id": cid, "channel": payload.get("channel", "stable"),
                                      "run_id": row["run_id"], "approved_by": decision.reviewer,
                                      "approved_at": decision.time, "review_item": row["item_id"]},
                             key="approved")])
    _mark_run_promoted(Path(forge.home), row["run_id"], cid, decision)
    return {**row, "action": "approve", "reviewer": decision.reviewer, "reason": reason,
            "decided": decision.time, "status": "decided"}


def _mark_run_promoted(home: Path, run_id: str, checkpoint_id: str, decision: ReviewDecision) -> None:
    path = RunFolder(home, run_id).state_file
    state = read_json(path)
    if state is None or state.get("outcome") != "candidate":
        return
    state.update(outcome="promoted", stable_checkpoint=checkpoint_id,
                 approval={"checkpoint_id": checkpoint_id, "reviewer": decision.reviewer, "time": decision.time})
    write_json(path, state)


# --------------------------------------------------------------------------------------------
# Export / import (review in other tools).
# --------------------------------------------------------------------------------------------


def export_queue(forge: KernelHandle, path: str | os.PathLike[str], run_id: str | None = None) -> int:
    """Write the pending items as JSONL (one item a line, ``decision`` left for the reviewer
    to fill in: ``{"action": ..., "reason": ..., "edited": {...}}``); returns how many."""
    rows = queue(forge, run_id)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(dumps_line({"item_id": row["item_id"], "run_id": row["run_id"],
                                 "subject_kind": row["subject_kind"], "subject_id": row["subject_id"],
                                 "payload": row["payload"], "scores": row["scores"], "reasons": row["reasons"],
                                 "decision": None}))
    return len(rows)


def import_decisions(forge: KernelHandle, path: str | os.PathLike[str], *,
                     reviewer: str | None = None) -> list[dict[str, Any]]:
    """Record the decisions of a JSONL file: each line an object with ``item_id`` and either a
    ``decision`` object or top-level ``action`` (``reason``, ``edited``, ``reviewer`` optional).
    Lines without a decision are skipped. Every line is checked before any is recorded.

    :raises DataError: naming the file, line and field of the first bad line.
    """
    planned: list[tuple[str, str, str | None, str | None, Mapping[str, Any] | None]] = []
    display = os.fspath(path)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(f"cannot read the decisions file: {error.strerror or error}", file=display) from None
    known = {r["item_id"] for r in queue(forge, status=None)}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"not JSON ({error.msg})", file=display, line=number) from None
        if not isinstance(data, dict):
            raise DataError("expected a JSON object", file=display, line=number)
        decision = data.get("decision") if isinstance(data.get("decision"), dict) else (data if "action" in data else None)
        if decision is None:
            continue
        item_id = data.get("item_id")
        if not isinstance(item_id, str) or item_id not in known:
            raise DataError(f"no review item {item_id!r}", file=display, line=number, field="item_id")
        action = decision.get("action")
        if action not in ACTIONS:
            raise DataError(f"expected one of {', '.join(ACTIONS)}, got {action!r}", file=display, line=number,
                            field="decision.action")
        edited = decision.get("edited")
        if action == "edit" and not isinstance(edited, dict):
            raise DataError("an edit needs an 'edited' object", file=display, line=number, field="decision.edited")
        planned.append((item_id, action, decision.get("reason"), decision.get("reviewer") or reviewer, edited))
    return [decide(forge, i, a, reason=r, reviewer=who, edit=e) for i, a, r, who, e in planned]


# --------------------------------------------------------------------------------------------
# The loop's review stage.
# --------------------------------------------------------------------------------------------


def _flagged(verdict_path: Path, kept: set[str]) -> dict[str, dict[str, Any]]:
    flagged: dict[str, dict[str, Any]] = {}
    for v in read_jsonl(verdict_path):
        if not v.get("review") or v["example_id"] not in kept:
            continue
        entry = flagged.setdefault(v["example_id"], {"scores": {}, "reasons": []})
        if v.get("score") is not None:
            entry["scores"][f"{v['filter']}.{v.get('rule') or 'score'}"] = float(v["score"])
        entry["reasons"].append(f"{v['filter']}: {v.get('reason') or 'asked for review'}")
    return flagged


def _asked(examples: Mapping[str, Example], kept_ids: Sequence[str], flagged: dict[str, dict[str, Any]]) -> set[str]:
    """Add to ``flagged`` the kept examples whose generator asked for review (``meta.review``: the
    files generator's labeller, a label below its ``min_confidence``, with the confidence as the
    item's score); returns their ids. Undecided, they stay out of the data whatever
    ``review.pending`` says."""
    asked: set[str] = set()
    for eid in kept_ids:
        example = examples.get(eid)
        if example is None or not example.meta.get("review"):
            continue
        entry = flagged.setdefault(eid, {"scores": {}, "reasons": []})
        if isinstance(example.meta.get("confidence"), (int, float)):
            entry["scores"][f"{example.source.generator}.confidence"] = float(example.meta["confidence"])
        entry["reasons"].append(str(example.meta["review"]))
        asked.add(eid)
    return asked


def _edited(example: Example, edit: Mapping[str, Any], reviewer: str) -> Example:
    messages = example.messages
    if "messages" in edit and isinstance(edit["messages"], list):
        messages = tuple(Message(str(m["role"]), str(m["content"])) for m in edit["messages"])
    return Example(
        prompt=str(edit.get("prompt", example.prompt)),
        completion=str(edit.get("completion", example.completion)),
        messages=messages,
        category=edit.get("category", example.category),
        source=example.source,
        meta={**dict(example.meta), "edited_from": example.id, "edited_by": reviewer},
    )


def review_stage(loop: RunHandle, n: int, ctx: StageContext) -> dict[str, Any]:
    """Queue, decide or wait, and return the filter stage's output shape after review."""
    policy = loop.policy
    if policy is None:
        raise ForgeError(f"run {loop.run_id}: the review stage needs a policy (review.policy in the goal)")
    folder = loop.iter_dir(n)
    filt = read_json(folder / "filter.json")
    kept_ids: list[str] = list(filt["kept_ids"])
    examples = {e.id: e for e in loop.examples(n)}
    flagged = _flagged(folder / "verdicts.jsonl", set(kept_ids))
    asked = _asked(examples, kept_ids, flagged)  # a generator's own request: trained on only once approved
    if policy.review.sample > 0:
        rest = [i for i in kept_ids if i not in flagged]
        count = min(len(rest), round(policy.review.sample * len(rest)))
        for example_id in sorted(random.Random(ctx.seed).sample(rest, count)):
            flagged[example_id] = {"scores": {}, "reasons": [f"random sample ({policy.review.sample:.0%} of kept examples)"]}
    items = [
        ReviewItem(id=content_hash([loop.run_id, n, eid]), run_id=loop.run_id, subject_kind="example", subject_id=eid,
                   payload={"example": to_dict(examples[eid]), "iteration": n},
                   scores=info["scores"], reasons=tuple(info["reasons"]))
        for eid, info in flagged.items() if eid in examples
    ]
    for i in range(0, len(items), _BATCH):
        for item in items[i:i + _BATCH]:
            loop.record("review.item", iteration=n, stage="review", key=item.id, payload={"item": to_dict(item)})
    inherited = _inherit_decisions(loop, n, items)
    undecided = [item for item in items if item.id not in inherited]
    if undecided:
        choice = loop.goal.review
        reviewer = loop.forge.backend("reviewers", choice.backend or "human", choice.options, field="review")
        for decision in reviewer.review(undecided, ctx):
            loop.record("review.decision", iteration=n, stage="review", key=f"{decision.item_id}:backend",
                         payload={"decision": to_dict(decision)})
    decided = _wait(loop, n, items, policy) if items else {}
    verdicts: list[Verdict] = []
    dropped: set[str] = set()
    added: list[Example] = []
    counts = {"items": len(items), "approved": 0, "rejected": 0, "edited": 0, "pending": 0}
    for item in items:
        row = decided.get(item.id)
        eid = item.subject_id
        if row is None:
            counts["pending"] += 1
            if policy.review.pending == "skip" or eid in asked:
                dropped.add(eid)
                verdicts.append(Verdict(eid, "review", False, rule="pending",
                                        reason="awaiting human review; left out of this iteration's data"))
            continue
        who, why = row.get("reviewer") or "?", row.get("reason") or ""
        if row["action"] == "reject":
            counts["rejected"] += 1
            dropped.add(eid)
            verdicts.append(Verdict(eid, "review", False, rule="rejected",
                                    reason=f"rejected by {who}" + (f": {why}" if why else "")))
        elif row["action"] == "edit" and _edited(examples[eid], row.get("edited") or {}, who).id != eid:
            counts["edited"] += 1
            dropped.add(eid)
            new = _edited(examples[eid], row.get("edited") or {}, who)
            added.append(new)
            verdicts.append(Verdict(eid, "review", False, rule="edited",
                                    reason=f"replaced by {new.id}, edited by {who}" + (f": {why}" if why else "")))
        else:  # approved, or "edited" to the same content
            counts["approved"] += 1
            verdicts.append(Verdict(eid, "review", True, rule="approved", reason=f"{row['action']}d by {who}"))
    if added:
        loop.record("examples", iteration=n, stage="review", key="edits",
                     payload={"examples": [to_dict(e) for e in added]})
    if verdicts:
        loop.record("verdicts", iteration=n, stage="review", key="review",
                     payload={"verdicts": [to_dict(v) for v in verdicts]})
    final = [i for i in kept_ids if i not in dropped]
    final_examples = [examples[i] for i in final] + added
    dropped_by_reason = dict(filt["dropped_by_reason"])
    for v in verdicts:
        if not v.keep:
            key = f"review.{v.rule}"
            dropped_by_reason[key] = dropped_by_reason.get(key, 0) + 1
    kept_by_category: dict[str, int] = {}
    for example in final_examples:
        kept_by_category[example.category or ""] = kept_by_category.get(example.category or "", 0) + 1
    return {**counts, "kept": len(final_examples), "dropped": filt["dropped"] + len(dropped),
            "kept_ids": final + [e.id for e in added], "added_examples": [to_dict(e) for e in added],
            "kept_by_category": kept_by_category, "dropped_by_reason": dropped_by_reason}


def _ancestors(loop: RunHandle) -> list[str]:
    """The runs this one was forked from, nearest first (``state.json``'s ``parent``)."""
    out: list[str] = []
    parent = (loop.state.get("parent") or {}).get("run_id")
    while parent and parent not in out and parent != loop.run_id:
        out.append(parent)
        state = read_json(RunFolder(loop.forge.home, parent).state_file) or {}
        parent = (state.get("parent") or {}).get("run_id")
    return out


def _inherit_decisions(loop: RunHandle, n: int, items: Sequence[ReviewItem]) -> set[str]:
    """In a fork whose review stage runs again (its data changed), record for each item the
    decision a reviewer already made on the same example (same content, same id) in the run it
    was forked from (or that run's parent, ...), marked ``inherited_from``; returns the item ids
    so decided. A human is never asked twice about one example, and no decision is dropped."""
    ancestors = _ancestors(loop) if items else []
    if not ancestors:
        return set()
    registry = loop.forge.registry()
    earlier: dict[str, tuple[str, dict[str, Any]]] = {}
    for run_id in ancestors:  # nearest first: a fork's own (re)decision wins over its parent's
        for row in registry.reviews(run_id, status="decided", subject_kind="example"):
            earlier.setdefault(row["subject_id"], (run_id, row))
    done: set[str] = set()
    for item in items:
        if item.subject_id not in earlier:
            continue
        source, row = earlier[item.subject_id]
        decision = ReviewDecision(item_id=item.id, action=row["action"], reviewer=row.get("reviewer") or "?",
                                  reason=row.get("reason") or "", edited=row.get("edited"),
                                  time=float(row.get("decided") or time.time()))
        loop.record("review.decision", iteration=n, stage="review", key=f"{item.id}:inherited",
                     payload={"decision": to_dict(decision), "inherited_from": source, "item": row["item_id"]})
        done.add(item.id)
    return done


def _decisions(loop: RunHandle, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = set(ids)
    return {r["item_id"]: r for r in loop.forge.registry().reviews(loop.run_id, status="decided")
            if r["item_id"] in wanted}


def _wait(loop: RunHandle, n: int, items: Sequence[ReviewItem], policy: Policy) -> dict[str, dict[str, Any]]:
    decided = _decisions(loop, (i.id for i in items))
    if policy.review.pending != "wait":
        return decided
    started = time.monotonic()
    told = False
    while len(decided) < len(items):
        waiting = len(items) - len(decided)
        if not told:
            loop.reporter.line(f"  review: {waiting} item(s) wait for a human: forge review {loop.run_id}")
            told = True
        timeout = policy.review.wait_timeout_s
        if timeout is not None and time.monotonic() - started >= timeout:
            loop.state["status"] = "paused"
            loop.save_state()
            raise ReviewPending(
                f"run {loop.run_id} paused: {waiting} review item(s) still undecided after {timeout:g} s; "
                f"decide them with `forge review {loop.run_id}`, then `forge resume {loop.run_id}`"
            )
        time.sleep(policy.review.poll_s if timeout is None else min(policy.review.poll_s, max(0.05, timeout)))
        decided = _decisions(loop, (i.id for i in items))
    return decided
