"""The Trial Grounds' failure analysis: what is wrong *inside* the failing cases of one tier.

Scores say how often a model fails; this module says how. :func:`analyse` reads one tier's
results and returns a :class:`FailureAnalysis`, which the evaluator records in the tier report's
``metrics["analysis"]`` (plain JSON through the contract's converter, like every record) and the
Brain's default planner acts on:

- **label tasks** (the pack names labels, or the references are a few short values): the
  confusion matrix ``expected -> answered -> count`` (the label an answer starts with, read as
  the ``label_match`` scorer reads it, spelled as the pack spells it) and the top confusion pairs;
- **JSON answers** (the references are JSON objects): a diff by field (nested fields as
  ``a.b``): in how many failures each field was wrong or missing, and the wrong value given most;
- **other strings**: the reference and the answer cut into aligned segments (digit runs, words,
  separators; whitespace only separates them; aligned with :mod:`difflib` when their counts
  differ), so "segment 3 (digits) wrong in 31 of 31 failures, the same answer '12' in 29" is a
  recorded fact;
- **mode collapse**: one answer given for many different inputs, far more often than the
  references give it;
- counts of answers outside the label set or the expected format (a label task: not a label; a
  JSON task: not a JSON object; a string task: another sequence of segment kinds than the
  reference's), of empty answers and of over-long ones (more than ``OVER_LONG_FACTOR`` times the
  reference's length, and at least ``OVER_LONG_MIN_CHARS`` characters).

Results scored by a reference-free scorer (a regex, a schema, a parser) have no reference to diff
against: they count for collapse, empty and over-long answers only. A report recorded before this
module existed has no ``analysis``: :func:`report_analysis` computes it from the report's results.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from attrs import Factory, frozen
from forgemind_hookspecs import EvalReport, EvalResult, from_dict, to_dict

from forgemind_core.trials.jsonscorers import extract_json
from forgemind_core.trials.scorers import extract_label
from forgemind_core.trials.scoring import strip_code_fence

__all__ = [
    "OVER_LONG_FACTOR",
    "OVER_LONG_MIN_CHARS",
    "Confusion",
    "FailureAnalysis",
    "ModeCollapse",
    "PartDiff",
    "analyse",
    "analysis_rows",
    "as_metrics",
    "report_analysis",
    "segments",
    "tier_findings",
]

#: An answer is over-long when it is this many times longer than its reference ...
OVER_LONG_FACTOR: float = 3.0
#: ... and at least this many characters long (a one-word reference answered with a sentence).
OVER_LONG_MIN_CHARS: int = 40

#: Scorers whose ``expected`` is not a reference answer (kept in step with the tiers' list).
_REFERENCE_FREE: frozenset[str] = frozenset({"regex", "json_schema", "python_ast"})

_SEGMENT = re.compile(r"\d+|[^\W\d_]+|[^\w\s]+|_+")


@frozen
class Confusion:
    """One confusion pair: ``expected`` answered as ``answered`` in ``count`` cases."""

    expected: str
    answered: str
    count: int


@frozen
class PartDiff:
    """One part of the answer (a JSON field or a string segment) and how often it was wrong.

    :ivar part: ``field price`` / ``segment 3 (digits)``: what reasons and tables show.
    :ivar kind: ``field`` or ``segment``.
    :ivar key: the field path (``a.b``) or the 1-based segment position.
    :ivar wrong: failures in which this part was wrong or missing.
    :ivar of: failures in which the reference has this part.
    :ivar top_answer: the wrong value given most often (``(missing)`` when the part was absent).
    :ivar top_count: how many of the ``wrong`` gave ``top_answer``.
    :ivar by_category: ``{category: wrong}``; ``of_by_category``: ``{category: of}``.
    :ivar expected_values: distinct reference values of this part among the wrong ones.
    """

    part: str
    kind: Literal["field", "segment"]
    key: str
    wrong: int
    of: int
    top_answer: str = ""
    top_count: int = 0
    by_category: Mapping[str, int] = Factory(dict)
    of_by_category: Mapping[str, int] = Factory(dict)
    expected_values: int = 0


@frozen
class ModeCollapse:
    """One ``answer`` given ``count`` times for ``inputs`` different inputs: ``share`` of all
    answers, where the references give it ``expected_share`` of the time."""

    answer: str
    count: int
    inputs: int
    share: float
    expected_share: float


@frozen
class FailureAnalysis:
    """What is wrong inside one tier's failures (see the module docstring for each part)."""

    kind: Literal["label", "json", "text"]
    n: int
    failures: int
    confusion: Mapping[str, Mapping[str, int]] = Factory(dict)
    top_confusions: tuple[Confusion, ...] = ()
    failures_by_expected: Mapping[str, int] = Factory(dict)
    parts: tuple[PartDiff, ...] = ()
    collapse: ModeCollapse | None = None
    outside_labels: int = 0
    bad_format: int = 0
    empty: int = 0
    over_long: int = 0


