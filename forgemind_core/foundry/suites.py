"""Evaluation suites of a task pack: JSONL files of hand-written cases, read into :class:`EvalCase`.

The format is documented in ``docs/task-packs.md``; every mistake is one sentence naming the file,
the line and the field. Which suites a pack has is read by :mod:`forgemind_core.foundry.packs`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from forgemind_hookspecs.dataformats import jsonl_lines, parse_json_line, text_problem
from forgemind_hookspecs.errors import ConfigError, DataError
from forgemind_hookspecs.records import TIERS, EvalCase, TaskPack

from forgemind_core.base.options import unknown_backend_message

__all__ = ["load_suite", "load_suites"]

_CASE_KEYS = frozenset({"input", "expected", "category", "checker", "meta"})


def load_suite(
    path: str | Path,
    tier: str,
    *,
    labels: Sequence[str] = (),
    checkers: Collection[str] | None = None,
) -> list[EvalCase]:
    """Read one evaluation suite (JSONL) into :class:`EvalCase` records of ``tier``.

    Each line is an object with ``input`` (required text), ``expected`` (text), ``category``
    (defaults to ``expected``), ``checker`` (a scorer name, optional) and ``meta`` (an object,
    optional). Blank lines and lines starting with ``#`` are skipped.

    :param labels: when given, ``expected`` must be one of them (catches typos such as ``B60``).
    :param checkers: when given, the installed scorer names a ``checker`` must be one of.
    :raises DataError: a bad row, naming the file, line and field.
    :raises ConfigError: the file is missing, not a regular file, or ``tier`` is unknown.
    """
    path = Path(path)
    if tier not in TIERS:
        raise ConfigError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}", file=str(path))
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for number, raw in jsonl_lines(path, error=ConfigError, what="suite file"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        case = _case(path, number, line, tier, labels, checkers)
        if case.id in seen:
            raise DataError(f"duplicate case (same input as line {seen[case.id]})", file=str(path), line=number)
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise DataError("the suite has no cases", file=str(path))
    return cases


def _case(
    path: Path, number: int, line: str, tier: str, labels: Sequence[str], checkers: Collection[str] | None
) -> EvalCase:
    def fail(message: str, field: str | None = None) -> DataError:
        return DataError(message, file=str(path), line=number, field=field)

    row, problem = parse_json_line(line)
    if problem:
        raise fail(problem)
    if not isinstance(row, dict):
        raise fail("a case must be a JSON object")
    unknown = sorted(set(row) - _CASE_KEYS)
    if unknown:
        raise fail(f"unknown field; expected one of {', '.join(sorted(_CASE_KEYS))}", unknown[0])
    text = row.get("input")
    if not isinstance(text, str) or not text.strip():
        raise fail("is required and must be non-empty text", "input")
    expected = row.get("expected", "")
    if not isinstance(expected, str):
        raise fail("must be text", "expected")
    checker = row.get("checker")
    if checker is not None and not isinstance(checker, str):
        raise fail("must be a scorer name", "checker")
    if checker is not None and checkers is not None and checker not in checkers:
        raise fail(unknown_backend_message("scorers", checker, dict.fromkeys(checkers)), "checker")
    for key in ("input", "expected", "checker", "category"):
        if isinstance(row.get(key), str) and (problem := text_problem(row[key])):
            raise fail(problem, key)
    if labels and checker is None and expected not in labels:
        raise fail(f"{expected!r} is not one of the pack's labels ({', '.join(labels)})", "expected")
    category = row.get("category", expected or None)
    if category is not None and not isinstance(category, str):
        raise fail("must be text", "category")
    meta = row.get("meta", {})
    if not isinstance(meta, dict):
        raise fail("must be a JSON object", "meta")
    return EvalCase(input=text, expected=expected, tier=tier, category=category, checker=checker, meta=meta)


def load_suites(pack: TaskPack, *, checkers: Collection[str] | None = None) -> dict[str, list[EvalCase]]:
    """Every suite of ``pack`` by tier, checked against the pack's labels (and, when given, the
    installed scorer names a case's ``checker`` must be one of)."""
    return {
        tier: load_suite(path, tier, labels=pack.labels, checkers=checkers) for tier, path in pack.suites.items()
    }
