"""Task packs: the folder format that says what a task is, read into :class:`TaskPack`.

A task pack is everything ForgeMind needs to know about a task that is not a setting of the
loop: the labels and what they mean, the prompt format shared by training and evaluation, the
prompt templates and slot values the offline ``template`` generator expands (and whose
``instruction`` an LLM generator follows instead), and the hand-written evaluation suites. The
format is documented in ``docs/task-packs.md``; this module reads it and reports every mistake
as one sentence naming the file, the line and the field.

Rendering a pack's text into prompts (``format_prompt``, slot expansion) lives in
:mod:`forgemind_core.foundry.prompts`, reading its evaluation suites in
:mod:`forgemind_core.foundry.suites`; both are re-exported here.

ruamel.yaml is imported inside the functions that need it so that importing this module (which
``forge --help`` does) stays cheap.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs.dataformats import read_user_bytes
from forgemind_hookspecs.errors import ConfigError
from forgemind_hookspecs.records import TIERS, PromptTemplate, TaskPack

from forgemind_core.foundry.prompts import (
    HEAD_SEPARATOR,
    SLOT_PATTERN,
    expand,
    format_prompt,
    slot_names,
    split_head,
)
from forgemind_core.foundry.suites import load_suite, load_suites

__all__ = [
    "HEAD_SEPARATOR",
    "MAX_PACK_YAML_BYTES",
    "PACK_FILE",
    "SLOT_PATTERN",
    "expand",
    "format_prompt",
    "load_pack",
    "load_suite",
    "load_suites",
    "pack_path",
    "slot_names",
    "split_head",
]

#: The file that makes a folder a task pack.
PACK_FILE = "pack.yaml"

_PACK_KEYS = frozenset(
    {
        "name",
        "task",
        "labels",
        "system_prompt",
        "prompt_format",
        "rubric",
        "templates",
        "slots",
        "frames",
        "suites",
        "data",
        "label_weights",
    }
)
_TEMPLATE_KEYS = frozenset({"id", "category", "prompt", "completion", "instruction", "weight", "strategies"})
_DATA_SUFFIXES = (".jsonl", ".csv", ".parquet")
#: The largest YAML file of a pack read (pack.yaml, slots, templates, frames).
MAX_PACK_YAML_BYTES = 16 * 2**20


# --------------------------------------------------------------------------------------------
# YAML helpers: values with their line numbers.
# --------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    raw = read_user_bytes(path, limit=MAX_PACK_YAML_BYTES, error=ConfigError)  # a fifo must not hang us
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"not UTF-8 text ({error.reason})", file=str(path), line=line) from None
    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        at: int | None = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {error.problem or error.context}", file=str(path), line=at) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=str(path)) from None
    except Exception as error:  # ruamel is third-party: a huge integer, an unreadable tag ...
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"invalid YAML: {first}", file=str(path)) from None


def _line_of(node: Any, key: Any = None) -> int | None:
    """1-based line of ``node`` (or of ``node[key]``), when ruamel kept it."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return int(lc.line) + 1
        if isinstance(key, int):
            return int(lc.item(key)[0]) + 1
        return int(lc.key(key)[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return int(lc.line) + 1


class _Where:
    """A file plus the node being read, to raise errors that point at a line."""

    def __init__(self, file: Path) -> None:
        self.file = str(file)

    def error(self, message: str, node: Any = None, key: Any = None, field: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=_line_of(node, key), field=field)

    def text(self, node: Mapping[str, Any], key: str, field: str, *, default: str | None = None) -> str:
        if key not in node or node[key] is None:
            if default is None:
                raise self.error("is required", node, None, field)
            return default
        value = node[key]
        if not isinstance(value, str):
            raise self.error(f"must be text, not {type(value).__name__}", node, key, field)
        return str(value)


def pack_path(root: Path, rel: str) -> Path | str:
    """The one rule for every path a pack names: relative to the pack folder, and inside it once
    resolved (``..`` and symlinks included), naming a regular file. Returns the resolved path, or
    the sentence saying why ``rel`` breaks the rule."""
    if "\0" in rel or not rel.strip():
        return "must be a path relative to the pack folder"
    if os.path.isabs(os.path.expanduser(rel)):
        return f"{rel!r} is absolute; paths in a pack are relative to the pack folder"
    try:
        base = root.resolve()
        path = (base / rel).resolve()
    except (OSError, RuntimeError, ValueError) as error:
        return f"{rel!r} cannot be used as a path ({getattr(error, 'strerror', None) or error})"
    if not path.is_relative_to(base):
        return f"{rel!r} points outside the pack folder"
    try:
        if path.is_dir():
            return f"{rel!r} is a folder; expected a file"
        if not path.is_file():
            return f"file {rel!r} not found in the pack folder" if not path.exists() else f"{rel!r} is not a regular file"
    except OSError as error:
        return f"{rel!r} cannot be read ({error.strerror or error})"
    return path


def _pack_file(where: _Where, root: Path, rel: str, node: Any, key: Any, field: str) -> Path:
    path = pack_path(root, rel)
    if isinstance(path, str):
        raise where.error(path, node, key, field)
    return path


def _source(where: _Where, root: Path, node: Any, key: str) -> tuple[Any, _Where]:
    """A pack.yaml section given inline, or as a path to a YAML file relative to the pack."""
    value = node[key]
    if isinstance(value, str):
        path = _pack_file(where, root, value, node, key, key)
        return _read_yaml(path), _Where(path)
    return value, where


# --------------------------------------------------------------------------------------------
# load_pack
# --------------------------------------------------------------------------------------------


def load_pack(folder: str | Path) -> TaskPack:
    """Read a task-pack folder (its ``pack.yaml`` and the files it names) into a :class:`TaskPack`.

    :param folder: the pack folder, or its ``pack.yaml`` file.
    :raises ConfigError: a missing file, bad YAML, a missing or mistyped field, a template using
        an unknown label or slot; the error names file, line and field.
    """
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    root = folder.resolve()
    pack_file = root / PACK_FILE
    if not root.is_dir():
        raise ConfigError("task-pack folder not found", file=str(folder))
    if not pack_file.is_file():
        raise ConfigError(f"not a task pack: no {PACK_FILE} in this folder", file=str(folder))
    where = _Where(pack_file)
    doc = _read_yaml(pack_file)
    if not isinstance(doc, Mapping):
        raise where.error("must be a mapping of pack fields", doc)
    for key in doc:
        if key not in _PACK_KEYS:
            raise where.error(
                f"unknown field; expected one of {', '.join(sorted(_PACK_KEYS))}", doc, key, str(key)
            )

    name = where.text(doc, "name", "name")
    labels, descriptions = _labels(where, doc)
    slots = _slots(where, root, doc) if "slots" in doc else {}
    templates = _templates(where, root, doc, labels, slots) if "templates" in doc else ()
    frames = _frames(where, root, doc, slots) if "frames" in doc else ()
    prompt_format = where.text(doc, "prompt_format", "prompt_format", default="{input}")
    if "{input}" not in prompt_format:
        raise where.error("must contain the {input} placeholder", doc, "prompt_format", "prompt_format")
    return TaskPack(
        root=str(root),
        name=name,
        task=where.text(doc, "task", "task", default=""),
        labels=labels,
        label_descriptions=descriptions,
        system_prompt=where.text(doc, "system_prompt", "system_prompt", default=""),
        prompt_format=prompt_format,
        templates=templates,
        slots=slots,
        rubric=where.text(doc, "rubric", "rubric", default=""),
        suites=_suites(where, root, doc),
        data_files=_data_files(where, root, doc),
        frames=frames,
        label_weights=_label_weights(where, doc, labels),
    )


def _label_weights(where: _Where, doc: Mapping[str, Any], labels: Sequence[str]) -> dict[str, float]:
    """``label_weights``: label -> relative share of new data (a positive number; default 1)."""
    if "label_weights" not in doc:
        return {}
    node = doc["label_weights"]
    if not isinstance(node, Mapping):
        raise where.error("must be a mapping of label -> weight", doc, "label_weights", "label_weights")
    weights: dict[str, float] = {}
    for key, value in node.items():
        field = f"label_weights.{key}"
        if key not in labels:
            raise where.error(f"{key!r} is not one of the pack's labels ({', '.join(labels)})", node, key, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise where.error(f"must be a positive number, got {value!r}", node, key, field)
        weights[str(key)] = float(value)
    return weights


def _labels(where: _Where, doc: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, str]]:
    if "labels" not in doc:
        raise where.error("is required (a mapping of label -> description)", doc, None, "labels")
    node = doc["labels"]
    if isinstance(node, Mapping):
        descriptions: dict[str, str] = {}
        for key, value in node.items():
            if not isinstance(value, str):
                raise where.error("the description must be text", node, key, f"labels.{key}")
            descriptions[str(key)] = str(value)
        if not descriptions:
            raise where.error("must name at least one label", doc, "labels", "labels")
        return tuple(descriptions), descriptions
    if isinstance(node, list) and node and all(isinstance(item, str) for item in node):
        return tuple(str(item) for item in node), {}
    raise where.error("must be a mapping of label -> description", doc, "labels", "labels")


def _slots(where: _Where, root: Path, doc: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    node, where = _source(where, root, doc, "slots")
    if not isinstance(node, Mapping):
        raise where.error("slots must be a mapping of slot name -> list of values", node, None, "slots")
    slots: dict[str, tuple[str, ...]] = {}
    for key, values in node.items():
        field = f"slots.{key}"
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise where.error("a slot name must be an identifier", node, key, field)
        if key in ("input", "head", "body"):
            raise where.error(f"{key!r} is reserved and cannot be a slot name", node, key, field)
        if not isinstance(values, list) or not values:
            raise where.error("must be a non-empty list of values", node, key, field)
        for index, value in enumerate(values):
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise where.error("every value must be text", values, index, f"{field}[{index}]")
        slots[key] = tuple(str(value) for value in values)
    return slots


def _templates(
    where: _Where,
    root: Path,
    doc: Mapping[str, Any],
    labels: tuple[str, ...],
    slots: Mapping[str, tuple[str, ...]],
) -> tuple[PromptTemplate, ...]:
    node, where = _source(where, root, doc, "templates")
    if not isinstance(node, list):
        raise where.error("templates must be a list of mappings", node, None, "templates")
    templates: list[PromptTemplate] = []
    seen: set[str] = set()
    for index, item in enumerate(node):
        base = f"templates[{index}]"
        if not isinstance(item, Mapping):
            raise where.error("must be a mapping (id, category, prompt, ...)", node, index, base)
        for key in item:
            if key not in _TEMPLATE_KEYS:
                raise where.error(
                    f"unknown field; expected one of {', '.join(sorted(_TEMPLATE_KEYS))}", item, key, f"{base}.{key}"
                )
        template_id = where.text(item, "id", f"{base}.id")
        if template_id in seen:
            raise where.error(f"template id {template_id!r} is used twice", item, "id", f"{base}.id")
        seen.add(template_id)
        category = where.text(item, "category", f"{base}.category")
        if category not in labels:
            raise where.error(
                f"category {category!r} is not one of the pack's labels ({', '.join(labels)})",
                item,
                "category",
                f"{base}.category",
            )
        prompt = where.text(item, "prompt", f"{base}.prompt")
        completion = where.text(item, "completion", f"{base}.completion", default="")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise where.error("must be a number >= 0", item, "weight", f"{base}.weight")
        strategies = item.get("strategies", [])
        if isinstance(strategies, str):
            strategies = [strategies]
        if not isinstance(strategies, list) or not all(isinstance(s, str) for s in strategies):
            raise where.error("must be a list of strategy names", item, "strategies", f"{base}.strategies")
        _check_slots(where, item, "prompt", prompt, slots, f"{base}.prompt")
        templates.append(
            PromptTemplate(
                id=template_id,
                category=category,
                prompt=prompt,
                completion=completion,
                instruction=where.text(item, "instruction", f"{base}.instruction", default=""),
                weight=float(weight),
                strategies=tuple(str(s) for s in strategies),
            )
        )
    return tuple(templates)


def _check_slots(
    where: _Where, node: Any, key: Any, text: str, slots: Mapping[str, Any], field: str
) -> None:
    """Every placeholder written in ``{snake_case}`` that looks meant as a slot must exist.

    Placeholders inside Python f-strings look the same, so only names that are *almost* slots
    are reported: a name that differs from a slot name by case or a trailing ``s`` is a typo.
    """
    lowered = {name.lower().rstrip("s"): name for name in slots}
    for name in slot_names(text):
        if name in slots or name in ("head", "body", "input"):
            continue
        near = lowered.get(name.lower().rstrip("s"))
        if near is not None:
            raise where.error(f"unknown slot {{{name}}}; did you mean {{{near}}}?", node, key, field)


def _frames(
    where: _Where, root: Path, doc: Mapping[str, Any], slots: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...]:
    node, where = _source(where, root, doc, "frames")
    if not isinstance(node, list):
        raise where.error("frames must be a list of texts containing {body}", node, None, "frames")
    frames: list[str] = []
    for index, value in enumerate(node):
        field = f"frames[{index}]"
        if not isinstance(value, str):
            raise where.error("must be text", node, index, field)
        if "{body}" not in value:
            raise where.error("must contain the {body} placeholder", node, index, field)
        _check_slots(where, node, index, str(value), slots, field)
        frames.append(str(value))
    return tuple(frames)


def _suites(where: _Where, root: Path, doc: Mapping[str, Any]) -> dict[str, str]:
    """Suites named in pack.yaml, else the default ``suites/<tier>.jsonl`` files that exist."""
    suites: dict[str, str] = {}
    if "suites" in doc:
        node = doc["suites"]
        if not isinstance(node, Mapping):
            raise where.error("must be a mapping of tier -> JSONL path", doc, "suites", "suites")
        for tier, rel in node.items():
            if tier not in TIERS:
                raise where.error(f"unknown tier; expected one of {', '.join(TIERS)}", node, tier, f"suites.{tier}")
            if not isinstance(rel, str):
                raise where.error("must be a path to a JSONL file", node, tier, f"suites.{tier}")
            suites[str(tier)] = str(_pack_file(where, root, rel, node, tier, f"suites.{tier}"))
        return suites
    for tier in TIERS:
        rel = f"suites/{tier}.jsonl"
        if os.path.lexists(root / rel):  # there but unusable (a folder, a link out): say so
            path = pack_path(root, rel)
            if isinstance(path, str):
                raise ConfigError(f"default suite {path}", file=str(root / rel), field=f"suites.{tier}")
            suites[tier] = str(path)
    return suites


def _data_files(where: _Where, root: Path, doc: Mapping[str, Any]) -> tuple[str, ...]:
    if "data" not in doc:
        return ()
    node = doc["data"]
    if isinstance(node, str):
        node = [node]
    if not isinstance(node, list):
        raise where.error("must be a list of data file paths", doc, "data", "data")
    files: list[str] = []
    for index, rel in enumerate(node):
        field = f"data[{index}]"
        if not isinstance(rel, str):
            raise where.error("must be a path", node, index, field)
        if any(c in rel for c in "*?["):
            if os.path.isabs(rel) or "\0" in rel:
                raise where.error(f"{rel!r} is absolute; paths in a pack are relative to the pack folder", node, index, field)
            try:
                found = sorted(root.glob(rel))
            except (ValueError, OSError, NotImplementedError) as error:
                raise where.error(f"{rel!r} is not a usable glob ({error})", node, index, field) from None
            if not found:
                raise where.error(f"file {rel!r} not found in the pack folder", node, index, field)
            matches = [_pack_file(where, root, str(p.relative_to(root)), node, index, field) for p in found]
        else:
            matches = [_pack_file(where, root, rel, node, index, field)]
        for path in matches:
            if not path.name.endswith(_DATA_SUFFIXES):
                raise where.error(f"{path.name!r} is not a .jsonl, .csv or .parquet file", node, index, field)
            files.append(str(path))
    return tuple(files)
