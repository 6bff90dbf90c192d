"""The training engine shared by pre-training and fine-tuning: packing, the loop, checkpoints.

Why a small loop of our own instead of ``transformers.Trainer``: we need padding-free packed
batches (position ids restart per example, so transformers builds a block-diagonal causal mask
and no FLOP goes to padding), exact resume after SIGKILL (optimiser, scheduler, RNG and the data
position, which is a pure function of the step number here), progress and metric events through
the :class:`~forgemind_hookspecs.StageContext`, and bf16 autocast on CPUs that have it. The
loop is device-agnostic and runs unchanged under ``accelerate launch``: DDP, or FSDP2 (each
decoder layer sharded with ``fully_shard``) when the launcher's config asks for FSDP (see
docs/forge.md and :func:`parallelism`).

Imports torch at module level: import this module only inside functions that train.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from attrs import define, field
from forgemind_hookspecs.backends import StageContext
from forgemind_hookspecs.errors import ConfigError, ForgeError

from .logs import log

__all__ = [
    "HUB_KERNEL_LOGGERS",
    "LoopConfig",
    "LoopResult",
    "Packed",
    "barrier",
    "batch_tokens",
    "device_for_training",
    "distributed",
    "file_sha256",
    "full_state_dict",
    "hardware",
    "library_versions",
    "pack",
    "parallelism",
    "shard_model",
    "train_loop",
    "use_bf16",
]


# --------------------------------------------------------------------------------------------
# Hardware, precision, hashes, versions.
# --------------------------------------------------------------------------------------------


#: Loggers silenced by :func:`quiet_transformers`, by *what they are*, not by one wording:
#: ``kernels`` is the Hub kernel loader (every logger under it: trust checks, downloads, fallbacks),
#: which bitsandbytes' CPU backend calls at import to fetch ``kernels-community`` 4-bit kernels from the
#: Hub; ``bitsandbytes.backends.cpu.ops`` reports when that fails with "pip install kernels". ForgeMind
#: never loads kernels from the Hub (nothing is downloaded at run time) and 4-bit training needs CUDA.
HUB_KERNEL_LOGGERS: tuple[str, ...] = ("kernels", "bitsandbytes.backends.cpu.ops")


def quiet_transformers() -> None:
    """No per-load/per-save progress bars from transformers: the loop shows its own progress.

    Also silences the Hub kernel loader that transformers and peft trigger through bitsandbytes even
    when nothing is quantised (:data:`HUB_KERNEL_LOGGERS`): on a CPU with AVX512-BF16 it warns
    "Failed to load CPU gemm_4bit_forward from kernels-community ... pip install kernels" and, with
    transformers >= 5.25 offline, "Skipping publisher trust check for 'kernels-community/...'".
    Both are advice about downloading code from the Hub, wrong for an offline CPU run. Errors still show."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    for name in HUB_KERNEL_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def device_for_training() -> torch.device:
    """CUDA (this process's local rank under ``accelerate launch``/torchrun) if present, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def distributed() -> tuple[int, int]:
    """``(rank, world_size)``; under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE`` > 1) this
    joins the process group (NCCL on CUDA, Gloo on CPU) the launcher describes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():  # FSDP's default mesh and NCCL use the current device
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


_TRUE = ("1", "true", "yes", "on")


def parallelism(world: int | None = None) -> str:
    """How the loop spreads over processes: ``"single"``, ``"ddp"`` or ``"fsdp"``.

    With more than one process, ``FORGEMIND_DISTRIBUTED`` (``ddp`` or ``fsdp``) decides; unset,
    it is FSDP when ``accelerate launch`` ran with an FSDP config (it exports
    ``ACCELERATE_USE_FSDP=true``), else DDP. FSDP here is always FSDP2 (``fully_shard``),
    whatever ``fsdp_version`` the accelerate config names.
    """
    if world is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return "single"
    choice = os.environ.get("FORGEMIND_DISTRIBUTED", "").strip().lower()
    if not choice:
        choice = "fsdp" if os.environ.get("ACCELERATE_USE_FSDP", "").strip().lower() in _TRUE else "ddp"
    if choice not in ("ddp", "fsdp"):
        raise ConfigError(f"FORGEMIND_DISTRIBUTED must be ddp or fsdp, not {choice!r}",
                          field="FORGEMIND_DISTRIBUTED")
    return choice


