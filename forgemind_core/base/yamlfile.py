"""YAML files a user writes (goal files, policy files), read with the line of every value.

Every mistake in such a file must come back as one sentence naming the file, the line and the
dotted field at fault (``goal.yaml:12: train.learning_rate: expected a number, got 'fast'``),
never a traceback, and all of them at once. The pieces for that:

- :class:`Problems` collects the problems of one file and knows the line of every YAML path.
- :func:`load_yaml` reads text with ruamel's round-trip loader (it keeps the line of every key
  and item; duplicate keys are errors); :func:`to_plain` turns the tree into plain data (dicts,
  lists, scalars), recording each path's line, refusing tags, alias bombs and absurd nesting.
- :func:`report_structure_error` maps a cattrs validation error tree (from
  :func:`~forgemind_core.base.convert.goal_converter`) back to YAML paths and lines.
- :func:`read_file` reads a file's bytes safely (a regular file, with a size cap).

ruamel.yaml is imported inside the functions that need it: this module is imported by
``forge --help``.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, get_args

import attrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from forgemind_hookspecs.bounds import FieldValueError
from forgemind_hookspecs.dataformats import read_user_bytes
from forgemind_hookspecs.errors import ConfigError, ForgeError, UserError
from forgemind_hookspecs.records import Goal

from forgemind_core.base.convert import Mismatch, describe, expected

__all__ = [
    "MAX_DEPTH",
    "MAX_GOAL_BYTES",
    "MAX_NODES",
    "Fatal",
    "Problems",
    "YamlPath",
    "dotted_field",
    "field_line",
    "load_yaml",
    "raise_first",
    "read_file",
    "report_structure_error",
    "to_plain",
    "unknown_key_message",
]

#: A position in the YAML tree: mapping keys and list indexes.
YamlPath = tuple[str | int, ...]

# Guards against hostile or broken YAML (alias bombs, absurd nesting) turning into a hang or a
# RecursionError instead of a ConfigError.
#: The most values a file may hold once aliases are expanded.
MAX_NODES = 200_000
#: The deepest nesting of mappings and lists a file may have.
MAX_DEPTH = 64
#: The largest goal (or policy) file read (a goal is a page of YAML; a bigger file is a mistake).
MAX_GOAL_BYTES = 4 * 2**20
#: YAML tags a file may carry (what plain YAML writes implicitly); any other tag is refused.
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
)


class Fatal(Exception):
    """Stops reading a file whose YAML cannot be turned into data at all."""


def dotted_field(path: YamlPath) -> str:
    """``("generate", 0, "share")`` -> ``generate[0].share``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


# ------------------------------------------------------------------------------------------
# Collecting problems.
# ------------------------------------------------------------------------------------------


