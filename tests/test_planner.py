"""The default planner's decisions on synthetic histories: each signal it must act on (failing
categories, generalisation gap, rejected data, loss curve, adversarial tier, budget) changes the
next plan in the expected direction, with a readable reason; the fixed schedule does none of it."""

from __future__ import annotations

from typing import Any

import pytest
from forgemind_hookspecs import (
    Budget,
    GenerationPlan,
    Goal,
    IterationSummary,
    Plan,
)
from forgemind_hookspecs.records import BackendChoice, Limits, SuccessCriterion

from forgemind_core.brain.planners import DefaultPlanner, FixedPlanner

CATEGORIES = ("alpha", "beta", "gamma", "none")


def _goal(**train: Any) -> Goal:
    return Goal(
        name="g",
        task="t",
        success=SuccessCriterion(threshold=0.9, tier="full", canary_min=1.0, adversarial_min=0.7),
        limits=Limits(max_iterations=3),
        train=BackendChoice("hf", {"epochs": 2, "learning_rate": 0.001, **train}),
    )


def _summary(
    *,
    full: dict[str, float] | None = None,
    canary: dict[str, float] | None = None,
    adversarial: dict[str, float] | None = None,
    loss: list[float] | None = None,
    strategy: str = "basic",
    count: int = 600,
    generated: int = 600,
    kept: int = 600,
    dropped: dict[str, int] | None = None,
    cost: float = 0.01,
    train: dict[str, Any] | None = None,
) -> IterationSummary:
    def tier(per_category: dict[str, float], n: int) -> dict[str, Any]:
        return {"accuracy": sum(per_category.values()) / len(per_category), "per_category": per_category,
                "per_category_n": {c: n for c in per_category}}

    scores = {}
    if canary is not None:
        scores["canary"] = tier(canary, 1)  # a canary holds one case per category
    if full is not None:
        scores["full"] = tier(full, 10)
    if adversarial is not None:
        scores["adversarial"] = tier(adversarial, 3)
    plan = Plan(iteration=1, generation=(GenerationPlan("template", count, strategy=strategy),),
                train=dict(train or {"epochs": 2, "learning_rate": 0.001}), dataset_size=count)
    return IterationSummary(
        iteration=1, plan=plan, generated=generated, kept=kept, dropped_by_reason=dict(dropped or {}),
        loss_curve=tuple(loss if loss is not None else _converged()), scores=scores, cost_usd=cost,
    )


def _converged() -> list[float]:
    """8.0 falling to ~0.05 and flat for the last half: fits the training data."""
    return [8.0, 4.0, 2.0, 1.0, 0.5, 0.2] + [0.05, 0.06, 0.05, 0.04] * 4


ALL_GREEN = {c: 1.0 for c in CATEGORIES}


def _plan(history: list[IterationSummary], ctx, goal: Goal | None = None, **options: Any):
    planner = DefaultPlanner(DefaultPlanner.Options(**options))
    return planner.plan(goal or _goal(), history, ctx)


def test_first_plan_uses_initial_examples_and_first_strategy(stage_context):
    decision = _plan([], stage_context, initial_examples=300, strategies=("mixed", "varied"))
    assert decision.action == "iterate"
    plan = decision.next_plan
    assert plan.generation[0].count == 300 and plan.generation[0].strategy == "mixed"
    assert plan.train == {"epochs": 2, "learning_rate": 0.001}
    assert "300 examples" in plan.reasons[0]


def test_generalisation_gap_climbs_the_strategy_ladder(stage_context):
    history = [_summary(canary=ALL_GREEN, full={"alpha": 0.5, "beta": 0.6, "gamma": 0.95, "none": 0.7})]
    plan = _plan(history, stage_context).next_plan
    assert plan.generation[0].strategy == "varied"
    assert any("strategy 'basic' -> 'varied'" in r and "full at 69%" in r for r in plan.reasons), plan.reasons


def test_no_climb_when_the_target_tier_passes_and_no_rung_is_left(stage_context):
    history = [_summary(canary=ALL_GREEN, full={"alpha": 0.5, "beta": 0.6, "gamma": 0.95, "none": 0.7},
                        strategy="varied")]
    plan = _plan(history, stage_context).next_plan
    assert plan.generation[0].strategy == "varied"
    assert not any("strategy" in r for r in plan.reasons)


def test_failing_categories_get_more_data_the_worse_they_score(stage_context):
    history = [_summary(canary=ALL_GREEN, full={"alpha": 0.2, "beta": 0.6, "gamma": 0.95, "none": 0.9})]
    plan = _plan(history, stage_context).next_plan
    weights = plan.generation[0].category_weights
    assert weights["alpha"] > weights["beta"] > 1.0
    assert weights["gamma"] == 1.0 and weights["none"] == 1.0  # at or above the threshold: plain share
    assert weights["alpha"] <= DefaultPlanner.Options().max_category_weight
    assert any(r.startswith("category alpha at 20% of 10 cases (full) -> ") for r in plan.reasons), plan.reasons
    assert not any("category gamma" in r for r in plan.reasons)


