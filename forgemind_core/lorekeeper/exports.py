"""Exports: registry data as files (``forge export-data``) and model bundles (``forge export``).

The kernel's part of a model bundle is what it knows from the registry and the run folder:
``forge.yaml`` (the goal with the recorded plans pinned: ``Forge.config``, see
:func:`forgemind_core.lorekeeper.runs.config_yaml`) and the model card ``README.md`` (Hugging Face
model-card front matter: license, tags, base_model, datasets, model-index with the tier scores,
library_name, pipeline_tag; a body with intended use, data sources and the lineage summary). The
model itself (safetensors, tokenizer, chat template, Modelfile, GGUF) is written by an exporter
backend (``forgemind_register_exporters``) chosen by ``--target``; the kernel hands it the metadata
and writes its own files after.

What is read of the registry goes through the :class:`~forgemind_hookspecs.backends.Registry`
contract (``resolve``, ``rows_of``, ``dataset``, ``checkpoint``, ``eval_reports``, ``lineage``):
no SQL here, so any registry backend serves ``forge export-data``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from forgemind_hookspecs import (
    Checkpoint,
    ForgeError,
    Goal,
    Registry,
    StageContext,
    TaskPack,
    UserError,
    from_dict,
    to_dict,
)
from forgemind_hookspecs.presets import PRESETS, row_of
from forgemind_hookspecs.snapshots import read_snapshot

from forgemind_core.base.fsio import dumps_line, write_json, write_text
from forgemind_core.base.protocols import KernelHandle
from forgemind_core.lorekeeper.checkpoints import resolve_checkpoint
from forgemind_core.lorekeeper.runs import goal_of

__all__ = ["DATA_FORMATS", "METADATA_KEYS", "ExportKernel", "export_bundle", "export_data", "model_card"]

#: What ``forge export-data --format`` writes: tables, or a dataset in one of the field's presets.
DATA_FORMATS: tuple[str, ...] = ("parquet", "jsonl", *PRESETS)

#: What a user may set once per goal (``export:`` section) or per export (CLI / API).
METADATA_KEYS: tuple[str, ...] = ("author", "license", "version", "tags", "language", "description", "name")


class ExportKernel(KernelHandle, Protocol):
    """What the exports use of the ``Forge`` kernel, besides the registry and the home."""

    def load_pack(self, goal: Goal) -> TaskPack | None:
        """The goal's task pack, if it names one."""
        ...

    def context(self, **fields: Any) -> StageContext:
        """A stage context rooted in the home, for work outside a run."""
        ...

    def checkpoints(self) -> list[dict[str, Any]]:
        """Every checkpoint of the home, recorded by runs or made outside one."""
        ...

    def config(self, run_id: str, iteration: int | None = None) -> str:
        """The goal file (YAML) that reproduces a run or one of its iterations."""
        ...


