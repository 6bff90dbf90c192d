"""The default planner acting on the failure analysis, on synthetic histories (no training): a
confusion pair gets contrastive data (category weights, the template generator's closest templates,
an LLM generator's instruction), a part wrong across a category gets data where that part varies,
mode collapse changes training before data; each change with one reason naming its evidence; no
evaluation input reaches the plan; a history without an analysis plans as before."""

from __future__ import annotations

import json
from typing import Any

from attrs import evolve
from forgemind_hookspecs import (
    GenerationPlan,
    Goal,
    IterationSummary,
    Plan,
    PromptTemplate,
    StageContext,
    TaskPack,
    from_dict,
    to_dict,
)
from forgemind_hookspecs.records import BackendChoice, EvalResult, GeneratorChoice, Limits, SuccessCriterion

from forgemind_core.brain.failures import closest, feeding_slots, template_affinity
from forgemind_core.brain.planners import DefaultPlanner
from forgemind_core.foundry.template import TemplateGenerator
from forgemind_core.trials.analysis import PartDiff, analyse

LABELS = ("no issue", "B307", "B105")
TEMPLATES = (
    PromptTemplate(id="safe_literal_eval", category="no issue", prompt="result = ast.literal_eval({data})",
                   instruction="Safe Python code."),
    PromptTemplate(id="safe_print", category="no issue", prompt="print({name})"),
    PromptTemplate(id="eval_call", category="B307", prompt="result = eval({data})"),
    PromptTemplate(id="eval_input", category="B307", prompt="eval(input())"),
    PromptTemplate(id="password", category="B105", prompt='password = "{secret}"'),
)


def _goal(*generate: GeneratorChoice) -> Goal:
    return Goal(name="g", task="t", success=SuccessCriterion(threshold=0.9, tier="full", canary_min=1.0),
                limits=Limits(max_iterations=5), generate=generate or (GeneratorChoice("template"),),
                train=BackendChoice("hf", {"epochs": 2, "learning_rate": 0.001}))


def _results(rows: list[tuple[str, str, str]]) -> list[EvalResult]:
    """``(expected, answered, category)`` rows as exact-match results on distinct inputs."""
    return [EvalResult(case_id=f"c{i}", output=out, score=float(out == exp), passed=out == exp, scorer="exact_match",
                       category=cat, expected=exp, input=f"case input number {i}")
            for i, (exp, out, cat) in enumerate(rows)]


def _history(results: list[EvalResult], *, generator: str = "template", options: dict[str, Any] | None = None,
             loss: tuple[float, ...] = (8.0, 4.0, 2.0, 1.0, 0.5, 0.2, 0.05, 0.06, 0.05, 0.04, 0.05, 0.05),
             with_analysis: bool = True, labels: tuple[str, ...] = LABELS) -> list[IterationSummary]:
    by_cat: dict[str, list[float]] = {}
    for r in results:
        by_cat.setdefault(r.category or "(none)", []).append(r.score)
    metrics: dict[str, Any] = {
        "accuracy": sum(r.score for r in results) / len(results),
        "per_category": {c: sum(s) / len(s) for c, s in by_cat.items()},
        "per_category_n": {c: len(s) for c, s in by_cat.items()},
    }
    if with_analysis:
        metrics["analysis"] = json.loads(json.dumps(to_dict(analyse(results, labels=labels))))
    plan = Plan(iteration=1, generation=(GenerationPlan(generator, 600, strategy="varied", options=options or {}),),
                train={"epochs": 2, "learning_rate": 0.001}, dataset_size=600)
    return [IterationSummary(iteration=1, plan=plan, generated=600, kept=600, loss_curve=loss,
                             scores={"canary": {"accuracy": 1.0}, "full": metrics}, cost_usd=0.01)]


def _confused() -> list[EvalResult]:
    rows = [("no issue", "B307", "no issue")] * 9 + [("no issue", "B105", "no issue")] * 9
    rows += [("no issue", "no issue", "no issue")] * 12 + [("B307", "B307", "B307")] * 10
    rows += [("B105", "B105", "B105")] * 10
    return _results(rows)


def _ctx(stage_context: StageContext, templates: tuple[PromptTemplate, ...] = TEMPLATES) -> StageContext:
    return evolve(stage_context, pack=TaskPack(root=".", name="p", labels=LABELS, templates=templates))


def _plan(history: list[IterationSummary], ctx: StageContext, goal: Goal | None = None, **options: Any) -> Plan:
    options.setdefault("use_analysis", True)  # off by default until benchmarked (docs/brain.md)
    decision = DefaultPlanner(DefaultPlanner.Options(**options)).plan(goal or _goal(), history, ctx)
    assert decision.action == "iterate" and decision.next_plan is not None
    return decision.next_plan


