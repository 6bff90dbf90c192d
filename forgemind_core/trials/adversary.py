"""The built-in offline adversary: harder evaluation cases made by perturbing existing ones.

A model that learned the *surface* of its training templates (a variable called ``cmd``, a call
on one line, ``import hashlib`` spelled out) fails as soon as the surface changes. The ``perturb``
backend changes the surface and keeps the meaning, so the expected label stays true:

code cases (the input, or the first fenced code block inside it, parses as Python)
    ``rename``      identifiers renamed through the AST (definitions, arguments, assigned names)
    ``reformat``    a call's arguments split over lines, or the indentation width changed
    ``comment``     a comment (possibly misleading) above the finding, a docstring in a function
    ``distractor``  harmless statements around the finding
    ``obfuscate``   the same construct spelled differently: ``getattr(subprocess, "run")(...)``,
                    ``import hashlib as h``
text cases
    ``typo``        two adjacent letters swapped in a few words
    ``casing``      upper, lower or title case
    ``sentence``    an irrelevant sentence before or after
    When ``expected`` is JSON (structured extraction), its string values are copied from the
    input: their occurrences are left exactly as written, so a typo or a case change never makes
    the expected answer wrong.

Every variant is checked to still parse (code) and to differ from its source and from every other
variant; the same cases, count and seed always give the same variants.
"""

from __future__ import annotations

import json
import random
import re
import tokenize
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from attrs import field, frozen
from forgemind_hookspecs import EvalCase, StageContext, content_hash, hookimpl

from forgemind_core.trials.codeperturb import CODE_FUNCS, CODE_PERTURBATIONS, find_code, parses

__all__ = [
    "CODE_PERTURBATIONS",
    "TEXT_PERTURBATIONS",
    "PerturbAdversary",
    "find_code",
    "forgemind_register_adversaries",
]


TEXT_PERTURBATIONS: tuple[str, ...] = ("typo", "casing", "sentence")
_SENTENCES = (
    "This was noted on a Tuesday.",
    "Please answer briefly.",
    "The weather was unremarkable that day.",
    "Some people may disagree.",
    "Nothing else is relevant here.",
)


# --------------------------------------------------------------------------------------------
# Text perturbations.
# --------------------------------------------------------------------------------------------


def _typo(text: str, rng: random.Random, keep: set[str]) -> str | None:
    words = list(re.finditer(r"[A-Za-z]{4,}", text))
    words = [w for w in words if w.group(0).casefold() not in keep]
    if not words:
        return None
    out = text
    for match in sorted(rng.sample(words, k=min(len(words), rng.randint(1, 3))), key=lambda m: -m.start()):
        word = match.group(0)
        i = rng.randrange(1, len(word) - 2)
        swapped = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        out = out[: match.start()] + swapped + out[match.end() :]
    return out


def _casing(text: str, rng: random.Random, keep: set[str]) -> str | None:
    return rng.choice((str.upper, str.lower, str.title, str.swapcase))(text)


def _sentence(text: str, rng: random.Random, keep: set[str]) -> str | None:
    extra = rng.choice(_SENTENCES)
    return f"{extra} {text}" if rng.random() < 0.5 else f"{text.rstrip()} {extra}"


def _copied_values(expected: str) -> list[str]:
    """The string values of a JSON ``expected`` (an extraction answer copies them from the input);
    none for a label or any other text that is not a JSON object or array."""
    text = expected.strip()
    if not text.startswith(("{", "[")):
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            if node.strip():
                found.append(node)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return sorted(set(found), key=len, reverse=True)  # longest first: "a@b.c" before "b.c"


def _mark(index: int) -> str:
    """A placeholder no text perturbation changes (no letters; control characters around a digit)."""
    return f"\x00{index}\x00"


def _mask_copied(text: str, values: Sequence[str]) -> tuple[str, list[str]]:
    """``text`` with each value that occurs in it replaced by a placeholder, and the values masked."""
    masked: list[str] = []
    for value in values:
        if value in text:
            text = text.replace(value, _mark(len(masked)))
            masked.append(value)
    return text, masked


