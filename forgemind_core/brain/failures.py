"""What the default planner does with the Trial Grounds' failure analysis of the last try.

:func:`failure_changes` turns one tier's :class:`~forgemind_core.trials.analysis.FailureAnalysis`
into changes of the next plan, each with one reason that names its evidence:

- a **confusion pair** ``A -> B`` (expected A, answered B, at least ``min_confusions`` times)
  gets contrastive examples of A. A's category weight is raised unless the scores already
  targeted A (the same failures are not counted twice: then the analysis only chooses which of
  A's examples). For the template generator, A's templates whose prompts are clearly closest to
  B's get the factor in its ``template_weights``, and B's templates closest to A's half of it
  within B's share (near-misses of B; B's category weight stays, raising it would undo A's
  targeting); no template is singled out when all of a category's are about as close. An LLM
  generator (one that takes ``instructions``) gets an instruction for A naming the confusion;
- a **part wrong across a category** (a JSON field or a string segment wrong in at least half the
  category's failures, ``min_part_failures`` or more) raises the category's weight (unless the
  scores already did) and, for the template generator, the weight of its templates whose answer
  has a slot at that part (so that part varies more in the new data); an LLM generator is told to
  vary that part and which value the model keeps giving;
- **mode collapse** is returned for the planner to change training (a lower learning rate or
  another epoch) before it adds data.

The weights only move the existing mechanisms (``category_weights`` and the generators' own
options); no evaluation case is copied anywhere, and the decontamination filter still runs on all
generated data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import Factory, frozen
from forgemind_hookspecs import PromptTemplate, TaskPack, from_dict

from forgemind_core.trials.analysis import FailureAnalysis, ModeCollapse, PartDiff

__all__ = ["CLOSE", "FailureChanges", "closest", "failure_changes", "feeding_slots", "recorded_analysis", "template_affinity"]

#: A template counts as "closest" when its similarity is at least this share of the best one's.
CLOSE: float = 0.8

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_SLOT = re.compile(r"\{([^{}]+)\}")
_PIECE = re.compile(r"\{[^{}]+\}|\d+|[^\W\d_]+|[^\w\s{}]+|_+")


@frozen
class FailureChanges:
    """What the failure analysis changes in the next plan.

    :ivar category_weights: ``{category: weight}`` floors for the category weights.
    :ivar template_weights: ``{template id: factor}`` for generators taking ``template_weights``.
    :ivar instructions: ``{category: extra instruction}`` for generators taking ``instructions``.
    :ivar collapse: the mode collapse seen, for the training change.
    :ivar reasons: one per change, naming the evidence.
    """

    category_weights: Mapping[str, float] = Factory(dict)
    template_weights: Mapping[str, float] = Factory(dict)
    instructions: Mapping[str, str] = Factory(dict)
    collapse: ModeCollapse | None = None
    reasons: tuple[str, ...] = ()


def recorded_analysis(tier_metrics: Mapping[str, Any]) -> FailureAnalysis | None:
    """The analysis in one tier's recorded metrics, or ``None`` (a report from before it existed)."""
    data = tier_metrics.get("analysis")
    if isinstance(data, FailureAnalysis):
        return data
    return from_dict(FailureAnalysis, dict(data)) if isinstance(data, Mapping) else None


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def template_affinity(templates: Sequence[PromptTemplate], towards: Sequence[PromptTemplate]) -> list[tuple[float, str]]:
    """``(similarity, template id)`` of each of ``templates``, most like ``towards`` first: the
    highest Jaccard similarity of its prompt's words (slot names included) to any of theirs."""
    others = [_words(t.prompt) for t in towards]
    scored = []
    for template in templates:
        mine = _words(template.prompt)
        best = max((len(mine & o) / len(mine | o) for o in others if mine | o), default=0.0)
        scored.append((best, template.id))
    return sorted(scored, key=lambda s: (-s[0], s[1]))


def closest(templates: Sequence[PromptTemplate], towards: Sequence[PromptTemplate]) -> list[str]:
    """The ids of ``templates`` clearly closest to ``towards`` (similarity above 0 and at least
    :data:`CLOSE` of the best), or ``[]`` when that is all of them: weighting every template of a
    category alike changes nothing its category weight does not already do."""
    ranked = template_affinity(templates, towards)
    best = ranked[0][0] if ranked else 0.0
    chosen = [tid for sim, tid in ranked if sim > 0 and sim >= CLOSE * best]
    return chosen if len(chosen) < len(templates) else []


