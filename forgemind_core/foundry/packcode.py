"""A task pack's own generator function: the escape hatch for data the slot grammar cannot say.

A template entry ``python: gen.py`` (``function:`` defaults to ``examples``) names a module file
inside the pack folder. **Generating data from such a pack runs the pack's code** with the rights
of the user running ForgeMind: use only packs you trust. The module is loaded from its resolved
path inside the pack (never from ``sys.path``), once per process, and called as
``examples(rng, n, strategy) -> rows`` with a ``random.Random`` seeded from the generator's own
seeded stream, so the output is deterministic for a seed like template data. Each row is a
mapping with ``input`` (required text), ``completion`` (text; default ``" " + category``) and
``category`` (optional; if given, the entry's ``category``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from forgemind_hookspecs.errors import ConfigError, DataError

__all__ = ["PackFunction", "load_function", "rows_from"]

#: ``examples(rng, n, strategy) -> rows``.
PackFunction = Callable[[random.Random, int, str], Any]
_LOADED: dict[str, PackFunction] = {}


def load_function(target: str) -> PackFunction:
    """The function named by ``"/abs/path/gen.py:function"`` (a template's ``python``)."""
    path, _, name = target.rpartition(":")
    try:
        code = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the pack's generator module ({error.strerror})", file=path, field="python") from None
    module_name = "forgemind_pack_" + hashlib.sha256(path.encode() + b"\0" + code).hexdigest()[:16]
    key = f"{module_name}:{name}"  # the same file changed (a pack being written): load it again
    if key in _LOADED:
        return _LOADED[key]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError("cannot load the pack's generator module", file=path, field="python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the pack's own code: report it as the pack's problem
        sys.modules.pop(module_name, None)
        raise ConfigError(f"the pack's generator module failed to load: {type(error).__name__}: {error}",
                          file=path, field="python") from None
    found: Any = getattr(module, name, None)
    if not callable(found):
        raise ConfigError(f"defines no function {name!r}", file=path, field="python")
    function: PackFunction = found
    _LOADED[key] = function
    return function


def rows_from(target: str, rng: random.Random, n: int, strategy: str, *, category: str) -> list[tuple[str, str]]:
    """Call the pack's function and check its rows: ``(input, completion)`` each."""
    path, _, name = target.rpartition(":")
    try:
        rows = load_function(target)(rng, n, strategy)
        rows = list(rows)
    except ConfigError:
        raise
    except Exception as error:
        raise DataError(f"{name}() raised {type(error).__name__}: {error}", file=path, field="python") from None
    out: list[tuple[str, str]] = []
    for index, row in enumerate(rows):
        def bad(message: str, index: int = index) -> DataError:
            return DataError(f"{name}() row {index}: {message}", file=path, field="python")

        if not isinstance(row, Mapping):
            raise bad("must be a mapping with input, completion, category")
        text, completion, cat = row.get("input"), row.get("completion"), row.get("category", category)
        if not isinstance(text, str) or not text.strip():
            raise bad("input must be non-empty text")
        if completion is not None and not isinstance(completion, str):
            raise bad("completion must be text")
        if cat != category:
            raise bad(f"category {cat!r} differs from the entry's category {category!r}")
        out.append((text, completion or f" {category}"))
    return out