def test_canary_failure_targets_the_canary_categories(stage_context):
    # The canary stopped the iteration: no full tier score, so the canary's categories lead.
    history = [_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0})]
    plan = _plan(history, stage_context).next_plan
    weights = plan.generation[0].category_weights
    assert weights["alpha"] > 1.0 and weights["beta"] == 1.0
    assert any("category alpha at 0% of 1 case (canary)" in r for r in plan.reasons), plan.reasons


def test_a_score_from_few_cases_moves_the_weights_less(stage_context):
    # 0% on one canary case is weak evidence; 0% on ten full cases is strong.
    canary = _plan([_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0})], stage_context)
    full = _plan([_summary(canary=ALL_GREEN, full={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0})],
                 stage_context)
    weak = canary.next_plan.generation[0].category_weights["alpha"]
    strong = full.next_plan.generation[0].category_weights["alpha"]
    assert 1.0 < weak < 2.0 and strong == DefaultPlanner.Options().max_category_weight


def test_data_grows_by_the_growth_factor_up_to_the_cap(stage_context):
    history = [_summary(canary=ALL_GREEN, full={"alpha": 0.5, "beta": 0.5, "gamma": 0.5, "none": 0.5}, count=600)]
    assert _plan(history, stage_context, growth=1.5).next_plan.generation[0].count == 900
    assert _plan(history, stage_context, growth=3.0, max_examples_per_iteration=1000).next_plan.generation[0].count == 1000


def test_rejected_data_climbs_the_ladder_and_names_the_main_reason(stage_context):
    history = [_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0},
                        loss=[8.0, 6.0, 4.0, 3.0, 2.5, 2.0, 1.8, 1.7],
                        generated=600, kept=200, dropped={"dedupe.near_duplicate": 350, "rules.length": 50})]
    plan = _plan(history, stage_context).next_plan
    assert plan.generation[0].strategy == "varied"
    assert any("67% of the data was rejected (mostly dedupe.near_duplicate)" in r for r in plan.reasons), plan.reasons


def test_loss_still_falling_adds_an_epoch(stage_context):
    falling = [8.0 - 0.1 * i for i in range(40)]  # 8.0 -> 4.1, still going down at the end
    history = [_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0}, loss=falling)]
    plan = _plan(history, stage_context).next_plan
    assert plan.train["epochs"] == 3 and plan.train["learning_rate"] == 0.001
    assert any("loss still falling" in r and "epochs 2 -> 3" in r for r in plan.reasons), plan.reasons


def test_loss_rising_halves_the_learning_rate(stage_context):
    rising = [8.0, 3.0, 1.0, 0.5, 0.4, 0.4] + [0.5, 2.0, 6.0, 9.0] * 2
    history = [_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0}, loss=rising)]
    plan = _plan(history, stage_context).next_plan
    assert plan.train["learning_rate"] == pytest.approx(0.0005)
    assert any("loss rose late" in r for r in plan.reasons)


def test_loss_flat_and_high_doubles_the_learning_rate_up_to_the_cap(stage_context):
    # Underfit: the loss stops falling far above a fit (noisy plateau around 1.3).
    plateau = [8.0, 5.0, 3.0, 2.0] + [1.3, 1.4, 1.2, 1.35, 1.25, 1.3] * 6
    history = [_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0}, loss=plateau)]
    plan = _plan(history, stage_context).next_plan
    assert plan.train["learning_rate"] == pytest.approx(0.002)
    assert any("loss flat at" in r and "learning rate 0.001 -> 0.002" in r for r in plan.reasons), plan.reasons
    capped = [_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0}, loss=plateau,
                       train={"epochs": 2, "learning_rate": 0.01})]
    plan = _plan(capped, stage_context, max_learning_rate=0.01).next_plan
    assert plan.train["learning_rate"] == 0.01 and not any("learning rate" in r for r in plan.reasons)


def test_converged_loss_leaves_the_hyper_parameters_alone(stage_context):
    history = [_summary(canary=ALL_GREEN, full={"alpha": 0.5, "beta": 0.5, "gamma": 0.5, "none": 0.5})]
    plan = _plan(history, stage_context).next_plan
    assert plan.train == {"epochs": 2, "learning_rate": 0.001}


def test_adversarial_failure_targets_its_categories_when_the_target_tier_passes(stage_context):
    history = [_summary(canary=ALL_GREEN, full={"alpha": 0.95, "beta": 0.9, "gamma": 1.0, "none": 0.95},
                        adversarial={"alpha": 0.9, "beta": 0.2, "gamma": 0.8, "none": 0.5})]
    plan = _plan(history, stage_context).next_plan
    weights = plan.generation[0].category_weights
    assert weights["beta"] > weights["none"] > 1.0 and weights["alpha"] == 1.0
    assert plan.generation[0].strategy == "varied"
    assert any("adversarial is at 60% < 70%" in r for r in plan.reasons), plan.reasons
    assert any("category beta at 20% of 3 cases (adversarial)" in r for r in plan.reasons), plan.reasons


