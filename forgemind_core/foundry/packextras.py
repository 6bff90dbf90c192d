"""The parts of pack.yaml added for tasks of any shape (issue 20), read with file:line errors:

- ``slots``: plain lists of texts, **record slots** (a list of mappings: one draw, several
  fields) and **keyed slots** (``{by: other.field, table: {key: [values]}}``);
- placeholders with fields and **filters** (``{country.iso2|lower}``, ``{n|words}``), checked
  against the slots they name;
- ``frames`` that carry a ``kind`` (templates name the kinds they fit);
- ``scoring`` (the scorer of suite cases without ``checker``, per pack and per tier),
  ``suite_fields`` (what unknown fields of a suite row do) and ``verify`` (a ``regex`` or a
  ``checker`` every generated answer must pass, counted by ``forge pack check``);
- a template's ``python:`` generator function, a module file inside the pack (checked here by
  parsing it, never by running it: only generation runs a pack's code).

The format is documented in ``docs/task-packs.md``.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgemind_hookspecs.records import TIERS

from forgemind_core.foundry.grammar import FILTERS, placeholders
from forgemind_core.foundry.packyaml import Where, pack_file, source

__all__ = [
    "SUITE_FIELD_MODES",
    "check_placeholders",
    "frames_with_kinds",
    "python_entry",
    "record_fields",
    "scoring",
    "slots_and_linked",
    "suite_fields",
    "verify",
]

#: What a suite row's unknown fields do: refused (the default), dropped, or kept in ``meta``.
SUITE_FIELD_MODES = ("error", "ignore", "keep")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED = ("input", "head", "body")


def _value_text(where: Where, node: Any, key: Any, field: str) -> str:
    value = node[key]
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise where.error("every value must be text", node, key, field)
    return str(value)


def _records(where: Where, values: list[Any], field: str) -> list[Any]:
    """A list of texts, or of records (mappings of field -> text) with the same fields."""
    if all(not isinstance(v, Mapping) for v in values):
        return [_value_text(where, values, i, f"{field}[{i}]") for i in range(len(values))]
    first: set[str] | None = None
    records: list[Any] = []
    for index, item in enumerate(values):
        at = f"{field}[{index}]"
        if not isinstance(item, Mapping) or not item:
            raise where.error("a record slot lists only records (mappings of field -> text)", values, index, at)
        for key in item:
            if not isinstance(key, str) or not _IDENT.fullmatch(key):
                raise where.error("a record field name must be an identifier", item, key, f"{at}.{key}")
        fields = set(item)
        if first is None:
            first = fields
        elif fields != first:
            missing = sorted(first ^ fields)
            raise where.error(f"every record needs the same fields; differs in {', '.join(missing)}", values, index, at)
        records.append({str(k): _value_text(where, item, k, f"{at}.{k}") for k in item})
    return records


def slots_and_linked(where: Where, root: Path, doc: Mapping[str, Any]) -> tuple[dict[str, tuple[str, ...]], dict[str, Any]]:
    """``slots``: the plain slots (name -> texts) and the linked ones (name -> ``{"values": records}``
    or ``{"by": "slot.field", "table": {key: values}}``)."""
    node, where = source(where, root, doc, "slots")
    if not isinstance(node, Mapping):
        raise where.error("slots must be a mapping of slot name -> list of values", node, None, "slots")
    plain: dict[str, tuple[str, ...]] = {}
    linked: dict[str, Any] = {}
    for key, values in node.items():
        field = f"slots.{key}"
        if not isinstance(key, str) or not _IDENT.fullmatch(key):
            raise where.error("a slot name must be an identifier", node, key, field)
        if key in _RESERVED:
            raise where.error(f"{key!r} is reserved and cannot be a slot name", node, key, field)
        if isinstance(values, Mapping):
            linked[key] = _keyed(where, node, key, values, field)
            continue
        if not isinstance(values, list) or not values:
            raise where.error("must be a non-empty list of values (or {by: slot, table: ...})", node, key, field)
        parsed = _records(where, values, field)
        if isinstance(parsed[0], dict):
            linked[key] = {"values": tuple(parsed)}
        else:
            plain[key] = tuple(parsed)
    for name, spec in linked.items():
        if "by" in spec:
            _check_key(where, node, name, spec, plain, linked)
    return plain, linked


def _keyed(where: Where, node: Any, key: str, values: Mapping[str, Any], field: str) -> dict[str, Any]:
    unknown = sorted(set(values) - {"by", "table"})
    if unknown or "by" not in values or "table" not in values:
        raise where.error("a keyed slot is {by: <slot or slot.field>, table: {key: [values]}}", node, key, field)
    by = values["by"]
    if not isinstance(by, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)?", by):
        raise where.error("must name a slot or a record field (country.region)", values, "by", f"{field}.by")
    table = values["table"]
    if not isinstance(table, Mapping) or not table:
        raise where.error("must be a mapping of key -> list of values", values, "table", f"{field}.table")
    rows: dict[str, tuple[Any, ...]] = {}
    for k, items in table.items():
        at = f"{field}.table.{k}"
        if not isinstance(items, list) or not items:
            raise where.error("must be a non-empty list of values", table, k, at)
        rows[str(k)] = tuple(_records(where, items, at))
    return {"by": by, "table": rows}


def _check_key(where: Where, node: Any, name: str, spec: Mapping[str, Any], plain: Mapping[str, Any],
               linked: Mapping[str, Any]) -> None:
    """The ``by`` slot must exist; where its values are plain texts, each needs a table entry."""
    slot, _, attr = str(spec["by"]).partition(".")
    field = f"slots.{name}.by"
    if slot == name:
        raise where.error("a keyed slot cannot be keyed by itself", node, name, field)
    if slot in plain:
        keys = [] if attr else list(plain[slot])
    elif slot in linked and "values" in linked[slot]:
        if not attr or attr not in linked[slot]["values"][0]:
            raise where.error(f"{spec['by']!r}: name a field of record slot {slot!r} "
                              f"({', '.join(linked[slot]['values'][0])})", node, name, field)
        keys = [r[attr] for r in linked[slot]["values"]]
    elif slot in linked:
        keys = []
    else:
        raise where.error(f"keyed by unknown slot {slot!r}", node, name, field)
    for key in keys:
        if "{" not in key and key not in spec["table"]:
            raise where.error(f"the table has no entry for {spec['by']} = {key!r}", node, name, field)


def record_fields(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields one draw of a linked slot yields (none for a keyed slot of plain texts)."""
    values = spec["values"] if "values" in spec else next(iter(spec["table"].values()))
    return tuple(values[0]) if isinstance(values[0], Mapping) else ()


