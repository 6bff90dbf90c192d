"""Readers for the training-data file formats, shared by ``forge validate`` and the trainers.

Standard library only (``json``, ``csv``), so the kernel can validate a data file without
loading any machine-learning library. Four formats:

==================== ===========================================================================
format               content
==================== ===========================================================================
``prompt_completion`` JSONL, one object per line: ``prompt`` and ``completion`` strings, optional
                     ``category`` (string) and ``meta`` (object).
``chat``             JSONL, one object per line: ``messages``, a list of ``{"role", "content"}``
                     (roles ``system``, ``user``, ``assistant``); the last message is the
                     assistant's answer, the one a trainer learns to produce.
``csv``              CSV with a header row; ``columns`` maps ``prompt``/``completion``/``category``
                     to header names (default: the same names).
``text``             raw text for pre-training: a ``.txt`` file is one example (its whole text in
                     ``completion``); a JSONL file has a ``text`` string per line.
==================== ===========================================================================

Every problem is a :class:`~forgemind_hookspecs.errors.DataError` naming the file, the 1-based
line and the field, so the user can fix the row at once. :func:`read_examples` stops at the first
bad row (a trainer must not train on half a file); :func:`validate_file` reports every bad row.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import DataError
from .records import Example, Message, Source

__all__ = ["FORMATS", "ROLES", "detect_format", "read_examples", "validate_file"]

#: The formats :func:`read_examples` understands.
FORMATS: tuple[str, ...] = ("prompt_completion", "chat", "csv", "text")
#: The chat roles accepted in ``messages``.
ROLES: tuple[str, ...] = ("system", "user", "assistant")

_ALIASES = {"jsonl": None, "pc": "prompt_completion", "messages": "chat", "raw": "text", "txt": "text"}


def detect_format(path: str | os.PathLike[str]) -> str:
    """Guess a file's format from its suffix and, for JSONL, from the keys of its first row.

    :raises DataError: the file is missing or its format cannot be told.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("the data file does not exist", file=str(p))
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".txt", ".text", ".md"):
        return "text"
    with p.open(encoding="utf-8", errors="replace") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                first = json.loads(raw)
            except json.JSONDecodeError as error:
                raise DataError(f"is not valid JSON ({error.msg})", file=str(p), line=lineno) from None
            if isinstance(first, dict):
                if "messages" in first:
                    return "chat"
                if "prompt" in first or "completion" in first:
                    return "prompt_completion"
                if "text" in first:
                    return "text"
            raise DataError(
                "cannot tell the format: expected a JSON object with 'prompt'/'completion', "
                "'messages' or 'text' (or pass --format)",
                file=str(p),
                line=lineno,
            )
    raise DataError("the data file is empty", file=str(p))


def _normalise_format(path: Path, format: str | None) -> str:
    if format is None or _ALIASES.get(format, format) is None:
        return detect_format(path)
    fmt = _ALIASES.get(format, format)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}", file=str(path))
    return fmt


def _source(path: Path) -> Source:
    return Source(generator="file", prompt_template=str(path))


