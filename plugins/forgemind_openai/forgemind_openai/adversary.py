"""The ``openai_adversary``: an LLM rewrites evaluation cases into harder ones.

Each new case keeps its source case's expected answer, category and checker, and asks the model
for an input that a weak model would get wrong while the expected answer stays right (e.g.
obfuscation, misleading names, distracting context). The source case id is kept in ``meta`` so
adversarial cases stay traceable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from attrs import frozen
from forgemind_hookspecs import EvalCase, StageContext, content_hash

from .client import ClientOptions, LLMEngine, Rejection, parse_json_object, run_calls

__all__ = ["OpenAIAdversary"]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string"}, "attack": {"type": "string"}},
    "required": ["input", "attack"],
    "additionalProperties": False,
}


class OpenAIAdversary:
    """Write harder evaluation cases from existing ones with an OpenAI-compatible model."""

    name: ClassVar[str] = "openai_adversary"

    @frozen
    class Options(ClientOptions):
        """Adversary settings (connection, limits and prices as in ``ClientOptions``).

        :ivar instruction: what makes a case hard for this task (added to the prompt).
        """

        temperature: float = 0.9
        max_tokens: int = 1024
        instruction: str = ""

    def __init__(self, options: OpenAIAdversary.Options | None = None) -> None:
        self.options = options or self.Options()

    def perturb(self, cases: Sequence[EvalCase], count: int, ctx: StageContext) -> list[EvalCase]:
        """Up to ``count`` adversarial cases, cycling through ``cases``; failed calls are
        skipped and recorded as ``adversary.rejected`` events."""
        if not cases or count <= 0:
            return []
        engine = LLMEngine(self.options, ctx, what="adversary")
        pack = ctx.pack
        task = (pack.task if pack and pack.task else "") or (ctx.goal.task if ctx.goal else "")
        sources = [cases[i % len(cases)] for i in range(count)]
        bodies = []
        for i, case in enumerate(sources):
            messages = [
                {"role": "system", "content": "You write hard but fair test cases for evaluating models."},
                {
                    "role": "user",
                    "content": (
                        f"Task: {task}\nOriginal test input:\n{case.input}\n\nExpected answer: {case.expected}\n"
                        f"{self.options.instruction}\nRewrite the input so that a weak model is likely to "
                        "answer wrongly while the expected answer stays exactly correct. "
                        'Answer {"input": "<new input>", "attack": "<what makes it hard>"}.'
                    ),
                },
            ]
            seed = int(content_hash([ctx.seed, case.id, i], length=8), 16)
            bodies.append(engine.request(messages, schema=SCHEMA, schema_name="adversarial_case", seed=seed))
        out: list[EvalCase] = []
        for case, result in zip(sources, run_calls(engine, bodies), strict=True):
            reason = result.reason if isinstance(result, Rejection) else None
            data = None if reason else parse_json_object(result.content, {"input": str, "attack": str})  # type: ignore[union-attr]
            if isinstance(data, str):
                reason = data
            elif data is not None and not data["input"].strip():
                reason = "empty input"
            if reason is not None or data is None:
                ctx.emit("adversary.rejected", {"adversary": self.name, "model": self.options.model,
                                                "case": case.id, "reason": reason or "no answer"})
                continue
            out.append(
                EvalCase(
                    input=data["input"],
                    expected=case.expected,
                    tier="adversarial",
                    category=case.category,
                    checker=case.checker,
                    meta={"derived_from": case.id, "adversary": self.name, "model": self.options.model,
                          "attack": data["attack"]},
                )
            )
        return out