def check_placeholders(where: Where, node: Any, key: Any, text: str, slots: Mapping[str, Any],
                       linked: Mapping[str, Any], field: str) -> None:
    """Every placeholder meant as a slot must exist, name a field its slot has, and use known
    filters. Placeholders inside Python f-strings look the same, so only names that are *almost*
    slots are reported as unknown: differing from a slot name by case or a trailing ``s``."""
    names = {**dict.fromkeys(slots), **dict.fromkeys(linked)}
    lowered = {name.lower().rstrip("s"): name for name in names}
    for name, attr, filters in placeholders(text):
        if name in linked:
            fields = record_fields(linked[name])
            if fields and attr not in fields:
                raise where.error(f"{{{name}}} is a record slot: name one of its fields "
                                  f"({', '.join('{' + name + '.' + f + '}' for f in fields)})", node, key, field)
            if not fields and attr is not None:
                raise where.error(f"slot {name!r} has no fields; write {{{name}}}", node, key, field)
        elif name not in slots:
            near = lowered.get(name.lower().rstrip("s"))
            if near is not None and name not in _RESERVED:
                raise where.error(f"unknown slot {{{name}}}; did you mean {{{near}}}?", node, key, field)
            continue
        elif attr is not None:
            continue  # `{user.name}` on a plain slot: code, left as written
        for spec in filters:
            filter_name, _, arg = spec.partition(":")
            if filter_name not in FILTERS:
                raise where.error(f"unknown filter {filter_name!r}; expected one of {', '.join(FILTERS)}",
                                  node, key, field)
            if filter_name == "pad" and not arg.isdigit():
                raise where.error("filter 'pad' needs a width, e.g. {n|pad:3}", node, key, field)


