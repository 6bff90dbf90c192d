"""The ``template`` generator: training data from a task pack's templates, offline.

This is the stand-in for an LLM teacher when no API is configured. It expands the pack's prompt
templates with its slot values (a small grammar: slot values may contain slots), seeded, and
spreads ``plan.count`` examples over the categories as ``plan.category_weights`` says, so the
Brain can target failing categories by raising their weights.

The generation *strategy* is what the Brain changes when the model learns the training shapes
but fails on the unseen shapes of the full suite:

``basic``
    Only templates usable by ``basic`` (``strategies`` empty or naming it), expanded as they
    are, with no surroundings: the plain shapes of each category.
``varied``
    Every template usable by ``varied`` (import styles, aliases, safe look-alikes as negatives,
    paraphrases...) and, for ``frame_share`` of the examples, the expansion wrapped in one of the
    pack's ``frames`` (a function, a class, a script with statements and comments around it; an
    e-mail with greetings and unrelated sentences). Identifiers come from slot values, so they
    are renamed from example to example.
``mixed``
    Each example is ``basic`` or ``varied`` with equal chance.

Every example carries ``Source(generator="template", prompt_template=<template id>,
seed=<stage seed>)``, ``category`` = its label and ``completion`` = ``" " + label`` (a leading
space, so the label is a separate token after the prompt's last word), unless the template
writes its own completion. ``meta`` keeps the raw ``input``, the ``strategy`` and the ``frame``
index. Output is deterministic for a seed and plan, and never repeats an input (nor one kept in
an earlier iteration of the run).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from attrs import field, frozen
from forgemind_hookspecs import hookimpl
from forgemind_hookspecs.backends import StageContext
from forgemind_hookspecs.bounds import at_least, between, one_of
from forgemind_hookspecs.errors import ConfigError
from forgemind_hookspecs.records import (
    Example,
    GenerationPlan,
    PromptTemplate,
    Source,
    TaskPack,
    content_hash,
)

from forgemind_core.foundry.grammar import GrammarError, expand_text

__all__ = ["STRATEGIES", "TemplateGenerator", "allocate", "forgemind_register_generators"]

#: Strategy name -> what it does (shown by docs and error messages).
STRATEGIES: Mapping[str, str] = {
    "basic": "the plain template shapes, no surroundings",
    "varied": "all varied shapes (aliases, look-alike negatives) wrapped in the pack's frames",
    "mixed": "each example basic or varied with equal chance",
}


def allocate(count: int, categories: Sequence[str], weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``count`` over ``categories`` in proportion to ``weights`` (largest remainder).

    A category missing from ``weights`` has weight 1.0 (so a planner can raise the weight of a
    failing category without listing the others); weight 0 leaves a category out.
    """
    raw = {c: max(0.0, float(weights.get(c, 1.0))) for c in categories}
    total = sum(raw.values())
    if count <= 0 or total <= 0:
        return {c: 0 for c in categories}
    quotas = {c: count * w / total for c, w in raw.items()}
    counts = {c: int(q) for c, q in quotas.items()}
    left = count - sum(counts.values())
    order = sorted(categories, key=lambda c: (-(quotas[c] - counts[c]), categories.index(c)))
    for c in order[:left]:
        counts[c] += 1
    return counts


