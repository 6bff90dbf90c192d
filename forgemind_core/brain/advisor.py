"""The default planner's optional LLM advisor (issue 21): a served or API model proposes changes.

A goal's ``planner: {backend: default, advisor: {model: smollm2-135m-instruct, server: {backend:
llamacpp}}}`` (or ``base_url:`` of a running OpenAI-compatible server, with ``api_key:``) asks the
model once per decision, after the rules have written their plan. The run's
:class:`~forgemind_core.base.servers.ServerPool` starts (or reuses) the server, as for a files
generator's labeller, and hands the planner the endpoint's ``base_url`` and served model name.

- :func:`advice_prompt` summarises what the rules read: each try's data, strategy, epochs,
  learning rate, final loss and scores, the last try's weakest categories and its failure
  analysis (top confusions, wrong parts, mode collapse), the rules' proposal, and the
  :class:`Bounds` each change must stay within;
- :meth:`Advisor.ask` posts it to ``/chat/completions`` (greedy, ``response_format: json_object``
  unless ``json_mode: false``; ``json_mode: schema`` adds the JSON schema of the advice with its
  bounds, which llama.cpp's server turns into a grammar the answer must follow) and returns the text;
- :func:`read_advice` parses the answer: one JSON object (the first ``{...}`` in the text) with any
  of ``category_weights`` (``{category: weight}``, known categories only), ``strategy`` (one of
  the ladder), ``epochs``, ``learning_rate``, ``examples``, and an optional ``why`` (a string).
  Numbers out of bounds are clipped (and the reason says so: ``advisor: epochs 2 -> 3 (clipped
  from 9)``); anything else (no JSON, an unknown key or category, a wrong type) is
  :class:`BadAdvice`, and the planner keeps the rules' plan with the reason recorded.

Nothing an advisor says reaches the plan unvalidated, and no evaluation case is sent to it: only
counts, scores and the analysis's labels/parts (whose values may quote answers the model gave).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import Factory, frozen
from forgemind_hookspecs import IterationSummary
from forgemind_hookspecs.errors import ConfigError, ForgeError

from forgemind_core.base.httpjson import post_json, require_endpoint
from forgemind_core.trials.analysis import FailureAnalysis

__all__ = ["Advice", "Advisor", "BadAdvice", "Bounds", "Proposal", "advice_prompt", "check_advisor", "parse_advisor",
           "read_advice"]

_FIELD = "planner.advisor"
_KEYS = ("model", "base_url", "api_key", "max_tokens", "temperature", "timeout_s", "json_mode", "system_prompt",
         "server", "mode", "dialect")
_ADVICE_KEYS = ("category_weights", "strategy", "epochs", "learning_rate", "examples", "why")

SYSTEM = ("You advise the planner of a fine-tuning loop. Read the history and answer with ONE JSON object "
          "and nothing else. Keys (all optional): category_weights, strategy, epochs, learning_rate, examples, "
          "why. Stay within the bounds given. Omit a key to keep the planner's value.")


class BadAdvice(Exception):
    """The advisor's answer cannot be used (the message says why, in one sentence)."""


@frozen
class Bounds:
    """What the advisor may change, and within which limits (from the planner's options)."""

    categories: tuple[str, ...]
    strategies: tuple[str, ...]
    min_weight: float
    max_weight: float
    min_epochs: int
    max_epochs: int
    min_learning_rate: float
    max_learning_rate: float
    min_examples: int
    max_examples: int

    def schema(self) -> dict[str, Any]:
        """The JSON schema of an answer within these bounds (for ``json_mode: schema``)."""
        weight = {"type": "number", "minimum": self.min_weight, "maximum": self.max_weight}
        return {"type": "object", "additionalProperties": False, "properties": {
            "category_weights": {"type": "object", "additionalProperties": False,
                                 "properties": {c: weight for c in self.categories}},
            "strategy": {"enum": list(self.strategies)},
            "epochs": {"type": "integer", "minimum": self.min_epochs, "maximum": self.max_epochs},
            "learning_rate": {"type": "number", "minimum": self.min_learning_rate,
                              "maximum": self.max_learning_rate},
            "examples": {"type": "integer", "minimum": self.min_examples, "maximum": self.max_examples},
            "why": {"type": "string", "maxLength": 200}}}

    def describe(self) -> dict[str, Any]:
        """The bounds as the prompt states them."""
        return {"category_weights": {"categories": list(self.categories), "min": self.min_weight, "max": self.max_weight},
                "strategy": list(self.strategies), "epochs": [self.min_epochs, self.max_epochs],
                "learning_rate": [self.min_learning_rate, self.max_learning_rate],
                "examples": [self.min_examples, self.max_examples]}


