"""The one cattrs converter through which every record is (de)serialised.

Use :func:`to_dict` / :func:`from_dict` for plain structures (JSON, Parquet rows, YAML) and
:func:`to_json` / :func:`from_json` for strings. Never hand-write a record's dict form.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from cattrs.preconf.json import make_converter

__all__ = ["converter", "from_dict", "from_json", "to_dict", "to_json"]

T = TypeVar("T")

#: The shared converter. Tuples become lists, attrs classes dicts; unknown keys are ignored on
#: structure so that records written by a newer version still load.
converter = make_converter()


def to_dict(record: Any) -> Any:
    """Unstructure a record (or a list/dict of records) into JSON-compatible data."""
    return converter.unstructure(record)


def from_dict(cls: type[T], data: Any) -> T:
    """Structure ``data`` into ``cls``; raises cattrs' ``ClassValidationError`` on bad data."""
    return converter.structure(data, cls)


def to_json(record: Any) -> str:
    """Serialise a record to a compact JSON string (keys sorted, UTF-8 kept)."""
    return json.dumps(to_dict(record), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def from_json(cls: type[T], text: str | bytes) -> T:
    """Parse a JSON string made by :func:`to_json` back into ``cls``."""
    return from_dict(cls, json.loads(text))
