"""The Trial Grounds' stages of one iteration: the adversarial cases a plan adds, and evaluate.

The Brain's loop sequences them; the bodies get what they need passed in: the goal, the pack's
suites per tier (read by the Foundry), the run's :class:`~forgemind_core.base.servers.ServerPool`
(runners and adversaries, with any model server the goal asks for) and the kernel for scorers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from forgemind_hookspecs import (
    Adversary,
    Checkpoint,
    EvalCase,
    EvalReport,
    Goal,
    Scorer,
    StageContext,
    from_dict,
    to_dict,
)

from forgemind_core.base.protocols import KernelHandle
from forgemind_core.base.servers import ServerPool

__all__ = ["adversarial_cases", "evaluate"]


def adversarial_cases(ctx: StageContext, *, goal: Goal, suites: Callable[[], Mapping[str, Sequence[EvalCase]]],
                      servers: ServerPool) -> list[EvalCase]:
    """The goal's ``evaluate.adversarial_per_iteration`` cases, perturbed from the full (else the
    canary) suite by the goal's adversary; ``[]`` when none are asked for or there is no suite.
    ``suites()`` gives the pack's suites per tier (asked only when cases are wanted)."""
    count = goal.evaluate.adversarial_per_iteration
    if count <= 0:
        return []
    by_tier = suites()
    source = by_tier.get("full") or by_tier.get("canary") or []
    if not source:
        return []
    adversary = cast(Adversary, servers.backend("adversaries", goal.evaluate.adversary.backend,
                                                goal.evaluate.adversary.options, field="evaluate.adversary"))
    return list(adversary.perturb(source, count, ctx))


def evaluate(checkpoint: Checkpoint, plan_data: Mapping[str, Any], ctx: StageContext, *, goal: Goal,
             suites: Mapping[str, Sequence[EvalCase]], prompt_format: str, forge: KernelHandle,
             servers: ServerPool) -> dict[str, Any]:
    """The evaluate stage: ``{"reports": {tier: EvalReport}, "scores": {tier: float}}``, the pack's
    suites plus the plan's adversarial cases, scored in the goal's ``success.metric``."""
    from forgemind_core.trials.tiers import evaluate_checkpoint

    by_tier = {tier: list(cases) for tier, cases in suites.items()}
    extra = [from_dict(EvalCase, c) for c in plan_data.get("adversarial_cases", [])]
    if extra:
        by_tier.setdefault("adversarial", []).extend(extra)
    runner_choice = goal.evaluate.runner
    runner = servers.backend("runners", runner_choice.backend, runner_choice.options, field="evaluate.runner")
    scorers: dict[str, Scorer] = {c.backend: forge.backend("scorers", c.backend, c.options, field="evaluate.scorers")
                                  for c in goal.evaluate.scorers}
    for case in (c for cases in by_tier.values() for c in cases):
        if case.checker and case.checker not in scorers:
            scorers[case.checker] = forge.backend("scorers", case.checker, {}, field="evaluate.scorers")
    reports: dict[str, EvalReport] = evaluate_checkpoint(
        checkpoint,
        by_tier,
        runner=runner,
        scorers=scorers,
        default_scorer=goal.evaluate.scorers[0].backend if goal.evaluate.scorers else "exact_match",
        prompt_format=prompt_format,
        ctx=ctx,
        canary_min=goal.success.canary_min,
        max_new_tokens=int(runner_choice.options.get("max_new_tokens", 64)),
    )
    metric = goal.success.metric
    scores = {tier: float(r.metrics.get(metric, 0.0)) for tier, r in reports.items()}
    return {"reports": {t: to_dict(r) for t, r in reports.items()}, "scores": scores}
