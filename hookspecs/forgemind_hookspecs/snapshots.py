"""Dataset snapshots: the Parquet files a :class:`~forgemind_hookspecs.records.DatasetRef` points at.

The kernel writes them; trainers, the registry and exporters read them. One row per example,
all columns strings (nullable ``category``), so any Parquet reader can open them:

=============  ==============================================================
column         content
=============  ==============================================================
``id``         the example's content hash
``prompt``     prompt text ('' for chat examples)
``completion`` completion text ('' for chat examples)
``messages``   JSON array of ``{"role", "content"}`` ('[]' when not chat)
``category``   the example's category/label, or null
``source``     JSON of :class:`~forgemind_hookspecs.records.Source`
``meta``       JSON object of free-form metadata
=============  ==============================================================

pyarrow is imported only when a snapshot is read or written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .converter import from_dict, to_dict
from .records import DatasetRef, Example, Message, Source, content_hash

__all__ = ["COLUMNS", "dataset_id", "read_snapshot", "write_snapshot"]

COLUMNS: tuple[str, ...] = ("id", "prompt", "completion", "messages", "category", "source", "meta")


def dataset_id(example_ids: Iterable[str]) -> str:
    """The content id of a dataset: the hash of its sorted example ids."""
    return content_hash(sorted(example_ids))


def _row(example: Example) -> dict[str, Any]:
    return {
        "id": example.id,
        "prompt": example.prompt,
        "completion": example.completion,
        "messages": json.dumps([[m.role, m.content] for m in example.messages], ensure_ascii=False),
        "category": example.category,
        "source": json.dumps(to_dict(example.source), sort_keys=True, ensure_ascii=False),
        "meta": json.dumps(dict(example.meta), sort_keys=True, ensure_ascii=False, default=str),
    }


def write_snapshot(
    examples: Sequence[Example],
    folder: str | os.PathLike[str],
    *,
    parents: Sequence[str] = (),
    stats: dict[str, Any] | None = None,
) -> DatasetRef:
    """Write ``examples`` as ``<folder>/<dataset id>.parquet`` (atomically) and describe it.

    Writing the same examples again reuses the existing file (content-addressed).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [e.id for e in examples]
    did = dataset_id(ids)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{did}.parquet"
    if not path.exists():
        rows = [_row(e) for e in examples]
        table = pa.table({c: [r[c] for r in rows] for c in COLUMNS}, schema=_schema(pa))
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    per_category: dict[str, int] = {}
    for e in examples:
        key = e.category or ""
        per_category[key] = per_category.get(key, 0) + 1
    all_stats = {"per_category": per_category, **(stats or {})}
    return DatasetRef(id=did, path=str(path), n_examples=len(ids), parents=tuple(parents), stats=all_stats)


def _schema(pa: Any) -> Any:
    return pa.schema([(c, pa.string()) for c in COLUMNS])


def read_snapshot(path: str | os.PathLike[str]) -> Iterator[Example]:
    """Yield the examples of a snapshot written by :func:`write_snapshot`, in order."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=list(COLUMNS))
    for row in table.to_pylist():
        messages = tuple(Message(role, content) for role, content in json.loads(row["messages"] or "[]"))
        example = Example(
            prompt=row["prompt"] or "",
            completion=row["completion"] or "",
            messages=messages,
            category=row["category"],
            source=from_dict(Source, json.loads(row["source"])),
            meta=json.loads(row["meta"] or "{}"),
        )
        yield example
