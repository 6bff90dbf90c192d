"""Goal files: reading, validating and writing back the YAML a user writes to state a goal.

A goal file is the user's main input, so every mistake in it must come back as one sentence
naming the file, the line and the dotted field at fault (``goal.yaml:12: train.learning_rate:
expected a number, got 'fast'``) — never a traceback — and :func:`validate_goal` must report
*all* of them at once, so the user fixes the file in one go.

How a file is read:

1. bytes -> text (UTF-8, a BOM is allowed); YAML with ruamel's round-trip loader, because it
   keeps the line of every key and item; duplicate keys are errors.
2. The YAML tree becomes plain data (dicts, lists, scalars) plus a map ``path -> line``.
3. The backend sections are *flat* in YAML (every key beside ``backend`` is an option), so they are
   reshaped into the records' nested form (``{"backend": ..., "options": {...}}``).
4. cattrs structures the result into :class:`~forgemind_hookspecs.records.Goal` through a copy of
   the shared converter with unknown keys forbidden and strict scalar hooks; its validation errors
   are walked and mapped back to YAML paths and lines.
5. With a catalogue, every backend name is checked against the installed backends of its pillar
   and its options against the backend's ``Options`` class (values are coerced: ``2`` -> ``2.0``
   for a float option, ``"1e-3"`` -> ``0.001``).
6. ``pack`` and ``review.policy`` are resolved against the goal file's folder.

ruamel.yaml is imported inside the functions that need it: this module is imported by
``forge --help``.
"""

from __future__ import annotations

import collections.abc
import datetime as _dt
import difflib
import io
import os
import types
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import attrs
from cattrs import Converter
from cattrs.errors import (
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from forgemind_hookspecs import converter as base_converter
from forgemind_hookspecs.bounds import FieldValueError, OneOf
from forgemind_hookspecs.bounds import check as bounds_check
from forgemind_hookspecs.catalogue import BackendInfo
from forgemind_hookspecs.dataformats import read_user_bytes
from forgemind_hookspecs.errors import ConfigError, ForgeError, UnknownBackend, UserError
from forgemind_hookspecs.records import (
    BackendChoice,
    EvaluateSection,
    GeneratorChoice,
    Goal,
    Limits,
    PretrainSpec,
    ReviewSection,
)

from forgemind_core.base.options import BACKEND_NOUN, unknown_backend_message
from forgemind_core.base.servers import SERVER_KEY, client_problem, split_server

__all__ = [
    "PILLAR_OF_SECTION",
    "allowed_values_table",
    "field_line", "goal_converter", "goal_to_yaml", "load_goal", "parse_goal", "validate_goal"]

#: ``{pillar: {backend name: BackendInfo}}`` as :meth:`forgemind_core.api.Forge.catalogue` returns.
Catalogue = Mapping[str, Mapping[str, BackendInfo]]
#: A position in the YAML tree: mapping keys and list indexes.
YamlPath = tuple[str | int, ...]

#: Which catalogue pillar a goal section's backends come from (used in messages and docs too).
PILLAR_OF_SECTION: dict[str, str] = {
    "generate": "generators",
    "filter": "filters",
    "train": "trainers",
    "evaluate.runner": "runners",
    "evaluate.scorers": "scorers",
    "planner": "planners",
    "executor": "executors",
    "review": "reviewers",
}

#: Keys users may write at the top level (``source`` is set by the loader, never written).
_TOP_KEYS: tuple[str, ...] = tuple(f.name for f in attrs.fields(Goal) if f.name != "source")

# Guards against hostile or broken YAML (alias bombs, absurd nesting) turning into a hang or a
# RecursionError instead of a ConfigError.
_MAX_NODES = 200_000
_MAX_DEPTH = 64
#: The largest goal file read (a goal is a page of YAML; a bigger file is a mistake).
MAX_GOAL_BYTES = 4 * 2**20
#: YAML tags a goal may carry (what plain YAML writes implicitly); any other tag is refused.
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
)


class _Mismatch(TypeError):
    """Raised by the strict structure hooks; its text is already the user-facing sentence."""


class _Fatal(Exception):
    """Stops reading a file whose YAML cannot be turned into data at all."""