@frozen
class Proposal:
    """The rules' next plan, in the advisor's terms: what it may change."""

    category_weights: Mapping[str, float]
    strategy: str
    epochs: int
    learning_rate: float
    examples: int


@frozen
class Advice:
    """A validated answer: the proposal after it, and one reason per change."""

    proposal: Proposal
    reasons: tuple[str, ...] = ()
    changed: tuple[str, ...] = Factory(tuple)


@frozen
class Advisor:
    """An advisor's options once the server pool has filled in the endpoint."""

    model: str
    base_url: str
    api_key: str | None = None
    max_tokens: int = 200
    temperature: float = 0.0
    timeout_s: float = 120.0
    json_mode: bool | str = True
    system_prompt: str = SYSTEM

    def ask(self, prompt: str, schema: Mapping[str, Any] | None = None) -> str:
        """The model's answer to ``prompt`` (chat completions); with ``json_mode: schema``, constrained
        to ``schema`` where the server supports it.

        :raises ForgeError: the endpoint cannot be reached or answers no message.
        """
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature,
                                "messages": [{"role": "system", "content": self.system_prompt},
                                             {"role": "user", "content": prompt}]}
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
            if self.json_mode == "schema" and schema is not None:
                body["response_format"]["schema"] = dict(schema)
        reply = post_json(self.base_url, "chat/completions", body, api_key=self.api_key, timeout_s=self.timeout_s,
                          who=f"the advisor's model {self.model!r}")
        choices = reply.get("choices") if isinstance(reply, dict) else None
        message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ForgeError(f"the advisor's model {self.model!r} answered no message: {str(reply)[:200]}")
        return str(message["content"])


def parse_advisor(options: Mapping[str, Any] | None) -> Advisor | None:
    """The advisor of the planner's ``advisor:`` option (``None``: no advisor).

    :raises ConfigError: one sentence naming the field: no model, no endpoint, a bad value.
    """
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise ConfigError("expected a mapping such as {model: smollm2-135m-instruct, server: {backend: llamacpp}}",
                          field=_FIELD)
    unknown = sorted(set(options) - set(_KEYS))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; an advisor takes "
                          f"{', '.join(k for k in _KEYS if k not in ('dialect', 'mode'))}",
                          field=f"{_FIELD}.{unknown[0]}")
    require_endpoint(options, client="advisor", field=_FIELD,
                     model_help="the model that advises the planner (a catalogue name, stable:GOAL, "
                                 "a checkpoint id or a .gguf file, or an API model with base_url)")

    def number(key: str, default: float, low: float) -> float:
        value = options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
            raise ConfigError(f"expected a number at least {low:g}, got {value!r}", field=f"{_FIELD}.{key}")
        return float(value)

    json_mode = options.get("json_mode", True)
    if not isinstance(json_mode, bool) and json_mode != "schema":
        raise ConfigError(f"expected true, false or schema, got {json_mode!r}", field=f"{_FIELD}.json_mode")
    system_prompt = options.get("system_prompt") or SYSTEM
    if not isinstance(system_prompt, str):
        raise ConfigError(f"expected a string, got {system_prompt!r}", field=f"{_FIELD}.system_prompt")
    return Advisor(model=str(options["model"]), base_url=str(options["base_url"]),
                   api_key=str(options["api_key"]) if options.get("api_key") else None,
                   max_tokens=int(number("max_tokens", 200, 1)), temperature=number("temperature", 0.0, 0.0),
                   timeout_s=number("timeout_s", 120.0, 0.001), json_mode=json_mode, system_prompt=system_prompt)


