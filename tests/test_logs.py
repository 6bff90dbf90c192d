"""Per-kernel structured logging: JSON lines and console output, no global structlog state, and
secrets never reaching either output."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import structlog

from forgemind_core.base.logs import REDACTED, Redactor, make_logger, redact, restore

SECRET = "secret1234567890abcdef"
OPENAI_KEY = "sk-" + "A1b2C3d4" * 4
BEARER = "eyJhbGciOiJIUzI1NiJ9.payload.signature"
HF_TOKEN = "hf_" + "abcdefghij" * 3
AWS_KEY = "AKIAABCDEFGHIJKLMNOP"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_json_lines_carry_timestamp_level_event_and_bound_keys(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "run.jsonl"
    log = make_logger(console=False, json_path=path, run_id="r1")
    log.info("stage.started", stage="train", step=3)
    log.bind(iteration=2).warning("slow", seconds=1.5)
    log.debug("hidden at info level")

    first, second = _lines(path)
    assert list(first)[:3] == ["timestamp", "level", "event"]
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    assert first == {
        **first,
        "level": "info",
        "event": "stage.started",
        "run_id": "r1",
        "stage": "train",
        "step": 3,
    }
    assert second["level"] == "warning" and second["iteration"] == 2 and second["seconds"] == 1.5
    assert len(_lines(path)) == 2  # the debug event was filtered out


def test_console_output_goes_to_the_stream_pretty(tmp_path: Path) -> None:
    stream = io.StringIO()
    log = make_logger(stream=stream, colors=False, level="debug", run_id="r1")
    log.debug("hello", n=1)
    out = stream.getvalue()
    assert "hello" in out and "n=1" in out and "run_id=r1" in out and "debug" in out
    assert not out.lstrip().startswith("{")  # human rendering, not JSON


def test_console_defaults_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    make_logger(colors=False).error("to stderr")
    captured = capsys.readouterr()
    assert "to stderr" in captured.err and captured.out == ""


def test_two_loggers_share_nothing_and_global_config_is_untouched(tmp_path: Path) -> None:
    before = structlog.get_config()
    a = make_logger(console=False, json_path=tmp_path / "a.jsonl", kernel="a")
    b = make_logger(console=False, json_path=tmp_path / "b.jsonl", level="error", kernel="b")
    a.info("from a")
    b.info("from b, filtered")
    b.error("from b")
    assert [e["event"] for e in _lines(tmp_path / "a.jsonl")] == ["from a"]
    assert [(e["event"], e["kernel"]) for e in _lines(tmp_path / "b.jsonl")] == [("from b", "b")]
    assert structlog.get_config() == before
    # (the test session configures structlog once, as the forge CLI does; make_logger never does)


def test_secrets_reach_neither_the_json_file_nor_the_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOO_API_KEY", SECRET)
    path = tmp_path / "run.jsonl"
    stream = io.StringIO()
    log = make_logger(stream=stream, colors=False, json_path=path)
    payload = {
        "request": {
            "headers": [f"Authorization: Bearer {BEARER}"],
            "messages": [("user", f"use {OPENAI_KEY}")],
        }
    }
    log.info("calling the teacher", payload=payload, note=f"key is {SECRET}!", token=HF_TOKEN, aws=AWS_KEY)
    log.info("normal text stays", max_tokens=64, tokenizer="byte-bpe", text="the key insight: tokens matter")
    try:
        raise RuntimeError(f"server refused {OPENAI_KEY}")
    except RuntimeError:
        log.exception("failed")

    written = path.read_text(encoding="utf-8")
    shown = stream.getvalue()
    for secret in (SECRET, OPENAI_KEY, BEARER, HF_TOKEN, AWS_KEY):
        assert secret not in written
        assert secret not in shown
    assert REDACTED in written and REDACTED in shown
    first, second, third = _lines(path)
    assert first["note"] == f"key is {REDACTED}!"
    assert first["payload"]["request"]["headers"] == [f"Authorization: Bearer {REDACTED}"]
    assert first["payload"]["request"]["messages"] == [["user", f"use {REDACTED}"]]
    assert second == {
        **second,
        "max_tokens": 64,
        "tokenizer": "byte-bpe",
        "text": "the key insight: tokens matter",
    }
    assert "RuntimeError: server refused [REDACTED]" in third["exception"]
    assert "RuntimeError" in shown


def test_redactor_reads_the_environment_when_made_and_on_refresh() -> None:
    env = {"MY_TOKEN": "tok-value-123456", "HOME": "/home/someone-long", "SHORT_KEY": "1"}
    redactor = Redactor(env)
    assert (
        redactor.text("a tok-value-123456 b /home/someone-long 1") == f"a {REDACTED} b /home/someone-long 1"
    )
    env["DB_PASSWORD"] = "hunter2hunter2"
    assert redactor.text("hunter2hunter2") == "hunter2hunter2"
    redactor.refresh()
    assert redactor.text("pw hunter2hunter2") == f"pw {REDACTED}"


def test_redact_walks_containers_and_credential_keys() -> None:
    data = {
        "list": [1, 2.5, None, True, f"x {OPENAI_KEY}"],
        "tuple": (f"Bearer {BEARER}",),
        "nested": {"api_key": "short", "hfToken": "anything", "max_tokens": 5, "tokenizer": "t"},
        "set": frozenset({AWS_KEY}),
    }
    out = redact(data)
    assert out["list"] == [1, 2.5, None, True, f"x {REDACTED}"]
    assert out["tuple"] == (f"Bearer {REDACTED}",)
    assert out["nested"] == {"api_key": REDACTED, "hfToken": REDACTED, "max_tokens": 5, "tokenizer": "t"}
    assert out["set"] == frozenset({REDACTED})
    assert data["list"][-1] == f"x {OPENAI_KEY}"  # the input is not modified


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:pass@host/v1", f"https://{REDACTED}@host/v1"),
    ("http://tok3n@127.0.0.1:8000/v1", f"http://{REDACTED}@127.0.0.1:8000/v1"),
    ("https://user:p@ss#w0rd@host:443/v1?x=1", f"https://{REDACTED}@host:443/v1?x=1"),
    ("see postgres://me:pw@db/x, then", f"see postgres://{REDACTED}@db/x, then"),
])
def test_url_userinfo_is_redacted_whole(url: str, shown: str) -> None:
    assert redact({"base_url": url}) == {"base_url": shown}


def test_text_that_only_looks_like_userinfo_is_kept() -> None:
    kept = ["mail bob@example.org", "https://host/path?email=a@b", "git@github.com:o/r.git"]
    assert redact(kept) == kept


def test_restore_puts_back_only_what_the_originals_held() -> None:
    goal = {"generate": [{"options": {"base_url": "https://user:pass@host/v1", "model": "m"}}]}
    record = redact({"options": {"base_url": "https://user:pass@host/v1"}, "other": "https://x:y@elsewhere/v1"})
    back = restore(record, goal)
    assert back == {"options": {"base_url": "https://user:pass@host/v1"}, "other": f"https://{REDACTED}@elsewhere/v1"}
    assert restore({"a": "plain"}, goal) == {"a": "plain"}


def test_objects_whose_text_leaks_are_replaced_by_their_scrubbed_text() -> None:
    error = ValueError(f"bad key {OPENAI_KEY}")
    assert redact(error) == f"bad key {REDACTED}"
    path = Path("/tmp/plain")
    assert redact(path) is path


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        make_logger(level="loud")


def test_process_logging_goes_to_the_given_stream_redacted_and_filtered(monkeypatch: pytest.MonkeyPatch) -> None:
    from forgemind_core.base.logs import configure_process_logging

    monkeypatch.setenv("FOO_API_KEY", SECRET)
    stream = io.StringIO()
    configure_process_logging("warning", stream=stream)
    try:
        log = structlog.get_logger("forgemind.test")
        log.debug("hidden")
        log.warning("shown", key=SECRET)
    finally:
        configure_process_logging("warning")  # back to stderr, as the session had it
    text = stream.getvalue()
    assert "shown" in text and "hidden" not in text
    assert SECRET not in text and "[REDACTED]" in text