# ------------------------------------------------------------------------------------------
# Describing values and types in messages.
# ------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    """How a value a user wrote is quoted back in a message (``'fast'``, ``12``, ``a list``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def _expected(tp: Any) -> str:
    """Describe what a field of type ``tp`` accepts, in the words of the messages."""
    if isinstance(tp, str):
        return tp
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is str:
        return "text"
    if tp is bool:
        return "true or false"
    if tp is Any:
        return "any value"
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        parts = [_expected(a) for a in get_args(tp) if a is not type(None)]
        nullable = type(None) in get_args(tp)
        return " or ".join(parts + (["null"] if nullable else []))
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence) or tp in (
        list,
        tuple,
    ):
        return "a list"
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return "a mapping"
    if isinstance(tp, type) and (attrs.has(tp) or issubclass(tp, Mapping)):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _field(path: YamlPath) -> str:
    """``("generate", 0, "share")`` -> ``generate[0].share``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


# ------------------------------------------------------------------------------------------
# The converter.
# ------------------------------------------------------------------------------------------


def _to_float(value: Any, _: Any) -> float:
    # ints are numbers too; numeric strings are accepted because '1e-3' is text in some YAML
    # readers and users write it often.
    if isinstance(value, bool):
        raise _Mismatch(f"expected a number, got {_describe(value)}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _Mismatch(f"expected a number, got {_describe(value)}")


def _to_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise _Mismatch(f"expected an integer, got {_describe(value)}")


def _to_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Mismatch(f"expected true or false, got {_describe(value)}")


def _to_str(value: Any, _: Any) -> str:
    # Silently turning 12 or [a, b] into text hides mistakes; quoting in YAML is explicit.
    if isinstance(value, str):
        return value
    raise _Mismatch(f"expected text, got {_describe(value)}")


def _is_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal


def _literal_factory(tp: Any, _: Converter) -> Callable[[Any, Any], Any]:
    allowed = get_args(tp)

    def structure(value: Any, _t: Any) -> Any:
        for choice in allowed:
            if value == choice and type(value) is type(choice):
                return choice
        raise _Mismatch(f"expected {_expected(tp)}, got {_describe(value)}")

    return structure


def _is_plain_sequence(tp: Any) -> bool:
    origin = get_origin(tp)
    if origin is tuple:
        args = get_args(tp)
        return len(args) == 2 and args[1] is Ellipsis
    return origin in (list, collections.abc.Sequence, collections.abc.MutableSequence)


def _sequence_factory(tp: Any, conv: Converter) -> Callable[[Any, Any], Any]:
    # cattrs would happily iterate a string into characters; a list field must get a list.
    from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory

    if get_origin(tp) is tuple:
        inner = homogenous_tuple_structure_factory(tp, conv)
    else:
        inner = list_structure_factory(tp, conv)

    def structure(value: Any, t: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(f"expected a list, got {_describe(value)}")
        return inner(value, t)

    return structure


def _is_mapping_type(tp: Any) -> bool:
    origin = get_origin(tp)
    return origin is not None and isinstance(origin, type) and issubclass(origin, Mapping)


def _mapping_factory(tp: Any, conv: Converter) -> Callable[[Any, Any], Any]:
    from cattrs.cols import mapping_structure_factory

    inner = mapping_structure_factory(tp, conv)

    def structure(value: Any, t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Mismatch(f"expected a mapping, got {_describe(value)}")
        return inner(value, t)

    return structure


@cache
def goal_converter() -> Converter:
    """The converter goal files (and backend options in them) are structured with.

    A copy of the shared :data:`forgemind_hookspecs.converter` with unknown keys forbidden and
    strict hooks: text must be text, integers integers, ``true``/``false`` booleans, lists
    lists; a number field takes ints, floats and numeric strings. Built on first use, so that
    hooks the kernel registers on the shared converter at start-up are inherited.
    """
    conv = base_converter.copy(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(float, _to_float)
    conv.register_structure_hook(int, _to_int)
    conv.register_structure_hook(bool, _to_bool)
    conv.register_structure_hook(str, _to_str)
    conv.register_structure_hook_factory(_is_literal, _literal_factory)
    conv.register_structure_hook_factory(_is_plain_sequence, _sequence_factory)
    conv.register_structure_hook_factory(_is_mapping_type, _mapping_factory)
    return conv


# ------------------------------------------------------------------------------------------
# Collecting problems.
# ------------------------------------------------------------------------------------------


@attrs.define
class _Problems:
    """Every problem found in one goal text, with the line of each YAML path."""

    file: str
    lines: dict[YamlPath, int] = attrs.Factory(dict)
    errors: list[UserError] = attrs.Factory(list)

    def line(self, path: YamlPath) -> int | None:
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def add(self, path: YamlPath, message: str, cls: type[ConfigError] = ConfigError) -> None:
        self.errors.append(cls(message, file=self.file, line=self.line(path), field=_field(path) or None))

    def fatal(self, message: str, line: int | None = None) -> _Fatal:
        self.errors.append(ConfigError(message, file=self.file, line=line))
        return _Fatal(message)

    def sorted(self) -> list[UserError]:
        unique: dict[str, UserError] = {}
        for error in self.errors:
            unique.setdefault(str(error), error)
        return sorted(unique.values(), key=lambda e: (e.line is not None, e.line or 0))


# ------------------------------------------------------------------------------------------
# YAML -> plain data with line numbers.
# ------------------------------------------------------------------------------------------


def _load_yaml(text: str, problems: _Problems) -> Any:
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


def _to_plain(node: Any, problems: _Problems) -> Any:
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
        if count > _MAX_NODES:
            raise problems.fatal(
                f"the file is too large (more than {_MAX_NODES} values after expanding aliases)"
            )
        if len(path) > _MAX_DEPTH:
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
                        f"keys must be text, got {_describe(key)}",
                        file=problems.file,
                        line=where,
                        field=_field(path) or None,
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


def _valid_text(text: str, path: YamlPath, problems: _Problems) -> str:
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
# Flat backend sections -> the records' nested form.
# ------------------------------------------------------------------------------------------


@attrs.frozen
class _ChoiceSite:
    """A backend choice found in the file: where it is, its pillar, its name and options."""

    path: YamlPath
    pillar: str
    backend: Any
    options: dict[str, Any]


def _default_backend(cls: type, attribute: str) -> str:
    default = getattr(attrs.fields(cls), attribute).default
    return str(default.backend)


def _shape_choice(
    raw: Any,
    path: YamlPath,
    pillar: str,
    problems: _Problems,
    sites: list[_ChoiceSite],
    *,
    default_backend: str | None,
    with_share: bool = False,
) -> dict[str, Any] | None:
    """``{backend: x, share: s, a: 1}`` -> ``{"backend": x, "share": s, "options": {"a": 1}}``."""
    if raw is None and default_backend is not None:
        raw = {}
    if not isinstance(raw, dict):
        problems.add(path, f"expected a mapping with a 'backend' key, got {_describe(raw)}")
        return None
    options = {k: v for k, v in raw.items() if k != "backend" and not (with_share and k == "share")}
    if "backend" in raw:
        backend = raw["backend"]
    elif default_backend is not None:
        backend = default_backend
    else:
        problems.add((*path, "backend"), f"required: name the {BACKEND_NOUN[pillar]} to use")
        return None
    shaped: dict[str, Any] = {"backend": backend, "options": options}
    if with_share and "share" in raw:
        shaped["share"] = raw["share"]
    sites.append(_ChoiceSite(path=path, pillar=pillar, backend=backend, options=options))
    if SERVER_KEY in options:  # a served model (forgemind_core/base/servers.py): its own site
        _shape_server(options[SERVER_KEY], (*path, SERVER_KEY), problems, sites)
    return shaped


def _shape_server(raw: Any, path: YamlPath, problems: _Problems, sites: list[_ChoiceSite]) -> None:
    """``server: {backend: llamacpp, n_ctx: 2048}`` is checked as a backend of the servers pillar."""
    if not isinstance(raw, dict):
        problems.add(path, f"expected a mapping with a 'backend' key (the server to start), got {_describe(raw)}")
    elif "backend" not in raw:
        problems.add((*path, "backend"), f"required: name the {BACKEND_NOUN['servers']} to use")
    else:
        options = {k: v for k, v in raw.items() if k != "backend"}
        sites.append(_ChoiceSite(path=path, pillar="servers", backend=raw["backend"], options=options))


def _shape_list(
    raw: Any,
    path: YamlPath,
    pillar: str,
    problems: _Problems,
    sites: list[_ChoiceSite],
    *,
    with_share: bool = False,
) -> list[dict[str, Any]] | None:
    if not isinstance(raw, list):
        problems.add(path, f"expected a list (write [] for none), got {_describe(raw)}")
        return None
    out: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        shaped = _shape_choice(
            item, (*path, index), pillar, problems, sites, default_backend=None, with_share=with_share
        )
        # A bad item (already reported) becomes a valid placeholder, so the items after it keep
        # their index and are still checked; the goal is discarded anyway.
        out.append(shaped if shaped is not None else {"backend": "", "options": {}})
    return out


def _shape(data: dict[str, Any], problems: _Problems) -> tuple[dict[str, Any], list[_ChoiceSite]]:
    """Reshape the flat sections; a malformed section is reported and left out of ``data``."""
    sites: list[_ChoiceSite] = []
    out = dict(data)

    def put(key: str, value: Any) -> None:
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value

    if "generate" in data:
        put(
            "generate",
            _shape_list(data["generate"], ("generate",), "generators", problems, sites, with_share=True),
        )
    if "filter" in data:
        put("filter", _shape_list(data["filter"], ("filter",), "filters", problems, sites))
    for key, pillar in (("train", "trainers"), ("planner", "planners"), ("executor", "executors")):
        if key in data:
            default = _default_backend(Goal, key)
            put(key, _shape_choice(data[key], (key,), pillar, problems, sites, default_backend=default))
    if "evaluate" in data:
        section = data["evaluate"]
        if section is None:
            out.pop("evaluate")
        elif not isinstance(section, dict):
            problems.add(("evaluate",), f"expected a mapping, got {_describe(section)}")
            out.pop("evaluate")
        else:
            shaped_eval = dict(section)
            for key, pillar in (("runner", "runners"), ("adversary", "adversaries")):
                if key in section:
                    choice = _shape_choice(
                        section[key],
                        ("evaluate", key),
                        pillar,
                        problems,
                        sites,
                        default_backend=_default_backend(EvaluateSection, key),
                    )
                    if choice is None:
                        shaped_eval.pop(key)
                    else:
                        shaped_eval[key] = choice
            if "scorers" in section:
                scorers = _shape_list(section["scorers"], ("evaluate", "scorers"), "scorers", problems, sites)
                if scorers is None:
                    shaped_eval.pop("scorers")
                else:
                    shaped_eval["scorers"] = scorers
            out["evaluate"] = shaped_eval
    if "review" in data:
        section = data["review"]
        if section is None:
            out.pop("review")
        elif not isinstance(section, dict):
            problems.add(("review",), f"expected a mapping, got {_describe(section)}")
            out.pop("review")
        else:
            options = {k: v for k, v in section.items() if k not in ("backend", "policy")}
            review: dict[str, Any] = {"options": options}
            for key in ("backend", "policy"):
                if key in section:
                    review[key] = section[key]
            if section.get("backend") is not None:
                sites.append(_ChoiceSite(("review",), "reviewers", section["backend"], options))
            out["review"] = review
    if "pretrain" in data:
        section = data["pretrain"]
        if section is None:
            out.pop("pretrain")
        elif not isinstance(section, dict):
            problems.add(("pretrain",), f"expected a mapping, got {_describe(section)}")
            out.pop("pretrain")
        else:
            pretrain: dict[str, Any] = {
                "options": {k: v for k, v in section.items() if k not in ("corpus", "preset")}
            }
            for key in ("corpus", "preset"):
                if key in section:
                    pretrain[key] = section[key]
            out["pretrain"] = pretrain
    return out, sites


# ------------------------------------------------------------------------------------------
# cattrs errors -> problems.
# ------------------------------------------------------------------------------------------


def _allowed(cls: type) -> list[str]:
    names = [f.name for f in attrs.fields(cls)]
    return [n for n in names if n != "source"] if cls is Goal else names


def _unknown_key_message(key: str, allowed: list[str], *, noun: str = "key", owner: str = "") -> str:
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


def _report_structure_error(
    error: BaseException,
    path: YamlPath,
    expected: Any,
    data: Any,
    problems: _Problems,
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
            _report_structure_error(
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
            _report_structure_error(
                sub, path, expected, data, problems, data_path=data_path, noun=noun, owner=owner, top=top
            )
        return
    if isinstance(error, IterableValidationError):
        with_index, without = error.group_exceptions()
        for sub, inote in with_index:
            item_type = get_args(inote.type)[0] if get_args(inote.type) else inote.type
            _report_structure_error(
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
            _report_structure_error(
                sub, path, expected, data, problems, data_path=data_path, noun="key", top=False
            )
        return
    if isinstance(error, ForbiddenExtraKeysError):
        allowed = _allowed(error.cl) if attrs.has(error.cl) else []
        for key in sorted(error.extra_fields):
            problems.add(
                (*path, key),
                _unknown_key_message(key, allowed, noun=noun if top else "key", owner=owner if top else ""),
            )
        return
    if isinstance(error, KeyError) and path:
        problems.add(path, "required, but missing")
        return
    if isinstance(error, _Mismatch):
        problems.add(path, str(error))
        return
    if isinstance(error, FieldValueError):  # a declared bound (forgemind_hookspecs.bounds)
        problems.add((*path, error.name), error.message)
        return
    if isinstance(error, ValueError):  # an Options class's own validator: its text is the sentence
        problems.add(path, str(error))
        return
    value = _lookup(data, data_path(path))
    problems.add(path, f"expected {_expected(expected)}, got {_describe(value)}")


def _check_bounds(cls: Any, raw: Any, path: YamlPath, problems: _Problems) -> None:
    """Every field of ``cls`` (and of the records inside it) whose value in ``raw`` breaks the
    field's declared bound (:mod:`forgemind_hookspecs.bounds`). attrs stops at a class's first
    failing validator and cattrs never builds the outer record when an inner one fails, so after a
    failed structure this pass finds the others: the user fixes the file in one go."""
    if not (isinstance(cls, type) and attrs.has(cls)) or not isinstance(raw, Mapping):
        return
    try:
        fields = attrs.fields(attrs.resolve_types(cls))
    except (NameError, TypeError):  # an Options class whose annotations do not resolve
        fields = attrs.fields(cls)
    conv = goal_converter()
    for f in fields:
        if f.name not in raw:
            continue
        value, tp, here = raw[f.name], f.type, (*path, f.name)
        args = get_args(tp)
        if isinstance(tp, type) and attrs.has(tp):
            _check_bounds(tp, value, here, problems)
        elif _is_plain_sequence(tp) and args and attrs.has(args[0]) and isinstance(value, list):
            for index, item in enumerate(value):
                _check_bounds(args[0], item, (*here, index), problems)
        elif f.validator is not None:
            try:
                built = conv.structure(value, tp)
            except Exception:  # a wrong type is the structure pass's to report
                continue
            problem = bounds_check(f, built)
            if problem:
                problems.add(here, problem)


# ------------------------------------------------------------------------------------------
# Catalogue checks.
# ------------------------------------------------------------------------------------------


def _check_sites(
    sites: list[_ChoiceSite], catalogue: Catalogue, problems: _Problems
) -> dict[YamlPath, dict[str, Any]]:
    """Check backend names and options; return the coerced options of each valid site."""
    conv = goal_converter()
    coerced: dict[YamlPath, dict[str, Any]] = {}
    for site in sites:
        if not isinstance(site.backend, str):
            continue  # cattrs reports "expected text" for it
        installed = catalogue.get(site.pillar, {})
        kind = BACKEND_NOUN[site.pillar]
        if site.backend not in installed:
            problems.add((*site.path, "backend"), unknown_backend_message(site.pillar, site.backend, installed),
                         UnknownBackend)
            continue
        options_cls: type = getattr(installed[site.backend].cls, "Options")  # noqa: B009
        owner = f"{kind} {site.backend!r}"
        own, server = split_server(site.options)
        if server is not None and (problem := client_problem(options_cls, own)):
            problems.add((*site.path, SERVER_KEY), problem)
            continue
        try:
            built: Any = conv.structure(own, options_cls)
        except BaseValidationError as error:
            _report_structure_error(
                error,
                site.path,
                options_cls,
                site.options,
                problems,
                data_path=_strip_prefix(len(site.path)),
                noun="option",
                owner=owner,
            )
            _check_bounds(options_cls, own, site.path, problems)
            continue
        except (TypeError, ValueError) as error:  # an Options class validating in __init__
            problems.add(site.path, f"bad options for {owner}: {error}")
            continue
        plain = conv.unstructure(built)
        coerced[site.path] = (
            {k: plain.get(k, v) for k, v in site.options.items()} if isinstance(plain, dict) else {}
        )
    return coerced


def _strip_prefix(n: int) -> Callable[[YamlPath], YamlPath]:
    """Options are flat: ``train.epochs`` lives at ``options["epochs"]``."""

    def strip(path: YamlPath) -> YamlPath:
        return path[n:]

    return strip


def _apply_coerced(goal: Goal, coerced: Mapping[YamlPath, dict[str, Any]]) -> Goal:
    def choice(path: YamlPath, value: Any) -> Any:
        if path in coerced:
            return attrs.evolve(value, options=coerced[path])
        return value

    evaluate = goal.evaluate
    evaluate = attrs.evolve(
        evaluate,
        runner=choice(("evaluate", "runner"), evaluate.runner),
        scorers=tuple(choice(("evaluate", "scorers", i), s) for i, s in enumerate(evaluate.scorers)),
    )
    return attrs.evolve(
        goal,
        generate=tuple(choice(("generate", i), g) for i, g in enumerate(goal.generate)),
        filter=tuple(choice(("filter", i), f) for i, f in enumerate(goal.filter)),
        train=choice(("train",), goal.train),
        planner=choice(("planner",), goal.planner),
        executor=choice(("executor",), goal.executor),
        evaluate=evaluate,
        review=choice(("review",), goal.review),
    )


# ------------------------------------------------------------------------------------------
# The whole read.
# ------------------------------------------------------------------------------------------


def _resolve(value: str | None, base_dir: Path) -> str | None:
    """``value`` as an absolute path (relative ones against ``base_dir``); raises ``ValueError``
    with the sentence for text that cannot be a path."""
    if value is None:
        return None
    if "\0" in value:
        raise ValueError("a path cannot hold a NUL character")
    if not value.strip():
        raise ValueError("expected a path, got empty text")
    try:
        path = Path(os.path.expanduser(value))
        return str(path if path.is_absolute() else (base_dir / path).resolve())
    except (OSError, RuntimeError) as error:  # ENAMETOOLONG, a symlink loop
        raise ValueError(f"cannot be used as a path: {getattr(error, 'strerror', None) or error}") from None


def _resolve_at(value: str | None, base_dir: Path, path: YamlPath, problems: _Problems) -> str | None:
    try:
        return _resolve(value, base_dir)
    except ValueError as error:
        problems.add(path, str(error))
        return None


def _path_kind(path: str) -> str:
    """``"folder"``, ``"file"``, ``"other"``, ``"missing"``, or why the path cannot be looked at."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as error:  # too long, no access, a symlink loop
        return f"cannot be used as a path: {getattr(error, 'strerror', None) or error}"
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _path_problem(path: str, want: str) -> str | None:
    kind = _path_kind(path)
    if kind == want:
        return None
    if kind.startswith("cannot"):
        return kind
    shown = path if len(path) <= 200 else path[:120] + "..." + path[-60:]
    return f"no such {want}: {shown}"


