"""Built-in Foundry filters: ``dedupe``, ``decontaminate`` and ``rules``.

A plugin module like any other (the kernel registers it as ``forgemind.filters``). Only the
standard library and ``forgemind_hookspecs`` are imported at module level; datasketch (MinHash
LSH) and numpy are imported when ``dedupe`` first runs, so ``forge --help`` stays fast.

- ``dedupe`` drops exact duplicates (after normalising case and whitespace) and near-duplicates
  (MinHash LSH over word n-grams) against the run's *whole* history
  (``ctx.history.kept_examples()``) and within the batch: data generated in iteration 3 that
  repeats iteration 1 teaches nothing new and skews the category balance.
- ``decontaminate`` drops training examples that contain (exactly or nearly) an evaluation
  case's input, in any tier: scores on a leaked test set measure memory, not skill. It checks
  what share of a case input's n-grams occur in the example's prompt, which embeds the snippet
  through the pack's ``prompt_format``.
- ``rules`` applies cheap heuristics: length bounds, share of non-printable characters,
  required fields, and the label being one of the pack's labels.

Every drop is a :class:`~forgemind_hookspecs.Verdict` with filter, rule, score and reason;
kept examples get ``keep=True`` verdicts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from attrs import frozen
from forgemind_hookspecs import hookimpl
from forgemind_hookspecs.backends import StageContext
from forgemind_hookspecs.errors import ConfigError
from forgemind_hookspecs.records import EvalCase, Example, Verdict

__all__ = [
    "Decontaminate",
    "Dedupe",
    "Rules",
    "example_text",
    "forgemind_register_filters",
    "normalise",
    "shingles",
]

_SPACE = re.compile(r"\s+")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def normalise(text: str) -> str:
    """Lower-case and collapse every run of whitespace to one space (exact-dedup key)."""
    return _SPACE.sub(" ", text).strip().lower()


def example_text(example: Example, fields: Iterable[str] = ("prompt", "completion", "messages")) -> str:
    """The text of ``example`` that dedup compares: the chosen fields, joined."""
    parts: list[str] = []
    for name in fields:
        if name == "messages":
            parts.extend(m.content for m in example.messages)
        else:
            parts.append(str(getattr(example, name, "") or ""))
    return "\n".join(p for p in parts if p)


def shingles(text: str, n: int) -> set[str]:
    """Word n-grams of the normalised text (punctuation counts as words, which matters for
    code); a text shorter than ``n`` words is one shingle."""
    tokens = _TOKEN.findall(text.lower())
    if not tokens:
        return set()
    if len(tokens) <= n:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _digest(text: str) -> str:
    return hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).hexdigest()


# --------------------------------------------------------------------------------------------
# dedupe
# --------------------------------------------------------------------------------------------


class Dedupe:
    """Drop exact and near-duplicate examples (MinHash LSH) against the whole run history."""

    name: ClassVar[str] = "dedupe"

    @frozen
    class Options:
        """:ivar threshold: estimated Jaccard similarity of n-gram sets at or above which an
            example is a near-duplicate.
        :ivar num_perm: MinHash permutations (more = more precise, slower).
        :ivar ngram: words per shingle.
        :ivar fields: which parts of an example are compared.
        :ivar near: also remove near-duplicates (exact dedup always runs).
        """

        threshold: float = 0.85
        num_perm: int = 64
        ngram: int = 3
        fields: tuple[str, ...] = ("prompt", "completion", "messages")
        near: bool = True

    def __init__(self, options: Dedupe.Options | None = None) -> None:
        self.options = options or self.Options()
        if not 0.0 < self.options.threshold <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.options.threshold}", field="dedupe.threshold")
        if self.options.num_perm < 16:
            raise ConfigError(f"must be at least 16, got {self.options.num_perm}", field="dedupe.num_perm")

    def filter(self, examples: Sequence[Example], ctx: StageContext) -> list[Verdict]:
        """One verdict per example: the first occurrence (history first, then batch order) is
        kept; every later copy is dropped naming the example it repeats."""
        opts = self.options
        index = _NearIndex(opts.threshold, opts.num_perm) if opts.near else None
        seen: dict[str, tuple[str, str]] = {}  # normalised-text digest -> (example id, origin)
        old_ids: list[str] = []
        old_sets: list[set[str]] = []
        for old in ctx.history.kept_examples():
            text = example_text(old, opts.fields)
            seen.setdefault(_digest(text), (old.id, "earlier iterations"))
            old_ids.append(old.id)
            if index is not None:
                old_sets.append(shingles(text, opts.ngram))
        history = len(old_ids)
        if index is not None:
            for key, sig in zip(old_ids, index.signatures(old_sets), strict=True):
                if sig is not None:
                    index.insert(key, sig, "earlier iterations")
        verdicts: list[Verdict] = []
        texts = [example_text(e, opts.fields) for e in examples]
        sigs = index.signatures([shingles(t, opts.ngram) for t in texts]) if index is not None else None
        for i, (example, text) in enumerate(zip(examples, texts, strict=True)):
            key = _digest(text)
            if key in seen:
                other, origin = seen[key]
                verdicts.append(Verdict(
                    example.id, self.name, False, rule="exact", score=1.0,
                    reason=f"exact duplicate of example {other} ({origin}) after normalising case and whitespace",
                ))
                continue
            if index is not None and sigs is not None and sigs[i] is not None:
                match = index.query(sigs[i])
                if match is not None:
                    other, similarity, origin = match
                    verdicts.append(Verdict(
                        example.id, self.name, False, rule="near_duplicate", score=round(similarity, 4),
                        reason=f"near-duplicate of example {other} ({origin}): estimated Jaccard "
                               f"{similarity:.2f} >= {opts.threshold}",
                    ))
                    continue
                index.insert(example.id, sigs[i], "this batch")
            seen[key] = (example.id, "this batch")
            verdicts.append(Verdict(example.id, self.name, True, rule="unique"))
        dropped = sum(not v.keep for v in verdicts)
        ctx.log.info("filter.dedupe", examples=len(examples), history=history, dropped=dropped)
        return verdicts


class _NearIndex:
    """MinHash signatures in an LSH index; candidates are confirmed on the stored signatures."""

    def __init__(self, threshold: float, num_perm: int) -> None:
        import numpy as np
        from datasketch import MinHash, MinHashLSH

        self._np = np
        self._minhash = MinHash
        self.threshold = threshold
        self.num_perm = num_perm
        # LSH only proposes candidates, confirmed on the stored signatures against the real
        # threshold; a very high threshold would leave too few bands, so the LSH one is capped.
        self.lsh = MinHashLSH(threshold=min(threshold, 0.9), num_perm=num_perm)
        self.store: dict[str, tuple[Any, str]] = {}
        self._pending: dict[str, Any] = {}

    def signatures(self, sets: Sequence[set[str]]) -> list[Any | None]:
        """MinHash signatures of many shingle sets at once (``None`` for an empty set)."""
        out: list[Any | None] = [None] * len(sets)
        todo = [i for i, s in enumerate(sets) if s]
        hashed = self._minhash.generator(
            ([x.encode("utf-8") for x in sets[i]] for i in todo), num_perm=self.num_perm
        )
        for i, mh in zip(todo, hashed, strict=True):
            out[i] = mh
        return out

    def insert(self, key: str, sig: Any, origin: str) -> None:
        if key in self.store:
            return
        self.lsh.insert(key, sig)
        self.store[key] = (sig.hashvalues.astype(self._np.uint32), origin)

    def query(self, sig: Any) -> tuple[str, float, str] | None:
        """The most similar indexed example at or above the threshold, if any."""
        best: tuple[str, float, str] | None = None
        values = sig.hashvalues.astype(self._np.uint32)
        for key in self.lsh.query(sig):
            stored, origin = self.store[key]
            similarity = float(self._np.count_nonzero(stored == values)) / len(values)
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (key, similarity, origin)
        return best


# --------------------------------------------------------------------------------------------
# decontaminate
# --------------------------------------------------------------------------------------------


class Decontaminate:
    """Drop training examples that contain an evaluation case's input (any tier)."""

    name: ClassVar[str] = "decontaminate"

    @frozen
    class Options:
        """:ivar threshold: share of a case input's n-grams found in the example's text at or
            above which the example is contaminated (1.0 = the whole input occurs).
        :ivar ngram: words per n-gram.
        :ivar fields: which parts of an example are searched for case inputs.
        """

        threshold: float = 0.8
        ngram: int = 5
        fields: tuple[str, ...] = ("prompt", "messages")

    def __init__(self, options: Decontaminate.Options | None = None) -> None:
        self.options = options or self.Options()

    def filter(self, examples: Sequence[Example], ctx: StageContext) -> list[Verdict]:
        """One verdict per example; a dropped one names the case and tier it leaks."""
        opts = self.options
        cases: list[EvalCase] = list(ctx.history.eval_cases())
        case_grams = [shingles(c.input, opts.ngram) for c in cases]
        case_norm = [normalise(c.input) for c in cases]
        inverted: dict[str, list[int]] = {}
        for ci, grams in enumerate(case_grams):
            for g in grams:
                inverted.setdefault(g, []).append(ci)
        verdicts: list[Verdict] = []
        for example in examples:
            text = example_text(example, opts.fields)
            hits: dict[int, int] = {}
            for g in shingles(text, opts.ngram):
                for ci in inverted.get(g, ()):
                    hits[ci] = hits.get(ci, 0) + 1
            best: tuple[float, int] | None = None
            for ci, n in hits.items():
                share = n / len(case_grams[ci])
                if share >= opts.threshold and (best is None or share > best[0]):
                    best = (share, ci)
            if best is None:
                verdicts.append(Verdict(example.id, self.name, True, rule="clean"))
                continue
            share, ci = best
            case = cases[ci]
            exact = case_norm[ci] and case_norm[ci] in normalise(text)
            verdicts.append(Verdict(
                example.id, self.name, False,
                rule="exact_eval_match" if exact else "eval_overlap",
                score=1.0 if exact else round(share, 4),
                reason=(f"contains the input of evaluation case {case.id} (tier {case.tier})" if exact else
                        f"{share:.0%} of the {opts.ngram}-grams of evaluation case {case.id} "
                        f"(tier {case.tier}) occur in it"),
            ))
        ctx.log.info("filter.decontaminate", examples=len(examples), cases=len(cases),
                     dropped=sum(not v.keep for v in verdicts))
        return verdicts


