"""The plugin's backends against a REAL LLM: llama-cpp-python's server serving SmolLM2-135M-Instruct
(the ``smollm2_server`` fixture), through the real ``openai`` client and the plugin's own code.

The model is 135M parameters and fragile, so nothing here asserts what it says; the tests assert
what must hold of any answer: shapes, provenance, determinism at temperature 0, stop sequences,
token limits, the cache (a repeat makes no request), and that the parsing turns whatever the
model writes into examples or recorded rejections. The fault-injection tests stay on the
FakeOpenAIServer (test_openai_plugin.py, test_moderation.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from attrs import evolve
from forgemind_hookspecs import Checkpoint, Example, GenerationPlan, StageContext, TaskPack
from forgemind_openai import LLMJudge, OpenAIGenerator, OpenAIModeration, OpenAIRunner
from forgemind_openai.client import LLMEngine
from forgemind_openai.testing import RealServer

CKPT = Checkpoint(id="under-test", path="unused", base_model="b", method="lora")


def endpoint_events(emitted: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [p for kind, p in emitted if kind == "evaluate.endpoint"]


def test_the_engine_recognises_llama_cpp_and_serves_one_request_at_a_time(
        smollm2_server: RealServer, stage_context: StageContext) -> None:
    import asyncio

    engine = LLMEngine(OpenAIRunner.Options(base_url=smollm2_server.base_url), stage_context, what="probe")
    assert engine.dialect is None and engine.concurrency == 8  # not known before asking

    async def probe() -> tuple[str, ...]:
        await engine.open()
        try:
            return await engine.models()
        finally:
            await engine.close()

    assert asyncio.run(probe()) == (smollm2_server.model,)
    assert (engine.dialect, engine.concurrency) == ("llamacpp", 1)
    # a schema goes as llama.cpp's grammar-constrained json_object, not OpenAI's json_schema (HTTP 500)
    body = engine.request([{"role": "user", "content": "x"}], schema={"type": "object"}, schema_name="s", seed=1)
    assert body["response_format"]["type"] == "json_schema"
    assert engine.wire(body)["response_format"] == {"type": "json_object", "schema": {"type": "object"}}


def test_runner_chat_is_greedy_deterministic_and_cached(smollm2_server: RealServer, stage_context: StageContext,
                                                        emitted: list[tuple[str, dict[str, Any]]]) -> None:
    prompts = ["What is the capital of France?", "Name one colour of the rainbow."]
    runner = OpenAIRunner(OpenAIRunner.Options(base_url=smollm2_server.base_url))  # model: the only one served
    first = runner.generate(CKPT, prompts, stage_context, max_new_tokens=12, temperature=0.0)
    assert len(first) == 2 and all(isinstance(a, str) and a.strip() for a in first)
    event = endpoint_events(emitted)[-1]
    assert event["served_models"] == [smollm2_server.model] and event["model"] == smollm2_server.model
    assert event["checkpoint"] == "under-test" and event["dialect"] == "llamacpp"
    assert (event["calls"], event["cache_hits"], event["failed"]) == (2, 0, 0)
    assert 0 < event["completion_tokens"] <= 2 * 12  # max_new_tokens reached the server

    # the same prompts again, cache off: the server itself answers the same at temperature 0
    uncached = OpenAIRunner(OpenAIRunner.Options(base_url=smollm2_server.base_url, cache=False))
    assert uncached.generate(CKPT, prompts, stage_context, max_new_tokens=12, temperature=0.0) == first
    assert endpoint_events(emitted)[-1]["calls"] == 2

    # and with the cache: the same answers, no request at all (no probe either)
    assert runner.generate(CKPT, prompts, stage_context, max_new_tokens=12, temperature=0.0) == first
    event = endpoint_events(emitted)[-1]
    assert (event["calls"], event["cache_hits"]) == (0, 2)


def test_runner_completion_mode_continues_the_raw_prompt_and_stops(smollm2_server: RealServer,
                                                                    stage_context: StageContext,
                                                                    emitted: list[tuple[str, dict[str, Any]]]) -> None:
    options = OpenAIRunner.Options(base_url=smollm2_server.base_url, model=smollm2_server.model,
                                   mode="completion", stop=("\n",), cache=False)
    prompts = ["Monday, Tuesday, Wednesday,", "Question: What is 2 + 2?\nAnswer:"]
    first = OpenAIRunner(options).generate(CKPT, prompts, stage_context, max_new_tokens=16)
    again = OpenAIRunner(options).generate(CKPT, prompts, stage_context, max_new_tokens=16)
    assert first == again  # greedy (the runner's default temperature is 0)
    assert all("\n" not in a for a in first)  # the stop sequence ended each answer
    assert any(a.strip() for a in first)
    assert endpoint_events(emitted)[-1]["mode"] == "completion"


def test_runner_names_an_endpoint_checkpoint_and_refuses_an_unserved_model(smollm2_server: RealServer,
                                                                           stage_context: StageContext) -> None:
    from forgemind_hookspecs import ConfigError

    runner = OpenAIRunner(OpenAIRunner.Options(base_url=smollm2_server.base_url, max_retries=0))
    ckpt = runner.checkpoint(smollm2_server.model)
    assert ckpt.method == "endpoint" and ckpt.base_model == smollm2_server.model
    assert ckpt.id == runner.checkpoint(smollm2_server.model).id != runner.checkpoint("other").id
    assert len(runner.generate(ckpt, ["Hi"], stage_context, max_new_tokens=4)) == 1
    # llama-cpp-python would answer "other" with SmolLM2 and call it "other": the runner refuses
    with pytest.raises(ConfigError, match=r"does not serve 'other' \(it serves smollm2-135m-instruct\)"):
        runner.generate(runner.checkpoint("other"), ["Hi"], stage_context, max_new_tokens=4)


def test_generator_writes_examples_or_records_why_not(smollm2_server: RealServer, stage_context: StageContext,
                                                      pack: TaskPack, emitted: list[tuple[str, dict[str, Any]]]) -> None:
    gen = OpenAIGenerator(OpenAIGenerator.Options(
        base_url=smollm2_server.base_url, model=smollm2_server.model, examples_per_call=2, max_tokens=160,
        temperature=0.7, timeout_s=600))  # grammar: slow under load; replacements for empty answers
    examples = list(gen.generate(GenerationPlan("openai", 4), evolve(stage_context, pack=pack)))
    rejected = [p for kind, p in emitted if kind == "generation.rejected"]
    calls = next(p["value"] for kind, p in emitted if kind == "metric" and p["name"] == "generate.calls")
    assert calls >= 2  # one call per category, at least
    assert examples, f"the teacher wrote nothing usable: {rejected}"
    for e in examples:
        assert e.category in pack.labels and e.completion.strip() == e.category
        assert e.meta["input"].strip() and e.meta["input"] in e.prompt  # the pack's prompt_format was filled
        assert e.source.model == smollm2_server.model and e.source.generator == "openai"
        assert e.meta["provider"] == smollm2_server.base_url.split("/")[2]
    for r in rejected:  # whatever the 135M model got wrong is a recorded reason, never a crash
        assert r["reason"] and r["model"] == smollm2_server.model


def test_llm_judge_returns_scored_reasoned_verdicts(smollm2_server: RealServer, stage_context: StageContext,
                                                    pack: TaskPack) -> None:
    examples = [
        Example(prompt="Snippet:\ncursor.execute(f\"SELECT * FROM users WHERE name = '{name}'\")\nIssue:",
                completion="sql_injection", category="sql_injection"),
        Example(prompt="Snippet:\nprint('hello')\nIssue:", completion="safe", category="safe"),
    ]
    judge = LLMJudge(LLMJudge.Options(base_url=smollm2_server.base_url, model=smollm2_server.model, max_tokens=96,
                                      timeout_s=600))
    verdicts = judge.filter(examples, evolve(stage_context, pack=pack))
    assert [v.example_id for v in verdicts] == [e.id for e in examples]
    assert all(v.filter == "llm_judge" and v.rule in ("rubric", "judge_error") and v.reason for v in verdicts)
    scored = [v for v in verdicts if v.rule == "rubric"]
    assert scored, [v.reason for v in verdicts]  # the grammar keeps the answer in the schema
    for v in scored:
        assert v.score is not None and 0.0 <= v.score <= 1.0
        assert v.keep == (v.score >= 0.6)


@pytest.mark.parametrize("on_error", ["drop", "keep"])
def test_moderation_against_a_server_without_the_endpoint_follows_on_error(
        smollm2_server: RealServer, stage_context: StageContext, on_error: str,
        emitted: list[tuple[str, dict[str, Any]]]) -> None:
    examples = [Example(prompt=f"text {i}", completion=" ok", category="c") for i in range(5)]
    moderation = OpenAIModeration(OpenAIModeration.Options(base_url=smollm2_server.base_url, batch_size=2,
                                                           on_error=on_error))  # type: ignore[arg-type]
    verdicts = moderation.filter(examples, stage_context)
    assert [v.example_id for v in verdicts] == [e.id for e in examples]
    # asked once (3 batches): a missing endpoint is not retried per batch
    assert ("metric", {"name": "filter.moderation.calls", "value": 1.0, "step": 1}) in emitted
    assert all(v.keep == (on_error == "keep") and v.rule == "moderation_error" for v in verdicts)
    assert all("has no moderation endpoint" in v.reason for v in verdicts)