def _read(
    text: str | bytes,
    *,
    display: str,
    source: str,
    base_dir: Path | None,
    catalogue: Catalogue | None,
    check_paths: bool,
) -> tuple[Goal | None, list[UserError]]:
    problems = _Problems(file=display)
    try:
        goal = _read_into(
            text, problems, source=source, base_dir=base_dir, catalogue=catalogue, check_paths=check_paths
        )
    except _Fatal:
        goal = None
    except RecursionError:
        problems.errors.append(ConfigError("the file is nested too deeply", file=display))
        goal = None
    errors = problems.sorted()
    return (goal if not errors else None), errors


def field_line(file: str | Path, *path: str | int) -> int | None:
    """The line of ``path`` (e.g. ``"filter"``, or ``"train", "epochs"``) in the goal file, read the way
    goal errors read theirs; ``None`` when the path is absent or the file cannot be read or parsed.
    For errors raised after loading, when the loaded goal no longer holds lines."""
    problems = _Problems(file=str(file))
    try:
        text = read_user_bytes(file, limit=MAX_GOAL_BYTES, error=ConfigError).decode("utf-8-sig")
        _to_plain(_load_yaml(text, problems), problems)
    except (ForgeError, UnicodeDecodeError, RecursionError, _Fatal):
        return None
    return problems.lines.get(tuple(path))