def frames_with_kinds(where: Where, root: Path, doc: Mapping[str, Any]) -> tuple[Where, list[tuple[str, str, Any, Any]]]:
    """``frames``: texts, or ``{kind: ..., text: ...}``. Returns ``(text, kind, node, key)`` per frame."""
    node, where = source(where, root, doc, "frames")
    if not isinstance(node, list):
        raise where.error("frames must be a list of texts containing {body}", node, None, "frames")
    frames: list[tuple[str, str, Any, Any]] = []
    for index, value in enumerate(node):
        at = f"frames[{index}]"
        kind = ""
        owner: Any = node
        key: Any = index
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"kind", "text"})
            if unknown or "text" not in value:
                raise where.error("a frame is a text, or {kind: <name>, text: <text with {body}>}", node, index, at)
            kind = where.text(value, "kind", f"{at}.kind", default="")
            owner, key, value = value, "text", value["text"]
        if not isinstance(value, str):
            raise where.error("must be text", owner, key, at)
        if "{body}" not in value:
            raise where.error("must contain the {body} placeholder", owner, key, at)
        frames.append((str(value), kind, owner, key))
    return where, frames


def scoring(where: Where, doc: Mapping[str, Any]) -> dict[str, str]:
    """``scoring: {default: exact_match, adversarial: ...}``: scorer of cases without ``checker``."""
    if "scoring" not in doc:
        return {}
    node = doc["scoring"]
    if not isinstance(node, Mapping) or not node:
        raise where.error("must be a mapping, e.g. {default: exact_match}", doc, "scoring", "scoring")
    out: dict[str, str] = {}
    for key, value in node.items():
        if key != "default" and key not in TIERS:
            raise where.error(f"unknown key; expected default or a tier ({', '.join(TIERS)})", node, key, f"scoring.{key}")
        if not isinstance(value, str) or not value.strip():
            raise where.error("must be a scorer name", node, key, f"scoring.{key}")
        out[str(key)] = value.strip()
    return out


def suite_fields(where: Where, doc: Mapping[str, Any]) -> str:
    value = doc.get("suite_fields", "error")
    if value not in SUITE_FIELD_MODES:
        raise where.error(f"must be one of {', '.join(SUITE_FIELD_MODES)}", doc, "suite_fields", "suite_fields")
    return str(value)


def verify(where: Where, doc: Mapping[str, Any]) -> dict[str, str]:
    """``verify: {regex: ...}`` or ``verify: {checker: <scorer>}`` for generated answers."""
    if "verify" not in doc:
        return {}
    node = doc["verify"]
    if not isinstance(node, Mapping) or not node or set(node) - {"regex", "checker"}:
        raise where.error("must be {regex: <pattern>} or {checker: <scorer name>}", doc, "verify", "verify")
    out: dict[str, str] = {}
    for key, value in node.items():
        if not isinstance(value, str) or not value:
            raise where.error("must be text", node, key, f"verify.{key}")
        if key == "regex":
            try:
                re.compile(value)
            except re.error as error:
                raise where.error(f"not a valid regular expression ({error})", node, key, "verify.regex") from None
        out[str(key)] = str(value)
    return out


def python_entry(where: Where, root: Path, item: Mapping[str, Any], base: str) -> tuple[str, str]:
    """A template's ``python: file.py`` (``function:`` defaults to ``examples``): the resolved
    ``path:function`` and its lineage id ``file.py:function@<hash of the file>``. The file is
    parsed, not run: it must define ``function(rng, n, strategy)`` at its top level."""
    rel = where.text(item, "python", f"{base}.python")
    function = where.text(item, "function", f"{base}.function", default="examples")
    if not rel.endswith(".py"):
        raise where.error("must name a .py file inside the pack", item, "python", f"{base}.python")
    path = pack_file(where, root, rel, item, "python", f"{base}.python")
    raw = path.read_bytes()
    try:
        tree = ast.parse(raw, filename=str(path))
    except (SyntaxError, ValueError) as error:
        raise where.error(f"{rel} is not valid Python ({getattr(error, 'msg', error)})", item, "python",
                          f"{base}.python") from None
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    if not found:
        raise where.error(f"{rel} defines no top-level function {function!r}", item, "python", f"{base}.python")
    params = found[-1].args
    if len(params.posonlyargs) + len(params.args) < 3 and params.vararg is None:
        raise where.error(f"{function}() must take (rng, n, strategy)", item, "python", f"{base}.python")
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return f"{path}:{function}", f"{rel}:{function}@{digest}"
