"""forgemind-openai against a real OpenAI-compatible server (forgemind_openai.testing) with the
real ``openai`` client: faults, budget, cache, kill-and-resume, several generators, judge, adversary."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import forgemind_openai
import pytest
from forgemind_hookspecs import (
    Budget,
    BudgetExceeded,
    ConfigError,
    EvalCase,
    Example,
    GenerationPlan,
    StageContext,
    TaskPack,
    collect_backends,
    from_json,
    make_plugin_manager,
)
from forgemind_openai import LLMJudge, OpenAIAdversary, OpenAIGenerator
from forgemind_openai.client import ResponseCache, estimate_prompt_tokens, new_event_loop
from forgemind_openai.generator import DEFAULT_SYSTEM_PROMPT
from forgemind_openai.testing import FakeOpenAIServer, Fault, examples_script

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0}


def gen(server: FakeOpenAIServer, **kw: Any) -> OpenAIGenerator:
    return OpenAIGenerator(OpenAIGenerator.Options(base_url=server.base_url, model=kw.pop("model", "m"), **{**FAST, **kw}))


def ctx_for(stage_context: StageContext, pack: TaskPack | None, **kw: Any) -> StageContext:
    from attrs import evolve

    return evolve(stage_context, pack=pack, **kw)


# -- registration -----------------------------------------------------------------------------


def test_hook_forgemind_register_generators() -> None:
    found = collect_backends(make_plugin_manager([forgemind_openai]), "generators")
    assert found["openai"].cls is OpenAIGenerator
    assert found["openai"].options({"model": "x"}).model == "x"


def test_hook_forgemind_register_filters() -> None:
    found = collect_backends(make_plugin_manager([forgemind_openai]), "filters")
    assert set(found) == {"llm_judge", "moderation"} and found["llm_judge"].cls is LLMJudge
    from forgemind_openai.moderation import OpenAIModeration

    assert found["moderation"].cls is OpenAIModeration


def test_hook_forgemind_register_adversaries() -> None:
    found = collect_backends(make_plugin_manager([forgemind_openai]), "adversaries")
    assert found["openai_adversary"].cls is OpenAIAdversary


def test_plugin_import_loads_no_openai() -> None:
    code = "import sys, forgemind_openai; print('openai' in sys.modules, 'httpx2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- generation -------------------------------------------------------------------------------


def test_count_weights_and_sources(llm_server: FakeOpenAIServer, stage_context: StageContext,
                                   pack: TaskPack, emitted: list[tuple[str, dict[str, Any]]]) -> None:
    ctx = ctx_for(stage_context, pack)
    plan = GenerationPlan("openai", 10, {"sql_injection": 4.0, "safe": 1.0})
    examples = list(gen(llm_server, examples_per_call=3).generate(plan, ctx))
    assert len(examples) == 10
    assert Counter(e.category for e in examples) == {"sql_injection": 8, "safe": 2}
    assert len({e.id for e in examples}) == 10
    for e in examples:
        assert e.prompt.startswith("Snippet:\n") and e.prompt.endswith("\nIssue:")
        assert e.completion == f" {e.category}"  # labelled pack: the label is the answer
        assert e.meta["input"] in e.prompt
        assert e.source.generator == "openai" and e.source.model == "m"
        assert e.source.prompt_template in {"sqli", "safe"} and e.source.seed is not None
        assert e.source.tokens > 0
    body = llm_server.requests[0]
    assert body["response_format"]["type"] == "json_schema"
    # the teacher writes data under its own system message, not the trained model's (the pack's)
    assert body["messages"][0]["content"] == DEFAULT_SYSTEM_PROMPT != pack.system_prompt
    items = body["response_format"]["json_schema"]["schema"]["properties"]["examples"]
    assert (items["minItems"], items["maxItems"]) == (1, 3)  # 1..examples_per_call: no empty list
    metrics = {p["name"]: p["value"] for k, p in emitted if k == "metric"}
    assert metrics["generate.examples"] == 10 and metrics["generate.calls"] == llm_server.total_requests


def test_unlabelled_pack_uses_model_outputs(llm_server: FakeOpenAIServer, stage_context: StageContext) -> None:
    pack = TaskPack(root=".", name="qa", task="Answer questions", prompt_format="Q: {input}\nA:")
    examples = list(gen(llm_server).generate(GenerationPlan("openai", 3, {"math": 1.0}), ctx_for(stage_context, pack)))
    assert len(examples) == 3
    assert all(e.completion.startswith("answer ") and e.category == "math" for e in examples)


def test_without_uvloop_runs_on_asyncio(llm_server: FakeOpenAIServer, stage_context: StageContext, pack: TaskPack,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as on Windows, where it is not installed
    loop = new_event_loop()
    loop.close()
    assert type(loop).__module__.startswith("asyncio")
    examples = list(gen(llm_server, examples_per_call=2).generate(GenerationPlan("openai", 4), ctx_for(stage_context, pack)))
    assert len(examples) == 4


def test_concurrency_is_bounded(stage_context: StageContext, pack: TaskPack) -> None:
    lock, live, peak = threading.Lock(), [0], [0]

    def script(body: dict[str, Any]) -> str:
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.05)
        with lock:
            live[0] -= 1
        return examples_script(body)

    with FakeOpenAIServer(script) as server:
        out = list(gen(server, concurrency=3, examples_per_call=1).generate(
            GenerationPlan("openai", 12), ctx_for(stage_context, pack)))
    assert len(out) == 12
    assert 2 <= peak[0] <= 3


def test_requests_per_minute_spaces_calls(stage_context: StageContext, pack: TaskPack) -> None:
    arrivals: list[float] = []

    def script(body: dict[str, Any]) -> str:
        arrivals.append(time.monotonic())
        return examples_script(body)

    with FakeOpenAIServer(script) as server:
        generator = gen(server, concurrency=8, examples_per_call=1, requests_per_minute=240)
        started = time.monotonic()  # the bucket starts full here: no call can be spaced before it
        list(generator.generate(GenerationPlan("openai", 6), ctx_for(stage_context, pack)))
    # 240/min = 4/s with a bucket of one second's worth: 4 at once, then one every 250 ms, so the
    # 6th call cannot arrive before 2 x 250 ms. Measured from the client's start, not the first
    # arrival: on a busy machine the first arrival can be late while the spaced ones are not.
    assert len(arrivals) == 6
    assert arrivals[-1] - started >= 2 * 0.25 * 0.9


@pytest.mark.parametrize(
    "fault",
    [Fault("429", retry_after=0.3), Fault("500"), Fault("timeout", hold_s=3.0),
     Fault("truncated"), Fault("non_json")],
    ids=lambda f: f.kind,
)
@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_each_fault_is_retried(fault: Fault, http_client: str, llm_server: FakeOpenAIServer, stage_context: StageContext,
                               pack: TaskPack, emitted: list[tuple[str, dict[str, Any]]]) -> None:
    llm_server.inject(fault)
    arrivals: list[float] = []
    base = llm_server.script

    def script(body: dict[str, Any]) -> str:
        arrivals.append(time.monotonic())
        return base(body)  # type: ignore[misc,operator,no-any-return]

    llm_server.script = script
    started = time.monotonic()
    g = gen(llm_server, concurrency=1, examples_per_call=2, timeout_s=0.5, http_client=http_client)
    examples = list(g.generate(GenerationPlan("openai", 2, {"safe": 1.0}), ctx_for(stage_context, pack)))
    assert len(examples) == 2
    assert llm_server.total_requests == 2  # the faulty attempt and its retry, same request
    assert len(llm_server.requests_by_hash) == 1
    assert not [p for k, p in emitted if k == "generation.rejected"]
    metrics = {p["name"]: p["value"] for k, p in emitted if k == "metric"}
    assert metrics["generate.retries"] == 1
    if fault.kind == "429":  # Retry-After honoured
        assert arrivals[0] - started >= 0.3


def test_retries_exhausted_is_a_recorded_rejection(llm_server: FakeOpenAIServer, stage_context: StageContext,
                                                   pack: TaskPack, emitted: list[tuple[str, dict[str, Any]]]) -> None:
    llm_server.inject(*[Fault("500")] * 3)
    g = gen(llm_server, concurrency=1, max_retries=2, examples_per_call=1)
    examples = list(g.generate(GenerationPlan("openai", 2, {"safe": 1.0}), ctx_for(stage_context, pack)))
    rejected = [p for k, p in emitted if k == "generation.rejected"]
    assert len(rejected) == 1 and "gave up after 3 attempts: HTTP 500" in rejected[0]["reason"]
    assert len(examples) == 2  # a replacement call made up for the rejected one


def test_malformed_and_schema_violating_answers(stage_context: StageContext, pack: TaskPack,
                                                emitted: list[tuple[str, dict[str, Any]]]) -> None:
    bad = iter(["this is not json", json.dumps({"examples": [{"text": "wrong key"}]}),
                json.dumps({"items": []}), json.dumps([1, 2])])

    def script(body: dict[str, Any]) -> str:
        return next(bad, None) or examples_script(body)

    with FakeOpenAIServer(script) as server:
        g = gen(server, concurrency=1, examples_per_call=1, max_calls_factor=5)
        examples = list(g.generate(GenerationPlan("openai", 3, {"safe": 1.0}), ctx_for(stage_context, pack)))
    reasons = [p["reason"] for k, p in emitted if k == "generation.rejected"]
    assert len(examples) == 3
    assert reasons == [
        "answer is not JSON: 'this is not json'",
        "item 0 has no non-empty string 'input'",
        "answer lacks required field 'examples'",
        "answer is JSON list, not an object",
    ]


def test_client_error_is_rejected_not_retried(llm_server: FakeOpenAIServer, stage_context: StageContext,
                                              pack: TaskPack, emitted: list[tuple[str, dict[str, Any]]]) -> None:
    llm_server.inject(Fault("status", status=400))
    examples = list(gen(llm_server, concurrency=1, examples_per_call=1).generate(
        GenerationPlan("openai", 1, {"safe": 1.0}), ctx_for(stage_context, pack)))
    assert len(examples) == 1
    assert [p["reason"][:8] for k, p in emitted if k == "generation.rejected"] == ["HTTP 400"]
    assert llm_server.total_requests == 2  # the 400 and one replacement call with a new seed
    assert len(llm_server.requests_by_hash) == 2


# -- budget -----------------------------------------------------------------------------------


def test_budget_hard_stop(llm_server: FakeOpenAIServer, stage_context: StageContext, pack: TaskPack,
                          emitted: list[tuple[str, dict[str, Any]]]) -> None:
    prices = {"m": {"input": 1000.0, "output": 1000.0}}  # $0.001 per token
    g = gen(llm_server, concurrency=4, examples_per_call=1, max_tokens=100, prices=prices)
    ctx = ctx_for(stage_context, pack, budget=Budget(limit_usd=1.0))
    got: list[Example] = []
    with pytest.raises(BudgetExceeded, match="stopped at the budget"):
        for e in g.generate(GenerationPlan("openai", 200), ctx):
            got.append(e)
    budget = ctx.budget
    assert budget.spent_usd <= 1.0 and budget.reserved_usd == 0.0
    # stopped AT the budget: one more worst-case call would not have fit
    body = llm_server.requests[-1]
    worst = (estimate_prompt_tokens(body["messages"], json.dumps(body["response_format"])) + 100) * 0.001
    assert budget.remaining_usd() < worst  # type: ignore[operator]
    assert 0 < len(got) == llm_server.total_requests < 200
    costs = [p for k, p in emitted if k == "cost"]
    assert len(costs) == len(got) and abs(sum(p["usd"] for p in costs) - budget.spent_usd) < 1e-9
    assert any(k == "generation.stopped" for k, _ in emitted)


def test_missing_api_key_for_openai_is_a_config_error(stage_context: StageContext, pack: TaskPack,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FM_TEST_KEY", raising=False)
    g = OpenAIGenerator(OpenAIGenerator.Options(api_key_env="FM_TEST_KEY"))
    with pytest.raises(ConfigError, match="FM_TEST_KEY"):
        list(g.generate(GenerationPlan("openai", 1), ctx_for(stage_context, pack)))


# -- cache ------------------------------------------------------------------------------------


def test_second_identical_run_makes_zero_calls_and_key_never_stored(
    llm_server: FakeOpenAIServer, stage_context: StageContext, pack: TaskPack,
    emitted: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    plan = GenerationPlan("openai", 8, {"sql_injection": 1.0, "safe": 1.0})
    prices = {"m": {"input": 1.0, "output": 1.0}}
    first = list(gen(llm_server, prices=prices).generate(plan, ctx_for(stage_context, pack)))
    calls = llm_server.total_requests
    assert calls > 0 and len(first) == 8
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-key")  # the key is not part of the cache key
    ctx2 = ctx_for(stage_context, pack, budget=Budget(limit_usd=0.0))  # cache hits cost nothing
    second = list(gen(llm_server, prices=prices).generate(plan, ctx2))
    assert llm_server.total_requests == calls
    assert [e.id for e in second] == [e.id for e in first] or {e.id for e in second} == {e.id for e in first}
    assert [e.source for e in sorted(second, key=lambda e: e.id)] == [e.source for e in sorted(first, key=lambda e: e.id)]
    cache_files = [p for p in (stage_context.cache_dir / "llm").rglob("*") if p.is_file()]
    assert sum(len(p.read_text().splitlines()) for p in cache_files) == calls  # one journal line per call
    blob = "".join(p.read_text() for p in cache_files) + json.dumps(emitted, default=str)
    blob += "".join(json.dumps(e.meta) for e in first)
    assert secret not in blob and "sk-another-key" not in blob


def test_a_plan_far_larger_than_the_window_completes_from_the_cache(llm_server: FakeOpenAIServer,
                                                                     stage_context: StageContext, pack: TaskPack) -> None:
    # concurrency 2 = at most 4 calls started ahead; cache hits finish together in one loop turn
    plan, ctx = GenerationPlan("openai", 30), ctx_for(stage_context, pack)
    first = list(gen(llm_server, concurrency=2, examples_per_call=1).generate(plan, ctx))
    second = list(gen(llm_server, concurrency=2, examples_per_call=1).generate(plan, ctx))
    assert len(first) == 30 and sorted(e.id for e in second) == sorted(e.id for e in first)
    assert llm_server.total_requests == 30


def test_cache_journal_skips_a_torn_line_and_reads_the_older_layout(tmp_path: Path) -> None:
    first = ResponseCache(tmp_path)
    first.put("a" * 40, {"content": "one"})
    first.put("b" * 40, {"content": "two"})
    first.close()
    (journal,) = tmp_path.glob(ResponseCache.JOURNAL_GLOB)
    with journal.open("ab") as f:  # a process killed in the middle of its last append
        f.write(b"c" * 40 + b'\t{"content": "th')
    legacy = tmp_path / "dd" / ("d" * 40 + ".json")
    legacy.parent.mkdir()
    legacy.write_text('{"content": "old"}')
    again = ResponseCache(tmp_path)
    assert again.get("a" * 40) == {"content": "one"} and again.get("b" * 40) == {"content": "two"}
    assert again.get("c" * 40) is None and again.get("d" * 40) == {"content": "old"}
    again.put("c" * 40, {"content": "three"})  # a new journal of its own, never after the torn line
    again.close()
    assert ResponseCache(tmp_path).get("c" * 40) == {"content": "three"}
    assert len(list(tmp_path.glob(ResponseCache.JOURNAL_GLOB))) == 2


def test_kill_and_resume_pays_each_call_once(stage_context: StageContext, tmp_path: Path) -> None:
    """SIGKILL a generating process midway, rerun: every answered request was answered once,
    and the rerun yields exactly the examples of an uninterrupted run."""
    gate, aborted, answered = threading.Event(), threading.Event(), [0]
    lock = threading.Lock()

    def script(body: dict[str, Any]) -> str | Fault:
        with lock:
            answered[0] += 1
            n = answered[0]
        if n > 5 and not gate.is_set():
            gate.wait()
            if aborted.is_set():
                with lock:
                    answered[0] -= 1
                return Fault("timeout", hold_s=0)  # close without answering: never paid
        return examples_script(body)

    cache = tmp_path / "cache"
    child = str(Path(__file__).with_name("_child.py"))
    with FakeOpenAIServer(script) as server:
        partial = tmp_path / "partial.jsonl"
        proc = subprocess.Popen([sys.executable, child, server.base_url, str(cache), str(partial), "12"])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if partial.exists() and len(partial.read_text().splitlines()) >= 5:
                    break
                assert proc.poll() is None, "child ended early"
                time.sleep(0.05)
            time.sleep(0.2)  # its next two calls are now held by the server, unanswered
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        aborted.set()
        gate.set()
        first_ids = [from_json(Example, line).id for line in partial.read_text().splitlines()]
        assert len(first_ids) == 5
        full = tmp_path / "rerun.jsonl"
        subprocess.run([sys.executable, child, server.base_url, str(cache), str(full), "12"], check=True, timeout=120)
        rerun_ids = [from_json(Example, line).id for line in full.read_text().splitlines()]
        assert max(server.answered_by_hash.values()) == 1  # no call paid twice
        assert sum(server.answered_by_hash.values()) == 12
    assert len(rerun_ids) == 12 == len(set(rerun_ids))  # nothing duplicated
    assert set(first_ids) <= set(rerun_ids)  # nothing lost
    with FakeOpenAIServer(examples_script) as fresh:  # an uninterrupted run makes the same examples
        clean = tmp_path / "clean.jsonl"
        subprocess.run([sys.executable, child, fresh.base_url, str(tmp_path / "c2"), str(clean), "12"],
                       check=True, timeout=120)
    assert {from_json(Example, x).id for x in clean.read_text().splitlines()} == set(rerun_ids)


# -- several generators -----------------------------------------------------------------------


def test_two_models_in_one_run(llm_server: FakeOpenAIServer, stage_context: StageContext, pack: TaskPack) -> None:
    ctx = ctx_for(stage_context, pack)
    big = gen(llm_server, model="big-model", label="teacher-a", examples_per_call=2)
    small = gen(llm_server, model="small-model", label="teacher-b", prompt="{task} {category}: write {n}. {format_hint}",
                templates=("safe",))
    examples = list(big.generate(GenerationPlan("openai", 6), ctx)) + list(
        small.generate(GenerationPlan("openai", 4), ctx))
    by_model = Counter(e.source.model for e in examples)
    assert by_model == {"big-model": 6, "small-model": 4}
    assert {e.source.prompt_template for e in examples if e.source.model == "small-model"} == {"safe"}
    assert {e.meta["generator_label"] for e in examples} == {"teacher-a", "teacher-b"}
    assert all("by big-model" in e.prompt for e in examples if e.source.model == "big-model")
    assert len({e.id for e in examples}) == 10
    assert {b["model"] for b in llm_server.requests} == {"big-model", "small-model"}


# -- judge and adversary ----------------------------------------------------------------------


def test_llm_judge_keeps_by_threshold_and_records_reason(stage_context: StageContext, pack: TaskPack) -> None:
    def script(body: dict[str, Any]) -> str:
        text = body["messages"][-1]["content"]
        assert "The label matches the snippet." in text  # the pack's rubric
        if "BROKEN" in text:
            return "not json at all"
        score = 0.9 if "good" in text else 0.2
        return json.dumps({"score": score, "reason": f"looks {'good' if score > 0.5 else 'wrong'}"})

    examples = [Example(prompt="good code", completion="safe", category="safe"),
                Example(prompt="bad code", completion="safe", category="safe"),
                Example(prompt="BROKEN", completion="safe", category="safe")]
    with FakeOpenAIServer(script) as server:
        judge = LLMJudge(LLMJudge.Options(base_url=server.base_url, model="judge", threshold=0.5, **FAST))
        verdicts = judge.filter(examples, ctx_for(stage_context, pack))
    assert [v.example_id for v in verdicts] == [e.id for e in examples]
    assert [v.keep for v in verdicts] == [True, False, False]
    assert verdicts[0].reason == "looks good" and verdicts[0].score == 0.9 and verdicts[0].filter == "llm_judge"
    assert verdicts[1].rule == "rubric" and "0.20 < 0.5: looks wrong" in verdicts[1].reason
    assert verdicts[2].rule == "judge_error" and "not JSON" in verdicts[2].reason


def test_llm_judge_screens_only_the_generators_it_is_told_to(stage_context: StageContext, pack: TaskPack) -> None:
    """A teacher's examples are judged; the templates' are kept unjudged, with no request for them."""
    from forgemind_hookspecs import Source

    def script(body: dict[str, Any]) -> str:
        return json.dumps({"score": 0.1, "reason": "rambling"})

    teacher = [Example(prompt=f"llm ticket {i}", completion="safe", source=Source("openai")) for i in range(2)]
    templated = [Example(prompt=f"template ticket {i}", completion="safe", source=Source("template")) for i in range(3)]
    examples = [teacher[0], *templated, teacher[1]]
    with FakeOpenAIServer(script) as server:
        judge = LLMJudge(LLMJudge.Options(base_url=server.base_url, model="judge", generators=("openai",), **FAST))
        verdicts = judge.filter(examples, ctx_for(stage_context, pack))
        asked = [b["messages"][-1]["content"] for b in server.requests]
    assert [v.example_id for v in verdicts] == [e.id for e in examples]
    assert [v.keep for v in verdicts] == [False, True, True, True, False]
    assert {v.rule for v in verdicts[1:4]} == {"not_judged"} and "made by template" in verdicts[1].reason
    assert len(asked) == 2 and all("llm ticket" in text for text in asked)


def test_adversary_writes_traceable_adversarial_cases(stage_context: StageContext, pack: TaskPack) -> None:
    cases = [EvalCase(input="x = 1", expected="safe", category="safe", checker="label_match"),
             EvalCase(input="q = f'select {a}'", expected="sql_injection", category="sql_injection")]
    with FakeOpenAIServer() as server:  # default script: schema-valid answers, unique per request
        adv = OpenAIAdversary(OpenAIAdversary.Options(base_url=server.base_url, model="adv", **FAST))
        out = adv.perturb(cases, 3, ctx_for(stage_context, pack))
    assert len(out) == 3 and all(c.tier == "adversarial" for c in out)
    assert [c.meta["derived_from"] for c in out] == [cases[0].id, cases[1].id, cases[0].id]
    assert out[0].expected == "safe" and out[0].checker == "label_match" and out[1].category == "sql_injection"
    assert len({c.input for c in out}) == 3  # the default server answer differs per request