def _layer_classes(model: torch.nn.Module) -> set[str]:
    """Class names of the blocks FSDP shards one by one: the accelerate config's
    ``fsdp_transformer_layer_cls_to_wrap`` if given, else the model's ``_no_split_modules``
    (the decoder layer of every transformers LM, e.g. ``LlamaDecoderLayer``)."""
    named = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "").strip()
    if named:
        return {c.strip() for c in named.split(",") if c.strip()}
    found: set[str] = set()
    for module in model.modules():
        found.update(getattr(module, "_no_split_modules", None) or ())
    return found


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_model(model: torch.nn.Module) -> torch.nn.Module:
    """Shard ``model`` in place with FSDP2: each decoder layer is its own unit (all-gathered
    just before it runs, freed after), the rest (embeddings, final norm, tied head) the root's.

    Apply after peft: LoRA adapters live inside the layers and are sharded with them (FSDP2
    allows frozen and trainable parameters in one unit). Gradients are reduce-scattered and
    averaged over ranks, as DDP's are. ``FSDP_RESHARD_AFTER_FORWARD=false`` (accelerate's
    ``fsdp_reshard_after_forward``) keeps gathered layers until backward (ZeRO-2-like).
    """
    from torch.distributed.fsdp import fully_shard

    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_quantized", False):
        raise ConfigError("FSDP cannot shard a 4-bit (QLoRA) model here; use DDP or method lora/full",
                          field="limits.method")
    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").strip().lower() in _TRUE
    classes = _layer_classes(model)
    layers = [m for m in model.modules() if type(m).__name__ in classes]
    if not layers:
        raise ConfigError(
            f"FSDP found no decoder layers to shard (looked for {sorted(classes) or 'nothing'}); "
            "set fsdp_transformer_layer_cls_to_wrap in the accelerate config",
            field="FSDP_TRANSFORMER_CLS_TO_WRAP",
        )
    for layer in layers:
        fully_shard(layer, reshard_after_forward=reshard)
    fully_shard(model, reshard_after_forward=reshard)
    return model


def _full_options(**extra: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **extra)


def full_state_dict(model: torch.nn.Module, *, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """The unsharded state dict of an FSDP model, gathered to CPU on rank 0 (other ranks get
    ``{}``). A collective: every rank must call it. Plain models return their own state dict."""
    if not is_sharded(model):
        items = _trainable(model).items() if trainable_only else model.state_dict().items()
        return {k: v.detach().to("cpu") for k, v in items}
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_full_options(ignore_frozen_params=trainable_only))
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def use_bf16(setting: str | bool, device: torch.device) -> bool:
    """Resolve the ``bf16`` option: ``"auto"`` turns it on where bf16 is computed natively.

    On CPUs with AVX512-BF16 or AMX, autocast roughly doubles throughput (measured: 3.4k -> 7k
    tokens/s on the tiny preset); on other CPUs it would be emulated and slower, so auto is off.
    """
    if isinstance(setting, str) and setting.strip().lower() != "auto":
        text = setting.strip().lower()
        if text not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            raise ConfigError(f"bf16 must be auto, true or false, not {setting!r}", field="train.bf16")
        setting = text in ("true", "yes", "on", "1")
    if isinstance(setting, bool):
        return setting
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def hardware() -> dict[str, Any]:
    """What this run trained on, for the manifest and for cost (GPU-hours vs CPU-hours)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
    return info


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a training result."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors", "bitsandbytes",
                 "forgemind-hf", "forgemind-hookspecs"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Packing: sequences of token ids -> padding-free rows.
# --------------------------------------------------------------------------------------------


@define
class Packed:
    """A batch of packed rows: tensors for the model and the count of real tokens."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    tokens: int
    #: ``(row, start, index, length)`` per packed sequence, ``index`` into the list given to :func:`pack`.
    layout: list[tuple[int, int, int, int]] = field(factory=list)