def _write_rows(rows: Sequence[Mapping[str, Any]], path: Path, fmt: str) -> dict[str, Any]:
    if fmt != "parquet":
        write_text(path, "".join(dumps_line(row) for row in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(pa.Table.from_pylist([dict(r) for r in rows]), tmp)
        os.replace(tmp, path)
    return {"path": str(path), "rows": len(rows)}


def export_data(forge: KernelHandle, node_id: str, out: str | os.PathLike[str], *,
                format: str = "parquet") -> dict[str, Any]:
    """Write a dataset's examples, a checkpoint's evaluation results, or a run's history as
    Parquet or JSON Lines files under ``out`` (one file per table).

    - dataset: ``examples.<ext>``, every member from its snapshot (prompt, completion, messages
      as a list of ``{role, content}``, category, source as columns; meta an object in JSON
      Lines, JSON text in Parquet, whose columns need one type);
    - dataset with ``format`` ``alpaca``, ``sharegpt`` or ``messages``: ``examples.jsonl`` in that
      preset (:func:`forgemind_hookspecs.presets.row_of`: lists as lists, plus ``id``), which the
      ``files`` generator and ``forge train --data`` read back;
    - checkpoint: ``eval_results.<ext>`` (every scored case of every tier) and ``eval_reports.<ext>``;
    - run: one file per registry table, filtered to the run (see docs/registry.md).

    The registry tables' JSON columns stay JSON text, so a file reads back with the registry's
    rows unchanged.

    :raises UserError: an unknown format, a preset for something that is not a dataset, or no
        run, dataset or checkpoint has the id (or it is an ambiguous prefix).
    """
    if format not in DATA_FORMATS:
        raise UserError(f"unknown format {format!r}; choose {', '.join(DATA_FORMATS)}", field="format")
    registry = forge.registry()
    found = registry.resolve(node_id, ("run", "dataset", "checkpoint"))
    if found is None:
        raise UserError(f"no run, dataset or checkpoint has the id {node_id!r}", field="id")
    kind, full = found
    if format in PRESETS and kind != "dataset":
        raise UserError(f"--format {format} writes a dataset's examples, and {node_id!r} is a {kind}; "
                        "give a dataset id (forge lineage shows them) or choose parquet or jsonl", field="format")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "dataset":
        tables = {"examples": _dataset_rows(registry, Path(forge.home), full, format)}
    else:
        tables = registry.rows_of(kind, full)
    ext = "parquet" if format == "parquet" else "jsonl"
    files = [_write_rows(rows, folder / f"{name}.{ext}", format) for name, rows in tables.items()]
    return {"id": full, "kind": kind, "format": format, "files": files}


def _dataset_rows(registry: Registry, home: Path, dataset_id: str, fmt: str) -> list[dict[str, Any]]:
    record = registry.dataset(dataset_id) or {}
    recorded = str(record.get("path") or "")
    path = Path(recorded)
    if not path.is_file() and not path.is_absolute():
        path = home / path
    if not recorded or not path.is_file():
        raise ForgeError(f"the snapshot of dataset {dataset_id} is missing: {recorded}")
    rows = []
    for example in read_snapshot(path):
        if fmt in PRESETS:
            rows.append({"id": example.id, **row_of(example, fmt)})
            continue
        data = to_dict(example)
        source = data.pop("source") or {}
        meta = data["meta"]
        rows.append({
            "id": data["id"], "prompt": data["prompt"], "completion": data["completion"],
            "messages": [{"role": m["role"], "content": m["content"]} for m in data["messages"]],
            "category": data["category"],
            **{f"source_{k}": v for k, v in source.items()},
            "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True) if fmt == "parquet" else meta,
        })
    return rows


# --------------------------------------------------------------------------------------------
# Model bundles: forge export CHECKPOINT --target hf|ollama|gguf --out DIR
# --------------------------------------------------------------------------------------------


def _metadata(goal: Goal | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """The goal's ``export`` section overridden by what this export sets; tags add up."""
    from_goal = dict(getattr(goal, "export", None) or {}) if goal is not None else {}
    for source, data in (("the goal's export section", from_goal), ("the export", given)):
        unknown = sorted(set(data) - set(METADATA_KEYS))
        if unknown:
            raise UserError(f"{source} has unknown key {unknown[0]!r}; known: {', '.join(METADATA_KEYS)}",
                            field=f"export.{unknown[0]}")
    meta = {**from_goal, **{k: v for k, v in given.items() if v not in (None, "", [], ())}}
    tags = [*(from_goal.get("tags") or []), *(given.get("tags") or [])]
    meta["tags"] = list(dict.fromkeys(str(t) for t in tags))
    return meta


def _yaml(data: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


def model_card(
    checkpoint: Checkpoint,
    *,
    meta: Mapping[str, Any],
    goal: Goal | None,
    run_id: str | None,
    iteration: int | None,
    reports: Sequence[Mapping[str, Any]],
    lineage: Mapping[str, Any],
    library_name: str,
    target: str,
) -> str:
    """``README.md`` with Hugging Face model-card front matter and a body stating intended use,
    evaluation, data sources and the lineage summary."""
    name = str(meta.get("name") or (goal.name if goal is not None else checkpoint.id))
    metric = goal.success.metric if goal is not None else "accuracy"
    datasets = [d["id"] for d in lineage.get("datasets") or []]
    task = goal.task if goal is not None else ""
    front: dict[str, Any] = {
        "license": str(meta.get("license") or "other"),
        "library_name": library_name,
        "pipeline_tag": "text-generation",
        "base_model": checkpoint.base_model,
        "tags": ["forgemind", *(f"forgemind-{goal.name}" for _ in [0] if goal is not None), *meta.get("tags", [])],
        "datasets": [f"forgemind/{d}" for d in datasets],
        "metrics": [metric],
    }
    if meta.get("language"):
        front["language"] = meta["language"]
    if reports:
        front["model-index"] = [{
            "name": name,
            "results": [
                {
                    "task": {"type": "text-generation", "name": task or "text-generation"},
                    "dataset": {"name": f"{goal.name if goal else name} {r['tier']} suite", "type": f"forgemind/{r['tier']}",
                                "split": r["tier"]},
                    "metrics": [{"type": metric, "value": round(float((r.get("metrics") or {}).get(metric, 0.0)), 4),
                                 "name": f"{r['tier']} {metric}"}],
                }
                for r in reports
            ],
        }]
    body = [f"# {name}", ""]
    if meta.get("description"):
        body += [str(meta["description"]), ""]
    body += [
        f"Made by [ForgeMind](https://github.com/forgemind) from checkpoint `{checkpoint.id}`"
        + (f" (run `{run_id}`, iteration {iteration})" if run_id else "") + ".",
        "",
        "| | |", "|---|---|",
        f"| author | {meta.get('author') or '-'} |",
        f"| version | {meta.get('version') or '-'} |",
        f"| licence | {front['license']} |",
        f"| method | {checkpoint.method} ({checkpoint.kind}) |",
        f"| base model | `{checkpoint.base_model}` |",
        f"| bundle | `{target}` |",
        "",
        "## Intended use",
        "",
        (f"{task}." if task and not task.endswith(".") else task) or "See forge.yaml.",
        "",
    ]
    if goal is not None:
        s = goal.success
        body += [
            f"It was trained until {s.tier} {s.metric} >= {s.threshold:.0%} with canary >= {s.canary_min:.0%} and "
            f"adversarial >= {s.adversarial_min:.0%} (or a limit stopped it). Use it for this task only: it was "
            "neither trained nor evaluated for anything else.",
            "",
        ]
    if reports:
        body += ["## Evaluation", "", f"| tier | {metric} | cases | per category |", "|---|---|---|---|"]
        for r in reports:
            m = r.get("metrics") or {}
            cats = ", ".join(f"{k} {float(v):.0%}" for k, v in sorted((m.get("per_category") or {}).items()))
            body.append(f"| {r['tier']} | {float(m.get(metric, 0.0)):.1%} | {len(r.get('results') or [])} | {cats} |")
        body.append("")
    body += ["## Data sources", ""]
    for d in lineage.get("datasets") or []:
        body.append(f"- dataset `{d['id']}` ({d.get('n_examples')} examples, run `{d.get('run_id')}`, "
                    f"iteration {d.get('iteration')})")
        for s in (d.get("sources") or [])[:10]:
            body.append(f"  - {s['examples']} from generator `{s.get('generator')}`"
                        + (f", model `{s['model']}`" if s.get("model") else "")
                        + (f", template `{s['prompt_template']}`" if s.get("prompt_template") else ""))
    if not lineage.get("datasets"):
        body.append("- no recorded dataset")
    body += ["", "## Lineage", ""]
    runs = lineage.get("runs") or []
    body.append(f"- runs: {', '.join(f'`{r}`' for r in runs) or '-'}")
    for c in lineage.get("checkpoints") or []:
        body.append(f"- checkpoint `{c['id']}` ({c.get('stage')}, {c.get('method')}, {c.get('kind')}) "
                    f"trained on `{c.get('dataset_id') or '-'}` from `{c.get('parent') or c.get('base_model')}`")
    for p in lineage.get("promotions") or []:
        body.append(f"- promoted to `{p['channel']}` as version {p['version']}")
    body += ["", "`forge lineage " + checkpoint.id + "` shows the whole tree (every example's generator, "
             "model and template).", "", "## Reproduce", "",
             "```bash", "forge run forge.yaml", "```", "",
             "`forge.yaml` is the goal with the recorded plans pinned (the `replay` planner).", ""]
    return "---\n" + _yaml(front) + "---\n\n" + "\n".join(body)


def _unrecorded_checkpoint(forge: ExportKernel, ref: str) -> Checkpoint:
    """A checkpoint no run recorded: a model folder, or the id of one ``forge train`` or
    ``forge pretrain`` made in this home (``Forge.checkpoints``)."""
    if not Path(ref).is_dir():
        rows = [r for r in forge.checkpoints() if str(r["id"]).startswith(ref)]
        if len(rows) != 1:
            why = "several checkpoints start with" if rows else "no checkpoint has the id"
            raise UserError(f"{why} {ref!r} in {forge.home}", field="checkpoint")
        ref = str(rows[0]["path"])
    return resolve_checkpoint(forge, ref)


def export_bundle(
    forge: ExportKernel,
    checkpoint_id: str,
    target: str,
    out: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any],
    options: Mapping[str, Any],
    push: str | None = None,
    private: bool = False,
) -> dict[str, Any]:
    """Write the bundle of ``target`` for a recorded checkpoint into ``out`` (new or empty).

    The bundle is built in a temporary sibling folder and renamed into place, so a crash never
    leaves half a bundle under ``out``. With ``push`` (a Hub repo id) the finished bundle is then
    uploaded by the exporter's ``push`` method (the hf exporter: ``huggingface_hub``, token from
    ``HF_TOKEN``); a failed upload leaves the bundle on disk.
    """
    registry = forge.registry()
    record = registry.checkpoint(checkpoint_id) if (Path(forge.home) / "registry").exists() else None
    if record is not None:
        checkpoint = from_dict(Checkpoint, record["checkpoint"])
        run_id, iteration = record.get("run_id"), record.get("iteration") or None
    else:  # made outside a run (forge train / pretrain, a model folder): no goal, no recorded scores
        checkpoint = _unrecorded_checkpoint(forge, checkpoint_id)
        run_id, iteration = None, None
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not an empty folder; choose another --out", field="out")
    exporter = forge.backend("exporters", target, options, field="target")
    if push is not None and not callable(getattr(exporter, "push", None)):
        raise UserError(f"the {target} exporter cannot push to the Hub; export with --target hf", field="push")
    goal = None
    try:
        goal = goal_of(Path(forge.home), run_id) if run_id else None
    except UserError:
        goal = None
    meta = _metadata(goal, metadata)
    if goal is not None:
        meta.setdefault("name", goal.name)
        runner = goal.evaluate.runner.options
        meta["generation"] = {"temperature": float(runner.get("temperature", 0.0) or 0.0),
                              "max_new_tokens": int(runner.get("max_new_tokens", 64))}
        pack = forge.load_pack(goal)
        if pack is not None:
            meta["prompt_format"] = pack.prompt_format
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        ctx = forge.context(run_id=run_id or "export", stage="export")
        main = Path(exporter.export(checkpoint, tmp, meta, ctx))
        if goal is not None and run_id:
            write_text(tmp / "forge.yaml", forge.config(run_id, iteration))
        library = "peft" if (tmp / "adapter_config.json").is_file() else "transformers"
        if target == "gguf":
            library = "gguf"
        reports = registry.eval_reports(checkpoint.id) if record is not None else []
        lineage = registry.lineage(checkpoint.id) if record is not None else {}
        card = model_card(checkpoint, meta=meta, goal=goal, run_id=run_id, iteration=iteration,
                          reports=reports, lineage=lineage, library_name=library, target=target)
        write_text(tmp / "README.md", card)
        write_json(tmp / "forgemind-export.json", {
            "checkpoint": checkpoint.id, "run_id": run_id, "iteration": iteration, "target": target,
            "options": dict(options), "metadata": meta, "exported": time.time(),
        })
        if out.exists():
            out.rmdir()
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    main = out / main.relative_to(tmp) if main.is_relative_to(tmp) else main
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    result = {"checkpoint_id": checkpoint.id, "target": target, "path": str(main), "out": str(out), "files": files}
    if push is not None:
        ctx = forge.context(run_id=run_id or "export", stage="export")
        result["pushed"] = exporter.push(out, push, ctx, private=private)
    return result
