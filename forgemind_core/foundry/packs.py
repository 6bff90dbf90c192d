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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs.errors import ConfigError
from forgemind_hookspecs.records import TIERS, PromptTemplate, TaskPack

from forgemind_core.foundry import packextras as extras
from forgemind_core.foundry.packyaml import (
    MAX_PACK_YAML_BYTES,
    Where,
    pack_file,
    pack_path,
    read_yaml,
    source,
)
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
        "scoring",
        "suite_fields",
        "verify",
    }
)
_TEMPLATE_KEYS = frozenset(
    {"id", "category", "prompt", "completion", "instruction", "weight", "strategies", "frames", "python", "function"}
)
_DATA_SUFFIXES = (".jsonl", ".csv", ".parquet")


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
    where = Where(pack_file)
    doc = read_yaml(pack_file)
    if not isinstance(doc, Mapping):
        raise where.error("must be a mapping of pack fields", doc)
    for key in doc:
        if key not in _PACK_KEYS:
            raise where.error(
                f"unknown field; expected one of {', '.join(sorted(_PACK_KEYS))}", doc, key, str(key)
            )

    name = where.text(doc, "name", "name")
    labels, descriptions = _labels(where, doc)
    slots, linked = extras.slots_and_linked(where, root, doc) if "slots" in doc else ({}, {})
    templates = _templates(where, root, doc, labels, slots, linked) if "templates" in doc else ()
    frames, kinds = _frames(where, root, doc, slots, linked) if "frames" in doc else ((), ())
    _check_frame_kinds(where, root, doc, templates, kinds)
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
        linked=linked,
        frame_kinds=kinds if any(kinds) else (),
        scoring=extras.scoring(where, doc),
        suite_fields=extras.suite_fields(where, doc),
        verify=extras.verify(where, doc),
    )


def _label_weights(where: Where, doc: Mapping[str, Any], labels: Sequence[str]) -> dict[str, float]:
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


def _labels(where: Where, doc: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, str]]:
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


def _templates(
    where: Where,
    root: Path,
    doc: Mapping[str, Any],
    labels: tuple[str, ...],
    slots: Mapping[str, tuple[str, ...]],
    linked: Mapping[str, Any],
) -> tuple[PromptTemplate, ...]:
    node, where = source(where, root, doc, "templates")
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
        python = ("", "")
        if "python" in item:
            python = extras.python_entry(where, root, item, base)
            if "prompt" in item or "completion" in item:
                raise where.error("a python: entry writes its own rows; it has no prompt or completion",
                                  item, "python", f"{base}.python")
        elif "function" in item:
            raise where.error("only a python: entry names a function", item, "function", f"{base}.function")
        template_id = python[1] or where.text(item, "id", f"{base}.id")
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
        prompt = where.text(item, "prompt", f"{base}.prompt", default="" if python[0] else None)
        completion = where.text(item, "completion", f"{base}.completion", default="")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise where.error("must be a number >= 0", item, "weight", f"{base}.weight")
        strategies = item.get("strategies", [])
        if isinstance(strategies, str):
            strategies = [strategies]
        if not isinstance(strategies, list) or not all(isinstance(s, str) for s in strategies):
            raise where.error("must be a list of strategy names", item, "strategies", f"{base}.strategies")
        kinds = item.get("frames", [])
        if isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds):
            raise where.error("must be a list of frame kinds", item, "frames", f"{base}.frames")
        extras.check_placeholders(where, item, "prompt", prompt, slots, linked, f"{base}.prompt")
        if completion:
            extras.check_placeholders(where, item, "completion", completion, slots, linked, f"{base}.completion")
        templates.append(
            PromptTemplate(
                id=template_id,
                category=category,
                prompt=prompt,
                completion=completion,
                instruction=where.text(item, "instruction", f"{base}.instruction", default=""),
                weight=float(weight),
                strategies=tuple(str(s) for s in strategies),
                frames=tuple(str(k) for k in kinds),
                python=python[0],
            )
        )
    return tuple(templates)


def _frames(
    where: Where, root: Path, doc: Mapping[str, Any], slots: Mapping[str, tuple[str, ...]], linked: Mapping[str, Any]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The frames' texts and kinds ("" for a frame without one)."""
    where, frames = extras.frames_with_kinds(where, root, doc)
    for index, (text, _, node, key) in enumerate(frames):
        extras.check_placeholders(where, node, key, text, slots, linked, f"frames[{index}]")
    return tuple(f[0] for f in frames), tuple(f[1] for f in frames)


def _check_frame_kinds(
    where: Where, root: Path, doc: Mapping[str, Any], templates: Sequence[PromptTemplate], kinds: Sequence[str]
) -> None:
    """A template's ``frames`` must name kinds some frame has."""
    known = {k for k in kinds if k}
    for index, template in enumerate(templates):
        missing = [k for k in template.frames if k not in known]
        if missing:
            node, at = source(where, root, doc, "templates")
            raise at.error(
                f"no frame has kind {missing[0]!r} (frame kinds: {', '.join(sorted(known)) or 'none'})",
                node[index] if isinstance(node, list) else node, "frames", f"templates[{index}].frames",
            )


def _suites(where: Where, root: Path, doc: Mapping[str, Any]) -> dict[str, str]:
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
            suites[str(tier)] = str(pack_file(where, root, rel, node, tier, f"suites.{tier}"))
        return suites
    for tier in TIERS:
        rel = f"suites/{tier}.jsonl"
        if os.path.lexists(root / rel):  # there but unusable (a folder, a link out): say so
            path = pack_path(root, rel)
            if isinstance(path, str):
                raise ConfigError(f"default suite {path}", file=str(root / rel), field=f"suites.{tier}")
            suites[tier] = str(path)
    return suites


def _data_files(where: Where, root: Path, doc: Mapping[str, Any]) -> tuple[str, ...]:
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
            matches = [pack_file(where, root, str(p.relative_to(root)), node, index, field) for p in found]
        else:
            matches = [pack_file(where, root, rel, node, index, field)]
        for path in matches:
            if not path.name.endswith(_DATA_SUFFIXES):
                raise where.error(f"{path.name!r} is not a .jsonl, .csv or .parquet file", node, index, field)
            files.append(str(path))
    return tuple(files)