def pack(sequences: Sequence[tuple[list[int], list[int]]], capacity: int, pad_id: int) -> Packed:
    """Pack ``(input_ids, labels)`` pairs into rows of at most ``capacity`` tokens.

    First-fit decreasing puts each sequence in the first row with room. ``position_ids`` restart
    at 0 for each sequence; with no ``attention_mask`` transformers derives a block-diagonal
    causal mask from them, so a sequence never attends to its neighbours in the row. Rows are
    right-filled to the longest row with a pad segment (its own positions, labels -100), the only
    padding left: at most one partial row per batch.
    """
    rows: list[list[int]] = []
    fill: list[int] = []
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
    for i in order:
        n = min(len(sequences[i][0]), capacity)
        for r, used in enumerate(fill):
            if used + n <= capacity:
                rows[r].append(i)
                fill[r] += n
                break
        else:
            rows.append([i])
            fill.append(n)
    width = max(fill) if fill else 1
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    tokens = 0
    layout: list[tuple[int, int, int, int]] = []
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            seq_ids, seq_labels = sequences[i]
            n = min(len(seq_ids), capacity)
            ids[r, at : at + n] = torch.tensor(seq_ids[:n])
            labels[r, at : at + n] = torch.tensor(seq_labels[:n])
            positions[r, at : at + n] = torch.arange(n)
            layout.append((r, at, i, n))
            at += n
            tokens += n
        if at < width:
            positions[r, at:width] = torch.arange(width - at)
    return Packed(ids, labels, positions, tokens, layout)


def batch_tokens(batch: Packed) -> int:
    """Real (non-pad) tokens in a batch: the throughput numerator."""
    return batch.tokens


# --------------------------------------------------------------------------------------------
# The loop.
# --------------------------------------------------------------------------------------------


class _QuietBar:
    def advance(self, n: float = 1, **fields: Any) -> None:
        return None

    def close(self) -> None:
        return None


@define
class LoopConfig:
    """Optimiser and bookkeeping settings of one training loop."""

    total_steps: int
    learning_rate: float
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    scheduler: str = "linear"
    max_grad_norm: float = 1.0
    bf16: bool = False
    save_every_steps: int = 50
    keep_checkpoints: int = 2
    seed: int = 0
    log_every_steps: int = 1
    description: str = "train"


@define
class LoopResult:
    """What a finished loop reports: the loss curve (one value per step), tokens, seconds."""

    losses: list[float] = field(factory=list)
    tokens: int = 0
    seconds: float = 0.0
    resumed_from_step: int = 0
    steps: int = 0