@attrs.define
class Problems:
    """Every problem found in one file's text, with the line of each YAML path."""

    file: str
    lines: dict[YamlPath, int] = attrs.Factory(dict)
    errors: list[UserError] = attrs.Factory(list)

    def line(self, path: YamlPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def add(self, path: YamlPath, message: str, cls: type[ConfigError] = ConfigError) -> None:
        """Record a problem of the value at ``path``."""
        self.errors.append(cls(message, file=self.file, line=self.line(path), field=dotted_field(path) or None))

    def fatal(self, message: str, line: int | None = None) -> Fatal:
        """Record a problem that stops the reading; ``raise`` what it returns."""
        self.errors.append(ConfigError(message, file=self.file, line=line))
        return Fatal(message)

    def sorted(self) -> list[UserError]:
        """The problems without repeats, in line order (those without a line first)."""
        unique: dict[str, UserError] = {}
        for error in self.errors:
            unique.setdefault(str(error), error)
        return sorted(unique.values(), key=lambda e: (e.line is not None, e.line or 0))


def raise_first(errors: Sequence[UserError]) -> NoReturn:
    """Raise the first of ``errors`` (at least one) with every further one attached as a note
    (:meth:`BaseException.add_note`), so a caller can show them all (``__notes__``)."""
    first = errors[0]
    for other in errors[1:]:
        first.add_note(str(other))
    raise first


# ------------------------------------------------------------------------------------------
# YAML -> plain data with line numbers.
# ------------------------------------------------------------------------------------------


def load_yaml(text: str, problems: Problems) -> Any:
    """ruamel's round-trip tree of ``text``; raises :class:`Fatal` (recorded in ``problems``)
    with the line for YAML that cannot be read."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        what = (error.problem or error.context or "invalid YAML").strip()
        if "duplicate key" in what or type(error).__name__.startswith("Duplicate"):
            key = _duplicate_key(str(error))
            what = f"duplicate key {key!r}" if key else "duplicate key"
        raise problems.fatal(f"invalid YAML: {what}", line) from None
    except YAMLError as error:
        line = None
        position = getattr(error, "position", None)
        if isinstance(position, int):
            line = text.count("\n", 0, position) + 1
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise problems.fatal(f"invalid YAML: {first}", line) from None
    except RecursionError:
        raise problems.fatal("invalid YAML: nested too deeply") from None
    except Exception as error:  # ruamel is third-party; a user file must never crash the CLI
        if isinstance(error, ValueError) and "digits" in str(error):  # int() refuses > 4300 digits
            import sys

            raise problems.fatal(f"invalid YAML: a number longer than {sys.get_int_max_str_digits()} digits") from None
        raise problems.fatal(f"invalid YAML: {type(error).__name__}: {error}") from None


def _duplicate_key(message: str) -> str | None:
    for line in message.splitlines():
        if "found duplicate key" in line and '"' in line:
            return line.split('"')[1]
    return None


def to_plain(node: Any, problems: Problems) -> Any:
    """Turn ruamel's round-trip tree into plain Python data, recording each path's line."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

    count = 0

    def lc_line(lc: Any, getter: str, key: Any) -> int | None:
        try:
            position = getattr(lc, getter)(key)
        except (KeyError, IndexError, TypeError, AttributeError):
            return None  # merged keys (<<: *anchor) have no position of their own
        if not position:  # ruamel keeps no position for the items of a tagged collection
            return None
        return int(position[0]) + 1

    def walk(value: Any, path: YamlPath) -> Any:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise problems.fatal(
                f"the file is too large (more than {MAX_NODES} values after expanding aliases)"
            )
        if len(path) > MAX_DEPTH:
            raise problems.fatal("the file is nested too deeply", problems.line(path))
        if isinstance(value, (CommentedMap, CommentedSeq)) and _odd_tag(value):
            raise problems.fatal(
                f"YAML tags ({_odd_tag(value)}) are not supported: write plain YAML", problems.line(path)
            )
        if isinstance(value, CommentedMap):
            return walk_map(value, path)
        if isinstance(value, CommentedSeq):
            return walk_seq(value, path)
        if isinstance(value, TaggedScalar) or (
            getattr(value, "tag", None) is not None and _custom_tag(value)
        ):
            raise problems.fatal("custom YAML tags (!name) are not supported", problems.line(path))
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, str):
            return _valid_text(str(value), path, problems)
        if isinstance(value, (_dt.datetime, _dt.date)):
            return value.isoformat()  # a date option is kept as the text the user wrote
        raise problems.fatal(f"unsupported YAML value of type {type(value).__name__}", problems.line(path))

    def walk_map(value: Any, path: YamlPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in value:
            line = lc_line(value.lc, "key", key)
            if not isinstance(key, str):
                where = line if line is not None else problems.line(path)
                problems.errors.append(
                    ConfigError(
                        f"keys must be text, got {describe(key)}",
                        file=problems.file,
                        line=where,
                        field=dotted_field(path) or None,
                    )
                )
                continue
            child = (*path, str(key))
            if line is not None:
                problems.lines[child] = line
            else:
                problems.lines.setdefault(child, problems.line(path) or 0)
            out[_valid_text(str(key), child, problems)] = walk(value[key], child)
        return out

    def walk_seq(value: Any, path: YamlPath) -> list[Any]:
        out: list[Any] = []
        for index, item in enumerate(value):
            child = (*path, index)
            line = lc_line(value.lc, "item", index)
            if line is not None:
                problems.lines[child] = line
            out.append(walk(item, child))
        return out

    return walk(node, ())


def _valid_text(text: str, path: YamlPath, problems: Problems) -> str:
    """Join surrogate pairs (ruamel reads JSON-style ``"\\ud83d\\ude00"`` as two halves) and
    report text that still holds a lone surrogate: it cannot be a path, a name or UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        joined = text.encode("utf-16", "surrogatepass").decode("utf-16")
        joined.encode("utf-8")
        return joined
    except UnicodeError:
        problems.add(
            path, "text holds an unpaired surrogate escape (\\ud800-\\udfff), which is not a character"
        )
        return ""


def _odd_tag(value: Any) -> str | None:
    """The tag of a mapping or list that is not plain YAML (``!foo``, ``!!python/object:...``)."""
    tag = getattr(value, "tag", None)
    text = getattr(tag, "value", None) if tag is not None else None
    if not isinstance(text, str) or not text or text in _PLAIN_TAGS:
        return None
    return text.replace("tag:yaml.org,2002:", "!!")


def _custom_tag(value: Any) -> bool:
    tag = getattr(value, "tag", None)
    text = getattr(tag, "value", None)
    return isinstance(text, str) and text.startswith("!") and not text.startswith("!!")


# ------------------------------------------------------------------------------------------
# Files.
# ------------------------------------------------------------------------------------------


def read_file(path: str | os.PathLike[str], what: str = "goal file") -> tuple[bytes | None, ConfigError | None]:
    """The file's bytes, or the problem: a regular file (a fifo or ``/dev/zero`` would hang the
    read) of at most :data:`MAX_GOAL_BYTES`; ``what`` names it in the message."""
    try:
        return read_user_bytes(path, limit=MAX_GOAL_BYTES, error=ConfigError, what=what), None
    except ConfigError as error:
        return None, error


def field_line(file: str | Path, *path: str | int) -> int | None:
    """The line of ``path`` (e.g. ``"filter"``, or ``"train", "epochs"``) in the goal file, read the way
    goal errors read theirs; ``None`` when the path is absent or the file cannot be read or parsed.
    For errors raised after loading, when the loaded goal no longer holds lines."""
    problems = Problems(file=str(file))
    try:
        text = read_user_bytes(file, limit=MAX_GOAL_BYTES, error=ConfigError).decode("utf-8-sig")
        to_plain(load_yaml(text, problems), problems)
    except (ForgeError, UnicodeDecodeError, RecursionError, Fatal):
        return None
    return problems.lines.get(tuple(path))


# ------------------------------------------------------------------------------------------
# cattrs errors -> problems.
# ------------------------------------------------------------------------------------------


def _allowed(cls: type) -> list[str]:
    names = [f.name for f in attrs.fields(cls)]
    return [n for n in names if n != "source"] if cls is Goal else names  # the loader sets it


def unknown_key_message(key: str, allowed: list[str], *, noun: str = "key", owner: str = "") -> str:
    """``unknown key (did you mean 'seed'?); allowed keys: ...`` for a key nobody reads."""
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f" of {owner}" if owner else ""
    valid = ", ".join(allowed) if allowed else "none"
    return f"unknown {noun}{hint}; allowed {noun}s{where}: {valid}"


def _lookup(data: Any, path: YamlPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def report_structure_error(
    error: BaseException,
    path: YamlPath,
    expected_type: Any,
    data: Any,
    problems: Problems,
    *,
    data_path: Callable[[YamlPath], YamlPath] = lambda p: p,
    noun: str = "key",
    owner: str = "",
    top: bool = True,
) -> None:
    """Walk a cattrs validation error tree and add one problem per leaf.

    ``path`` is the YAML path of the value being structured; ``data_path`` maps a structure
    path to where the value lives in ``data`` (they differ only for flat options).
    """
    if isinstance(error, ClassValidationError):
        with_notes, without = error.group_exceptions()
        for sub, note in with_notes:
            report_structure_error(
                sub,
                (*path, note.name),
                note.type,
                data,
                problems,
                data_path=data_path,
                noun=noun,
                owner=owner,
                top=False,
            )
        for sub in without:
            report_structure_error(
                sub, path, expected_type, data, problems, data_path=data_path, noun=noun, owner=owner, top=top
            )
        return
    if isinstance(error, IterableValidationError):
        with_index, without = error.group_exceptions()
        for sub, inote in with_index:
            item_type = get_args(inote.type)[0] if get_args(inote.type) else inote.type
            report_structure_error(
                sub,
                (*path, inote.index),
                item_type,
                data,
                problems,
                data_path=data_path,
                noun="key",
                top=False,
            )
        for sub in without:
            report_structure_error(
                sub, path, expected_type, data, problems, data_path=data_path, noun="key", top=False
            )
        return
    if isinstance(error, ForbiddenExtraKeysError):
        allowed = _allowed(error.cl) if attrs.has(error.cl) else []
        for key in sorted(error.extra_fields):
            problems.add(
                (*path, key),
                unknown_key_message(key, allowed, noun=noun if top else "key", owner=owner if top else ""),
            )
        return
    if isinstance(error, KeyError) and path:
        problems.add(path, "required, but missing")
        return
    if isinstance(error, Mismatch):
        problems.add(path, str(error))
        return
    if isinstance(error, FieldValueError):  # a declared bound (forgemind_hookspecs.bounds)
        problems.add((*path, error.name), error.message)
        return
    if isinstance(error, ValueError):  # an Options class's own validator: its text is the sentence
        problems.add(path, str(error))
        return
    value = _lookup(data, data_path(path))
    problems.add(path, f"expected {expected(expected_type)}, got {describe(value)}")