# --------------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------------


def _nonprintable_share(text: str) -> float:
    if not text:
        return 0.0
    bad = sum(1 for ch in text if not ch.isprintable() and ch not in "\n\t\r")
    return bad / len(text)


class Rules:
    """Heuristic checks: length bounds, non-printable characters, required fields, labels."""

    name: ClassVar[str] = "rules"

    @frozen
    class Options:
        """:ivar min_chars / max_chars: bounds on prompt + completion (or all messages) length.
        :ivar max_nonprintable: largest allowed share of non-printable characters
            (newlines and tabs are fine).
        :ivar required: fields that must be non-empty (``prompt``, ``completion``,
            ``category``); a chat example satisfies prompt/completion with a user and an
            assistant message.
        :ivar check_labels: when the pack defines labels, the category must be one of them, and
            so must the stripped completion unless the example's template writes its own
            ``completion`` (an extraction answer, not a label; the template is the example's
            ``source.prompt_template``, for the template and LLM generators alike).
        """

        min_chars: int = 2
        max_chars: int = 20_000
        max_nonprintable: float = 0.01
        required: tuple[str, ...] = ("prompt", "completion")
        check_labels: bool = True

    def __init__(self, options: Rules.Options | None = None) -> None:
        self.options = options or self.Options()

    def filter(self, examples: Sequence[Example], ctx: StageContext) -> list[Verdict]:
        """One verdict per example; the first rule that fails is the reason."""
        labels = set(ctx.pack.labels) if ctx.pack is not None and ctx.pack.labels else set()
        # Templates that write their own answer: their examples' completions are not labels.
        own = {t.id for t in ctx.pack.templates if t.completion or t.python} if ctx.pack is not None else set()
        return [self._judge(e, labels, own) for e in examples]

    def _judge(self, example: Example, labels: set[str], own_answers: set[str]) -> Verdict:
        opts = self.options

        def drop(rule: str, reason: str, score: float | None = None) -> Verdict:
            return Verdict(example.id, self.name, False, rule=rule, score=score, reason=reason)

        roles = {m.role for m in example.messages if m.content.strip()}
        for name in opts.required:
            if name == "prompt" and example.messages:
                present = "user" in roles
            elif name == "completion" and example.messages:
                present = "assistant" in roles
            else:
                present = bool(str(getattr(example, name, "") or "").strip())
            if not present:
                return drop("required_field", f"required field {name!r} is empty")
        text = example.prompt + example.completion + "".join(m.content for m in example.messages)
        if len(text) < opts.min_chars:
            return drop("too_short", f"{len(text)} characters < min_chars {opts.min_chars}", float(len(text)))
        if len(text) > opts.max_chars:
            return drop("too_long", f"{len(text)} characters > max_chars {opts.max_chars}", float(len(text)))
        share = _nonprintable_share(text)
        if share > opts.max_nonprintable:
            return drop("charset", f"{share:.1%} non-printable characters > {opts.max_nonprintable:.1%}", share)
        if opts.check_labels and labels and not example.messages:
            if example.category is not None and example.category not in labels:
                return drop("label", f"category {example.category!r} is not one of the pack's labels")
            answer = example.completion.strip()
            if answer not in labels and example.source.prompt_template not in own_answers:
                return drop("label", f"completion {answer[:60]!r} is not one of the pack's labels")
        return Verdict(example.id, self.name, True, rule="ok")


@hookimpl
def forgemind_register_filters(register: Callable[[type], None]) -> None:
    register(Dedupe)
    register(Decontaminate)
    register(Rules)
