"""The ``moderation`` filter: the OpenAI moderation endpoint as a Warden filter.

Each example's text (the policy's ``fields``: prompt and/or completion) is sent to
``POST /v1/moderations`` in batches (``input`` is a list; one call per ``batch_size`` examples)
and judged by :func:`forgemind_hookspecs.threshold_verdict`: an example is dropped when any
category's score reaches its threshold (the filter's ``thresholds``, then the goal policy's,
then ``threshold``), sent to human review when its worst score lies in the policy's grey band,
and kept otherwise. With ``use_flagged`` the server's own ``flagged`` also drops it. A batch
that fails follows ``on_error``; a server without the endpoint (HTTP 404: llama.cpp, Ollama,
vLLM) is asked once, and every batch follows ``on_error`` with that reason. Category
names are the endpoint's (``harassment``, ``harassment/threatening``, ``self-harm``, ...).

Works with api.openai.com and any server that speaks the endpoint (the plugin's
:class:`~forgemind_openai.testing.FakeOpenAIServer` does). The body is read as plain JSON rather
than through the client's typed model, so a server returning only some categories works too.
Moderation calls are free on OpenAI: nothing is reserved from the budget.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from attrs import Factory, frozen
from forgemind_hookspecs import ConfigError, Example, StageContext, Verdict, policy_text, threshold_verdict

__all__ = ["OpenAIModeration"]


def _thresholds() -> dict[str, float]:
    return {}


def _results(body: Any, n: int) -> list[dict[str, Any]]:
    """The ``results`` of a moderation answer: ``n`` objects whose ``category_scores`` and
    ``categories``, where given, are objects; anything else is a ``ValueError`` (a failed batch)."""
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or not all(
        isinstance(r, dict) and all(isinstance(r.get(k) or {}, dict) for k in ("category_scores", "categories"))
        for r in results
    ):
        raise ValueError(f"the answer is not a moderation result: {str(body)[:80]!r}")
    if len(results) != n:
        raise ValueError(f"the server answered {len(results)} results for {n} inputs")
    return results


class _Absent(ValueError):
    """A batch not sent: an earlier one found that the server has no moderation endpoint."""


class OpenAIModeration:
    """Drop examples the moderation endpoint scores at or above the policy's thresholds."""

    name: ClassVar[str] = "moderation"

    @frozen
    class Options:
        """:ivar model: moderation model. :ivar base_url: any compatible server (``None``:
        api.openai.com). :ivar api_key_env: the variable holding the key (never an option).
        :ivar batch_size: texts per call. :ivar thresholds: per-category overrides of the
        policy's. :ivar threshold: for categories neither names. :ivar use_flagged: also drop
        what the server flags. :ivar on_error: ``drop`` (default) or ``keep`` examples whose
        batch failed after retries."""

        model: str = "omni-moderation-latest"
        base_url: str | None = None
        api_key_env: str = "OPENAI_API_KEY"
        batch_size: int = 32
        thresholds: Mapping[str, float] = Factory(_thresholds)
        threshold: float = 0.5
        use_flagged: bool = False
        on_error: Literal["drop", "keep"] = "drop"
        max_retries: int = 6
        timeout_s: float = 60.0

    def __init__(self, options: OpenAIModeration.Options | None = None) -> None:
        self.options = options or self.Options()
        self._client: Any = None
        self._key: str | None = None

    def _api_key(self) -> str:
        key = os.environ.get(self.options.api_key_env)
        if key:
            return key
        if self.options.base_url is None:
            raise ConfigError(
                f"no API key: set the environment variable {self.options.api_key_env} "
                "(or point base_url at a local server)",
                field="api_key_env",
            )
        return "not-needed"

    def client(self) -> Any:
        if self._client is None:
            import openai

            self._key = self._api_key()
            self._client = openai.OpenAI(api_key=self._key, base_url=self.options.base_url,
                                         max_retries=self.options.max_retries, timeout=self.options.timeout_s)
        return self._client

    def moderate(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """The endpoint's ``results`` for ``texts`` (one call per ``batch_size``), as dicts."""
        out: list[dict[str, Any]] = []
        size = max(1, self.options.batch_size)
        for start in range(0, len(texts), size):
            batch = list(texts[start:start + size])
            raw = self.client().moderations.with_raw_response.create(model=self.options.model, input=batch)
            out.extend(_results(raw.http_response.json(), len(batch)))
        return out

    def _redact(self, text: str) -> str:
        """``text`` without the API key (a server may echo a wrong key in its error message)."""
        return text.replace(self._key, "<api key>") if self._key and len(self._key) >= 4 else text

    def filter(self, examples: Sequence[Example], ctx: StageContext) -> list[Verdict]:
        import openai

        policy = ctx.policy
        texts = [policy_text(e, policy) for e in examples]
        verdicts: list[Verdict] = []
        size = max(1, self.options.batch_size)
        calls = errors = 0
        absent = ""  # the server has no moderation endpoint: no point asking again per batch
        for start in range(0, len(examples), size):
            batch = examples[start:start + size]
            try:
                if absent:
                    raise _Absent(absent)
                calls += 1
                results = self.moderate(texts[start:start + size])
            except (openai.OpenAIError, ValueError) as error:
                errors += 1
                keep = self.options.on_error == "keep"
                if isinstance(error, openai.NotFoundError):
                    absent = (f"{self.options.base_url or 'the server'} has no moderation endpoint "
                              "(HTTP 404 on /moderations; llama.cpp and most local servers serve none)")
                reason = f"moderation failed: {absent}" if absent else (
                    f"moderation failed: {type(error).__name__}: {self._redact(str(error))[:160]}")
                verdicts.extend(Verdict(e.id, self.name, keep, rule="moderation_error", reason=reason) for e in batch)
                continue
            for example, result in zip(batch, results, strict=True):
                scores = {str(k): float(v) for k, v in (result.get("category_scores") or {}).items()
                          if isinstance(v, (int, float))}
                verdict = threshold_verdict(example.id, self.name, scores, policy=policy,
                                            overrides=self.options.thresholds, default=self.options.threshold)
                if verdict.keep and self.options.use_flagged and result.get("flagged"):
                    flagged = sorted(k for k, v in (result.get("categories") or {}).items() if v)
                    verdict = Verdict(example.id, self.name, False, rule="flagged", score=verdict.score,
                                      reason=f"flagged by {self.options.model}: {', '.join(flagged) or 'unspecified'}")
                verdicts.append(verdict)
        ctx.emit("metric", {"name": "filter.moderation.calls", "value": float(calls), "step": ctx.iteration})
        if errors:
            ctx.log.warning("moderation.errors", batches=errors, on_error=self.options.on_error)
        return verdicts
