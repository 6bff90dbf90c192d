"""Evaluation suites of a task pack: JSONL files of hand-written cases, read into :class:`EvalCase`.

The format is documented in ``docs/task-packs.md``; every mistake is one sentence naming the file,
the line and the field. Which suites a pack has is read by :mod:`forgemind_core.foundry.packs`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from attrs import evolve
from forgemind_hookspecs.dataformats import jsonl_lines, parse_json_line, text_problem
from forgemind_hookspecs.errors import ConfigError, DataError
from forgemind_hookspecs.records import TIERS, EvalCase, TaskPack

from forgemind_core.base.options import unknown_backend_message

__all__ = ["default_checker", "load_suite", "load_suites"]

_CASE_KEYS = frozenset({"id", "input", "expected", "category", "checker", "meta"})


def default_checker(pack: TaskPack | None, tier: str) -> str | None:
    """The scorer a pack's ``scoring`` names for cases of ``tier`` without ``checker`` (the tier's
    entry, else ``default``), or None."""
    if pack is None:
        return None
    return pack.scoring.get(tier) or pack.scoring.get("default")


def load_suite(
    path: str | Path,
    tier: str,
    *,
    labels: Sequence[str] = (),
    checkers: Collection[str] | None = None,
    default: str | None = None,
    unknown_fields: str = "error",
) -> list[EvalCase]:
    """Read one evaluation suite (JSONL) into :class:`EvalCase` records of ``tier``.

    Each line is an object with ``id`` (text or integer, optional: the case id shown in reports,
    unique in the suite), ``input`` (required text), ``expected`` (text), ``category`` (defaults
    to ``expected``), ``checker`` (a scorer name, optional) and ``meta`` (an object, optional).
    Blank lines and lines starting with ``#`` are skipped.

    :param labels: when given, ``expected`` must be one of them (catches typos such as ``B60``).
    :param checkers: when given, the installed scorer names a ``checker`` must be one of.
    :param default: the checker of cases without one (a pack's ``scoring``); then ``expected``
        need not be a label.
    :param unknown_fields: ``error`` (refuse a row with another field), ``ignore`` (drop them) or
        ``keep`` (keep them in the case's ``meta``).
    :raises DataError: a bad row, naming the file, line and field.
    :raises ConfigError: the file is missing, not a regular file, or ``tier`` is unknown.
    """
    path = Path(path)
    if tier not in TIERS:
        raise ConfigError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}", file=str(path))
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    ids: dict[str, int] = {}
    for number, raw in jsonl_lines(path, error=ConfigError, what="suite file"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        case, case_id = _case(path, number, line, tier, labels, checkers, default, unknown_fields)
        if case.id in seen:
            raise DataError(f"duplicate case (same input as line {seen[case.id]})", file=str(path), line=number)
        seen[case.id] = number
        if case_id is not None:
            if case_id in ids:
                raise DataError(f"duplicate id {case_id!r} (also on line {ids[case_id]})", file=str(path),
                                line=number, field="id")
            ids[case_id] = number
            case = evolve(case, id=case_id)
        cases.append(case)
    if not cases:
        raise DataError("the suite has no cases", file=str(path))
    return cases


def _case(
    path: Path, number: int, line: str, tier: str, labels: Sequence[str], checkers: Collection[str] | None,
    default: str | None, unknown_fields: str,
) -> tuple[EvalCase, str | None]:
    def fail(message: str, field: str | None = None) -> DataError:
        return DataError(message, file=str(path), line=number, field=field)

    row, problem = parse_json_line(line)
    if problem:
        raise fail(problem)
    if not isinstance(row, dict):
        raise fail("a case must be a JSON object")
    unknown = sorted(set(row) - _CASE_KEYS)
    if unknown and unknown_fields == "error":
        raise fail(f"unknown field; expected one of {', '.join(sorted(_CASE_KEYS))} "
                   "(or set the pack's suite_fields: ignore or keep)", unknown[0])
    case_id = row.get("id")
    if case_id is not None:
        if isinstance(case_id, bool) or not isinstance(case_id, (str, int)) or not str(case_id).strip():
            raise fail("must be non-empty text or an integer", "id")
        case_id = str(case_id).strip()
    text = row.get("input")
    if not isinstance(text, str) or not text.strip():
        raise fail("is required and must be non-empty text", "input")
    expected = row.get("expected", "")
    if not isinstance(expected, str):
        raise fail("must be text", "expected")
    checker = row.get("checker", default)
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
    if unknown and unknown_fields == "keep":
        clash = sorted(set(unknown) & set(meta))
        if clash:
            raise fail("is both a field of the row and a key of its meta", clash[0])
        meta = {**meta, **{key: row[key] for key in unknown}}
    case = EvalCase(input=text, expected=expected, tier=tier, category=category, checker=checker, meta=meta)
    return case, case_id


def load_suites(pack: TaskPack, *, checkers: Collection[str] | None = None) -> dict[str, list[EvalCase]]:
    """Every suite of ``pack`` by tier, checked against the pack's labels (and, when given, the
    installed scorer names a case's ``checker`` must be one of), with the pack's ``scoring`` as
    the checker of cases without one and its ``suite_fields`` for unknown row fields."""
    return {
        tier: load_suite(path, tier, labels=pack.labels, checkers=checkers, default=default_checker(pack, tier),
                         unknown_fields=pack.suite_fields)
        for tier, path in pack.suites.items()
    }
