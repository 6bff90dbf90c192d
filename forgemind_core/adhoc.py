"""The Forge and the Trial Grounds outside a run: what ``Forge.pretrain``, ``train``, ``estimate``,
``generate``, ``evaluate``, ``compare`` and ``checkpoints`` do.

These are the operations ``forge pretrain | train | estimate | generate | eval | compare`` offer on
the command line, reachable from Python (and so from the dashboard) through backends chosen by
name. Nothing here imports torch: the backends load what they need when they run.

Outside a run, datasets go to ``<home>/datasets``, fine-tuned checkpoints to
``<home>/checkpoints/<dataset>-<method>`` and pre-trained bases to ``<home>/cache/bases`` — the
same places ``forge train`` and ``forge pretrain`` use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs import (
    Checkpoint,
    DataError,
    DatasetRef,
    Estimate,
    EvalReport,
    PretrainSpec,
    TrainRequest,
    UserError,
)

__all__ = [
    "EventSink",
    "compare",
    "dataset_from_file",
    "estimate",
    "evaluate",
    "generate",
    "list_checkpoints",
    "pretrain",
    "preview_data",
    "train",
    "train_request",
    "validate_data",
]

#: ``sink(kind, payload)``: receives what a backend emits (``metric`` events, notes).
EventSink = Callable[[str, Mapping[str, Any]], None]


def _ctx(forge: Any, stage: str, on_event: EventSink | None, progress: Any = None, **fields: Any) -> Any:
    if on_event is not None:
        fields["emit"] = lambda kind, payload: on_event(kind, dict(payload))
    if progress is not None:
        fields["progress"] = progress
    ctx = forge.context(stage=stage, **fields)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    ctx.cache_dir.mkdir(parents=True, exist_ok=True)
    return ctx


def validate_data(path: str | os.PathLike[str], *, format: str | None = None,
                  columns: Mapping[str, str] | None = None) -> list[DataError]:
    """Every bad row of a data file (or dataset folder, Parquet/Arrow file, ``hub:NAME``; presets:
    docs/foundry.md), one :class:`DataError` each (empty = valid)."""
    from forgemind_hookspecs.presets import is_table_source, validate_source

    if not is_table_source(path) and not Path(path).is_file():
        raise UserError("no such data file", file=str(path))
    return validate_source(path, format=format, columns=dict(columns) if columns else None)


def preview_data(path: str | os.PathLike[str], *, format: str | None = None,
                 columns: Mapping[str, str] | None = None, limit: int = 50) -> dict[str, Any]:
    """What a data file holds, for people: every problem (as :func:`validate_data`) and up to
    ``limit`` of its rows as read (``prompt``, ``completion``, ``messages``, ``category``)."""
    from forgemind_hookspecs.presets import read_data

    problems = validate_data(path, format=format, columns=columns)
    rows: list[dict[str, Any]] = []
    if not problems:
        for example in read_data(path, format=format, columns=dict(columns) if columns else None):
            if len(rows) >= limit:
                break
            rows.append({"prompt": example.prompt, "completion": example.completion,
                         "messages": [{"role": m.role, "content": m.content} for m in example.messages] or None,
                         "category": example.category})
    return {"problems": problems, "rows": rows}


def dataset_from_file(forge: Any, data: str | os.PathLike[str], *, format: str | None = None,
                      columns: Mapping[str, str] | None = None) -> DatasetRef:
    """Snapshot a data file, a dataset folder, a Parquet/Arrow file or ``hub:NAME`` into
    ``<home>/datasets`` (content-addressed: same rows, same id); presets: docs/foundry.md."""
    from forgemind_hookspecs.presets import is_table_source, read_data
    from forgemind_hookspecs.snapshots import write_snapshot

    if not is_table_source(data) and not Path(data).is_file():
        raise UserError("no such data file", file=str(data))
    examples = list(read_data(data, format=format, columns=dict(columns) if columns else None,
                              cache_dir=Path(forge.home) / "cache" / "datasets"))
    if not examples:
        raise UserError("holds no examples", file=str(data))
    return write_snapshot(examples, Path(forge.home) / "datasets")


def pretrain(forge: Any, corpus: str, *, preset: str = "tiny", options: Mapping[str, Any] | None = None,
             trainer: str = "hf", on_event: EventSink | None = None, progress: Any = None) -> Checkpoint:
    """Pre-train a base from scratch on ``corpus`` (a file, folder, glob or ``stdlib``); cached by content."""
    backend = forge.backend("trainers", trainer)
    spec = PretrainSpec(corpus=str(corpus), preset=preset, options=dict(options or {}))
    return backend.pretrain(spec, _ctx(forge, "pretrain", on_event, progress))  # type: ignore[no-any-return]


def train_request(forge: Any, base: str, data: str | os.PathLike[str], *, format: str | None = None,
                  columns: Mapping[str, str] | None = None, method: str = "lora",
                  hyperparameters: Mapping[str, Any] | None = None, out: str | os.PathLike[str] | None = None,
                  seed: int = 0, trainer: str = "hf", stage: str = "train", on_event: EventSink | None = None,
                  progress: Any = None) -> tuple[Any, TrainRequest, Any]:
    """The backend, the :class:`TrainRequest` and the context ``forge train`` would use."""
    if method not in ("full", "lora", "qlora"):
        raise UserError(f"unknown method {method!r}; expected full, lora or qlora", field="method")
    backend = forge.backend("trainers", trainer)
    hyper = dict(hyperparameters or {})
    # refuse unknown names and wrong types before any heavy work
    forge.build_options(forge.backend_info("trainers", trainer), hyper, field="train")
    ctx = _ctx(forge, stage, on_event, progress)
    dataset = dataset_from_file(forge, data, format=format, columns=columns)
    base_ckpt = _base(forge, backend, base, ctx)
    output = str(out) if out else str(Path(forge.home) / "checkpoints" / f"{dataset.id}-{method}")
    request = TrainRequest(base=base_ckpt, dataset=dataset, method=method, output_dir=output,
                           hyperparameters=hyper, seed=seed)
    return backend, request, ctx


def _base(forge: Any, backend: Any, base: str, ctx: Any) -> Checkpoint:
    """A base named by folder, by checkpoint id in the registry, or as the trainer understands it."""
    if base != "pretrain" and not Path(base).exists():
        from forgemind_core.trials.tiers import resolve_checkpoint

        try:
            return resolve_checkpoint(forge, base)
        except UserError:
            pass  # a hub id, say: the trainer decides
        except Exception:  # the registry may be missing or busy: let the trainer try the name
            pass
    elif Path(base).is_dir() and (Path(base) / "manifest.json").is_file():
        from forgemind_core.trials.tiers import resolve_checkpoint

        return resolve_checkpoint(forge, base)
    return backend.load_base(base, ctx)  # type: ignore[no-any-return]


def train(forge: Any, base: str, data: str | os.PathLike[str], **kwargs: Any) -> Checkpoint:
    """Fine-tune ``base`` on a data file (``forge train``); re-running the same request resumes."""
    from forgemind_hookspecs import to_dict

    backend, request, ctx = train_request(forge, base, data, **kwargs)
    checkpoint: Checkpoint = backend.train(request, ctx)
    # the record beside the output, whatever the trainer wrote: `forge checkpoints` lists it and
    # `forge eval OUT` / `forge generate` find it
    out = Path(request.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".checkpoint.json.tmp"
    tmp.write_text(json.dumps(to_dict(checkpoint), indent=1, default=str), encoding="utf-8")
    os.replace(tmp, out / "checkpoint.json")
    return checkpoint


def estimate(forge: Any, base: str, data: str | os.PathLike[str], **kwargs: Any) -> Estimate:
    """Tokens, steps, seconds and cost of a training job (``forge estimate``), from a short calibration."""
    kwargs.pop("out", None)
    backend, request, ctx = train_request(forge, base, data, stage="estimate", **kwargs)
    return backend.estimate(request, ctx)  # type: ignore[no-any-return]


def generate(forge: Any, checkpoint: str | Checkpoint, prompts: Sequence[str], *, runner: str = "hf",
             runner_options: Mapping[str, Any] | None = None, max_new_tokens: int = 64,
             temperature: float = 0.0) -> list[str]:
    """One completion per prompt from ``checkpoint`` (a folder or a registry id): ``forge generate``."""
    from forgemind_core.trials.tiers import resolve_checkpoint

    with _servers(forge) as servers:  # a runner_options server: started here, stopped on return
        backend = servers.backend("runners", runner, runner_options)
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else resolve_checkpoint(forge, str(checkpoint), backend)
        ctx = _ctx(forge, "generate", None)
        return list(backend.generate(ckpt, list(prompts), ctx, max_new_tokens=max_new_tokens, temperature=temperature))


def _servers(forge: Any) -> Any:
    from forgemind_core.base.servers import ServerPool
    from forgemind_core.lorekeeper.served import RegistryModels

    return ServerPool(forge, context=lambda: _ctx(forge, "servers", None), resolver=RegistryModels(forge))


class _EvalSetup:
    def __init__(self, forge: Any, *, pack: str | os.PathLike[str] | None, prompt_format: str | None,
                 runner: str, runner_options: Mapping[str, Any] | None, scorer: str | None,
                 progress: Any = None) -> None:
        if pack is not None and prompt_format is not None:
            raise UserError("give a pack or a prompt format, not both", field="prompt-format")
        self.forge = forge
        self.pack = None
        if pack is not None:
            from forgemind_core.foundry.packs import load_pack

            self.pack = load_pack(Path(pack))
        self.prompt_format = self.pack.prompt_format if self.pack is not None else (prompt_format or "{input}")
        self.scorer_asked = scorer is not None
        self.default_scorer = scorer or ("label_match" if self.pack is not None and self.pack.labels else "exact_match")
        self.servers = _servers(forge)  # closed by the caller once it is done with the runner
        self.runner = self.servers.backend("runners", runner, runner_options, field="runner")
        self.ctx = _ctx(forge, "evaluate", None, progress, pack=self.pack)

    def cases(self, suite: str | os.PathLike[str] | Sequence[Mapping[str, Any]], tier: str) -> list[Any]:
        from forgemind_hookspecs import EvalCase

        from forgemind_core.foundry.packs import load_suite

        if isinstance(suite, (str, os.PathLike)):
            from forgemind_core.foundry.suites import default_checker

            pack = self.pack  # the pack's `scoring` applies unless a scorer was asked for
            return load_suite(Path(suite), tier, labels=pack.labels if pack is not None else (),
                              default=None if self.scorer_asked else default_checker(pack, tier),
                              unknown_fields=pack.suite_fields if pack is not None else "error")
        cases = []
        for i, row in enumerate(suite):
            text = str(row.get("input", "")).strip()
            if not text:
                raise UserError(f"test prompt {i + 1} is empty", field="input")
            expected = str(row.get("expected", ""))
            cases.append(EvalCase(tier=tier, input=text, expected=expected,
                                  category=str(row.get("category") or expected or "-")))
        return cases

    def evaluate(self, checkpoint: Checkpoint, cases: Sequence[Any], tier: str, max_new_tokens: int) -> EvalReport:
        from forgemind_core.trials.tiers import evaluate_checkpoint

        names = {self.default_scorer} | {c.checker for c in cases if c.checker}
        scorers = {name: self.forge.backend("scorers", name, None, field="checker") for name in sorted(names)}
        reports = evaluate_checkpoint(
            checkpoint, {tier: cases}, runner=self.runner, scorers=scorers, default_scorer=self.default_scorer,
            prompt_format=self.prompt_format, ctx=self.ctx, canary_min=0.0, tiers=(tier,),
            max_new_tokens=max_new_tokens,
        )
        return reports[tier]


def evaluate(forge: Any, checkpoint: str | Checkpoint, suite: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
             *, tier: str = "full", runner: str = "hf", runner_options: Mapping[str, Any] | None = None,
             pack: str | os.PathLike[str] | None = None, prompt_format: str | None = None,
             scorer: str | None = None, max_new_tokens: int = 64, progress: Any = None) -> EvalReport:
    """Score a checkpoint on a suite file or on typed cases (``[{"input", "expected"?}]``): ``forge eval``."""
    from forgemind_core.trials.tiers import resolve_checkpoint

    setup = _EvalSetup(forge, pack=pack, prompt_format=prompt_format, runner=runner,
                       runner_options=runner_options, scorer=scorer, progress=progress)
    with setup.servers:
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else resolve_checkpoint(forge, str(checkpoint), setup.runner)
        return setup.evaluate(ckpt, setup.cases(suite, tier), tier, max_new_tokens)


def compare(forge: Any, checkpoints: Sequence[str], *,
            suite: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | None = None, tier: str = "full",
            runner: str = "hf", runner_options: Mapping[str, Any] | None = None,
            pack: str | os.PathLike[str] | None = None, prompt_format: str | None = None,
            scorer: str | None = None, max_new_tokens: int = 64, progress: Any = None) -> dict[str, Any]:
    """Checkpoints side by side, the first as baseline, regressions first (``forge compare``).

    Without ``suite`` the reports their runs recorded are used; with one (a file or typed cases)
    each checkpoint is evaluated on it now.
    """
    from forgemind_core.trials.compare import compare_reports, load_recorded_reports
    from forgemind_core.trials.tiers import resolve_checkpoint

    if len(checkpoints) < 2:
        raise UserError("compare needs at least two checkpoints", field="checkpoints")
    resolved = [resolve_checkpoint(forge, str(ref)) for ref in checkpoints]
    seen: dict[str, str] = {}
    for ref, ckpt in zip(checkpoints, resolved, strict=True):
        if ckpt.id in seen:
            raise UserError(f"{ref!r} and {seen[ckpt.id]!r} are the same checkpoint ({ckpt.id})", field="checkpoints")
        seen[ckpt.id] = str(ref)
    reports: dict[str, Mapping[str, Any]] = {}
    if suite is not None:
        setup = _EvalSetup(forge, pack=pack, prompt_format=prompt_format, runner=runner,
                           runner_options=runner_options, scorer=scorer, progress=progress)
        with setup.servers:
            cases = setup.cases(suite, tier)
            for ckpt in resolved:
                reports[ckpt.id] = {tier: setup.evaluate(ckpt, cases, tier, max_new_tokens)}
    else:
        registry = forge.registry()
        for ckpt in resolved:
            reports[ckpt.id] = load_recorded_reports(registry, ckpt.id)
    return compare_reports(reports)


def _manifest_checkpoint(folder: Path) -> dict[str, Any] | None:
    for name in ("manifest.json", "checkpoint.json"):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
            record = data.get("checkpoint", data) if name == "manifest.json" else data
            return record if isinstance(record, dict) and "id" in record else None
    return None


def list_checkpoints(forge: Any) -> list[dict[str, Any]]:
    """Every checkpoint this home knows: those runs recorded (the registry) and those made outside
    a run (``<home>/checkpoints/*``, pre-trained bases in ``<home>/cache/bases``).

    One dict each: ``id``, ``path``, ``kind``, ``method``, ``base_model``, ``run_id``, ``iteration``,
    ``source`` (``registry``, ``train`` or ``pretrain``). Newest first within each source.
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    home = Path(forge.home)
    recorded = getattr(forge.registry(), "checkpoints", None) if (home / "registry").exists() else None
    if recorded is not None:
        for row in recorded():
            seen.add(row["id"])
            rows.append({**row, "source": "registry"})
    for source, pattern in (("train", "checkpoints/*"), ("pretrain", "cache/bases/*")):
        folders = sorted(home.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
        for folder in folders:
            if not folder.is_dir() or folder.name.endswith(".partial"):
                continue
            record = _manifest_checkpoint(folder)
            if record is None or record["id"] in seen:
                continue
            seen.add(record["id"])
            path = record.get("path") if record.get("path") and Path(record["path"]).exists() else str(folder)
            rows.append({"id": record["id"], "path": path, "kind": record.get("kind", ""),
                         "method": record.get("method", ""), "base_model": record.get("base_model", ""),
                         "run_id": None, "iteration": None, "source": source})
    return rows
