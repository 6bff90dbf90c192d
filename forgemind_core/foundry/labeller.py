"""The ``files`` generator's labeller: a served model answers unlabelled inputs.

A goal's ``files`` entry with ``labeller: {model: stable:GOAL, server: {backend: llamacpp},
min_confidence: 0.6}`` reads rows that have an input and no completion. The run's
:class:`~forgemind_core.base.servers.ServerPool` starts (or reuses) the server for that model
reference, as for the openai generator's own ``server:``, and hands this module the endpoint's
``base_url`` and served model name (the checkpoint id), so nothing here resolves or serves a model.

For each input the model is asked with the example's prompt (the pack's ``prompt_format`` with
``text_format: true``), greedy by default, with log-probs, in one of two modes:

- ``mode: completion`` — ``/v1/completions`` with the raw prompt and ``logprobs: 1``;
- ``mode: chat`` — ``/v1/chat/completions`` with the prompt as the user message (after
  ``system_prompt`` when one is given) and ``logprobs: true, top_logprobs: 1`` (llama.cpp returns
  no chat log-probs without the second): the server applies the model's chat
  template, as a model fine-tuned through its chat template was trained.

A served checkpoint brings its own layout: the run's server pool fills in ``mode`` (and
``system_prompt``) from the checkpoint's manifest (``chat_format: chat`` -> ``chat``, ``raw`` ->
``completion``) unless the goal sets them; without either, ``completion``. Then:

- the answer (stripped, with the template generator's leading space) becomes the completion; its
  first word becomes the category when it is one of the pack's labels;
- **confidence** = ``exp(mean token log-probability)`` of the answer's tokens as the server returns
  them (the geometric mean of the tokens' probabilities, 0..1; llama.cpp's OpenAI server returns
  ``logprobs.token_logprobs`` for completions). An endpoint that gives no log-probs gives no
  confidence, and such a row counts as below any ``min_confidence`` above 0;
- a row below ``min_confidence`` carries ``meta.review`` (the reason) and the Warden's review stage
  queues it as a ``review.item`` with the input, the proposed label and the confidence
  (``scores: {labeller.confidence: ...}``); it is trained on only once a reviewer approves (or
  edits) it. Such a labeller needs a goal with ``review.policy`` (an empty policy file will do).

Every labelled example has ``source.model`` = the served model name (the teacher checkpoint's id),
``meta.confidence`` and ``meta.labelled_by``: the registry's ``generated`` edge from the teacher
checkpoint to the dataset follows from that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen
from forgemind_hookspecs.errors import ConfigError, ForgeError

from forgemind_core.base.httpjson import post_json, require_endpoint

__all__ = ["Answer", "Labeller", "confidence_of", "parse_labeller"]

_FIELD = "generate.labeller"
_KEYS = ("model", "base_url", "api_key", "mode", "system_prompt", "min_confidence", "max_tokens", "temperature",
         "stop", "timeout_s", "dialect", "server")
MODES = ("completion", "chat")


@frozen
class Answer:
    """What the model said for one prompt: the text, its confidence (``None``: no log-probs), and
    the number of tokens it was measured over."""

    text: str
    confidence: float | None
    tokens: int


@frozen
class Labeller:
    """A labeller's options once the server pool has filled in the endpoint."""

    model: str
    base_url: str
    api_key: str | None = None
    mode: str = "completion"
    system_prompt: str = ""
    min_confidence: float = 0.0
    max_tokens: int = 8
    temperature: float = 0.0
    stop: tuple[str, ...] = ("\n",)
    timeout_s: float = 120.0

    def below(self, confidence: float | None) -> bool:
        """Whether a row with ``confidence`` goes to review rather than training."""
        if self.min_confidence <= 0:
            return False
        return confidence is None or confidence < self.min_confidence

    def ask(self, prompt: str) -> Answer:
        """The model's greedy answer to ``prompt`` with its confidence.

        :raises ForgeError: the endpoint cannot be reached or answers no completion.
        """
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature,
                                "stop": list(self.stop)}
        if self.mode == "chat":
            messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            # top_logprobs too: llama.cpp's chat handler returns no log-probs without it (OpenAI allows both)
            body.update(messages=[*messages, {"role": "user", "content": prompt}], logprobs=True, top_logprobs=1)
        else:
            body.update(prompt=prompt, logprobs=1)
        path = "chat/completions" if self.mode == "chat" else "completions"
        reply = post_json(self.base_url, path, body, api_key=self.api_key, timeout_s=self.timeout_s,
                          who=f"the labeller's model {self.model!r}")
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise ForgeError(f"the labeller's model {self.model!r} answered no completion: {str(reply)[:200]}")
        choice = choices[0]
        logprobs = choice.get("logprobs")
        values = confidence_of(logprobs if isinstance(logprobs, dict) else {})
        message = choice.get("message")
        text = message.get("content") if self.mode == "chat" and isinstance(message, dict) else choice.get("text")
        return Answer(text=str(text or ""), confidence=values[0], tokens=values[1])