def test_a_confusion_pair_gets_contrastive_template_data(stage_context: StageContext) -> None:
    plan = _plan(_history(_confused()), _ctx(stage_context))
    generation = plan.generation[0]
    assert ("'no issue' answered B307 in 9 of 18 failures (full) -> contrastive no issue look-alikes of B307 "
            "(templates safe_literal_eval: 2.0x); category no issue keeps 2.7x its share from its score; "
            "near-misses of B307 (templates eval_call): 1.5x of its share") in plan.reasons
    assert ("'no issue' answered B105 in 9 of 18 failures (full) -> contrastive no issue look-alikes of B105; "
            "category no issue keeps 2.7x its share from its score") in plan.reasons  # no shared word with B105's
    # the scores already targeted 'no issue': the same failures are not counted twice; B keeps its share
    assert generation.category_weights == {"no issue": 2.67, "B307": 1.0, "B105": 1.0}
    # the template generator gets the closest templates weighted: A's look-alike of B, B's near-miss of A
    assert generation.options["template_weights"] == {"safe_literal_eval": 2.0, "eval_call": 1.5}
    # which the template generator accepts as its own option (so the generate stage can build it)
    from forgemind_core.base.options import structure_options

    built = structure_options(TemplateGenerator.Options, generation.options)
    assert built.template_weights == {"safe_literal_eval": 2.0, "eval_call": 1.5}


def test_an_llm_generator_gets_an_instruction_naming_the_confusion(stage_context: StageContext) -> None:
    goal = _goal(GeneratorChoice("openai", options={"model": "m", "instructions": {"B307": "Calls of eval."}}))
    history = _history(_confused(), generator="openai", options={"model": "m", "instructions": {"B307": "Calls of eval."}})
    options = _plan(history, _ctx(stage_context), goal).generation[0].options
    instructions = options["instructions"]
    assert instructions["B307"] == "Calls of eval."  # the goal's own instruction is kept
    assert instructions["safe_literal_eval"].startswith("Safe Python code. ")  # the pack's, then the evidence
    assert "answers 'B307' where the answer is 'no issue'" in instructions["safe_literal_eval"]
    assert "answers 'B105' where the answer is 'no issue'" in instructions["safe_print"]
    assert "template_weights" not in options  # only the generators that take it get it
    # the next iteration's instructions answer that iteration's evidence: nothing accumulates
    clean = _results([("no issue", "no issue", "no issue")] * 5 + [("B307", "B307", "B307")] * 4
                     + [("B307", "B105", "B307")])
    again = _plan(_history(clean, generator="openai", options=dict(options)), _ctx(stage_context), goal)
    assert again.generation[0].options["instructions"] == {"B307": "Calls of eval."}


def test_a_json_field_wrong_across_a_category_gets_data_where_it_varies(stage_context: StageContext) -> None:
    templates = (PromptTemplate(id="w1", category="weight", prompt="{n} {unit_word}",
                                completion='{"qty": {n}, "unit": "{unit}"}'),
                 PromptTemplate(id="w2", category="weight", prompt="about {n}", completion='{"qty": {n}}'),
                 PromptTemplate(id="c1", category="count", prompt="{n} things", completion='{"qty": {n}}'))
    rows = []
    for i in range(8):
        rows.append((json.dumps({"qty": i, "unit": ["g", "lb", "oz"][i % 3]}), json.dumps({"qty": i, "unit": "kg"}),
                     "weight"))
    rows += [(json.dumps({"qty": 3}), json.dumps({"qty": 3}), "count")] * 4
    ctx = evolve(stage_context, pack=TaskPack(root=".", name="p", templates=templates))
    plan = _plan(_history(_results(rows), labels=()), ctx)
    assert ("field unit wrong in 8 of 8 failures of category weight (full), the same answer 'kg' in 8 -> data where "
            "it varies more: templates varying {unit} (w1) 3.0x; category weight keeps 4.0x its share from its score"
            ) in plan.reasons
    generation = plan.generation[0]
    assert generation.options["template_weights"] == {"w1": 3.0}
    assert generation.category_weights == {"weight": 4.0, "count": 1.0}


def test_a_confusion_in_a_category_the_scores_pass_raises_its_share(stage_context: StageContext) -> None:
    rows = [("B307", "no issue", "B307")] * 2 + [("B307", "B307", "B307")] * 18  # 90%: passes the threshold
    rows += [("no issue", "B105", "no issue")] * 5 + [("no issue", "no issue", "no issue")] * 5
    plan = _plan(_history(_results(rows)), _ctx(stage_context))
    assert ("'B307' answered no issue in 2 of 2 failures (full) -> contrastive B307 look-alikes of no issue "
            "(templates eval_call: 3.0x); category B307 3.0x its share; near-misses of no issue "
            "(templates safe_literal_eval): 2.0x of its share") in plan.reasons
    assert plan.generation[0].category_weights["B307"] == 3.0


