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
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import DataError, ForgeError
from .records import Example, Message, Source

__all__ = [
    "FORMATS",
    "MAX_LINE_CHARS",
    "ROLES",
    "detect_format",
    "first_bad_utf8_line",
    "jsonl_lines",
    "open_text",
    "parse_json_line",
    "read_examples",
    "read_user_bytes",
    "text_problem",
    "validate_file",
]

#: The longest JSONL line read (characters); a longer one is a bad row, not a memory hog.
MAX_LINE_CHARS = 16 * 2**20

#: The formats :func:`read_examples` understands.
FORMATS: tuple[str, ...] = ("prompt_completion", "chat", "csv", "text")
#: The chat roles accepted in ``messages``.
ROLES: tuple[str, ...] = ("system", "user", "assistant")

_ALIASES = {"jsonl": None, "pc": "prompt_completion", "messages": "chat", "raw": "text", "txt": "text"}


# --------------------------------------------------------------------------------------------
# Reading a file a user named, safely: only regular files (a fifo or /dev/zero would hang the
# reader), with a size cap for whole-file reads; every failure is one sentence.
# --------------------------------------------------------------------------------------------


def _open_regular(path: Path, error: type[ForgeError], what: str) -> int:
    """An fd of ``path`` opened without blocking (a fifo does not wait for a writer), checked to
    be a regular file after symlinks are followed."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"the {what} does not exist", file=str(path)) from None
    except IsADirectoryError:
        raise error(f"expected a {what}, got a folder", file=str(path)) from None
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, EACCES, an embedded NUL
        raise error(f"cannot read the {what}: {getattr(exc, 'strerror', None) or exc}", file=str(path)) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise error(f"expected a regular {what}, got {kind}", file=str(path))
    return fd


def read_user_bytes(
    path: str | os.PathLike[str], *, limit: int, error: type[ForgeError] = DataError, what: str = "file"
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    :raises error: (a :class:`ForgeError` subclass) missing, a folder, a fifo or device, unreadable,
        or larger than ``limit``.
    """
    p = Path(path)
    with os.fdopen(_open_regular(p, error, what), "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise error(f"the {what} is larger than {limit // 2**20} MiB", file=str(p))
    return data


def open_text(
    path: str | os.PathLike[str], *, error: type[ForgeError] = DataError, what: str = "file", newline: str | None = None
) -> Any:
    """``path`` opened as strict UTF-8 text, once it is known to be a regular file."""
    p = Path(path)
    return os.fdopen(_open_regular(p, error, what), "r", encoding="utf-8", errors="strict", newline=newline)


def jsonl_lines(
    path: str | os.PathLike[str], *, error: type[ForgeError] = DataError, what: str = "file"
) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a JSONL file, each at most :data:`MAX_LINE_CHARS` (+1, so a
    longer one shows); raises ``DataError`` naming the first line that is not UTF-8."""
    p = Path(path)
    with open_text(p, error=error, what=what) as handle:
        number = 0
        while True:
            number += 1
            try:
                raw = handle.readline(MAX_LINE_CHARS + 1)
            except UnicodeDecodeError:
                raise DataError("is not valid UTF-8", file=str(p), line=first_bad_utf8_line(p)) from None
            if not raw:
                return
            yield number, raw


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (a lone surrogate from a ``"\\ud800"`` escape), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds an unpaired surrogate escape (\\ud800-\\udfff), which is not a character"
    return None


def parse_json_line(raw: str) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, why)`` for a line that is not JSON we can read: bad syntax,
    nested too deeply, a number too long to convert."""
    if len(raw) > MAX_LINE_CHARS:
        return None, f"is longer than {MAX_LINE_CHARS // 2**20} Mi characters"
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, "is not valid JSON we can read (nested too deeply)"
    except ValueError:  # an integer with more digits than int() converts
        return None, f"is not valid JSON we can read (a number longer than {sys.get_int_max_str_digits()} digits)"


def first_bad_utf8_line(path: Path) -> int:
    """The 1-based line of the first byte that is not UTF-8 (text readers decode in chunks, so the
    line they fail on can be a later one)."""
    with os.fdopen(_open_regular(path, DataError, "data file"), "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


def detect_format(path: str | os.PathLike[str]) -> str:
    """Guess a file's format from its suffix and, for JSONL, from the keys of its first row.

    :raises DataError: the file is missing or its format cannot be told.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    fd = _open_regular(p, DataError, "data file")  # also for csv/text: a fifo must not hang the reader
    if suffix in (".csv", ".txt", ".text", ".md"):
        os.close(fd)
        return "csv" if suffix == ".csv" else "text"
    with open(fd, encoding="utf-8", errors="replace") as handle:
        for lineno, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_CHARS + 1), ""), start=1):
            if not raw.strip():
                continue
            first, problem = parse_json_line(raw)
            if problem:
                raise DataError(problem, file=str(p), line=lineno)
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
    problem = text_problem(value)
    if problem:
        raise DataError(problem, field=key, **where)
    return value


def _category(obj: Mapping[str, Any], where: dict[str, Any], key: str = "category") -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DataError(f"must be a string, not {type(value).__name__}", field=key, **where)
    problem = text_problem(value)
    if problem:
        raise DataError(problem, field=key, **where)
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
        problem = text_problem(content)
        if problem:
            raise DataError(problem, field=f"{field}.content", **where)
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
    try:
        for lineno, raw in jsonl_lines(path, what="data file"):
            if not raw.strip():
                continue
            yield from _jsonl_row(builder, raw, {"file": str(path), "line": lineno}, source)
            if len(raw) > MAX_LINE_CHARS:
                return  # the rest of the over-long line would be read as further rows
    except DataError as error:  # not UTF-8 (or not a regular file): the rest cannot be read
        yield error


def _jsonl_row(builder: Any, raw: str, where: dict[str, Any], source: Source) -> Iterator[Example | DataError]:
    obj, problem = parse_json_line(raw)
    if problem:
        yield DataError(problem, **where)
    elif not isinstance(obj, dict):
        yield DataError(f"must be a JSON object, not {type(obj).__name__}", **where)
    else:
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
    with open_text(path, what="data file", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
        except (csv.Error, UnicodeDecodeError) as error:
            yield _csv_error(path, reader, error)
            return
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
        except (csv.Error, UnicodeDecodeError) as error:
            yield _csv_error(path, reader, error)


def _csv_error(path: Path, reader: Any, error: Exception) -> DataError:
    line = first_bad_utf8_line(path) if isinstance(error, UnicodeDecodeError) else max(reader.line_num, 1)
    why = "is not valid UTF-8" if isinstance(error, UnicodeDecodeError) else f"is not valid CSV ({error})"
    return DataError(why, file=str(path), line=line)


#: The largest plain-text (``.txt``) example read whole.
MAX_TEXT_BYTES = 256 * 2**20


def _text_file(path: Path) -> Iterator[Example | DataError]:
    raw = read_user_bytes(path, limit=MAX_TEXT_BYTES, what="data file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        yield DataError("is not valid UTF-8", file=str(path), line=raw[: error.start].count(b"\n") + 1)
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
        return [item for item in _rows(p, format, columns) if isinstance(item, DataError)]
    except DataError as error:  # the file cannot be opened, or format detection failed
        return [error]
