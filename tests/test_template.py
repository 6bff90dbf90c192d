"""The offline template generator: deterministic, counted, weighted, strategy-dependent, distinct."""

from __future__ import annotations

import ast
import json
from collections import Counter
from pathlib import Path

import pytest
from forgemind_hookspecs import (
    ConfigError,
    GenerationPlan,
    StageContext,
    collect_backends,
    make_plugin_manager,
)

from forgemind_core.foundry import template as template_plugin
from forgemind_core.foundry.packs import format_prompt, load_pack
from forgemind_core.foundry.template import TemplateGenerator, allocate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def security():  # type: ignore[no-untyped-def]
    return load_pack(EXAMPLES / "python-security")


def run(pack, count: int, strategy: str = "basic", seed: int = 1, **weights: float) -> list:  # type: ignore[no-untyped-def]
    plan = GenerationPlan("template", count, category_weights=weights, strategy=strategy)
    return list(TemplateGenerator(TemplateGenerator.Options()).generate(plan, StageContext(pack=pack, seed=seed)))


def test_hook_forgemind_register_generators() -> None:
    pm = make_plugin_manager([template_plugin])
    found = collect_backends(pm, "generators")
    assert found["template"].cls is TemplateGenerator
    assert "basic" in TemplateGenerator.Options.__doc__ and "varied" in TemplateGenerator.Options.__doc__
    assert found["template"].options({"strategy": "varied"}).strategy == "varied"


def test_deterministic_for_a_seed_and_different_across_seeds(security) -> None:  # type: ignore[no-untyped-def]
    first = [e.id for e in run(security, 60, "varied", seed=4)]
    assert first == [e.id for e in run(security, 60, "varied", seed=4)]
    assert first != [e.id for e in run(security, 60, "varied", seed=5)]


def test_count_labels_source_and_prompt_format(security, stage_context) -> None:  # type: ignore[no-untyped-def]
    stage_context.pack = security
    examples = list(TemplateGenerator(TemplateGenerator.Options()).generate(GenerationPlan("template", 90), stage_context))
    assert len(examples) == 90
    assert Counter(e.category for e in examples) == {label: 10 for label in security.labels}
    ids = {t.id for t in security.templates}
    for example in examples:
        assert example.completion == f" {example.category}"
        assert example.prompt == format_prompt(security, example.meta["input"])
        assert example.source.generator == "template" and example.source.prompt_template in ids
        assert example.source.seed == stage_context.seed


def test_category_weights_are_honoured(security) -> None:  # type: ignore[no-untyped-def]
    counts = Counter(e.category for e in run(security, 200, "varied", B506=5.0, B105=0.0))
    assert counts["B105"] == 0
    assert counts["B506"] == 200 * 5 // 12  # 7 categories at weight 1, B506 at 5
    assert allocate(10, ["a", "b", "c"], {"a": 2.0}) == {"a": 5, "b": 3, "c": 2}


def test_strategies_differ(security) -> None:  # type: ignore[no-untyped-def]
    basic, varied = run(security, 150, "basic"), run(security, 150, "varied")
    basic_ids = {e.source.prompt_template for e in basic}
    varied_ids = {e.source.prompt_template for e in varied}
    assert varied_ids - basic_ids, "varied must use shapes basic never sees"
    assert all(e.meta["frame"] is None for e in basic)
    assert sum(e.meta["frame"] is not None for e in varied) > 100
    assert "def " not in "".join(e.meta["input"] for e in basic)
    mean = lambda xs: sum(len(e.meta["input"]) for e in xs) / len(xs)  # noqa: E731
    assert mean(varied) > 2 * mean(basic)
    # varied negatives include safe look-alikes of the findings
    negatives = " ".join(e.meta["input"] for e in varied if e.category == "no issue")
    assert "safe_load" in negatives or "SafeLoader" in negatives or "shell=False" in negatives


def test_distinct_and_valid_python(security) -> None:  # type: ignore[no-untyped-def]
    examples = run(security, 300, "varied") + run(security, 100, "mixed")
    inputs = [e.meta["input"] for e in examples[:300]]
    assert len(set(inputs)) == len(inputs)
    assert all(len(i) < 350 for i in inputs)
    for text in inputs:
        ast.parse(text)


def test_runs_out_gracefully_instead_of_repeating(security) -> None:  # type: ignore[no-untyped-def]
    examples = run(security, 400, "basic", B307=1.0, **{k: 0.0 for k in security.labels if k != "B307"})
    assert 0 < len(examples) < 400
    assert len({e.id for e in examples}) == len(examples)


def test_second_pack_generates_too() -> None:
    tickets = load_pack(EXAMPLES / "support-tickets")
    examples = run(tickets, 70, "varied")
    assert Counter(e.category for e in examples) == {label: 10 for label in tickets.labels}
    assert all(e.prompt.startswith("Route this support ticket.") for e in examples)


@pytest.mark.parametrize("strategy", ["basic", "varied"])
def test_log_triage_pack_generates_distinct_entries_that_never_name_their_label(strategy: str) -> None:
    logs = load_pack(EXAMPLES / "log-triage")
    examples = run(logs, 180, strategy)
    assert Counter(e.category for e in examples) == {label: 20 for label in logs.labels}
    assert all(e.prompt.startswith("Triage this log entry.\nLog: ") for e in examples)
    assert all(e.completion.strip() == e.category for e in examples)
    inputs = [e.meta["input"] for e in examples]
    assert len(set(inputs)) == len(inputs)
    # the label is learnt from the message, not read off the entry: no entry spells a label name
    spelled = [label for label in logs.labels if "_" in label]
    assert not [i for i in inputs if any(label in i for label in spelled)]


@pytest.mark.parametrize("strategy", ["basic", "varied"])
def test_extraction_pack_completions_are_json_copied_from_the_input(strategy: str) -> None:
    """Template completions may carry slots: the answer repeats the values the message used."""
    orders = load_pack(EXAMPLES / "order-extraction")
    examples = run(orders, 250, strategy)
    assert Counter(e.category for e in examples) == {label: 50 for label in orders.labels}
    present = {"both": (True, True), "order_only": (True, False), "email_only": (False, True), "neither": (False, False)}
    for example in examples:
        assert example.completion.startswith(' {"order": ')  # leading space, fixed key order
        answer = json.loads(example.completion)
        assert list(answer) == ["order", "email"]
        for value in answer.values():
            assert value is None or (value and value in example.meta["input"])
        if example.category in present:
            assert tuple(v is not None for v in answer.values()) == present[example.category]
    # the look-alikes really are there: numbers and addresses that are not the answer
    look = [e for e in examples if e.category == "lookalikes"]
    assert any("@" in e.meta["input"] and json.loads(e.completion)["email"] is None for e in look)


def test_bad_strategy_and_missing_pack_are_config_errors(security) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"unknown generation strategy 'fancy'.*basic"):
        run(security, 5, "fancy")
    with pytest.raises(ConfigError, match="needs a task pack"):
        list(TemplateGenerator(TemplateGenerator.Options()).generate(GenerationPlan("template", 5), StageContext()))
    with pytest.raises(ValueError, match="strategy: expected one of 'basic', 'varied', 'mixed', got 'nope'"):
        TemplateGenerator.Options(strategy="nope")  # declared on the option: forge validate sees it too