def _read_into(
    text: str | bytes,
    problems: _Problems,
    *,
    source: str,
    base_dir: Path | None,
    catalogue: Catalogue | None,
    check_paths: bool,
) -> Goal | None:
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = raw.count(b"\n", 0, error.start) + 1
            raise problems.fatal(
                f"not UTF-8 text (byte 0x{raw[error.start]:02x} cannot be decoded)", line
            ) from None
    if not text.strip():
        raise problems.fatal("the file is empty; a goal needs at least 'name' and 'task'")
    node = _load_yaml(text, problems)
    data = _to_plain(node, problems)
    if data is None:
        raise problems.fatal(
            "the file holds no YAML data (only comments?); a goal needs at least 'name' and 'task'"
        )
    if not isinstance(data, dict):
        raise problems.fatal(
            f"expected a mapping of goal fields at the top level, got {_describe(data)}",
            problems.lines.get((), 1),
        )
    if "source" in data:
        problems.add(
            ("source",), _unknown_key_message("source", list(_TOP_KEYS)) + " ('source' is set by the loader)"
        )
        data = {k: v for k, v in data.items() if k != "source"}
    shaped, sites = _shape(data, problems)
    conv = goal_converter()
    goal: Goal | None = None
    try:
        goal = conv.structure(shaped, Goal)
    except BaseValidationError as error:
        _report_structure_error(error, (), Goal, data, problems, noun="key")
        _check_bounds(Goal, shaped, (), problems)
    except (TypeError, ValueError, AttributeError, KeyError) as error:  # defensive: never a traceback
        problems.add((), f"cannot build the goal: {error}")
    coerced = _check_sites(sites, catalogue, problems) if catalogue is not None else {}
    if catalogue is not None:
        _check_trainer_choices(shaped, catalogue, problems)
    if goal is None:
        return None
    _check_search(goal, problems)
    goal = _apply_coerced(goal, coerced)
    base = base_dir if base_dir is not None else Path.cwd()
    goal = attrs.evolve(
        goal,
        pack=_resolve_at(goal.pack, base, ("pack",), problems),
        review=attrs.evolve(goal.review, policy=_resolve_at(goal.review.policy, base, ("review", "policy"), problems)),
        source=source,
    )
    if check_paths:
        if goal.pack is not None:
            if problem := _path_problem(goal.pack, "folder"):
                problems.add(("pack",), problem)
            else:  # the pack and its suites, read by the loader `forge run` uses
                problems.errors.extend(_pack_problems(goal.pack, catalogue))
        if goal.review.policy is not None and (problem := _path_problem(goal.review.policy, "file")):
            problems.add(("review", "policy"), problem)
        elif goal.review.policy is not None:  # the policy's own mistakes, each with its file and line
            from forgemind_core.warden.policy import validate_policy

            problems.errors.extend(validate_policy(goal.review.policy))
    return goal