def test_budget_that_cannot_pay_for_another_try_stops(stage_context):
    from attrs import evolve

    ctx = evolve(stage_context, budget=Budget(limit_usd=0.05, spent_usd=0.04))
    history = [_summary(canary=ALL_GREEN, full={"alpha": 0.5, "beta": 0.5, "gamma": 0.5, "none": 0.5}, cost=0.02)]
    decision = _plan(history, ctx)
    assert decision.action == "stop" and decision.next_plan is None
    assert "budget" in decision.reasons[0]
    roomy = evolve(stage_context, budget=Budget(limit_usd=1.0, spent_usd=0.04))
    assert _plan(history, roomy).action == "iterate"


def test_fixed_schedule_doubles_and_ignores_the_signals(stage_context):
    planner = FixedPlanner(FixedPlanner.Options(initial_examples=100))
    history = [_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0},
                        loss=[8.0 - 0.1 * i for i in range(40)])]
    plan = planner.plan(_goal(), history, stage_context).next_plan
    assert plan.generation[0].count == 200 and plan.generation[0].strategy == "basic"
    assert not plan.generation[0].category_weights and plan.train == {"epochs": 2, "learning_rate": 0.001}


def test_canary_stop_with_a_fitted_loss_climbs_and_says_the_target_tier_never_ran(stage_context):
    history = [_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0})]  # loss converged
    plan = _plan(history, stage_context).next_plan
    assert plan.generation[0].strategy == "varied"
    assert any(r.startswith("canary at 75% (stopped before full) while training loss is 0.04") for r in plan.reasons), \
        plan.reasons
    assert not any("full at 0%" in r for r in plan.reasons)


def test_a_generator_that_ran_dry_climbs_the_ladder(stage_context):
    # 600 asked, 78 made (the basic templates have few distinct inputs); the model is not yet fit.
    history = [_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0},
                        loss=[8.0, 6.0, 4.0, 3.0, 2.5, 2.0, 1.8, 1.7], count=600, generated=78, kept=78)]
    plan = _plan(history, stage_context).next_plan
    assert plan.generation[0].strategy == "varied"
    assert any("made only 78 of the 600 examples" in r and "'basic' -> 'varied'" in r for r in plan.reasons), \
        plan.reasons
    enough = [_summary(canary={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0},
                       loss=[8.0, 6.0, 4.0, 3.0, 2.5, 2.0, 1.8, 1.7], count=600, generated=580, kept=580)]
    assert _plan(enough, stage_context).next_plan.generation[0].strategy == "basic"


def _with_prior(stage_context, weights: dict[str, float]):
    from attrs import evolve
    from forgemind_hookspecs import TaskPack

    pack = TaskPack(root=".", name="p", labels=CATEGORIES, label_weights=weights)
    return evolve(stage_context, pack=pack)


def test_the_packs_label_weights_set_the_first_plans_shares(stage_context):
    ctx = _with_prior(stage_context, {"none": 2.0})
    generation = _plan([], ctx).next_plan.generation[0]
    assert generation.category_weights == {"alpha": 1.0, "beta": 1.0, "gamma": 1.0, "none": 2.0}
    # without a prior the first plan spreads the data evenly (no weights at all)
    assert _plan([], stage_context).next_plan.generation[0].category_weights == {}


def test_the_packs_prior_is_a_floor_that_targeting_raises(stage_context):
    ctx = _with_prior(stage_context, {"none": 2.0, "beta": 2.0})
    history = [_summary(full={"alpha": 0.5, "beta": 1.0, "gamma": 1.0, "none": 0.1})]
    weights = _plan(history, ctx).next_plan.generation[0].category_weights
    boosted = _plan(history, stage_context).next_plan.generation[0].category_weights
    assert boosted["alpha"] > 1.0 and weights["alpha"] == boosted["alpha"]  # targeting as without a prior
    assert boosted["none"] > 2.0 and weights["none"] == boosted["none"]  # raised above the floor, not doubled
    assert weights["beta"] == 2.0 and weights["gamma"] == 1.0  # passing labels keep their prior share


def test_fixed_schedule_keeps_the_packs_prior_but_no_targeting(stage_context):
    ctx = _with_prior(stage_context, {"none": 3.0})
    planner = FixedPlanner(FixedPlanner.Options(initial_examples=100))
    history = [_summary(full={"alpha": 0.0, "beta": 1.0, "gamma": 1.0, "none": 1.0})]
    weights = planner.plan(_goal(), history, ctx).next_plan.generation[0].category_weights
    assert weights == {"alpha": 1.0, "beta": 1.0, "gamma": 1.0, "none": 3.0}
