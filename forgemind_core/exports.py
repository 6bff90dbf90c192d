"""Exports: registry data as files (``forge export-data``) and model bundles (``forge export``).

The kernel's part of a model bundle is what it knows from the registry and the run folder:
``forge.yaml`` (the goal with the recorded plans pinned, :func:`forgemind_core.forks.config_yaml`)
and the model card ``README.md`` (Hugging Face model-card front matter: license, tags,
base_model, datasets, model-index with the tier scores, library_name, pipeline_tag; a body with
intended use, data sources and the lineage summary). The model itself (safetensors, tokenizer,
chat template, Modelfile, GGUF) is written by an exporter backend (``forgemind_register_exporters``)
chosen by ``--target``; the kernel hands it the metadata and writes its own files after.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs import ForgeError, UserError

__all__ = ["METADATA_KEYS", "export_data"]

#: What a user may set once per goal (``export:`` section) or per export (CLI / API).
METADATA_KEYS: tuple[str, ...] = ("author", "license", "version", "tags", "language", "description", "name")

#: Registry tables written for a run's history, each filtered to the run.
_RUN_TABLES: tuple[str, ...] = (
    "runs", "iterations", "events", "examples", "verdicts", "datasets", "checkpoints", "eval_reports",
    "eval_results", "metrics", "decisions", "promotions",
)


def _q(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _write_rows(rows: Sequence[Mapping[str, Any]], path: Path, fmt: str) -> dict[str, Any]:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if fmt == "jsonl":
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True, default=str) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([dict(r) for r in rows]), tmp)
    os.replace(tmp, path)
    return {"path": str(path), "rows": len(rows)}


def _kind(registry: Any, node_id: str) -> tuple[str, str]:
    """``(kind, full id)`` of a run, dataset or checkpoint id (or unique prefix)."""
    for table, kind in (("runs", "run"), ("datasets", "dataset"), ("checkpoints", "checkpoint")):
        rows = registry.sql(f"SELECT id FROM {table} WHERE id = {_q(node_id)} OR starts_with(id, {_q(node_id)}) "
                            "ORDER BY id = " + _q(node_id) + " DESC LIMIT 2")
        if rows and (rows[0]["id"] == node_id or len(rows) == 1):
            return kind, rows[0]["id"]
        if len(rows) > 1:
            raise UserError(f"the id prefix {node_id!r} is ambiguous; give more characters", field="id")
    raise UserError(f"no run, dataset or checkpoint has the id {node_id!r}", field="id")


def export_data(forge: Any, node_id: str, out: str | os.PathLike[str], *, format: str = "parquet") -> dict[str, Any]:
    """Write a dataset's examples, a checkpoint's evaluation results, or a run's history as
    Parquet or JSON Lines files under ``out`` (one file per table).

    - dataset: ``examples.<ext>``, every member from its snapshot (prompt, completion, messages,
      category, source as columns, meta as JSON text);
    - checkpoint: ``eval_results.<ext>`` (every scored case of every tier) and ``eval_reports.<ext>``;
    - run: one file per registry table, filtered to the run (see docs/registry.md).

    JSON columns stay JSON text, so a file reads back with the registry's rows unchanged.
    """
    if format not in ("parquet", "jsonl"):
        raise UserError(f"unknown format {format!r}; choose parquet or jsonl", field="format")
    registry = forge.registry()
    kind, full = _kind(registry, node_id)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    tables: dict[str, list[dict[str, Any]]] = {}
    if kind == "dataset":
        tables["examples"] = _dataset_rows(registry, full)
    elif kind == "checkpoint":
        for table in ("eval_results", "eval_reports"):
            tables[table] = registry.sql(f"SELECT * FROM {table} WHERE checkpoint_id = {_q(full)} ORDER BY ALL")
    else:
        for table in _RUN_TABLES:
            column = "id" if table == "runs" else "run_id"
            tables[table] = registry.sql(f"SELECT * FROM {table} WHERE {column} = {_q(full)} ORDER BY ALL")
    files = [_write_rows(rows, folder / f"{name}.{format}", format) for name, rows in tables.items()]
    return {"id": full, "kind": kind, "format": format, "files": files}


def _dataset_rows(registry: Any, dataset_id: str) -> list[dict[str, Any]]:
    from forgemind_hookspecs import to_dict
    from forgemind_hookspecs.snapshots import read_snapshot

    row = registry.sql(f"SELECT path FROM datasets WHERE id = {_q(dataset_id)}")[0]
    path = Path(row["path"])
    if not path.is_file() and not path.is_absolute():
        path = Path(registry.home) / path if hasattr(registry, "home") else path
    if not path.is_file():
        raise ForgeError(f"the snapshot of dataset {dataset_id} is missing: {row['path']}")
    rows = []
    for example in read_snapshot(path):
        data = to_dict(example)
        source = data.pop("source") or {}
        rows.append({
            "id": data["id"], "prompt": data["prompt"], "completion": data["completion"],
            "messages": json.dumps(data["messages"], ensure_ascii=False), "category": data["category"],
            **{f"source_{k}": v for k, v in source.items()},
            "meta": json.dumps(data["meta"], ensure_ascii=False, sort_keys=True),
        })
    return rows
