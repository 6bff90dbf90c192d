"""Fixtures: a real OpenAI-compatible server on 127.0.0.1 and a small labelled task pack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from forgemind_hookspecs import PromptTemplate, TaskPack
from forgemind_openai.testing import FakeOpenAIServer, examples_script


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