class TemplateGenerator:
    """Expands a task pack's templates and slot values, offline (strategies: basic, varied, mixed)."""

    name: ClassVar[str] = "template"

    @frozen
    class Options:
        """Options of the ``template`` generator.

        :ivar strategy: used when the plan says ``"default"``: ``basic`` (plain template shapes),
            ``varied`` (varied shapes inside realistic frames, look-alike negatives) or ``mixed``.
        :ivar frame_share: the share of ``varied`` examples wrapped in one of the pack's frames.
        :ivar max_attempts: draws per example before giving up on finding a new distinct input.
        :ivar template_weights: ``{template id: factor}`` multiplying a template's own weight when
            a template of its category is drawn (the Brain's planner sets it to target a confusion
            or a wrong part of the answer; absent ids keep their weight).
        """

        strategy: str = field(default="basic", validator=one_of(*STRATEGIES))
        frame_share: float = field(default=0.85, validator=between(0, 1))
        max_attempts: int = field(default=60, validator=at_least(1))
        template_weights: Mapping[str, float] = field(factory=dict)

    def __init__(self, options: TemplateGenerator.Options | None = None) -> None:
        self.options = options or TemplateGenerator.Options()

    def generate(self, plan: GenerationPlan, ctx: StageContext) -> Iterator[Example]:
        """Yield up to ``plan.count`` distinct examples, spread over ``plan.category_weights``."""
        pack = ctx.pack
        if pack is None:
            raise ConfigError("the template generator needs a task pack: set `pack:` in the goal", field="pack")
        strategy = self.options.strategy if plan.strategy in ("", "default") else plan.strategy
        if strategy not in STRATEGIES:
            raise ConfigError(_unknown_strategy(strategy), field="plan.strategy")
        pools = {s: _eligible(pack, s) for s in ("basic", "varied")}
        wanted = ("basic", "varied") if strategy == "mixed" else (strategy,)
        categories = [c for c in pack.labels if any(pools[s].get(c) for s in wanted)]
        if not categories:
            raise ConfigError(f"task pack {pack.name!r} has no templates for strategy {strategy!r}", field="templates")
        unknown = sorted(set(plan.category_weights) - set(categories))
        if unknown:
            _warn(ctx, "category weights name categories without templates", categories=unknown)
        counts = allocate(plan.count, categories, plan.category_weights)
        rng = random.Random(
            int(
                content_hash(
                    [ctx.seed, pack.name, strategy, plan.count, sorted(plan.category_weights.items())]
                ),
                16,
            )
        )
        order = [c for c in categories for _ in range(counts[c])]
        rng.shuffle(order)
        seen = {str(e.meta.get("input", e.prompt)) for e in ctx.history.kept_examples()}
        short: dict[str, int] = {}
        for category in order:
            example = self._one(pack, pools, strategy, category, rng, seen, ctx.seed)
            if example is None:
                short[category] = short.get(category, 0) + 1
                continue
            yield example
        if short:
            _warn(ctx, "templates ran out of distinct inputs", missing=short, strategy=strategy)

    def _one(
        self,
        pack: TaskPack,
        pools: Mapping[str, Mapping[str, list[PromptTemplate]]],
        strategy: str,
        category: str,
        rng: random.Random,
        seen: set[str],
        seed: int,
    ) -> Example | None:
        for _ in range(self.options.max_attempts):
            mode = strategy
            if strategy == "mixed":
                mode = rng.choice(("basic", "varied"))
            templates = pools[mode].get(category) or pools["varied" if mode == "basic" else "basic"][category]
            factors = self.options.template_weights
            template = rng.choices(templates, weights=[t.weight * factors.get(t.id, 1.0) for t in templates])[0]
            if template.python:
                text, completion = _python_row(template, rng, mode)
                frame_index: int | None = None
            else:
                text, completion, frame_index = self._expand_template(pack, template, mode, rng)
            if text in seen:
                continue
            seen.add(text)
            from forgemind_core.foundry.packs import format_prompt

            return Example(
                prompt=format_prompt(pack, text),
                completion=completion or f" {category}",
                category=category,
                source=Source(generator="template", prompt_template=template.id, seed=seed),
                meta={"input": text, "strategy": mode, "frame": frame_index},
            )
        return None

    def _expand_template(
        self, pack: TaskPack, template: PromptTemplate, mode: str, rng: random.Random
    ) -> tuple[str, str, int | None]:
        """One expansion of ``template`` (in a frame of a kind it fits, for ``varied``):
        ``(input, completion, frame index)``; the completion shares the prompt's slot draws."""
        bound: dict[str, Any] = {}
        try:
            text = _expand(template.prompt, pack, rng, bound)
            frame_index: int | None = None
            if mode == "varied" and pack.frames and rng.random() < self.options.frame_share:
                if template.frames:
                    fitting = [i for i, kind in enumerate(pack.frame_kinds) if kind in template.frames]
                    frame_index = fitting[rng.randrange(len(fitting))]
                else:
                    frame_index = rng.randrange(len(pack.frames))
                text = wrap(pack.frames[frame_index], text, pack.slots, rng, bound, linked=pack.linked)
            else:
                text = _join_head(text)
            completion = _expand(template.completion, pack, rng, bound) if template.completion else ""
        except GrammarError as error:
            raise ConfigError(f"template {template.id!r}: {error}", file=pack.root, field="slots") from None
        return text, completion, frame_index