_STATE = "state.json"
_WEIGHTS = "trainable.safetensors"
_TORCH_STATE = "optimizer.pt"


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    found = []
    if folder.is_dir():
        for child in folder.iterdir():
            if child.name.startswith("checkpoint-") and (child / _STATE).is_file():
                try:
                    found.append((int(child.name.split("-", 1)[1]), child))
                except ValueError:
                    continue
    return sorted(found)


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(
    folder: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    result: LoopResult,
    keep: int,
    main: bool = True,
) -> None:
    """Write ``checkpoint-<step>`` atomically: build it under a temporary name, then rename.

    A process killed mid-write leaves only a ``.tmp`` folder, which the next start removes.
    Under FSDP every rank must call this (the trainable weights and the optimiser state are
    gathered unsharded to rank 0, which writes them in the same files as without FSDP; the
    optimiser state is then keyed by parameter name, ``"layout": "fsdp"``).
    """
    from safetensors.torch import save_file

    sharded = is_sharded(model)
    if sharded:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        trainable = set(_trainable(model))
        weights = {k: v for k, v in full_state_dict(model, trainable_only=True).items() if k in trainable}
        optim_state = get_optimizer_state_dict(model, optimizer, options=_full_options())
    if not main:
        return
    if not sharded:
        weights = {k: v.detach().to("cpu") for k, v in _trainable(model).items()}
        optim_state = optimizer.state_dict()
    final = folder / f"checkpoint-{step}"
    tmp = folder / f"checkpoint-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / _WEIGHTS))
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({"optimizer": optim_state, "scheduler": scheduler.state_dict(), "rng": rng,
                "layout": "fsdp" if sharded else "plain"}, tmp / _TORCH_STATE)
    state = {"step": step, "losses": result.losses, "tokens": result.tokens, "seconds": result.seconds}
    (tmp / _STATE).write_text(json.dumps(state))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for _old_step, old in _checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore trainable weights, optimiser, scheduler and RNG; never unpickles code
    (safetensors for weights, ``torch.load(weights_only=True)`` for optimiser state)."""
    from safetensors.torch import load_file

    weights = load_file(str(path / _WEIGHTS))
    trainable = _trainable(model)
    missing = set(trainable) - set(weights)
    if missing:
        raise ForgeError(
            f"the checkpoint lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]}); "
            "it was written by a different model or method",
            file=str(path),
        )
    blob = torch.load(path / _TORCH_STATE, map_location="cpu", weights_only=True)
    layout, sharded = blob.get("layout", "plain"), is_sharded(model)
    if layout != ("fsdp" if sharded else "plain"):
        raise ForgeError(
            f"the checkpoint's optimiser state was written {'with' if layout == 'fsdp' else 'without'} FSDP; "
            f"resume it {'with' if layout == 'fsdp' else 'without'} FSDP (or delete {path.parent})",
            file=str(path),
        )
    if sharded:  # every rank reads the full tensors and keeps its own shard of them
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        set_model_state_dict(model, {k: weights[k] for k in trainable},
                             options=_full_options(strict=False))
        set_optimizer_state_dict(model, optimizer, blob["optimizer"], options=_full_options())
    else:
        with torch.no_grad():
            for name, tensor in trainable.items():
                tensor.copy_(weights[name].to(tensor.device, tensor.dtype))
        optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"]["torch"])
    if torch.cuda.is_available() and "cuda" in blob["rng"]:
        torch.cuda.set_rng_state_all(blob["rng"]["cuda"])
    return json.loads((path / _STATE).read_text())


def make_optimizer(model: torch.nn.Module, cfg: LoopConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (no decay on biases and norms) and the named warm-up schedule."""
    quiet_transformers()  # before the import: transformers.optimization imports bitsandbytes
    from transformers import get_scheduler

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate)
    name = {"constant": "constant_with_warmup"}.get(cfg.scheduler, cfg.scheduler)
    try:
        scheduler = get_scheduler(
            name,
            optimizer=optimizer,
            num_warmup_steps=math.ceil(cfg.warmup_ratio * cfg.total_steps),
            num_training_steps=cfg.total_steps,
        )
    except ValueError as error:
        raise ForgeError(f"unknown scheduler {cfg.scheduler!r} ({error})", field="train.scheduler") from None
    return optimizer, scheduler


