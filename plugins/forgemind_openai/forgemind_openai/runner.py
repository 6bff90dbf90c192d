"""The ``openai`` runner: the Trial Grounds score any OpenAI-compatible endpoint.

A served GGUF (llama.cpp), vLLM, Ollama or an API model as a baseline is evaluated with the same
suites and scorers as a checkpoint on disk::

    evaluate:
      runner: {backend: openai, model: smollm2, base_url: "http://127.0.0.1:8080/v1"}

    forge eval smollm2 --runner openai -o base_url=http://127.0.0.1:8080/v1 --suite full.jsonl

**What is evaluated.** The runner never loads the ``checkpoint`` it is handed: it evaluates the
model the endpoint serves. Which model is asked for: the ``model`` option when set; else the
checkpoint's own, when it names an endpoint model (what :meth:`OpenAIRunner.checkpoint` makes of
``forge eval MODEL``); else the endpoint's only model (``GET /models``). Every call records the
model id the server says answered (``response.model``; llama-cpp-python echoes whatever
name it was asked for and answers with its one model, so the runner also checks the name against
the server's ``GET /models`` whenever it makes a request), and each ``generate`` emits an
``evaluate.endpoint`` event (checkpoint id, base URL, requested and served model ids, calls,
cache hits, tokens, cost), so a report can always be traced to what really answered. In a run's
loop, the checkpoint the run trained is scored only if the endpoint serves it (a ``model`` with
``{checkpoint}`` in it is filled with the checkpoint's id, e.g. a vLLM LoRA adapter registered
under that name); otherwise the endpoint is a fixed baseline.

Calls go through :class:`~forgemind_openai.client.LLMEngine`: responses are cached by request
hash (a repeated evaluation makes no request), retried, rate-limited, budgeted and priced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from attrs import frozen
from forgemind_hookspecs import (
    BudgetExceeded,
    Checkpoint,
    ConfigError,
    PluginError,
    StageContext,
    content_hash,
)

from .client import CallResult, ClientOptions, LLMEngine, Rejection, run_calls

__all__ = ["OpenAIRunner"]

#: ``Checkpoint.method`` of a checkpoint that names an endpoint's model, not a folder.
ENDPOINT_METHOD = "endpoint"


class OpenAIRunner:
    """Completions from an OpenAI-compatible endpoint, one per prompt (chat or raw completion)."""

    name: ClassVar[str] = "openai"

    @frozen
    class Options(ClientOptions):
        """Runner settings (connection, retries, cache, limits and prices as in ``ClientOptions``;
        its ``max_tokens`` is not used: ``max_new_tokens`` is).

        :ivar model: the model to ask for; empty = the checkpoint's endpoint model, else the
            endpoint's only model. ``{checkpoint}`` is replaced by the checkpoint's id.
        :ivar mode: ``chat`` (Chat Completions: the prompt is the user message, the server
            applies the model's chat template) or ``completion`` (Completions: the raw prompt is
            continued, as the ``hf`` runner does with a model trained on the pack's format).
        :ivar system_prompt: a system message before each prompt (chat mode only).
        :ivar max_new_tokens: tokens per answer when the caller passes none (the loop passes the
            goal's ``evaluate.runner.max_new_tokens``).
        :ivar temperature: 0 = greedy; used when the caller passes none.
        :ivar stop: stop sequences sent with every request.
        :ivar seed: sent with every request (servers that honour it sample reproducibly).
        :ivar on_error: ``fail`` (default: raise once every call has finished, so the answers
            already paid for are cached and a rerun resumes) or ``empty`` (a failed call
            answers ``""``, which the scorers mark wrong).
        """

        model: str = ""
        temperature: float = 0.0
        mode: Literal["chat", "completion"] = "chat"
        system_prompt: str = ""
        max_new_tokens: int = 64
        stop: tuple[str, ...] = ()
        seed: int | None = 0
        on_error: Literal["fail", "empty"] = "fail"

    def __init__(self, options: OpenAIRunner.Options | None = None) -> None:
        self.options = options or self.Options()

    def checkpoint(self, ref: str) -> Checkpoint:
        """The checkpoint ``forge eval REF --runner openai`` evaluates when ``REF`` is neither a
        folder nor a recorded checkpoint: the endpoint's model called ``REF``. Its id is a hash
        of the base URL and the model, so two evaluations of one endpoint model compare."""
        base_url = (self.options.base_url or "https://api.openai.com/v1").rstrip("/")
        return Checkpoint(
            id=f"endpoint-{content_hash({'base_url': base_url, 'model': ref}, length=12)}",
            path=base_url,
            base_model=ref,
            method=ENDPOINT_METHOD,
            kind="full",
            manifest={"runner": self.name, "base_url": base_url, "model": ref},
        )

    def _model(self, checkpoint: Checkpoint) -> str:
        if self.options.model:
            return self.options.model.replace("{checkpoint}", checkpoint.id)
        if checkpoint.method == ENDPOINT_METHOD:
            return str(checkpoint.manifest.get("model") or checkpoint.base_model)
        return ""

    def generate(
        self,
        checkpoint: Checkpoint,
        prompts: Sequence[str],
        ctx: StageContext,
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
    ) -> list[str]:
        """One answer per prompt, in order (see the module doc for which model answers).

        :raises BudgetExceeded: the budget ran out before every prompt was answered.
        :raises PluginError: with ``on_error: fail``, a call failed after its retries.
        :raises ConfigError: no model is named and the endpoint does not serve exactly one, or
            the endpoint's ``GET /models`` (asked on the first uncached call) does not list it.
        """
        opts = self.options
        engine = LLMEngine(opts, ctx, what="evaluate")
        tokens = opts.max_new_tokens if max_new_tokens is None else max_new_tokens
        temp = opts.temperature if temperature is None else temperature
        asked = {"model": self._model(checkpoint)}

        async def bodies() -> list[dict[str, Any]]:
            if not asked["model"]:
                asked["model"] = await self._only_model(engine)
            return [self._body(engine, p, asked["model"], tokens, temp) for p in prompts]

        results = run_calls(engine, bodies)
        if engine.served_models and asked["model"] not in engine.served_models:
            # llama-cpp-python answers ANY model name with the one it serves, and echoes the name
            raise ConfigError(f"{opts.base_url} does not serve {asked['model']!r} (it serves "
                              f"{', '.join(engine.served_models)}): name one of those", field="model")
        served = sorted({r.model for r in results if isinstance(r, CallResult)})
        failed = [r for r in results if isinstance(r, Rejection)]
        ctx.emit("evaluate.endpoint", {
            "runner": self.name, "checkpoint": checkpoint.id, "base_url": opts.base_url or "https://api.openai.com/v1",
            "model": asked["model"], "served_models": served, "mode": opts.mode, "dialect": engine.dialect,
            "prompts": len(prompts), "calls": engine.calls, "cache_hits": engine.cache_hits, "failed": len(failed),
            "prompt_tokens": engine.prompt_tokens, "completion_tokens": engine.completion_tokens,
            "cost_usd": engine.cost_usd,
        })
        if engine.budget_exhausted:
            raise BudgetExceeded(f"runner openai ({asked['model']}) ran out of budget before answering "
                                 f"all {len(prompts)} prompts")
        if failed and opts.on_error == "fail":
            raise PluginError(f"runner openai: {len(failed)} of {len(prompts)} calls to {asked['model']} failed "
                              f"(first: {failed[0].reason}); the answers that came back are cached, so a rerun "
                              "asks only for the rest (on_error: empty scores failures as wrong instead)")
        return [r.content if isinstance(r, CallResult) else "" for r in results]

    def _body(self, engine: LLMEngine, prompt: str, model: str, max_tokens: int, temperature: float) -> dict[str, Any]:
        opts = self.options
        common: Mapping[str, Any] = {"seed": opts.seed, "temperature": temperature, "max_tokens": max_tokens,
                                     "stop": opts.stop, "model": model}
        if opts.mode == "completion":
            return engine.completion_request(prompt, **common)
        messages = [{"role": "system", "content": opts.system_prompt}] if opts.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return engine.request(messages, schema=None, schema_name="", **common)

    @staticmethod
    async def _only_model(engine: LLMEngine) -> str:
        served = await engine.models()
        if len(served) != 1:
            where = engine.options.base_url or "api.openai.com"
            found = f"it serves {', '.join(served)}" if served else "it lists no models"
            raise ConfigError(f"name the model to evaluate: {where} does not serve exactly one model ({found})",
                              field="model")
        return served[0]