def _python_row(template: PromptTemplate, rng: random.Random, mode: str) -> tuple[str, str]:
    """One row of a pack's own generator function, from a stream seeded by ``rng``."""
    from forgemind_core.foundry.packcode import rows_from

    sub = random.Random(rng.getrandbits(64))
    rows = rows_from(template.python, sub, 1, mode, category=template.category)
    if not rows:
        raise ConfigError(f"{template.id} returned no rows", field="python")
    return rows[0]


def _warn(ctx: StageContext, message: str, **fields: Any) -> None:
    """Log a warning through a structlog logger, or a stdlib one (which takes no keywords)."""
    try:
        ctx.log.warning(message, **fields)
    except TypeError:
        ctx.log.warning("%s %s", message, fields)


def _unknown_strategy(name: str) -> str:
    known = "; ".join(f"{k} ({v})" for k, v in STRATEGIES.items())
    return f"unknown generation strategy {name!r}; expected one of: {known}"


def _eligible(pack: TaskPack, strategy: str) -> dict[str, list[PromptTemplate]]:
    pools: dict[str, list[PromptTemplate]] = {}
    for template in pack.templates:
        if template.weight > 0 and (not template.strategies or strategy in template.strategies):
            pools.setdefault(template.category, []).append(template)
    return pools


def _expand(text: str, pack: TaskPack, rng: random.Random, bound: dict[str, Any]) -> str:
    return expand_text(text, pack.slots, pack.linked, rng.choice, bound)


def _join_head(text: str) -> str:
    from forgemind_core.foundry.packs import split_head

    head, body = split_head(text)
    return _tidy(f"{head}\n{body}" if head else body)


def wrap(frame: str, text: str, slots: Mapping[str, Sequence[str]], rng: random.Random, bound: dict[str, Any],
         *, linked: Mapping[str, Any] | None = None) -> str:
    """Put an expanded template inside ``frame``: its head where ``{head}`` is, its body where
    ``{body}`` is, continuation lines indented like the ``{body}`` line (so Python stays valid).

    The frame is expanded with the same slot choices as the template (``bound``), so a name the
    template used (a variable, an alias) means the same thing in its surroundings.
    """
    from forgemind_core.foundry.packs import split_head

    head, body = split_head(text)
    filled = expand_text(frame, slots, linked or {}, rng.choice, bound)
    lines: list[str] = []
    for line in filled.split("\n"):
        if "{head}" in line:
            if head:
                lines.append(line.replace("{head}", head))
            continue
        if "{body}" in line:
            prefix = line[: line.index("{body}")]
            indent = prefix if not prefix.strip() else ""
            body_lines = body.split("\n")
            joined = "\n".join([body_lines[0]] + [indent + b if b.strip() else b for b in body_lines[1:]])
            lines.append(line.replace("{body}", joined))
            continue
        lines.append(line)
    return _tidy("\n".join(lines))


def _tidy(text: str) -> str:
    """Strip trailing spaces, drop blank lines at the ends and collapse runs of blank lines."""
    out: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip()
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    if out:
        out[0] = out[0].lstrip()  # an empty slot at the very start (a greeting) leaves a space
    return "\n".join(out)


@hookimpl
def forgemind_register_generators(register: Any) -> None:
    """Offer the offline ``template`` generator."""
    register(TemplateGenerator)
