"""The ``openai`` runner against the FakeOpenAIServer (scripted answers, faults), and end to end
through the kernel: ``forge eval MODEL --runner openai`` scores an endpoint with a suite file.
The same runner against a real llama.cpp server: test_real_server.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import forgemind_openai
import pytest
from forgemind_hookspecs import (
    Checkpoint,
    ConfigError,
    PluginError,
    StageContext,
    collect_backends,
    make_plugin_manager,
)
from forgemind_openai import OpenAIRunner
from forgemind_openai.testing import FakeOpenAIServer, Fault

CKPT = Checkpoint(id="c1", path="unused", base_model="b", method="lora")


def answer(body: dict[str, Any]) -> str:
    """The ticket queue named in the last user message, else an echo of it."""
    text = body["messages"][-1]["content"]
    for queue in ("billing", "outage", "login"):
        if queue in text:
            return queue
    return f"echo: {text}"


def test_hook_forgemind_register_runners() -> None:
    found = collect_backends(make_plugin_manager([forgemind_openai]), "runners")
    assert set(found) == {"openai"} and found["openai"].cls is OpenAIRunner


def test_answers_in_order_with_system_prompt_stop_and_limits(stage_context: StageContext,
                                                            emitted: list[tuple[str, dict[str, Any]]]) -> None:
    seen: list[dict[str, Any]] = []

    def script(body: dict[str, Any]) -> str:
        seen.append(body)
        return answer(body)

    with FakeOpenAIServer(script) as server:
        runner = OpenAIRunner(OpenAIRunner.Options(base_url=server.base_url, model="m", system_prompt="Be brief.",
                                                   stop=("\n\n",), concurrency=4))
        prompts = ["I was charged twice (billing)", "the site is down: outage", "hello"]
        assert runner.generate(CKPT, prompts, stage_context, max_new_tokens=7, temperature=0.0) == [
            "billing", "outage", "echo: hello"]
        assert server.total_requests == 3
        # the cache: the same prompts again make no request
        assert runner.generate(CKPT, prompts, stage_context, max_new_tokens=7, temperature=0.0)[2] == "echo: hello"
        assert server.total_requests == 3
        # another max_new_tokens is another request
        runner.generate(CKPT, prompts[:1], stage_context, max_new_tokens=8)
        assert server.total_requests == 4
    body = seen[0]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["max_tokens"], body["temperature"], body["stop"], body["seed"]) == (7, 0.0, ["\n\n"], 0)
    assert "response_format" not in body
    events = [p for kind, p in emitted if kind == "evaluate.endpoint"]
    assert [(e["calls"], e["cache_hits"]) for e in events] == [(3, 0), (0, 3), (1, 0)]
    assert events[0]["served_models"] == ["m"] and events[0]["checkpoint"] == "c1"
    assert events[0]["dialect"] == "openai"  # the fake lists no models: not llama.cpp


def test_a_failed_call_raises_after_the_others_or_answers_empty(stage_context: StageContext) -> None:
    def script(body: dict[str, Any]) -> str | Fault:
        if "bad" in body["messages"][-1]["content"]:
            return Fault("status", status=400, message="context too long")
        return answer(body)

    with FakeOpenAIServer(script) as server:
        strict = OpenAIRunner(OpenAIRunner.Options(base_url=server.base_url, model="m"))
        with pytest.raises(PluginError, match=r"1 of 2 calls to m failed \(first: HTTP 400: .*context too long\)"):
            strict.generate(CKPT, ["billing", "bad"], stage_context)
        calls = server.total_requests
        lenient = OpenAIRunner(OpenAIRunner.Options(base_url=server.base_url, model="m", on_error="empty"))
        assert lenient.generate(CKPT, ["billing", "bad"], stage_context) == ["billing", ""]
        assert server.total_requests == calls + 1  # the good answer came from the cache, the bad one was asked again


def test_model_comes_from_the_option_the_checkpoint_or_the_server(stage_context: StageContext) -> None:
    models: list[str] = []

    def script(body: dict[str, Any]) -> str:
        models.append(body["model"])
        return "ok"

    with FakeOpenAIServer(script) as server:
        runner = OpenAIRunner(OpenAIRunner.Options(base_url=server.base_url, cache=False))
        runner.generate(runner.checkpoint("served-name"), ["x"], stage_context)
        templated = OpenAIRunner(OpenAIRunner.Options(base_url=server.base_url, model="adapter-{checkpoint}",
                                                      cache=False))
        templated.generate(CKPT, ["x"], stage_context)
        assert models == ["served-name", "adapter-c1"]
        # a trained checkpoint, no model option, and a server that lists none: say what to do
        with pytest.raises(ConfigError, match=r"name the model to evaluate: .* lists no models"):
            runner.generate(CKPT, ["x"], stage_context)


def test_forge_eval_scores_an_endpoint_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("forgemind_core")
    registry = pytest.importorskip("forgemind_duckdb_registry")  # "served-model" is looked up there first
    from click.testing import CliRunner

    from forgemind_core.api import Forge
    from forgemind_core.cli.main import build_cli

    suite = tmp_path / "suite.jsonl"
    rows = [{"input": "charged twice (billing)", "expected": "billing"},
            {"input": "nothing loads (outage)", "expected": "outage"},
            {"input": "cannot sign in", "expected": "login"}]
    suite.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli = build_cli(Forge(home=tmp_path / "home", plugins=[forgemind_openai, registry], entry_points=False))
    with FakeOpenAIServer(answer) as server:
        args = ["eval", "served-model", "--suite", str(suite), "--runner", "openai",
                "-o", f"base_url={server.base_url}", "--scorer", "exact_match", "--json"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["checkpoint"]["method"] == "endpoint" and data["checkpoint"]["base_model"] == "served-model"
        report = data["report"]
        assert [r["output"] for r in report["results"]] == ["billing", "outage", "echo: cannot sign in"]
        assert report["metrics"]["accuracy"] == pytest.approx(2 / 3)
        assert report["checkpoint_id"] == data["checkpoint"]["id"]
        # evaluated again: the same checkpoint id, every answer from the home's cache
        again = json.loads(CliRunner().invoke(cli, args).output)
        assert again["checkpoint"]["id"] == data["checkpoint"]["id"] and server.total_requests == 3