_TEXT_FUNCS: dict[str, Callable[[str, random.Random, set[str]], str | None]] = {
    "typo": _typo,
    "casing": _casing,
    "sentence": _sentence,
}


def _kinds(value: Any) -> tuple[str, ...]:
    kinds = tuple(value)
    unknown = set(kinds) - set(CODE_PERTURBATIONS) - set(TEXT_PERTURBATIONS)
    if unknown:
        from forgemind_hookspecs import ConfigError

        known = ", ".join(CODE_PERTURBATIONS + TEXT_PERTURBATIONS)
        raise ConfigError(
            f"unknown perturbations {', '.join(sorted(unknown))}; known: {known}", field="kinds"
        )
    return kinds


class PerturbAdversary:
    """Offline adversarial cases: renamed, reformatted, commented, padded or obfuscated code; noisy text."""

    name: ClassVar[str] = "perturb"

    @frozen
    class Options:
        """:ivar kinds: which perturbations to use (default: all).
        :ivar seed: fixed seed; ``None`` uses the stage's seed, so each iteration gets new cases.
        :ivar rounds: how many variants of each (case, perturbation) to try at most."""

        kinds: tuple[str, ...] = field(default=CODE_PERTURBATIONS + TEXT_PERTURBATIONS, converter=_kinds)
        seed: int | None = None
        rounds: int = 8

    def __init__(self, options: PerturbAdversary.Options | None = None) -> None:
        self.options = options or self.Options()

    def _variant(self, case: EvalCase, kind: str, rng: random.Random) -> str | None:
        code = find_code(case.input)
        if code is not None:
            if kind not in CODE_FUNCS:
                return None
            before, source, after = code
            new = CODE_FUNCS[kind](source, rng)
            if new is None or new == source or not parses(new):
                return None
            return before + new + after
        if kind not in _TEXT_FUNCS:
            return None
        keep = {case.expected.casefold()} | {w.casefold() for w in case.expected.split()}
        masked, values = _mask_copied(case.input, _copied_values(case.expected))
        new = _TEXT_FUNCS[kind](masked, rng, keep)
        if new is None:
            return None
        for index, value in enumerate(values):
            new = new.replace(_mark(index), value)
        return new

    def perturb(self, cases: Sequence[EvalCase], count: int, ctx: StageContext) -> list[EvalCase]:
        """Return up to ``count`` distinct adversarial cases, spread over ``cases`` and kinds.

        Cases are visited round-robin (one variant per case before a second one of any case), so a
        small ``count`` still covers many sources. Derived cases keep ``expected``, ``category`` and
        ``checker``; ``meta`` records ``derived_from`` (the source case id) and ``perturbation``.
        """
        seed = self.options.seed if self.options.seed is not None else ctx.seed
        order = list(cases)
        random.Random(content_hash(["order", seed])).shuffle(order)
        seen = {case.input for case in cases}
        out: list[EvalCase] = []
        for round_ in range(max(1, self.options.rounds)):
            before_round = len(out)
            for case in order:
                kinds = list(self.options.kinds)
                random.Random(content_hash(["kinds", seed, case.id, round_])).shuffle(kinds)
                for kind in kinds:
                    if len(out) >= count:
                        return out
                    rng = random.Random(content_hash([seed, case.id, kind, round_]))
                    try:
                        new_input = self._variant(case, kind, rng)
                    except (SyntaxError, ValueError, tokenize.TokenError):
                        new_input = None  # a perturbation that cannot apply is skipped, never fatal
                    if new_input is None or new_input in seen:
                        continue
                    seen.add(new_input)
                    meta = {**case.meta, "derived_from": case.id, "perturbation": kind}
                    out.append(
                        EvalCase(
                            input=new_input,
                            expected=case.expected,
                            tier="adversarial",
                            category=case.category,
                            checker=case.checker,
                            meta=meta,
                        )
                    )
                    break  # one variant per case per round: spread over the sources
            if len(out) == before_round:
                break  # nothing new this round: more rounds would not find any either
        return out


@hookimpl
def forgemind_register_adversaries(register: Any) -> None:
    """Offer the offline ``perturb`` adversary."""
    register(PerturbAdversary)