def _pack_problems(folder: str, catalogue: Catalogue | None) -> list[UserError]:
    """The first mistake of the task pack and its suites (the pack loader stops at the first), or
    none. With a catalogue, a suite case's ``checker`` must name an installed scorer."""
    from forgemind_core.foundry.packs import load_pack, load_suites

    try:
        pack = load_pack(folder)
        load_suites(pack, checkers=tuple(catalogue.get("scorers", {})) if catalogue is not None else None)
    except UserError as error:
        return [error]
    return []


def _check_trainer_choices(shaped: Mapping[str, Any], catalogue: Catalogue, problems: _Problems) -> None:
    """``limits.method`` and ``pretrain.preset`` against what the goal's trainer declares
    (class attributes ``methods`` and ``presets``: the kernel asks the backend, it never imports
    a plugin). A trainer that declares nothing accepts any text."""
    train = shaped.get("train")
    name = train.get("backend") if isinstance(train, Mapping) else _default_backend(Goal, "train")
    info = catalogue.get("trainers", {}).get(name) if isinstance(name, str) else None
    if info is None:
        return
    for section, key, attribute, default in (
        ("limits", "method", "methods", attrs.fields(Limits).method.default),
        ("pretrain", "preset", "presets", attrs.fields(PretrainSpec).preset.default),
    ):
        choices = getattr(info.cls, attribute, None)
        raw = shaped.get(section)
        value = raw.get(key, default) if isinstance(raw, Mapping) else default
        if not choices or not isinstance(value, str):
            continue
        problem = OneOf(tuple(choices)).problem(value)
        if problem:
            problems.add((section, key), f"{problem} (the {attribute} of trainer {name!r})")