def test_a_string_segment_wrong_across_a_category_finds_the_slot_feeding_it(stage_context: StageContext) -> None:
    part = PartDiff(part="segment 3 (digits)", kind="segment", key="3", wrong=5, of=5)
    assert feeding_slots(PromptTemplate(id="d", category="date", prompt="x", completion="{day}-{month}-{year}"),
                         part) == ["month"]
    assert feeding_slots(PromptTemplate(id="e", category="date", prompt="x", completion="{day} {month}"), part) == []
    rows = [(f"{i} kg {2030 + i}", f"{i} kg 2016", "mass") for i in range(6)] + [("1 kg 2001", "1 kg 2001", "mass")]
    templates = (PromptTemplate(id="m1", category="mass", prompt="{n} kilos in {year}", completion="{n} kg {year}"),)
    ctx = evolve(stage_context, pack=TaskPack(root=".", name="p", templates=templates))
    plan = _plan(_history(_results(rows), labels=()), ctx)
    assert any(r.startswith("segment 3 (digits) wrong in 6 of 6 failures of category mass (full), the same answer "
                            "'2016' in 6 -> data where it varies more: templates varying {year} (m1)") for r in plan.reasons)
    assert plan.generation[0].options["template_weights"] == {"m1": 3.0}


def test_mode_collapse_changes_training_before_data(stage_context: StageContext) -> None:
    collapsed = _results([(f"{i} kg", "3 kg", "mass") for i in range(10)])
    # a fitted (low) loss: the model fits the data by collapsing -> half the learning rate, data held
    plan = _plan(_history(collapsed, labels=()), _ctx(stage_context))
    assert plan.train["learning_rate"] == 0.0005 and plan.train["epochs"] == 2
    assert plan.dataset_size == 600 and plan.generation[0].count == 600
    assert any(r.startswith("mode collapse in full: '3 kg' answered for 10 different inputs (100% of answers, "
                            "10% of references) -> training changes before more data: 600 new examples") for r in plan.reasons)
    assert "mode collapse at training loss 0.050 -> learning rate 0.001 -> 0.0005" in plan.reasons
    # still high: the model has not fit the data yet -> another epoch instead
    high = _plan(_history(collapsed, labels=(), loss=(3.0,) * 12), _ctx(stage_context))
    assert high.train["epochs"] == 3 and high.train["learning_rate"] == 0.001
    # when the loss curve already changed training, the collapse does not change it twice
    rising = _plan(_history(collapsed, labels=(), loss=(1.0, 0.5, 0.2, 0.1, 0.2, 0.5, 1.0, 2.0)), _ctx(stage_context))
    assert rising.train["learning_rate"] == 0.0005
    assert sum("learning rate" in r for r in rising.reasons) == 1


def test_no_evaluation_input_reaches_the_plan(stage_context: StageContext) -> None:
    results = _confused()
    plan = _plan(_history(results), _ctx(stage_context))
    text = json.dumps(to_dict(plan))
    assert not any(r.input in text for r in results)


def test_without_an_analysis_the_planner_plans_from_scores_as_before(stage_context: StageContext) -> None:
    ctx = _ctx(stage_context)
    old = _plan(_history(_confused(), with_analysis=False), ctx)
    off = _plan(_history(_confused()), ctx, use_analysis=False)
    assert old == off
    assert not any("answered" in r for r in old.reasons) and "template_weights" not in old.generation[0].options
    assert old.generation[0].category_weights["B307"] == 1.0  # only the failing category moved
    assert from_dict(Plan, to_dict(old)) == old


def test_template_affinity_ranks_by_shared_words() -> None:
    ranked = template_affinity(TEMPLATES[:2], TEMPLATES[2:3])
    assert [tid for _, tid in ranked] == ["safe_literal_eval", "safe_print"] and ranked[1][0] == 0.0
    assert closest(TEMPLATES[:2], TEMPLATES[2:4]) == ["safe_literal_eval"]
    # templates about as close as each other: none is singled out (the category weight does it)
    alike = (PromptTemplate(id="w1", category="warm", prompt="the {thing} is {warm_a}"),
             PromptTemplate(id="w2", category="warm", prompt="my {thing} looks {warm_b} today"))
    cool = (PromptTemplate(id="c1", category="cool", prompt="the {thing} is {cool_a}"),
            PromptTemplate(id="c2", category="cool", prompt="my {thing} looks {cool_b} today"))
    assert closest(alike, cool) == []


def test_a_collapse_that_outlives_a_training_change_gets_more_data_too(stage_context: StageContext) -> None:
    collapsed = _results([(f"{i} kg", "3 kg", "mass") for i in range(10)])
    history = _history(collapsed, labels=())
    first = _plan(history, _ctx(stage_context))
    tried = [evolve(history[0], plan=evolve(history[0].plan, reasons=first.reasons, train=first.train))]
    second = _plan(tried, _ctx(stage_context))
    assert second.dataset_size == 900 and second.train["learning_rate"] == 0.00025
    assert any(r.startswith("mode collapse in full outlived a training change ('3 kg' for 10 different inputs) "
                            "-> 900 new examples as well (was 600)") for r in second.reasons)
