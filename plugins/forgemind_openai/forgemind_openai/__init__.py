"""forgemind-openai: ForgeMind's Foundry backends on any OpenAI-compatible server.

Offers the ``openai`` generator, the ``llm_judge`` and ``moderation`` filters, the
``openai_adversary`` and the ``openai`` runner (the Trial Grounds score an endpoint). The
``openai`` library is imported only when a backend makes calls, so ``forge --help`` stays fast.
:mod:`forgemind_openai.testing` holds a real OpenAI-compatible test server.
"""

from __future__ import annotations

from collections.abc import Callable

from forgemind_hookspecs import hookimpl

from .adversary import OpenAIAdversary
from .generator import OpenAIGenerator
from .judge import LLMJudge
from .moderation import OpenAIModeration
from .runner import OpenAIRunner

__all__ = [
    "LLMJudge",
    "OpenAIAdversary",
    "OpenAIGenerator",
    "OpenAIModeration",
    "OpenAIRunner",
    "forgemind_register_adversaries",
    "forgemind_register_filters",
    "forgemind_register_generators",
    "forgemind_register_runners",
]


@hookimpl
def forgemind_register_generators(register: Callable[[type], None]) -> None:
    register(OpenAIGenerator)


@hookimpl
def forgemind_register_filters(register: Callable[[type], None]) -> None:
    register(LLMJudge)
    register(OpenAIModeration)


@hookimpl
def forgemind_register_adversaries(register: Callable[[type], None]) -> None:
    register(OpenAIAdversary)


@hookimpl
def forgemind_register_runners(register: Callable[[type], None]) -> None:
    register(OpenAIRunner)