def segments(text: str) -> list[str]:
    """``text`` cut into digit runs, words and runs of other characters (separators); whitespace
    only separates segments, so ``12 kg`` and ``12kg`` have the same two segments."""
    return _SEGMENT.findall(text)


def _kind_of(segment: str) -> str:
    if segment.isdigit():
        return "digits"
    if segment.isalpha():
        return "word"
    return "separator"


def _answer(output: str) -> str:
    """The answer as compared: stripped, the body of a code fence when it has one."""
    return strip_code_fence(output).strip()


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, as the ``json_match`` scorer finds it, or ``None``."""
    try:
        value = extract_json(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _task_kind(references: Sequence[str], labels: Sequence[str]) -> Literal["label", "json", "text"]:
    refs = [r.strip() for r in references if r.strip()]
    if not refs:
        return "text"
    if labels and all(r in labels for r in refs):
        return "label"
    if sum(_json_object(r) is not None for r in refs) * 2 > len(refs):
        return "json"
    distinct = set(refs)
    if not labels and len(refs) >= 4 and len(distinct) <= max(2, len(refs) // 3) and all(
        "\n" not in r and len(r) <= 40 for r in distinct
    ):
        return "label"
    return "text"


def _aligned(expected: list[str], answered: list[str]) -> list[tuple[int, str | None]]:
    """``(position in expected, the answer's segment there or None)`` for every expected
    segment: positional when the counts agree, else through difflib's opcodes."""
    if len(expected) == len(answered):
        return list(enumerate(answered))
    out: list[tuple[int, str | None]] = []
    matcher = difflib.SequenceMatcher(a=expected, b=answered, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "insert":
            continue
        for k in range(i2 - i1):
            j = j1 + k
            out.append((i1 + k, answered[j] if op != "delete" and j < j2 else None))
    return out


class _Parts:
    """Accumulates wrong parts over the failures."""

    def __init__(self, kind: Literal["field", "segment"]) -> None:
        self.kind = kind
        self.label: dict[str, str] = {}
        self.wrong: Counter[str] = Counter()
        self.of: Counter[str] = Counter()
        self.answers: dict[str, Counter[str]] = defaultdict(Counter)
        self.expected: dict[str, set[str]] = defaultdict(set)
        self.cat_wrong: dict[str, Counter[str]] = defaultdict(Counter)
        self.cat_of: dict[str, Counter[str]] = defaultdict(Counter)

    def seen(self, key: str, label: str, category: str) -> None:
        self.label.setdefault(key, label)
        self.of[key] += 1
        self.cat_of[key][category] += 1

    def miss(self, key: str, answer: str, expected: str, category: str) -> None:
        self.wrong[key] += 1
        self.answers[key][answer] += 1
        self.expected[key].add(expected)
        self.cat_wrong[key][category] += 1

    def diffs(self) -> tuple[PartDiff, ...]:
        out = []
        for key, wrong in self.wrong.items():
            top, top_n = self.answers[key].most_common(1)[0]
            out.append(PartDiff(part=self.label[key], kind=self.kind, key=key, wrong=wrong, of=self.of[key],
                                top_answer=top, top_count=top_n, by_category=dict(sorted(self.cat_wrong[key].items())),
                                of_by_category=dict(sorted(self.cat_of[key].items())),
                                expected_values=len(self.expected[key])))
        return tuple(sorted(out, key=lambda p: (-p.wrong / max(p.of, 1), -p.wrong, p.part)))


def _collapse(results: Sequence[EvalResult], answers: Sequence[str], *, min_share: float,
              min_inputs: int) -> ModeCollapse | None:
    counted = [(a, r) for a, r in zip(answers, results, strict=True) if a]
    if not counted:
        return None
    answer, count = Counter(a for a, _ in counted).most_common(1)[0]
    inputs = len({r.input or r.case_id for a, r in counted if a == answer})
    share = count / len(answers)
    refs = [r.expected.strip() for r in results if r.scorer not in _REFERENCE_FREE and r.expected.strip()]
    expected_share = sum(ref == answer for ref in refs) / len(refs) if refs else 0.0
    distinct_refs = len(set(refs))
    if (share >= min_share and inputs >= min_inputs and share >= 2 * expected_share
            and (distinct_refs > 1 or not refs)):
        return ModeCollapse(answer=answer, count=count, inputs=inputs, share=round(share, 4),
                            expected_share=round(expected_share, 4))
    return None


def analyse(results: Sequence[EvalResult], *, labels: Sequence[str] = (), top: int = 5,
            collapse_share: float = 0.5, collapse_inputs: int = 3) -> FailureAnalysis:
    """The failure analysis of one tier's ``results``.

    :param labels: the task's label set (the pack's ``labels``), when it has one.
    :param top: how many confusion pairs :attr:`FailureAnalysis.top_confusions` keeps.
    :param collapse_share: the least share of all answers one answer must have to be a collapse
        (and at least twice its share among the references) ...
    :param collapse_inputs: ... given for at least this many different inputs.
    """
    answers = [_answer(r.output) for r in results]
    referenced = [r for r in results if r.scorer not in _REFERENCE_FREE]
    kind = _task_kind([r.expected for r in referenced], labels)
    spelled = {extract_label(x): x for x in (*labels, *(r.expected.strip() for r in referenced)) if x.strip()}
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    failures_by_expected: Counter[str] = Counter()
    parts = _Parts("field" if kind == "json" else "segment")
    outside = bad_format = empty = over_long = 0
    failures = 0
    for result, answer in zip(results, answers, strict=True):
        expected = result.expected.strip()
        has_ref = result.scorer not in _REFERENCE_FREE and bool(expected)
        if not answer:
            empty += 1
        elif has_ref and len(answer) > max(OVER_LONG_MIN_CHARS - 1, OVER_LONG_FACTOR * len(expected)):
            over_long += 1
        if not result.passed:
            failures += 1
        if not has_ref:
            continue
        category = result.category or "(none)"
        if kind == "label":  # the label the answer starts with, as the label scorer reads it
            said = extract_label(answer, spelled)
            if said and said not in spelled:
                outside += 1
            if not result.passed:
                expected = spelled.get(extract_label(expected, spelled), expected)
                confusion[expected][spelled.get(said, said) or "(empty)"] += 1
                failures_by_expected[expected] += 1
        elif kind == "json":
            ref = _json_object(expected)
            got = _json_object(answer)
            if got is None and answer:
                bad_format += 1
            if result.passed or ref is None:
                continue
            flat_got = _flatten(got) if got is not None else {}
            for key, value in _flatten(ref).items():
                parts.seen(key, f"field {key}", category)
                if key not in flat_got:
                    parts.miss(key, "(missing)", _show(value), category)
                elif flat_got[key] != value:
                    parts.miss(key, _show(flat_got[key]), _show(value), category)
        else:
            ref_segments = segments(expected)
            got_segments = segments(answer)
            if answer and [_kind_of(s) for s in got_segments] != [_kind_of(s) for s in ref_segments]:
                bad_format += 1
            if result.passed:
                continue
            aligned = dict(_aligned(ref_segments, got_segments))
            for i, ref_segment in enumerate(ref_segments):
                key = str(i + 1)
                parts.seen(key, f"segment {i + 1} ({_kind_of(ref_segment)})", category)
                got_segment = aligned.get(i)
                if got_segment != ref_segment:
                    parts.miss(key, "(missing)" if got_segment is None else got_segment, ref_segment, category)
    if kind == "label":  # a label task collapses onto a label, however the answers go on after it
        answers = [spelled.get(label, label) for label in (extract_label(a, spelled) for a in answers)]
    pairs = sorted(((e, a, c) for e, row in confusion.items() for a, c in row.items() if a != e),
                   key=lambda t: (-t[2], t[0], t[1]))
    return FailureAnalysis(
        kind=kind,
        n=len(results),
        failures=failures,
        confusion={e: dict(sorted(row.items())) for e, row in sorted(confusion.items())},
        top_confusions=tuple(Confusion(e, a, c) for e, a, c in pairs[:top]),
        failures_by_expected=dict(sorted(failures_by_expected.items())),
        parts=parts.diffs(),
        collapse=_collapse(results, answers, min_share=collapse_share, min_inputs=collapse_inputs),
        outside_labels=outside,
        bad_format=bad_format,
        empty=empty,
        over_long=over_long,
    )


def report_analysis(report: EvalReport | Mapping[str, Any], *, labels: Sequence[str] = ()) -> FailureAnalysis | None:
    """The analysis recorded with ``report`` (an :class:`EvalReport` or its JSON), or computed from
    its results when it was recorded without one; ``None`` for a report with no results."""
    if isinstance(report, EvalReport):
        metrics: Mapping[str, Any] = report.metrics
        results: Iterable[EvalResult] = report.results
    else:
        metrics = report.get("metrics") or {}
        results = [from_dict(EvalResult, r) for r in report.get("results") or ()]
    recorded = metrics.get("analysis")
    if isinstance(recorded, FailureAnalysis):
        return recorded
    if isinstance(recorded, Mapping):
        return from_dict(FailureAnalysis, dict(recorded))
    results = list(results)
    return analyse(results, labels=labels) if results else None


def _pct(a: int, b: int) -> str:
    return f"{a} of {b}"


def analysis_rows(analysis: FailureAnalysis | Mapping[str, Any] | None, *, limit: int = 5) -> list[tuple[str, str]]:
    """Printable ``(what, finding)`` rows of an analysis (a record or its recorded JSON), the most
    telling first: for ``forge show``, ``forge compare``, ``forge eval`` and the run summary.
    No rows for ``None`` or an analysis that found nothing wrong."""
    if analysis is None:
        return []
    if not isinstance(analysis, FailureAnalysis):
        analysis = from_dict(FailureAnalysis, dict(analysis))
    rows: list[tuple[str, str]] = []
    collapse = analysis.collapse
    if collapse is not None:
        rows.append(("mode collapse", f"{collapse.answer!r} answered {collapse.count} times for {collapse.inputs} "
                                      f"different inputs ({collapse.share:.0%} of answers; references "
                                      f"{collapse.expected_share:.0%})"))
    for pair in analysis.top_confusions[:limit]:
        of = analysis.failures_by_expected.get(pair.expected, 0)
        rows.append(("confusion", f"{pair.expected!r} answered {pair.answered!r} in {_pct(pair.count, of)} failures"))
    for part in [p for p in analysis.parts if p.wrong][:limit]:
        same = f", the same answer {part.top_answer!r} in {part.top_count}" if part.top_count > 1 else ""
        rows.append(("wrong part", f"{part.part} wrong in {_pct(part.wrong, part.of)} failures{same}"))
    counts = [("outside the label set", analysis.outside_labels), ("outside the expected format", analysis.bad_format),
              ("empty", analysis.empty), ("over-long", analysis.over_long)]
    for what, count in counts:
        if count:
            rows.append(("answers", f"{count} of {analysis.n} {what}"))
    return rows


def tier_findings(reports: Mapping[str, EvalReport | Mapping[str, Any]], *, limit: int = 5) -> list[tuple[str, str, str]]:
    """``(tier, what, finding)`` rows for every tier of one evaluation (``evaluate.json``'s
    ``reports``, or ``{tier: EvalReport}``), in the reports' order: what ``forge show`` and the
    run summary print under an iteration's scores."""
    return [(tier, what, finding) for tier, report in reports.items()
            for what, finding in analysis_rows(report_analysis(report), limit=limit)]


def as_metrics(analysis: FailureAnalysis) -> dict[str, Any]:
    """The analysis as it is recorded in a report's ``metrics["analysis"]``."""
    data: dict[str, Any] = to_dict(analysis)
    return data
