"""The ``llm_judge`` filter: an LLM scores each example against the task pack's rubric.

The judge answers ``{"score": 0..1, "reason": "..."}`` (structured outputs); an example is kept
when ``score >= threshold``. The judge's reason goes into the :class:`Verdict`, kept or not, so
the lineage shows why each example survived. A judge call that fails (after retries) or answers
out of schema drops the example by default (``on_error: drop``) with the failure as reason, so a
broken judge never lets unjudged data through silently; ``on_error: keep`` lets it through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from attrs import frozen
from forgemind_hookspecs import BudgetExceeded, Example, StageContext, Verdict

from .client import CallResult, ClientOptions, LLMEngine, Rejection, parse_json_object, run_calls

__all__ = ["DEFAULT_RUBRIC", "LLMJudge"]

DEFAULT_RUBRIC = (
    "The example is correct (the answer/label fits the input), self-contained, realistic and "
    "useful for training a model on the task."
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"score": {"type": "number"}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
    "additionalProperties": False,
}


def _render(example: Example) -> str:
    if example.messages:
        return "\n".join(f"[{m.role}] {m.content}" for m in example.messages)
    label = f"\nCategory: {example.category}" if example.category else ""
    return f"Input:\n{example.prompt}\n\nExpected output:\n{example.completion}{label}"


class LLMJudge:
    """Keep examples an LLM judge scores at or above a threshold on the pack's rubric."""

    name: ClassVar[str] = "llm_judge"

    @frozen
    class Options(ClientOptions):
        """Judge settings (connection, limits and prices as in ``ClientOptions``).

        :ivar rubric: overrides the task pack's ``rubric``.
        :ivar threshold: minimum score (0..1) to keep an example.
        :ivar on_error: ``drop`` (default) or ``keep`` an example the judge could not score.
        :ivar generators: judge only examples made by these generator backends (e.g. ``[openai]``:
            an LLM teacher's, not the templates'); the others are kept unjudged. Empty: judge all.
        """

        temperature: float = 0.0
        max_tokens: int = 256
        rubric: str = ""
        threshold: float = 0.6
        on_error: Literal["drop", "keep"] = "drop"
        generators: tuple[str, ...] = ()

    def __init__(self, options: LLMJudge.Options | None = None) -> None:
        self.options = options or self.Options()

    def _body(self, engine: LLMEngine, example: Example, ctx: StageContext) -> dict[str, Any]:
        pack = ctx.pack
        rubric = self.options.rubric or (pack.rubric if pack else "") or DEFAULT_RUBRIC
        task = (pack.task if pack and pack.task else "") or (ctx.goal.task if ctx.goal else "")
        labels = f"\nAllowed labels: {', '.join(pack.labels)}" if pack and pack.labels else ""
        messages = [
            {"role": "system", "content": "You are a strict, fair judge of training data quality."},
            {
                "role": "user",
                "content": (
                    f"Task: {task}{labels}\n\nRubric:\n{rubric}\n\nExample:\n{_render(example)}\n\n"
                    'Score how well the example meets the rubric from 0 (useless or wrong) to 1 '
                    '(excellent). Answer {"score": <number>, "reason": "<one sentence>"}.'
                ),
            },
        ]
        return engine.request(messages, schema=SCHEMA, schema_name="judgement", seed=0)

    def filter(self, examples: Sequence[Example], ctx: StageContext) -> list[Verdict]:
        """One verdict per example, in order; the judge's reason is the verdict's reason.

        :raises BudgetExceeded: when the budget ran out before every example was judged.
        """
        engine = LLMEngine(self.options, ctx, what="judge")
        only = self.options.generators
        judged = [e for e in examples if not only or e.source.generator in only]
        results = dict(zip((e.id for e in judged), run_calls(engine, [self._body(engine, e, ctx) for e in judged]),
                           strict=True))
        if engine.budget_exhausted:
            raise BudgetExceeded(
                f"llm_judge ({self.options.model}) ran out of budget before judging all "
                f"{len(judged)} examples"
            )
        verdicts = [
            self._verdict(e, results[e.id]) if e.id in results
            else Verdict(e.id, self.name, True, rule="not_judged",
                         reason=f"made by {e.source.generator}, not one of {', '.join(only)}")
            for e in examples
        ]
        ctx.emit("metric", {"name": "filter.llm_judge.cost_usd", "value": engine.cost_usd, "step": ctx.iteration})
        return verdicts

    def _verdict(self, example: Example, result: CallResult | Rejection) -> Verdict:
        keep_on_error = self.options.on_error == "keep"
        if isinstance(result, Rejection):
            return Verdict(example.id, self.name, keep_on_error, rule="judge_error", reason=result.reason)
        data = parse_json_object(result.content, {"score": (int, float), "reason": str})
        if isinstance(data, str):
            return Verdict(example.id, self.name, keep_on_error, rule="judge_error", reason=data)
        score = float(data["score"])
        if score > 1.0 and score <= 10.0:  # some judges answer on a 0-10 scale despite the prompt
            score /= 10.0
        keep = score >= self.options.threshold
        return Verdict(
            example.id, self.name, keep, rule="rubric", score=score,
            reason=str(data["reason"]) if keep else f"score {score:.2f} < {self.options.threshold}: {data['reason']}",
        )
