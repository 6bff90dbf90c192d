"""Builders of realistic event streams, shared by the tests and their worker processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgemind_hookspecs import (
    Checkpoint,
    Decision,
    EvalReport,
    EvalResult,
    Event,
    Example,
    GenerationPlan,
    Plan,
    ReviewDecision,
    ReviewItem,
    Source,
    Verdict,
    to_dict,
)
from forgemind_hookspecs.snapshots import write_snapshot

__all__ = ["Stream", "full_run", "make_examples"]

GENERATORS = (("template", None, "t-sql"), ("openai", "gpt-x", "t-yaml"))


def make_examples(n: int, *, salt: str = "", start: int = 0) -> list[Example]:
    """``n`` distinct examples, alternating between two generators/templates."""
    out = []
    for i in range(start, start + n):
        generator, model, template = GENERATORS[i % 2]
        out.append(
            Example(
                prompt=f"{salt} snippet {i}",
                completion="sqli" if i % 3 else "safe",
                category="sqli" if i % 3 else "safe",
                source=Source(
                    generator, model=model, prompt_template=template, seed=i, tokens=10, cost_usd=0.001
                ),
            )
        )
    return out


class Stream:
    """Makes the events of one run with increasing ``seq`` and fixed times (deterministic ids)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0

    def __call__(self, kind: str, payload: dict[str, Any], *, iteration: int = 0, stage: str = "") -> Event:
        self.seq += 1
        return Event(
            run_id=self.run_id, kind=kind, iteration=iteration, stage=stage, payload=payload,
            seq=self.seq, time=1_700_000_000.0 + self.seq,
        )  # fmt: skip


def full_run(
    home: Path, run_id: str = "run-a", *, n_examples: int = 30, promote: bool = True
) -> dict[str, Any]:
    """Every kind of event of docs/events.md for one iteration of one run, as batches."""
    ev = Stream(run_id)
    examples = make_examples(n_examples, salt=run_id)
    dropped = {examples[0].id: "duplicate", examples[1].id: "unsafe"}
    kept = [e for e in examples if e.id not in dropped]
    ref = write_snapshot(kept, home / "datasets")
    base = Checkpoint(
        id="base0000aaaa", path=str(home / "base"), base_model="pretrain:tiny", method="pretrain"
    )
    ck = Checkpoint(
        id=f"ck{run_id}ffff", path=str(home / "ck"), base_model="pretrain:tiny", method="lora", kind="adapter",
        dataset_id=ref.id, parent=base.id, manifest={"lr": 0.001},
    )  # fmt: skip
    plan = Plan(iteration=1, generation=(GenerationPlan("template", n_examples),), dataset_size=n_examples)
    verdicts = [
        Verdict(e.id, "dedupe" if dropped.get(e.id) == "duplicate" else "rules", e.id not in dropped,
                rule=dropped.get(e.id, ""), score=0.2 if e.id in dropped else 0.9, reason=dropped.get(e.id, ""))
        for e in examples
    ]  # fmt: skip
    results = tuple(
        EvalResult(case_id=f"c{i}", output="sqli", score=1.0, passed=True, scorer="label_match", tier=tier)
        for i in range(3)
        for tier in ("canary",)
    )
    batches = [
        [ev("run.started", {"goal": {"name": "sqli-detector", "task": "label"}, "goal_file": "goal.yaml",
                            "parent_run": None, "parent_iteration": None, "branch": "main",
                            "forgemind_version": "0.1.0"})],
        [ev("plan", {"plan": to_dict(plan), "decision": to_dict(Decision("iterate", reasons=("first",)))},
            iteration=1, stage="plan")],
        [ev("stage.started", {}, iteration=1, stage="generate"),
         ev("examples", {"examples": to_dict(examples)}, iteration=1, stage="generate")],
        [ev("verdicts", {"verdicts": to_dict(verdicts)}, iteration=1, stage="filter")],
        [ev("dataset", {"dataset": to_dict(ref)}, iteration=1, stage="dataset")],
        [ev("checkpoint", {"checkpoint": to_dict(base)}, iteration=1, stage="base"),
         ev("checkpoint", {"checkpoint": to_dict(ck)}, iteration=1, stage="train")],
        [ev("metric", {"name": "train.loss", "value": 2.0 - s / 10, "step": s}, iteration=1, stage="train")
         for s in range(5)],
        [ev("cost", {"usd": 0.5, "what": "generation", "total_usd": 0.5}, iteration=1, stage="generate")],
        [ev("eval.report", {"report": to_dict(EvalReport(ck.id, tier, results if tier == "canary" else (),
                                                         metrics={"accuracy": acc}))},
            iteration=1, stage="evaluate")
         for tier, acc in (("canary", 1.0), ("full", 0.93), ("adversarial", 0.5))],
        [ev("decision", {"decision": to_dict(Decision("promote", ("good",), checkpoint_id=ck.id))},
            iteration=1, stage="decide")],
        [ev("review.item", {"item": to_dict(ReviewItem("rv1", run_id, "example", examples[2].id))},
            iteration=1, stage="review"),
         ev("review.decision", {"decision": to_dict(ReviewDecision("rv1", "approve", "alice", time=5.0))},
            iteration=1, stage="review")],
    ]  # fmt: skip
    if promote:
        batches.append(
            [
                ev(
                    "promotion",
                    {"checkpoint_id": ck.id, "channel": "stable", "run_id": run_id},
                    iteration=1,
                    stage="decide",
                )
            ]
        )
    batches.append(
        [ev("run.finished", {"outcome": "promoted", "reasons": ["good"], "stable_checkpoint": ck.id})]
    )
    return {
        "batches": batches,
        "examples": examples,
        "dropped": dropped,
        "dataset": ref,
        "checkpoint": ck,
        "base": base,
    }