def feeding_slots(template: PromptTemplate, part: PartDiff) -> list[str]:
    """The slots of ``template``'s answer that feed ``part``: for a JSON field, the slot in its
    value (``"unit": "{unit}"``); for a string segment, the slot at that position of the answer."""
    completion = template.completion
    if not completion:
        return []
    if part.kind == "field":
        name = re.escape(part.key.rsplit(".", 1)[-1])
        return re.findall(r'"' + name + r'"\s*:\s*"?\{([^{}]+)\}', completion)
    pieces = _PIECE.findall(completion)
    index = int(part.key) - 1
    if 0 <= index < len(pieces):
        found = _SLOT.fullmatch(pieces[index])
        if found:
            return [found.group(1)]
    return []


def _factor(count: int, of: int, cap: float) -> float:
    return round(min(cap, 1.0 + 2.0 * count / max(of, 1)), 1)


def _raise(weights: dict[str, float], key: str, value: float) -> None:
    weights[key] = max(weights.get(key, 1.0), value)


def _share(categories: dict[str, float], done: Mapping[str, float], category: str, factor: float) -> str:
    """Raise ``category``'s weight to ``factor`` unless the scores already targeted it; the
    reason's words for what happened to its share."""
    if category in done:
        return f"; category {category} keeps {done[category]:.1f}x its share from its score"
    _raise(categories, category, factor)
    return f"; category {category} {categories[category]:.1f}x its share"


def failure_changes(analysis: FailureAnalysis, *, tier: str, pack: TaskPack | None, max_weight: float,
                    targeted: Mapping[str, float] | None = None, min_confusions: int = 2,
                    min_part_failures: int = 3, top: int = 3) -> FailureChanges:
    """The plan changes the analysis of ``tier`` calls for (see the module docstring).

    :param pack: the run's task pack (its templates), if any.
    :param max_weight: the planner's cap on any category weight or template factor.
    :param targeted: the category weights the scores already set: the same failures are not
        counted twice, so the analysis changes *which* examples such a category gets (its
        templates), and sets the weight only of a category the scores did not target.
    """
    done = dict(targeted or {})
    categories: dict[str, float] = {}
    templates: dict[str, float] = {}
    instructions: dict[str, list[str]] = {}
    reasons: list[str] = []
    by_category: dict[str, list[PromptTemplate]] = {}
    for template in pack.templates if pack is not None else ():
        by_category.setdefault(template.category, []).append(template)

    pairs = [p for p in analysis.top_confusions if p.count >= min_confusions][:top]
    for pair in pairs:
        a, b = pair.expected, pair.answered
        of = analysis.failures_by_expected.get(a, pair.count)
        factor = _factor(pair.count, of, max_weight)
        share = _share(categories, done, a, factor)
        named = near_named = ""
        if a in by_category and b in by_category:
            chosen = closest(by_category[a], by_category[b])
            for tid in chosen:
                _raise(templates, tid, factor)
            if chosen:
                named = f" (templates {', '.join(chosen)}: {factor:.1f}x)"
            near = closest(by_category[b], by_category[a])
            half = round(1.0 + (factor - 1.0) / 2, 1)
            for tid in near:
                _raise(templates, tid, half)
            if near:
                near_named = f"; near-misses of {b} (templates {', '.join(near)}): {half:.1f}x of its share"
        instructions.setdefault(a, []).append(
            f"The model being trained answers '{b}' where the answer is '{a}': write examples of '{a}' that "
            f"look like '{b}' at first sight, and make what tells them apart visible.")
        reasons.append(f"{a!r} answered {b} in {pair.count} of {of} failures ({tier}) -> contrastive "
                       f"{a} look-alikes of {b}{named}{share}{near_named}")

    for part in analysis.parts:
        if part.wrong < min_part_failures or part.wrong * 2 < part.of:
            continue
        for category, wrong in part.by_category.items():
            of = part.of_by_category.get(category, wrong)
            if wrong < min_part_failures or wrong * 2 < of:
                continue
            factor = _factor(wrong, of, max_weight)
            share = _share(categories, done, category, factor)
            slots = sorted({s for t in by_category.get(category, ()) for s in feeding_slots(t, part)})
            fed = [t.id for t in by_category.get(category, ()) if feeding_slots(t, part)]
            for tid in fed:
                _raise(templates, tid, factor)
            same = f", the same answer {part.top_answer!r} in {part.top_count}" if part.top_count > 1 else ""
            varying = (f": templates varying {', '.join('{' + s + '}' for s in slots)} ({', '.join(fed)}) {factor:.1f}x"
                       if fed else "")
            instructions.setdefault(category, []).append(
                f"In the answers, vary {part.part} widely: the model being trained keeps getting it wrong"
                + (f" (it answers {part.top_answer!r})" if part.top_count > 1 else "") + ".")
            reasons.append(f"{part.part} wrong in {wrong} of {of} failures of category {category} ({tier}){same} "
                           f"-> data where it varies more{varying}{share}")
    return FailureChanges(
        category_weights=categories,
        template_weights=templates,
        instructions={c: " ".join(lines) for c, lines in instructions.items()},
        collapse=analysis.collapse,
        reasons=tuple(reasons),
    )