def _string_field(obj: Mapping[str, Any], key: str, where: dict[str, Any], *, required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise DataError(f"the row has no {key!r} string", field=key, **where)
        return ""
    if not isinstance(value, str):
        raise DataError(f"must be a string, not {type(value).__name__}", field=key, **where)
    return value


def _category(obj: Mapping[str, Any], where: dict[str, Any], key: str = "category") -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DataError(f"must be a string, not {type(value).__name__}", field=key, **where)
    return value


def _meta(obj: Mapping[str, Any], where: dict[str, Any]) -> dict[str, Any]:
    value = obj.get("meta", {})
    if not isinstance(value, dict):
        raise DataError("must be a JSON object", field="meta", **where)
    return value


def _prompt_completion(obj: Mapping[str, Any], where: dict[str, Any], source: Source) -> Example:
    prompt = _string_field(obj, "prompt", where, required=True)
    completion = _string_field(obj, "completion", where, required=True)
    if not completion.strip():
        raise DataError("is empty: there is nothing to learn", field="completion", **where)
    return Example(
        prompt=prompt, completion=completion, category=_category(obj, where), source=source, meta=_meta(obj, where)
    )


def _chat(obj: Mapping[str, Any], where: dict[str, Any], source: Source) -> Example:
    raw = obj.get("messages")
    if not isinstance(raw, list) or not raw:
        raise DataError("must be a non-empty list of {role, content} objects", field="messages", **where)
    messages = []
    for i, item in enumerate(raw):
        field = f"messages[{i}]"
        if not isinstance(item, dict):
            raise DataError("must be an object with 'role' and 'content'", field=field, **where)
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise DataError(f"role must be one of {', '.join(ROLES)}, not {role!r}", field=f"{field}.role", **where)
        if not isinstance(content, str):
            raise DataError("content must be a string", field=f"{field}.content", **where)
        messages.append(Message(role=role, content=content))
    if messages[-1].role != "assistant":
        raise DataError(
            "the last message must be the assistant's answer (the part that is learnt)",
            field=f"messages[{len(messages) - 1}].role",
            **where,
        )
    return Example(messages=tuple(messages), category=_category(obj, where), source=source, meta=_meta(obj, where))


def _text(obj: Mapping[str, Any], where: dict[str, Any], source: Source) -> Example:
    text = _string_field(obj, "text", where, required=True)
    if not text.strip():
        raise DataError("is empty", field="text", **where)
    return Example(completion=text, source=source, meta={"format": "text"})


def _jsonl_rows(path: Path, fmt: str) -> Iterator[Example | DataError]:
    builder = {"prompt_completion": _prompt_completion, "chat": _chat, "text": _text}[fmt]
    source = _source(path)
    with path.open(encoding="utf-8", errors="strict") as handle:
        lineno = 0
        while True:
            lineno += 1
            try:
                raw = handle.readline()
            except UnicodeDecodeError:
                yield DataError("is not valid UTF-8", file=str(path), line=lineno)
                return
            if not raw:
                return
            if not raw.strip():
                continue
            where: dict[str, Any] = {"file": str(path), "line": lineno}
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as error:
                yield DataError(f"is not valid JSON ({error.msg} at column {error.colno})", **where)
                continue
            if not isinstance(obj, dict):
                yield DataError(f"must be a JSON object, not {type(obj).__name__}", **where)
                continue
            try:
                yield builder(obj, where, source)
            except DataError as error:
                yield error


def _csv_rows(path: Path, columns: Mapping[str, str] | None) -> Iterator[Example | DataError]:
    mapping = {"prompt": "prompt", "completion": "completion", "category": "category", **dict(columns or {})}
    unknown = set(mapping) - {"prompt", "completion", "category"}
    if unknown:
        yield DataError(
            f"unknown column mapping key(s) {', '.join(sorted(unknown))}; expected prompt, completion, category",
            file=str(path),
            field="columns",
        )
        return
    source = _source(path)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for key in ("prompt", "completion"):
            if mapping[key] not in header:
                yield DataError(
                    f"the header has no column {mapping[key]!r} for the {key} (columns: {', '.join(header)})",
                    file=str(path),
                    line=1,
                    field=mapping[key],
                )
                return
        has_category = mapping["category"] in header
        start = reader.line_num + 1
        try:
            for row in reader:
                where: dict[str, Any] = {"file": str(path), "line": start}
                start = reader.line_num + 1
                if None in row:
                    yield DataError("has more fields than the header", **where)
                    continue
                values = {key: row.get(col) for key, col in mapping.items()}
                if values["prompt"] is None or values["completion"] is None:
                    yield DataError("has fewer fields than the header", **where)
                    continue
                obj = {
                    "prompt": values["prompt"],
                    "completion": values["completion"],
                    "category": values["category"] if has_category else None,
                }
                try:
                    example = _prompt_completion(obj, where, source)
                except DataError as error:
                    error.field = mapping.get(error.field or "", error.field)
                    yield error
                    continue
                yield example
        except csv.Error as error:
            yield DataError(f"is not valid CSV ({error})", file=str(path), line=reader.line_num)


def _text_file(path: Path) -> Iterator[Example | DataError]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        yield DataError("is not valid UTF-8", file=str(path), line=line)
        return
    if text.strip():
        yield Example(completion=text, source=_source(path), meta={"format": "text"})


def _rows(path: Path, format: str | None, columns: Mapping[str, str] | None) -> Iterator[Example | DataError]:
    fmt = _normalise_format(path, format)
    if fmt == "csv":
        yield from _csv_rows(path, columns)
    elif fmt == "text" and path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        yield from _text_file(path)
    else:
        yield from _jsonl_rows(path, fmt)


def read_examples(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> Iterator[Example]:
    """Yield the examples of a data file, in order.

    :param path: the file.
    :param format: one of :data:`FORMATS`, or ``None`` to detect it (see :func:`detect_format`).
    :param columns: for CSV, ``{"prompt": header, "completion": header, "category": header}``.
    :raises DataError: at the first bad row, naming its file, line and field.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("the data file does not exist", file=str(p))
    for item in _rows(p, format, columns):
        if isinstance(item, DataError):
            raise item
        yield item


def validate_file(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> list[DataError]:
    """Check every row of a data file; return one :class:`DataError` per bad row (empty = valid).

    Unlike :func:`read_examples` this does not stop at the first problem, so ``forge validate``
    can list every row the user must fix.
    """
    p = Path(path)
    try:
        if not p.is_file():
            return [DataError("the data file does not exist", file=str(p))]
        return [item for item in _rows(p, format, columns) if isinstance(item, DataError)]
    except DataError as error:  # format detection failed
        return [error]
