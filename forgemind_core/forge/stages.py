"""The Forge's stages of one run: base, estimate, train (the loop builds the request with
:func:`train_request` between dataset and estimate).

The Brain's loop sequences them; the bodies get what they need passed in: the goal, the
trainer backend (:func:`trainer`), the run's :class:`~forgemind_hookspecs.Budget`, the paths of
its :class:`~forgemind_core.base.runfolder.RunFolder` and a ``record`` callable for the events.
"""

from __future__ import annotations

from typing import Any, cast

from forgemind_hookspecs import (
    Budget,
    Checkpoint,
    DatasetRef,
    Estimate,
    Goal,
    Plan,
    StageContext,
    Trainer,
    TrainRequest,
    to_dict,
)

from forgemind_core.base.protocols import KernelHandle, Record, Reporter
from forgemind_core.base.runfolder import RunFolder
from forgemind_core.forge import estimates

__all__ = ["base_checkpoint", "estimate", "train", "train_request", "trainer"]


def trainer(forge: KernelHandle, goal: Goal) -> Trainer:
    """The goal's ``trainers`` backend, built with its ``train`` options."""
    return cast(Trainer, forge.backend("trainers", goal.train.backend, goal.train.options, field="train"))


def base_checkpoint(goal: Goal, backend: Trainer, ctx: StageContext, reporter: Reporter) -> dict[str, Any]:
    """The base stage: ``{"checkpoint": ...}`` of the goal's base model, loaded or pre-trained."""
    if goal.limits.base_model == "pretrain":
        reporter.line(f"base: pre-training a {goal.pretrain.preset} model on {goal.pretrain.corpus}")
        checkpoint = backend.pretrain(goal.pretrain, ctx)
    else:
        checkpoint = backend.load_base(goal.limits.base_model, ctx)
    return {"checkpoint": to_dict(checkpoint)}


def train_request(n: int, plan: Plan, base: Checkpoint, dataset: DatasetRef, *, goal: Goal,
                  folder: RunFolder) -> TrainRequest:
    """What iteration ``n`` asks the trainer for: the goal's method and options, the plan's
    hyperparameters over them, output in the iteration's ``train`` folder."""
    return TrainRequest(
        base=base,
        dataset=dataset,
        method=goal.limits.method,
        output_dir=str(folder.iter_dir(n) / "train"),
        hyperparameters={**dict(goal.train.options), **dict(plan.train)},
        seed=goal.seed * 1000 + n,
    )


def estimate(request: TrainRequest, ctx: StageContext, *, goal: Goal, backend: Trainer, budget: Budget,
             elapsed_s: float, folder: RunFolder | None = None, n: int = 0) -> dict[str, Any]:
    """The estimate stage: ``{"estimate", "affordable", "reason"}``, the trainer's estimate checked
    against the budget left, the wall-clock limit (``elapsed_s`` so far) and the token limit.

    With the run's ``folder``, iteration ``n``'s seconds come from the training measured in its
    earlier iterations of the same method, when there is one (:mod:`forgemind_core.forge.estimates`)."""
    result = backend.estimate(request, ctx)
    if folder is not None and n > 1:
        result = estimates.corrected(result, estimates.measured_rate(folder, n, request.method))
    affordable, reason = True, ""
    if not budget.can_afford(result.cost_usd):
        affordable = False
        reason = (f"the try would cost ${result.cost_usd:.4f} but only "
                  f"${budget.remaining_usd() or 0.0:.4f} of the budget is left")
    limit = goal.limits.wall_clock_s
    if affordable and limit is not None and elapsed_s + result.seconds > limit:
        affordable = False
        reason = f"training would take ~{result.seconds:.0f} s, past the wall-clock limit of {limit:.0f} s"
    tokens = goal.limits.max_tokens
    if affordable and tokens is not None and result.tokens > tokens:
        affordable = False
        reason = f"training would process {result.tokens:,} tokens, over the limit of {tokens:,}"
    return {"estimate": to_dict(result), "affordable": affordable, "reason": reason}


def train(n: int, request: TrainRequest, estimated: Estimate, ctx: StageContext, *, backend: Trainer, budget: Budget,
          record: Record) -> dict[str, Any]:
    """The train stage: ``{"checkpoint": ...}``; the training's cost (the checkpoint's manifest's
    ``cost_usd``, else the estimate's) is settled on the budget and recorded."""
    checkpoint = backend.train(request, ctx)
    cost = float(checkpoint.manifest.get("cost_usd", estimated.cost_usd) or 0.0)
    if cost:
        budget.settle(0.0, cost)
        record("cost", iteration=n, stage="train", payload={"usd": cost, "what": "training", "total_usd": budget.spent_usd})
    return {"checkpoint": to_dict(checkpoint)}
