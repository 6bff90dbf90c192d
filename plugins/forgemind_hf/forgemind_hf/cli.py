"""``forge pretrain | train | estimate | generate``: the Forge outside a run.

click only at import; torch and friends load inside the command bodies. User mistakes raise
:class:`~forgemind_hookspecs.errors.ForgeError` subclasses, which the kernel CLI prints as one
sentence with exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from forgemind_hookspecs.backends import StageContext, TrainRequest
from forgemind_hookspecs.converter import from_dict, to_dict
from forgemind_hookspecs.errors import UserError
from forgemind_hookspecs.records import Checkpoint, PretrainSpec

__all__ = ["cli_context", "register_commands"]


class _RichTask:
    def __init__(self, progress: Any, description: str, total: float | None) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=total, loss="", tokens_per_s="")

    def advance(self, n: float = 1, **fields: Any) -> None:
        self._progress.update(self._task, advance=n, **fields)

    def close(self) -> None:
        self._progress.stop()


def _rich_progress(description: str, total: float | None = None) -> _RichTask:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tokens_per_s]} tok/s"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False,
    )
    progress.start()
    return _RichTask(progress, description, total)


def cli_context(stage: str, *, quiet: bool = False) -> StageContext:
    """A StageContext for commands run outside a run: home from ``FORGEMIND_HOME`` or ``./.forgemind``."""
    import structlog

    home = Path(os.environ.get("FORGEMIND_HOME") or ".forgemind")
    # Always stderr, whatever the process's global structlog configuration (which defaults to
    # stdout): stdout carries only the command's result, so --json stays parseable.
    log = structlog.wrap_logger(structlog.PrintLogger(sys.stderr))
    ctx = StageContext(
        run_id="adhoc", stage=stage, home=home, work_dir=home / "work" / stage, cache_dir=home / "cache",
        log=log.bind(stage=stage),
    )
    if not quiet:
        ctx.progress = _rich_progress
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    ctx.cache_dir.mkdir(parents=True, exist_ok=True)
    return ctx


def _parse_sets(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.UsageError(f"{flag} {pair!r} must look like KEY=VALUE")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _dataset(data: str, fmt: str | None, columns: dict[str, Any], ctx: StageContext) -> Any:
    from forgemind_hookspecs.presets import read_data
    from forgemind_hookspecs.snapshots import write_snapshot

    examples = list(read_data(data, format=fmt, columns={k: str(v) for k, v in columns.items()} or None,
                              cache_dir=ctx.cache_dir / "datasets"))
    if not examples:
        raise UserError("holds no examples", file=data)
    return write_snapshot(examples, ctx.home / "datasets")


def _request(base: str, data: str, fmt: str | None, column: Sequence[str], method: str, out: str | None,
             sets: Sequence[str], seed: int, stage: str, quiet: bool) -> tuple[Any, TrainRequest, StageContext]:
    from . import HFTrainer
    from .options import TrainerOptions, merge_options

    ctx = cli_context(stage, quiet=quiet)
    hyper = _parse_sets(sets, "--set")
    merge_options(TrainerOptions(), hyper)  # refuse unknown names before any heavy work
    trainer = HFTrainer(TrainerOptions())
    dataset = _dataset(data, fmt, _parse_sets(column, "--column"), ctx)
    base_ckpt = trainer.load_base(base, ctx)
    output = out or str(ctx.home / "checkpoints" / f"{dataset.id}-{method}")
    request = TrainRequest(base=base_ckpt, dataset=dataset, method=method, output_dir=output,
                           hyperparameters=hyper, seed=seed)
    return trainer, request, ctx


def _echo(value: Any, as_json: bool, human: str) -> None:
    click.echo(json.dumps(to_dict(value), indent=1, default=str) if as_json else human)


_data_options = [
    click.option("--base", required=True,
                 help="Base model: a shipped model by name (smollm2-135m-instruct), a .gguf file, a local HF "
                      "folder, a checkpoint folder, a hub id, or 'pretrain'."),
    click.option("--data", required=True,
                 help="Training data: a JSONL/JSON/CSV/text file, a Parquet or Arrow file, a folder saved with "
                      "datasets' save_to_disk, or hub:NAME[:SPLIT] (see docs/foundry.md)."),
    click.option("--format", "fmt",
                 type=click.Choice(["prompt_completion", "chat", "csv", "text", "alpaca", "sharegpt", "messages"]),
                 default=None, help="Data format or preset (detected when omitted)."),
    click.option("--column", multiple=True, metavar="FIELD=HEADER",
                 help="CSV column mapping, e.g. --column prompt=question --column completion=answer."),
    click.option("--method", type=click.Choice(["full", "lora", "qlora"]), default="lora", show_default=True),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                 help="Training option, e.g. --set epochs=2 --set lora_r=16 (see docs/forge.md)."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
]


def _with_data_options(fn: Any) -> Any:
    for option in reversed(_data_options):
        fn = option(fn)
    return fn


def register_commands(cli: click.Group) -> None:
    """Attach the Forge's commands to ``cli``."""

    @cli.command("pretrain")
    @click.argument("corpus")
    @click.option("--preset", default="tiny", show_default=True, help="Model size: tiny, small, base.")
    @click.option("--out", type=click.Path(file_okay=False), default=None, help="Copy the base model here.")
    @click.option("--steps", type=int, default=None, help="Optimiser steps (overrides the preset).")
    @click.option("--tokens", type=int, default=None, help="Training tokens (overrides the preset).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print the checkpoint as JSON.")
    def pretrain_cmd(corpus: str, preset: str, out: str | None, steps: int | None, tokens: int | None,
                     seed: int, as_json: bool) -> None:
        """Pre-train a small Llama from scratch on CORPUS (a file, folder, glob or 'stdlib')."""
        import shutil

        from . import HFTrainer
        from .options import PRESETS

        if preset not in PRESETS:
            raise click.UsageError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        options: dict[str, Any] = {"seed": seed}
        if steps is not None:
            options["steps"] = steps
        if tokens is not None:
            options["tokens"] = tokens
        ctx = cli_context("pretrain", quiet=as_json)
        checkpoint = HFTrainer().pretrain(PretrainSpec(corpus=corpus, preset=preset, options=options), ctx)
        if out:
            shutil.copytree(checkpoint.path, out, dirs_exist_ok=True)
        m = checkpoint.manifest
        _echo(checkpoint, as_json,
              f"base {checkpoint.id} at {out or checkpoint.path}: {m.get('parameters', 0):,} parameters, "
              f"validation loss {m.get('val_loss_before', 0):.2f} -> {m.get('val_loss_after', 0):.2f} "
              f"in {m.get('duration_s', 0):.0f} s")

    @cli.command("train")
    @_with_data_options
    @click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (resumable).")
    def train_cmd(base: str, data: str, fmt: str | None, column: tuple[str, ...], method: str,
                  sets: tuple[str, ...], seed: int, as_json: bool, out: str | None) -> None:
        """Fine-tune BASE on a data file (full, LoRA or QLoRA); re-running resumes."""
        trainer, request, ctx = _request(base, data, fmt, column, method, out, sets, seed, "train", as_json)
        checkpoint = trainer.train(request, ctx)
        m = checkpoint.manifest
        curve = m.get("loss_curve") or [0.0]
        _echo(checkpoint, as_json,
              f"checkpoint {checkpoint.id} ({checkpoint.kind}) at {checkpoint.path}: loss {curve[0]:.3f} -> "
              f"{curve[-1]:.3f}, {m.get('steps')} steps, {m.get('duration_s', 0):.1f} s, "
              f"{m.get('tokens_per_s', 0):.0f} tokens/s, ${m.get('cost_usd', 0):.4f}")

    @cli.command("estimate")
    @_with_data_options
    def estimate_cmd(base: str, data: str, fmt: str | None, column: tuple[str, ...], method: str,
                     sets: tuple[str, ...], seed: int, as_json: bool) -> None:
        """Predict tokens, steps, wall time and cost of a training job from a short calibration."""
        trainer, request, ctx = _request(base, data, fmt, column, method, None, sets, seed, "estimate", True)
        est = trainer.estimate(request, ctx)
        _echo(est, as_json,
              f"{est.tokens:,} tokens, {est.steps} steps, ~{est.seconds:.0f} s "
              f"({est.details.get('tokens_per_s', 0):.0f} tokens/s on {est.details.get('device')}), "
              f"${est.cost_usd:.4f}")

    @cli.command("generate")
    @click.argument("checkpoint")
    @click.argument("prompts", nargs=-1, required=True)
    @click.option("--max-new-tokens", type=int, default=64, show_default=True)
    @click.option("--temperature", type=float, default=0.0, show_default=True, help="0 = greedy.")
    @click.option("--json", "as_json", is_flag=True, help="Print the completions as a JSON list.")
    def generate_cmd(checkpoint: str, prompts: tuple[str, ...], max_new_tokens: int, temperature: float,
                     as_json: bool) -> None:
        """Complete PROMPTS with CHECKPOINT (a ForgeMind checkpoint folder or any HF model folder)."""
        from . import HFRunner

        ckpt = _load_checkpoint(checkpoint)
        outputs = HFRunner().generate(ckpt, list(prompts), cli_context("generate", quiet=True),
                                      max_new_tokens=max_new_tokens, temperature=temperature)
        if as_json:
            click.echo(json.dumps(outputs, ensure_ascii=False))
        else:
            for text in outputs:
                click.echo(text)


def _load_checkpoint(path: str) -> Checkpoint:
    folder = Path(path)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        return from_dict(Checkpoint, json.loads(manifest.read_text())["checkpoint"])
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise UserError("is not a checkpoint folder (no manifest.json or config.json)", file=path)
    from .finetune import describe_base

    return describe_base(path)