def confidence_of(logprobs: Mapping[str, Any]) -> tuple[float | None, int]:
    """``(exp(mean token log-prob), tokens)`` from a completion's ``logprobs`` (the completions
    shape, ``token_logprobs``; or the chat shape, ``content: [{logprob}]``); ``(None, 0)`` when
    there are none."""
    raw: Sequence[Any] = logprobs.get("token_logprobs") or [
        c.get("logprob") for c in logprobs.get("content") or [] if isinstance(c, dict)]
    values = [float(v) for v in raw if isinstance(v, (int, float)) and not math.isnan(float(v))]
    if not values:
        return None, 0
    return math.exp(sum(values) / len(values)), len(values)


def parse_labeller(options: Mapping[str, Any] | None) -> Labeller | None:
    """The labeller of a ``files`` entry's ``labeller:`` option (``None``: no labeller).

    :raises ConfigError: one sentence naming the field: no model, no endpoint, a bad value.
    """
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise ConfigError("expected a mapping such as {model: stable:GOAL, server: {backend: llamacpp}}", field=_FIELD)
    unknown = sorted(set(options) - set(_KEYS))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; a labeller takes "
                          f"{', '.join(k for k in _KEYS if k != 'dialect')}", field=f"{_FIELD}.{unknown[0]}")
    require_endpoint(options, client="labeller", field=_FIELD,
                     model_help="the model that labels the rows (stable:GOAL, a checkpoint id, "
                                 "a catalogue name or a .gguf file)")

    def number(key: str, default: float, low: float, high: float | None) -> float:
        value = options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (
                high is not None and value > high):
            span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise ConfigError(f"expected a number {span}, got {value!r}", field=f"{_FIELD}.{key}")
        return float(value)

    mode = options.get("mode", "completion")
    if mode not in MODES:
        raise ConfigError(f"expected one of {', '.join(MODES)}, got {mode!r}", field=f"{_FIELD}.mode")
    system_prompt = options.get("system_prompt") or ""
    if not isinstance(system_prompt, str):
        raise ConfigError(f"expected a string, got {system_prompt!r}", field=f"{_FIELD}.system_prompt")
    stop = options.get("stop", ["\n"])
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop):
        raise ConfigError(f"expected a list of strings, got {stop!r}", field=f"{_FIELD}.stop")
    return Labeller(
        model=str(options["model"]), base_url=str(options["base_url"]),
        api_key=str(options["api_key"]) if options.get("api_key") else None,
        mode=str(mode), system_prompt=system_prompt,
        min_confidence=number("min_confidence", 0.0, 0.0, 1.0),
        max_tokens=int(number("max_tokens", 8, 1, None)),
        temperature=number("temperature", 0.0, 0.0, None),
        stop=tuple(stop), timeout_s=number("timeout_s", 120.0, 0.001, None),
    )
