"""Reading a task pack's YAML files: values with their line numbers, errors that name file, line
and field, and the one rule for every path a pack names (relative, inside the pack folder).

Shared by :mod:`forgemind_core.foundry.packs` (pack.yaml, templates, slots, frames) and
:mod:`forgemind_core.foundry.packextras` (linked slots, scoring, verify, generator functions).
ruamel.yaml is imported inside the functions that need it, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgemind_hookspecs.dataformats import read_user_bytes
from forgemind_hookspecs.errors import ConfigError

__all__ = ["MAX_PACK_YAML_BYTES", "Where", "line_of", "pack_file", "pack_path", "read_yaml", "source"]

#: The largest YAML file of a pack read (pack.yaml, slots, templates, frames).
MAX_PACK_YAML_BYTES = 16 * 2**20


# --------------------------------------------------------------------------------------------
# YAML helpers: values with their line numbers.
# --------------------------------------------------------------------------------------------


def read_yaml(path: Path) -> Any:
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


def line_of(node: Any, key: Any = None) -> int | None:
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


class Where:
    """A file plus the node being read, to raise errors that point at a line."""

    def __init__(self, file: Path) -> None:
        self.file = str(file)

    def error(self, message: str, node: Any = None, key: Any = None, field: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=line_of(node, key), field=field)

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


def pack_file(where: Where, root: Path, rel: str, node: Any, key: Any, field: str) -> Path:
    path = pack_path(root, rel)
    if isinstance(path, str):
        raise where.error(path, node, key, field)
    return path


def source(where: Where, root: Path, node: Any, key: str) -> tuple[Any, Where]:
    """A pack.yaml section given inline, or as a path to a YAML file relative to the pack."""
    value = node[key]
    if isinstance(value, str):
        path = pack_file(where, root, value, node, key, key)
        return read_yaml(path), Where(path)
    return value, where
