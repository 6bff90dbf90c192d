"""The Brain's judgement of a try, written once: the success test and the ranking of tries.

- :func:`meets_success` is *the* success test: the goal's ``success.metric`` on ``success.tier``
  reaches ``success.threshold``, with the canary tier at least ``canary_min`` and the adversarial
  tier at least ``adversarial_min`` (a tier that was not evaluated counts as passing its floor).
  The decide stage promotes on it; the candidates stage ranks by it.
- :func:`rank` is *the* ranking of tries (the iterations of one run, or the candidates of one
  iteration): a key for ``max`` — a try that meets the goal first, then the higher score on the
  goal's tier, then the higher canary, then the cheaper, then ``order`` (the caller's tie-break:
  the iteration for best tries, so the later wins; ``-candidate`` for candidates, so the first wins).
- :func:`best_try` is the best of a run's iterations by :func:`rank`, among those that trained a
  checkpoint, have a score on the goal's tier and a green canary: a stopped run still names its
  best model, since a later try can score lower than an earlier one.
- :func:`plan_stage` (:func:`first_plan` / :func:`next_plan`): the plan stage's plan (the planner's first proposal,
  or the previous iteration's decision's next plan); :func:`decide` is the decide stage: promote
  on success, stop at a limit (budget, ``max_iterations``, ``patience``), else ask the planner.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from attrs import evolve
from forgemind_hookspecs import (
    Checkpoint,
    Decision,
    EvalCase,
    ForgeError,
    Goal,
    IterationSummary,
    Plan,
    Planner,
    StageContext,
    SuccessCriterion,
    from_dict,
    to_dict,
)

from forgemind_core.base.fsio import read_json
from forgemind_core.base.protocols import KernelHandle
from forgemind_core.base.runfolder import RunFolder
from forgemind_core.base.servers import ServerPool
from forgemind_core.trials import stage as trials

__all__ = ["NoPlan", "best_try", "decide", "first_plan", "meets_success", "next_plan", "no_progress", "plan_stage", "rank"]


class NoPlan(Exception):
    """The planner proposed no first plan: the run ends with this reason (the loop's stop)."""


def meets_success(success: SuccessCriterion, scores: Mapping[str, float]) -> bool:
    """Whether ``scores`` (per tier, in ``success.metric``) meet the goal's success criterion."""
    target = scores.get(success.tier)
    return (target is not None and target >= success.threshold
            and scores.get("canary", 1.0) >= success.canary_min
            and scores.get("adversarial", 1.0) >= success.adversarial_min)


def rank(success: SuccessCriterion, scores: Mapping[str, float], *, cost_usd: float = 0.0,
         order: int = 0) -> tuple[bool, float, float, float, int]:
    """The sort key of a try (higher is better): met, tier score, canary, cheaper, ``order``."""
    target = scores.get(success.tier)
    return (meets_success(success, scores), target if target is not None else -1.0,
            float(scores.get("canary", 0.0)), -float(cost_usd or 0.0), order)


def best_try(iterations: Sequence[Mapping[str, Any]], success: SuccessCriterion) -> dict[str, Any] | None:
    """The best of ``iterations`` (rows with ``iteration``, ``checkpoint``, ``scores`` and
    optionally ``cost_usd``) as ``{"id", "iteration", "tier", "score"}``, or ``None``."""
    tier = success.tier
    eligible = [item for item in iterations
                if item.get("checkpoint") and tier in item["scores"]
                and item["scores"].get("canary", 1.0) >= success.canary_min]
    if not eligible:
        return None
    best = max(eligible, key=lambda item: rank(success, item["scores"], cost_usd=float(item.get("cost_usd") or 0.0),
                                               order=int(item["iteration"])))
    return {"id": best["checkpoint"], "iteration": best["iteration"], "tier": tier, "score": best["scores"][tier]}


def planner(forge: KernelHandle, goal: Goal, servers: ServerPool | None = None) -> Planner:
    """The goal's ``planners`` backend; with the run's ``servers``, an option asking for a served
    model (the default planner's ``advisor: {model, server}``) is pointed at its started server."""
    build = servers.backend if servers is not None else forge.backend
    return cast(Planner, build("planners", goal.planner.backend, goal.planner.options, field="planner"))


def first_plan(goal: Goal, forge: KernelHandle, ctx: StageContext, servers: ServerPool | None = None) -> Plan:
    """The plan of iteration 1: the planner's proposal for a run with no history."""
    decision = planner(forge, goal, servers).plan(goal, [], ctx)
    if decision.next_plan is None:
        raise NoPlan("; ".join(decision.reasons) or "the planner proposed no plan")
    return decision.next_plan


def plan_stage(n: int, ctx: StageContext, *, goal: Goal, forge: KernelHandle, folder: RunFolder,
               suites: Callable[[], Mapping[str, Sequence[EvalCase]]], servers: ServerPool) -> dict[str, Any]:
    """The plan stage of iteration ``n``: ``{"plan", "adversarial_cases"}``, the plan (the first
    proposal, or iteration ``n - 1``'s next plan) and the adversarial cases it adds to evaluate."""
    plan = first_plan(goal, forge, ctx, servers) if n == 1 else next_plan(n, read_json(folder.stage_file(n - 1, "decide")))
    plan = evolve(plan, iteration=n)
    adversarial = trials.adversarial_cases(ctx, goal=goal, suites=suites, servers=servers)
    return {"plan": to_dict(plan), "adversarial_cases": [to_dict(c) for c in adversarial]}


def next_plan(n: int, previous: Mapping[str, Any]) -> Plan:
    """The plan of iteration ``n``: the next plan of iteration ``n - 1``'s ``decide.json``."""
    plan = from_dict(Decision, previous["decision"]).next_plan
    if plan is None:
        raise ForgeError(f"iteration {n - 1} decided to iterate without a next plan")
    return plan


def no_progress(history: Sequence[IterationSummary], tier: str, patience: int) -> bool:
    """True when the last ``patience`` iterations did not beat the best score before them."""
    scores = [float(h.scores.get(tier, {}).get("accuracy", 0.0)) for h in history if h.scores]
    if patience <= 0 or len(scores) <= patience:
        return False
    best_before = max(scores[:-patience])
    return max(scores[-patience:]) <= best_before


def decide(n: int, checkpoint: Checkpoint, scores: Mapping[str, float], ctx: StageContext, *, goal: Goal,
           forge: KernelHandle, history: Sequence[IterationSummary], generate_note: str = "",
           servers: ServerPool | None = None) -> dict[str, Any]:
    """The decide stage of iteration ``n``: ``{"decision": Decision}``. ``history`` is the run's
    iterations up to ``n``; ``generate_note`` says why generation stopped early (the budget);
    ``servers`` serves a planner's advisor."""
    success = goal.success
    target = scores.get(success.tier)
    canary_ok = scores.get("canary", 1.0) >= success.canary_min
    if meets_success(success, scores):
        reasons = (f"{success.tier} {success.metric} {target or 0.0:.0%} >= {success.threshold:.0%}, canary green, "
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
    if generate_note:  # generation stopped at the budget: nothing is left to pay for another try
        return {"decision": to_dict(Decision("stop", reasons=(why, generate_note)))}
    if n >= goal.limits.max_iterations:
        return {"decision": to_dict(Decision("stop", reasons=(why, f"reached max_iterations={goal.limits.max_iterations}")))}
    if no_progress(history, success.tier, goal.limits.patience):
        return {"decision": to_dict(Decision("stop", reasons=(why, f"no progress in {goal.limits.patience} tries")))}
    decision = planner(forge, goal, servers).plan(goal, history, ctx)
    if decision.action == "iterate" and decision.next_plan is not None:
        decision = evolve(decision, reasons=(why, *decision.reasons), checkpoint_id=checkpoint.id)
    else:
        decision = evolve(decision, action="stop", reasons=(why, *decision.reasons), checkpoint_id=checkpoint.id)
    return {"decision": to_dict(decision)}
