"""The ``moderation`` filter against the real FakeOpenAIServer on 127.0.0.1 with the real
``openai`` client: thresholds and ``use_flagged``, the ``on_error`` paths (HTTP 500, timeouts,
malformed bodies), one request per batch, and the API key kept out of verdicts and logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from attrs import evolve
from forgemind_hookspecs import ConfigError, Example, Policy, ReviewPolicy, StageContext
from forgemind_openai.moderation import OpenAIModeration
from forgemind_openai.testing import FakeOpenAIServer, Fault

SECRET = "sk-moderation-SECRET-0123456789abcdef"


def scores(text: str) -> dict[str, float]:
    """Scores by marker word: ``idiot`` harassment 0.97, ``rude`` 0.6, ``hurt`` self-harm 0.45."""
    return {
        "harassment": 0.97 if "idiot" in text else 0.6 if "rude" in text else 0.01,
        "self-harm": 0.45 if "hurt" in text else 0.0,
        "violence": 0.0,
    }


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(moderation=scores) as server:
        yield server


@pytest.fixture
def ctx(stage_context: StageContext, monkeypatch: pytest.MonkeyPatch) -> StageContext:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return evolve(stage_context, log=structlog.get_logger("forgemind.test"))


def moderation(server: FakeOpenAIServer, **kw: Any) -> OpenAIModeration:
    return OpenAIModeration(OpenAIModeration.Options(base_url=server.base_url, **kw))


def ex(prompt: str, completion: str = " ok") -> Example:
    return Example(prompt=prompt, completion=completion, category="c")


def test_thresholded_items_are_dropped_with_rule_and_score(server: FakeOpenAIServer, ctx: StageContext,
                                                           emitted: list[tuple[str, dict[str, Any]]]) -> None:
    examples = [ex("hello"), ex("you idiot"), ex("I will hurt myself"), ex("that is rude")]
    policy = Policy(thresholds={"self-harm": 0.4, "harassment": 0.9}, review=ReviewPolicy(grey_band=0.35))
    verdicts = moderation(server).filter(examples, evolve(ctx, policy=policy))
    assert [v.example_id for v in verdicts] == [e.id for e in examples]
    assert all(v.filter == "moderation" for v in verdicts)
    clean, idiot, hurt, rude = verdicts
    assert clean.keep and clean.rule == "clean" and not clean.review
    assert (idiot.keep, idiot.rule, idiot.score) == (False, "harassment", 0.97)
    assert idiot.reason == "harassment 0.970 >= threshold 0.9"
    assert (hurt.keep, hurt.rule, hurt.score) == (False, "self-harm", 0.45)  # the policy's 0.4, not 0.5
    # 0.6 is below the policy's 0.9 but within its grey band: kept, sent to review
    assert (rude.keep, rude.review, rude.rule, rude.score) == (True, True, "harassment", 0.6)
    assert ("metric", {"name": "filter.moderation.calls", "value": 1.0, "step": 1}) in emitted


def test_the_filters_own_thresholds_override_the_policys(server: FakeOpenAIServer, ctx: StageContext) -> None:
    policy = Policy(thresholds={"harassment": 0.5})
    verdicts = moderation(server, thresholds={"harassment": 0.99}, threshold=0.3).filter(
        [ex("you idiot"), ex("I will hurt myself")], evolve(ctx, policy=policy))
    assert verdicts[0].keep and verdicts[0].rule == "clean"  # 0.97 < the filter's 0.99
    assert not verdicts[1].keep and verdicts[1].rule == "self-harm"  # 0.45 >= the filter's default 0.3


@pytest.mark.parametrize("use_flagged", [False, True])
def test_use_flagged_also_drops_what_the_server_flags(server: FakeOpenAIServer, ctx: StageContext,
                                                      use_flagged: bool) -> None:
    # the server flags harassment >= 0.5; the filter's threshold 0.9 keeps "rude" (0.6) on scores
    verdicts = moderation(server, thresholds={"harassment": 0.9}, use_flagged=use_flagged).filter(
        [ex("that is rude"), ex("hello"), ex("you idiot")], ctx)
    rude, clean, idiot = verdicts
    assert clean.keep and (idiot.keep, idiot.rule) == (False, "harassment")  # scores decide first
    if use_flagged:
        assert (rude.keep, rude.rule, rude.score) == (False, "flagged", 0.6)
        assert rude.reason == "flagged by omni-moderation-latest: harassment"
    else:
        assert rude.keep and rude.rule == "clean"


def test_one_request_per_batch_with_the_policys_fields(server: FakeOpenAIServer, ctx: StageContext,
                                                       emitted: list[tuple[str, dict[str, Any]]]) -> None:
    examples = [ex(f"prompt {i}", f" answer {i}") for i in range(5)]
    verdicts = moderation(server, batch_size=2, model="mod-x").filter(
        examples, evolve(ctx, policy=Policy(fields=("completion",))))
    assert len(verdicts) == 5 and all(v.keep for v in verdicts)
    assert [r["input"] for r in server.requests] == [[" answer 0", " answer 1"], [" answer 2", " answer 3"],
                                                     [" answer 4"]]
    assert {r["model"] for r in server.requests} == {"mod-x"}
    assert server.total_requests == 3
    assert [p["value"] for k, p in emitted if k == "metric" and p["name"] == "filter.moderation.calls"] == [3.0]


@pytest.mark.parametrize("on_error", ["drop", "keep"])
@pytest.mark.parametrize(
    "fault",
    [Fault("500"), Fault("timeout", hold_s=2.0), Fault("non_json"), Fault("truncated"),
     Fault("json", body=[1, 2]), Fault("json", body={"results": "none"}),
     Fault("json", body={"results": [{"category_scores": [0.9]}, {}]}),
     Fault("json", body={"results": [{"category_scores": {"harassment": 0.0}}]})],  # 1 result for 2 inputs
    ids=["500", "timeout", "non_json", "truncated", "json_list", "results_not_list", "scores_not_object",
         "too_few_results"],
)
def test_a_failed_batch_follows_on_error_and_the_others_are_judged(
    server: FakeOpenAIServer, ctx: StageContext, captured_logs: list[dict[str, Any]], fault: Fault, on_error: str,
) -> None:
    retried = fault.kind in ("500", "timeout", "truncated")  # the client retries these, then gives up
    server.inject(*[fault] * (2 if retried else 1), route="moderations")
    examples = [ex("hello"), ex("you idiot"), ex("hello again"), ex("you idiot again")]
    verdicts = moderation(server, batch_size=2, max_retries=1, timeout_s=0.5, on_error=on_error).filter(examples, ctx)
    first, second = verdicts[:2], verdicts[2:]
    assert [v.rule for v in first] == ["moderation_error"] * 2
    assert [v.keep for v in first] == [on_error == "keep"] * 2
    assert all(v.reason.startswith("moderation failed: ") for v in first)
    assert [(v.keep, v.rule) for v in second] == [(True, "clean"), (False, "harassment")]  # the next batch
    assert server.total_requests == (3 if retried else 2)
    assert [e for e in captured_logs if e["event"] == "moderation.errors"] == [
        {"event": "moderation.errors", "batches": 1, "on_error": on_error, "log_level": "warning"}]


def test_errors_are_logged_through_a_plain_logging_context(server: FakeOpenAIServer, stage_context: StageContext,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    # the plugin-author fixture's context logs through the standard library, not structlog
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.inject(Fault("500"), route="moderations")
    with caplog.at_level(logging.WARNING, logger="forgemind"):
        verdicts = moderation(server, max_retries=0).filter([ex("hello")], stage_context)
    assert [(v.keep, v.rule) for v in verdicts] == [(False, "moderation_error")]
    assert [r.getMessage() for r in caplog.records if r.name == "forgemind"] == [
        "moderation.errors batches=1 on_error='drop'"]


def test_the_api_key_is_sent_but_never_in_verdicts_events_or_logs(
    server: FakeOpenAIServer, ctx: StageContext, emitted: list[tuple[str, dict[str, Any]]],
    captured_logs: list[dict[str, Any]], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the openai client's and httpx's own debug logs too
    # a server that echoes the key it got, as some do for a wrong key
    server.inject(Fault("status", status=401, message="Incorrect API key provided: {api_key}"), route="moderations")
    verdicts = moderation(server, batch_size=1, max_retries=0).filter([ex("hello"), ex("you idiot")], ctx)
    assert server.api_keys == {SECRET: 2}
    assert verdicts[0].rule == "moderation_error" and "Incorrect API key provided: <api key>" in verdicts[0].reason
    assert verdicts[1].rule == "harassment"
    blob = json.dumps([v.reason for v in verdicts]) + json.dumps(emitted, default=str)
    blob += json.dumps(captured_logs, default=str) + caplog.text
    assert "moderation.errors" in blob and "POST" in caplog.text  # the logs were captured at all
    assert SECRET not in blob and SECRET[:12] not in blob


def test_no_key_for_api_openai_com_is_a_config_error(ctx: StageContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIModeration().filter([ex("hello")], ctx)