def _check_search(goal: Goal, problems: _Problems) -> None:
    """The ``search`` section's values (docs/candidates.md); its shape cattrs has checked."""
    from forgemind_core.brain.candidates import space_key_problem

    search = goal.search
    for key, values in search.space.items():
        problem = space_key_problem(key, values)
        if problem:
            problems.add(("search", "space", key), problem)


def _read_file(path: str | os.PathLike[str]) -> tuple[bytes | None, ConfigError | None]:
    """The goal file's bytes: a regular file (a fifo or ``/dev/zero`` would hang the read) of at
    most :data:`MAX_GOAL_BYTES`."""
    try:
        return read_user_bytes(path, limit=MAX_GOAL_BYTES, error=ConfigError, what="goal file"), None
    except ConfigError as error:
        return None, error


def validate_goal(path: str | os.PathLike[str], catalogue: Catalogue | None = None) -> list[UserError]:
    """Every problem of a goal file, in line order (an empty list means the file is fine).

    :param path: the goal file.
    :param catalogue: ``{pillar: {name: BackendInfo}}``; when given, backend names and their
        options are checked too. A pillar missing from it counts as having no backends.
    """
    raw, error = _read_file(path)
    if error is not None or raw is None:
        return [error] if error is not None else []
    file = Path(path)
    _, errors = _read(
        raw,
        display=os.fspath(path),
        source=str(file.resolve()),
        base_dir=file.resolve().parent,
        catalogue=catalogue,
        check_paths=True,
    )
    return errors