def train_loop(
    model: torch.nn.Module,
    batch_at: Callable[[int], Packed],
    cfg: LoopConfig,
    checkpoint_dir: Path,
    ctx: StageContext,
    *,
    device: torch.device | None = None,
    on_step: Callable[[int, float], None] | None = None,
    loss_fn: Callable[[torch.nn.Module, Packed, int, torch.device], torch.Tensor] | None = None,
) -> LoopResult:
    """Train ``model`` for ``cfg.total_steps`` optimiser steps, resuming from the newest
    complete checkpoint in ``checkpoint_dir``.

    ``batch_at(step)`` must be a pure function of the step (the data order derives from the
    seed), which is what makes the data position exact on resume.

    Under FSDP (:func:`parallelism`) ``model`` is sharded in place here and stays sharded on
    return; get its weights with :func:`full_state_dict` (a collective) before saving.

    ``loss_fn(model, batch, step, device)`` replaces transformers' own loss (the forward with
    ``labels``): :mod:`forgemind_hf.fastpath` uses it to skip frozen layers and unlabelled logits.
    """
    device = device or next(model.parameters()).device
    rank, world = distributed()
    main = rank == 0
    mode = parallelism(world)
    if mode == "fsdp":
        shard_model(model)  # before the optimiser, which must hold the sharded parameters
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if main:
        for stale in checkpoint_dir.glob("checkpoint-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    barrier(world)
    optimizer, scheduler = make_optimizer(model, cfg)
    result = LoopResult(steps=cfg.total_steps)
    start = 0
    existing = _checkpoints(checkpoint_dir)
    if existing:
        step, path = existing[-1]
        state = _load_checkpoint(path, model, optimizer, scheduler)
        start = result.resumed_from_step = int(state["step"])
        result.losses = list(state["losses"])
        result.tokens = int(state["tokens"])
        result.seconds = float(state["seconds"])
        log(ctx, "info", "training resumed", checkpoint=str(path), step=start)
    else:
        torch.manual_seed(cfg.seed)
    model.train()  # also the bitsandbytes CPU trap: never run a quantised forward in eval mode first
    forward = model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        # Same loop on every rank; each rank's batch_at(step) returns its shard of the step's data
        # and DDP averages the gradients, so the optimiser steps stay identical across ranks.
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    bar = ctx.progress(cfg.description, cfg.total_steps) if main else _QuietBar()
    if start:
        bar.advance(start)
    trainable = [p for p in model.parameters() if p.requires_grad]
    began = time.perf_counter() - result.seconds
    window_tokens, window_start = 0, time.perf_counter()
    try:
        for step in range(start, cfg.total_steps):
            batch = batch_at(step)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                if loss_fn is not None:
                    loss = loss_fn(forward, batch, step, device)
                else:
                    loss = forward(
                        input_ids=batch.input_ids.to(device),
                        position_ids=batch.position_ids.to(device),
                        labels=batch.labels.to(device),
                        use_cache=False,
                    ).loss
            loss.backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            value, step_tokens = float(loss.detach()), batch.tokens
            if world > 1:
                import torch.distributed as dist

                pair = torch.tensor([value, float(step_tokens)], device=device)
                dist.all_reduce(pair)
                value, step_tokens = float(pair[0]) / world, int(pair[1])
            if not math.isfinite(value):
                raise ForgeError(
                    f"training diverged at step {step + 1} (loss {value}); lower train.learning_rate",
                    field="train.learning_rate",
                )
            result.losses.append(value)
            result.tokens += step_tokens
            window_tokens += step_tokens
            done = step + 1
            now = time.perf_counter()
            result.seconds = now - began
            tps = window_tokens / max(now - window_start, 1e-9)
            bar.advance(1, loss=round(value, 4), tokens_per_s=round(tps, 1))
            if main and (done % max(cfg.log_every_steps, 1) == 0 or done == cfg.total_steps):
                ctx.emit("metric", {"name": "train.loss", "value": value, "step": done})
                ctx.emit("metric", {"name": "train.tokens_per_s", "value": tps, "step": done})
                window_tokens, window_start = 0, now
            if on_step is not None:
                on_step(done, value)
            if cfg.save_every_steps > 0 and done % cfg.save_every_steps == 0 and done < cfg.total_steps:
                if main or mode == "fsdp":
                    _save_checkpoint(checkpoint_dir, done, model, optimizer, scheduler, result,
                                     cfg.keep_checkpoints, main=main)
                barrier(world)
    finally:
        bar.close()
    return result