def check_advisor(_instance: object, _attribute: object, value: Mapping[str, Any] | None) -> None:
    """The planner options' validator of ``advisor``: what :func:`parse_advisor` would refuse, checked
    when the goal is read (``forge validate``), before the run's server pool has started a server.

    :raises ValueError: ``advisor.<field>: ...`` (one sentence).
    """
    if value is None:
        return
    served = dict(value) if isinstance(value, Mapping) else value
    if isinstance(served, dict) and served.get("server") is not None:
        served.pop("server")
        served.setdefault("base_url", "http://served-by-the-run")
    try:
        parse_advisor(served)
    except ConfigError as error:
        raise ValueError(f"{(error.field or _FIELD).removeprefix('planner.')}: {error.message}") from None


def _final_loss(curve: Sequence[float]) -> float | None:
    tail = [x for x in curve[-max(1, len(curve) // 8):] if math.isfinite(x)]
    return round(sum(tail) / len(tail), 4) if tail else None


def _analysis_summary(analysis: FailureAnalysis, top: int = 5) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": analysis.kind, "cases": analysis.n, "failures": analysis.failures}
    if analysis.top_confusions:
        out["confusions"] = [f"{c.expected} answered as {c.answered}: {c.count}" for c in analysis.top_confusions[:top]]
    if analysis.parts:
        out["wrong_parts"] = [f"{p.part} wrong in {p.wrong} of {p.of} (most often {p.top_answer!r})"
                              for p in analysis.parts[:top]]
    if analysis.collapse is not None:
        c = analysis.collapse
        out["mode_collapse"] = f"{c.answer!r} answered for {c.inputs} different inputs ({c.share:.0%} of answers)"
    counts = {"outside_labels": analysis.outside_labels, "bad_format": analysis.bad_format, "empty": analysis.empty,
              "over_long": analysis.over_long}
    out.update({k: v for k, v in counts.items() if v})
    return out


def advice_prompt(history: Sequence[IterationSummary], *, tier: str, threshold: float, proposal: Proposal,
                  bounds: Bounds, analysis: FailureAnalysis | None, rule_reasons: Sequence[str]) -> str:
    """The compact summary sent to the advisor (JSON, a few hundred tokens for a short run)."""
    tries = []
    for item in history[-5:]:
        first = item.plan.generation[0] if item.plan.generation else None
        scores = {t: round(float(m.get("accuracy", 0.0)), 3) for t, m in item.scores.items() if isinstance(m, Mapping)}
        tries.append({"iteration": item.iteration, "examples": sum(g.count for g in item.plan.generation),
                      "kept": item.kept, "strategy": first.strategy if first else None,
                      "epochs": item.plan.train.get("epochs"), "learning_rate": item.plan.train.get("learning_rate"),
                      "final_loss": _final_loss(item.loss_curve), "scores": scores})
    last = history[-1]
    per_category = last.scores.get(tier, last.scores.get("canary", {})).get("per_category") or {}
    weakest = dict(sorted(((c, round(float(s), 3)) for c, s in per_category.items()), key=lambda kv: kv[1])[:8])
    summary: dict[str, Any] = {"goal": f"{tier} accuracy >= {threshold}", "tries": tries,
                               "weakest_categories": weakest}
    if analysis is not None:
        summary["failure_analysis"] = _analysis_summary(analysis)
    summary["planner_proposes"] = {"category_weights": dict(proposal.category_weights), "strategy": proposal.strategy,
                                   "epochs": proposal.epochs, "learning_rate": proposal.learning_rate,
                                   "examples": proposal.examples, "because": list(rule_reasons)[:8]}
    summary["bounds"] = bounds.describe()
    return ("History of the fine-tuning loop and the planner's proposal for the next try:\n"
            + json.dumps(summary, separators=(",", ":"))
            + '\nAnswer with one JSON object, e.g. {"epochs": 3, "why": "loss still falling"}.')


def _first_object(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        raise BadAdvice(f"the answer holds no JSON object: {text[:80]!r}")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as error:
        raise BadAdvice(f"the answer is not valid JSON ({error.msg}): {text[start:start + 80]!r}") from None
    if not isinstance(value, dict):
        raise BadAdvice("the answer is not a JSON object")
    return value


def _number(advice: Mapping[str, Any], key: str) -> float | None:
    value = advice.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise BadAdvice(f"{key} must be a number, got {value!r}")
    return float(value)


def _clip(name: str, old: Any, value: float, low: float, high: float, integer: bool) -> tuple[Any, str | None]:
    clipped = min(high, max(low, value))
    new: Any = round(clipped) if integer else clipped
    if new == old:
        return old, (f"advisor: {name} stays {old:g} (asked for {value:g}, beyond its bound)" if clipped != value
                     else None)
    note = f" (clipped from {value:g})" if clipped != value else ""
    return new, f"advisor: {name} {old:g} -> {new:g}{note}"


def read_advice(text: str, proposal: Proposal, bounds: Bounds) -> Advice:
    """The proposal after the advisor's answer ``text``, each change clipped to ``bounds``.

    :raises BadAdvice: no JSON object, an unknown key or category, a value of the wrong type.
    """
    advice = _first_object(text)
    unknown = sorted(set(advice) - set(_ADVICE_KEYS))
    if unknown:
        raise BadAdvice(f"unknown key(s) {', '.join(map(repr, unknown))} (expected {', '.join(_ADVICE_KEYS)})")
    reasons: list[str] = []
    changed: list[str] = []
    weights = dict(proposal.category_weights)
    raw_weights = advice.get("category_weights")
    if raw_weights is not None:
        if not isinstance(raw_weights, Mapping):
            raise BadAdvice(f"category_weights must be an object, got {raw_weights!r}")
        for category in raw_weights:
            if category not in bounds.categories:
                raise BadAdvice(f"category_weights names {category!r}, not one of the task's categories")
            number = _number(raw_weights, category)
            assert number is not None
            new, reason = _clip(f"category {category} weight", weights.get(category, 1.0), number,
                                bounds.min_weight, bounds.max_weight, integer=False)
            if reason:
                reasons.append(reason)
            if new != weights.get(category, 1.0):
                weights[category] = round(float(new), 3)
                changed.append("category_weights")
    strategy = proposal.strategy
    if advice.get("strategy") is not None:
        if advice["strategy"] not in bounds.strategies:
            raise BadAdvice(f"strategy {advice['strategy']!r} is not one of {', '.join(bounds.strategies)}")
        if advice["strategy"] != strategy:
            reasons.append(f"advisor: strategy '{strategy}' -> '{advice['strategy']}'")
            strategy = str(advice["strategy"])
            changed.append("strategy")
    values: dict[str, Any] = {}
    for key, low, high, integer in (("epochs", bounds.min_epochs, bounds.max_epochs, True),
                                    ("learning_rate", bounds.min_learning_rate, bounds.max_learning_rate, False),
                                    ("examples", bounds.min_examples, bounds.max_examples, True)):
        old = getattr(proposal, key)
        number = _number(advice, key)
        values[key] = old
        if number is not None:
            values[key], reason = _clip(key.replace("_", " "), old, number, low, high, integer)
            if reason:
                reasons.append(reason)
            if values[key] != old:
                changed.append(key)
    why = advice.get("why")
    if why is not None and not isinstance(why, str):
        raise BadAdvice(f"why must be a string, got {why!r}")
    if reasons and why and why.strip():
        reasons.append(f"advisor's reason: {' '.join(why.split())[:200]}")
    if not reasons:
        reasons.append("advisor: no change to the planner's proposal")
    return Advice(Proposal(category_weights=weights, strategy=strategy, **values), reasons=tuple(reasons),
                  changed=tuple(dict.fromkeys(changed)))