def load_goal(path: str | os.PathLike[str], catalogue: Catalogue | None = None) -> Goal:
    """Read a goal file into a :class:`Goal` (``pack`` resolved, ``source`` = the file's path).

    :raises ConfigError: the first problem (in line order); every further problem is attached
        with :meth:`BaseException.add_note`, so a caller can show them all (``__notes__``).
    :raises UnknownBackend: (a ConfigError) when the first problem is an unknown backend.
    """
    raw, error = _read_file(path)
    if error is not None or raw is None:
        raise error if error is not None else ConfigError("cannot read the goal file", file=os.fspath(path))
    file = Path(path)
    goal, errors = _read(
        raw,
        display=os.fspath(path),
        source=str(file.resolve()),
        base_dir=file.resolve().parent,
        catalogue=catalogue,
        check_paths=True,
    )
    return _goal_or_raise(goal, errors)


def parse_goal(
    text: str | bytes,
    *,
    source: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    catalogue: Catalogue | None = None,
) -> Goal:
    """Read a goal from YAML text (for embedding: goals built by programs, tests, the dashboard).

    :param source: the name used in error messages, stored as ``Goal.source``.
    :param base_dir: the folder ``pack`` and ``review.policy`` are resolved against (default:
        the current folder). Unlike :func:`load_goal`, their existence is not checked.
    :param catalogue: as for :func:`validate_goal`.
    :raises ConfigError: as :func:`load_goal`.
    """
    base = Path(base_dir).resolve() if base_dir is not None else None
    goal, errors = _read(
        text, display=source, source=source, base_dir=base, catalogue=catalogue, check_paths=False
    )
    return _goal_or_raise(goal, errors)


def _goal_or_raise(goal: Goal | None, errors: list[UserError]) -> Goal:
    if errors:
        first = errors[0]
        for other in errors[1:]:
            first.add_note(str(other))
        raise first
    if goal is None:  # pragma: no cover - _read returns errors whenever it returns no goal
        raise ForgeError("the goal could not be read")
    return goal


# ------------------------------------------------------------------------------------------
# The allowed values, for the docs.
# ------------------------------------------------------------------------------------------


