"""Built-in scorers of the Trial Grounds: judge a model output against an evaluation case.

Every scorer here is offline, deterministic and cheap, so the canary tier can run on every
iteration. Each returns an :class:`~forgemind_hookspecs.EvalResult` whose ``details`` say *why*
the output passed or failed (the planner and ``forge compare`` show them to people).

- ``exact_match``: the output equals ``expected`` after whitespace normalisation.
- ``label_match``: the first label-like token of the output equals the expected label
  (classification-as-generation: ``" B602 because shell=True"`` -> ``B602``).
- ``regex``: ``expected`` is a regular expression the output must match.
- ``json_schema``: the output is JSON and validates against a JSON Schema.
- ``json_match``: the output's JSON object has the expected fields with the expected values
  (structured extraction); the score is the share of fields that match.
- ``python_ast``: the output is Python source that parses, optionally defining or not calling
  given names. The output is parsed, never executed.

A mistake in a suite (an invalid pattern or schema) is the suite author's, not the model's, so it
raises :class:`~forgemind_hookspecs.DataError` instead of failing the case silently.

This module holds the text scorers and registers them all (it is the ``forgemind.scorers``
plugin); the JSON scorers live in :mod:`forgemind_core.trials.jsonscorers`, ``python_ast`` in
:mod:`forgemind_core.trials.astscorer`, what they share in :mod:`forgemind_core.trials.scoring`.
Every name of ``__all__`` stays importable from here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from attrs import field, frozen
from forgemind_hookspecs import DataError, EvalCase, EvalResult, StageContext, hookimpl

from forgemind_core.trials.astscorer import DANGEROUS_CALLS, PythonAstScorer, called_names
from forgemind_core.trials.jsonscorers import JsonMatchScorer, JsonSchemaScorer, extract_json
from forgemind_core.trials.scoring import check_lengths, normalise_whitespace, scored, strip_code_fence

__all__ = [
    "DANGEROUS_CALLS",
    "ExactMatchScorer",
    "JsonMatchScorer",
    "JsonSchemaScorer",
    "LabelMatchScorer",
    "PythonAstScorer",
    "RegexScorer",
    "called_names",
    "extract_json",
    "extract_label",
    "forgemind_register_scorers",
    "normalise_whitespace",
    "strip_code_fence",
]

# --------------------------------------------------------------------------------------------
# exact_match
# --------------------------------------------------------------------------------------------


class ExactMatchScorer:
    """Output equals the expected text after whitespace normalisation (optionally ignoring case)."""

    name: ClassVar[str] = "exact_match"

    @frozen
    class Options:
        """:ivar case_insensitive: compare lower-cased texts."""

        case_insensitive: bool = False

    def __init__(self, options: ExactMatchScorer.Options | None = None) -> None:
        self.options = options or self.Options()

    def _norm(self, text: str) -> str:
        text = normalise_whitespace(text)
        return text.casefold() if self.options.case_insensitive else text

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        """Score each output: 1.0 when the normalised texts are equal, else 0.0."""
        check_lengths(cases, outputs)
        results = []
        for case, output in zip(cases, outputs, strict=True):
            got, want = self._norm(output), self._norm(case.expected)
            ok = got == want
            why = "equal after whitespace normalisation" if ok else f"expected {want!r}, got {got!r}"
            results.append(scored(case, output, self.name, 1.0 if ok else 0.0, ok, {"reason": why}))
        return results


# --------------------------------------------------------------------------------------------
# label_match
# --------------------------------------------------------------------------------------------

_LABEL_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_LEADING_NOISE = re.compile(r"^[\s\"'`*_>#\[\(]+")
_PREFIX = re.compile(r"^(?:label|answer|category|class|prediction|output)\s*[:=\-]\s*", re.IGNORECASE)


def _norm_label(label: str) -> str:
    return normalise_whitespace(label).casefold()


def extract_label(output: str, labels: Iterable[str] = ()) -> str:
    """The label a free-text output starts with, normalised (lower case, single spaces).

    Known ``labels`` are tried first, longest first, so that a multi-word label such as
    ``no issue`` wins over a shorter label ``no`` and ``"no issue found"`` reads as ``no issue``.
    A known label must end at a word boundary (``B6020`` is not ``B602``). Without a known label
    at the start, the first label-like token is returned (``"B999: ..."`` -> ``b999``), so the
    details can say what the model answered. Leading quotes, markdown and an ``Answer:`` prefix
    are skipped: they are formatting, not the answer.

    :returns: the normalised label, or ``""`` when the output holds no token at all.
    """
    text = _LEADING_NOISE.sub("", output)
    text = _PREFIX.sub("", text)
    text = _LEADING_NOISE.sub("", text)
    flat = _norm_label(text)
    for label in sorted({_norm_label(x) for x in labels if x.strip()}, key=len, reverse=True):
        if flat.startswith(label):
            rest = flat[len(label) :]
            if not rest or not (rest[0].isalnum() or rest[0] == "_"):
                return label
    match = _LABEL_TOKEN.match(text)
    return match.group(0).rstrip(".-").casefold() if match else ""


class LabelMatchScorer:
    """The first label-like token of the output equals the expected label."""

    name: ClassVar[str] = "label_match"

    @frozen
    class Options:
        """:ivar labels: the label set; empty = the task pack's labels, plus every case's
        expected label (so multi-word labels are recognised even without a pack)."""

        labels: tuple[str, ...] = field(default=(), converter=tuple)

    def __init__(self, options: LabelMatchScorer.Options | None = None) -> None:
        self.options = options or self.Options()

    def _labels(self, cases: Sequence[EvalCase], ctx: StageContext | None) -> set[str]:
        labels = set(self.options.labels)
        if not labels and ctx is not None and ctx.pack is not None:
            labels.update(ctx.pack.labels)
        labels.update(case.expected for case in cases if case.expected.strip())
        return {_norm_label(x) for x in labels}

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        """Score each output: 1.0 when its leading label is the expected one, else 0.0."""
        check_lengths(cases, outputs)
        labels = self._labels(cases, ctx)
        results = []
        for case, output in zip(cases, outputs, strict=True):
            predicted = extract_label(output, labels)
            expected = _norm_label(case.expected)
            ok = bool(expected) and predicted == expected
            if ok:
                why = f"label {predicted!r} matches"
            elif not predicted:
                why = "the output holds no label"
            elif predicted not in labels:
                why = f"answered {predicted!r}, which is not a known label; expected {expected!r}"
            else:
                why = f"answered {predicted!r}, expected {expected!r}"
            results.append(
                scored(
                    case, output, self.name, 1.0 if ok else 0.0, ok, {"predicted": predicted, "reason": why}
                )
            )
        return results


# --------------------------------------------------------------------------------------------
# regex
# --------------------------------------------------------------------------------------------

_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


class RegexScorer:
    """The output matches the regular expression given as the case's expected text."""

    name: ClassVar[str] = "regex"

    @frozen
    class Options:
        """:ivar mode: ``search`` (anywhere), ``match`` (at the start) or ``fullmatch``.
        :ivar flags: letters among ``imsx`` (ignore case, multi-line, dot-all, verbose)."""

        mode: str = "search"
        flags: str = ""

    def __init__(self, options: RegexScorer.Options | None = None) -> None:
        self.options = options or self.Options()
        if self.options.mode not in ("search", "match", "fullmatch"):
            raise DataError(
                f"mode must be search, match or fullmatch, not {self.options.mode!r}", field="mode"
            )
        unknown = set(self.options.flags) - set(_FLAGS)
        if unknown:
            raise DataError(
                f"unknown regex flags {''.join(sorted(unknown))!r}; use letters of 'imsx'", field="flags"
            )

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        """Score each output: 1.0 when the pattern matches (per ``mode``), else 0.0."""
        check_lengths(cases, outputs)
        flags = 0
        for letter in self.options.flags:
            flags |= _FLAGS[letter]
        results = []
        for case, output in zip(cases, outputs, strict=True):
            try:
                pattern = re.compile(case.expected, flags)
            except re.error as error:
                raise DataError(
                    f"case {case.id}: expected is not a valid regular expression ({error})", field="expected"
                ) from None
            found = getattr(pattern, self.options.mode)(output.strip())
            ok = found is not None
            why = f"matched {found.group(0)!r}" if found else f"no {self.options.mode} of {case.expected!r}"
            results.append(scored(case, output, self.name, 1.0 if ok else 0.0, ok, {"reason": why}))
        return results


@hookimpl
def forgemind_register_scorers(register: Any) -> None:
    """Offer the built-in offline scorers."""
    for cls in (
        ExactMatchScorer,
        LabelMatchScorer,
        RegexScorer,
        JsonSchemaScorer,
        JsonMatchScorer,
        PythonAstScorer,
    ):
        register(cls)
