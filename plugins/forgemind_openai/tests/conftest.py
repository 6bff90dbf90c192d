"""Fixtures: a real OpenAI-compatible server on 127.0.0.1 and a small labelled task pack."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from forgemind_hookspecs import PromptTemplate, TaskPack
from forgemind_openai.testing import FakeOpenAIServer


def examples_script(body: dict[str, Any]) -> str:
    """Answer a generator request with exactly the number of examples it asks for, each text
    unique to the request (model, seed, prompt) so that examples never collide by accident."""
    user = body["messages"][-1]["content"]
    n = int(re.search(r"(?i)write (\d+)", user).group(1))  # type: ignore[union-attr]
    tag = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
    items = [{"input": f"def f_{tag}_{i}(): pass  # by {body['model']}"} for i in range(n)]
    if "output" in json.dumps(body["response_format"]):
        items = [dict(it, output=f"answer {tag} {i}") for i, it in enumerate(items)]
    return json.dumps({"examples": items})


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