def allowed_values_table(catalogue: Catalogue | None = None) -> str:
    """The Markdown table of every goal field with declared allowed values, written from the
    records' own validators (:mod:`forgemind_hookspecs.bounds`) and, with a catalogue, from the
    trainers' declared ``methods`` and ``presets``, so docs/goal-files.md cannot drift from what
    validation checks (a test compares them)."""
    from forgemind_hookspecs.bounds import describe

    rows: list[tuple[str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        for f in attrs.fields(attrs.resolve_types(cls)):
            tp = f.type
            args = get_args(tp)
            if isinstance(tp, type) and attrs.has(tp):
                walk(tp, f"{prefix}{f.name}.")
            elif _is_plain_sequence(tp) and args and attrs.has(args[0]):
                walk(args[0], f"{prefix}{f.name}[].")
            elif (text := describe(f)) is not None:
                rows.append((f"{prefix}{f.name}", text))

    walk(Goal, "")
    trainers = (catalogue or {}).get("trainers", {})
    for field, attribute in (("limits.method", "methods"), ("pretrain.preset", "presets")):
        declared = [
            f"`{name}`: " + ", ".join(f"`{c}`" for c in getattr(info.cls, attribute))
            for name, info in sorted(trainers.items())
            if getattr(info.cls, attribute, None)
        ]
        rows.append((field, f"one of the trainer's `{attribute}`" + (f" ({'; '.join(declared)})" if declared else "")))
    lines = ["| field | allowed |", "|---|---|"]
    lines += [f"| `{name}` | {text} |" for name, text in sorted(rows)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# Writing a goal back.
# ------------------------------------------------------------------------------------------


def _plain_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return value


def _flat(
    choice: BackendChoice | GeneratorChoice | ReviewSection | PretrainSpec,
    reserved: tuple[str, ...],
    head: dict[str, Any],
) -> dict[str, Any]:
    out = dict(head)
    for key, value in choice.options.items():
        if key in reserved:
            raise ValueError(
                f"option {key!r} cannot be written in a flat goal section (it is a reserved key)"
            )
        out[str(key)] = _plain_value(value)
    return out


def _goal_dict(goal: Goal) -> dict[str, Any]:
    conv = base_converter
    pretrain: PretrainSpec = goal.pretrain
    data: dict[str, Any] = {
        "name": goal.name,
        "task": goal.task,
        "seed": goal.seed,
        "success": conv.unstructure(goal.success),
        "limits": conv.unstructure(goal.limits),
    }
    if goal.pack is not None:
        data["pack"] = goal.pack
    data["pretrain"] = _flat(
        pretrain, ("corpus", "preset"), {"corpus": pretrain.corpus, "preset": pretrain.preset}
    )
    data["generate"] = [
        _flat(g, ("backend", "share"), {"backend": g.backend, "share": g.share}) for g in goal.generate
    ]
    data["filter"] = [_flat(f, ("backend",), {"backend": f.backend}) for f in goal.filter]
    data["train"] = _flat(goal.train, ("backend",), {"backend": goal.train.backend})
    data["evaluate"] = {
        "runner": _flat(goal.evaluate.runner, ("backend",), {"backend": goal.evaluate.runner.backend}),
        "scorers": [_flat(s, ("backend",), {"backend": s.backend}) for s in goal.evaluate.scorers],
        "adversarial_per_iteration": goal.evaluate.adversarial_per_iteration,
        "adversary": _flat(goal.evaluate.adversary, ("backend",), {"backend": goal.evaluate.adversary.backend}),
    }
    data["planner"] = _flat(goal.planner, ("backend",), {"backend": goal.planner.backend})
    data["executor"] = _flat(goal.executor, ("backend",), {"backend": goal.executor.backend})
    if goal.search != type(goal.search)():
        data["search"] = _plain_value(base_converter.unstructure(goal.search))
    review_head: dict[str, Any] = {}
    if goal.review.backend is not None:
        review_head["backend"] = goal.review.backend
    if goal.review.policy is not None:
        review_head["policy"] = goal.review.policy
    data["review"] = _flat(goal.review, ("backend", "policy"), review_head)
    if goal.export:
        data["export"] = _plain_value(goal.export)
    return data


def _quote_odd(value: Any, quoted: Callable[[str], str]) -> Any:
    """Double-quote strings with non-printable or line-break characters (NEL, U+2028, ...):
    ruamel writes them plain and reads them back changed."""
    if isinstance(value, str):
        return quoted(value) if not value.isprintable() else value
    if isinstance(value, dict):
        return {_quote_odd(k, quoted): _quote_odd(v, quoted) for k, v in value.items()}
    if isinstance(value, list):
        return [_quote_odd(v, quoted) for v in value]
    return value


def goal_to_yaml(goal: Goal) -> str:
    """Write ``goal`` as a goal file in the flat form users write; it loads back equal.

    Every field is written (defaults included), so the output shows the effective settings;
    ``source`` is not written (the loader sets it). Used by ``forge show --config``.

    :raises ValueError: an option is named like a section's own key (``backend``, ``share``,
        ``policy``, ``corpus``, ``preset``), which the flat form cannot express.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    yaml = YAML(typ="rt", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    stream = io.StringIO()
    stream.write("# ForgeMind goal file (see docs/goal-files.md)\n")
    yaml.dump(_quote_odd(_goal_dict(goal), DoubleQuotedScalarString), stream)
    return stream.getvalue()
