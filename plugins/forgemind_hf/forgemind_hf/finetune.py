"""Fine-tuning (full, LoRA, QLoRA), estimates and base loading: the work behind ``HFTrainer``.

Imports torch/transformers/peft at module level: import it only inside the methods that train.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from forgemind_hookspecs.backends import StageContext, TrainRequest
from forgemind_hookspecs.converter import from_dict, to_dict
from forgemind_hookspecs.errors import ConfigError, DataError, ForgeError, UserError
from forgemind_hookspecs.records import Checkpoint, Estimate, Example, content_hash
from forgemind_hookspecs.snapshots import read_snapshot

from . import engine, fastpath
from .calibration import calibrate, probe_indices
from .chat import apply_template, template_source
from .logs import log
from .options import LATE_FIELDS, METHODS, TrainerOptions
from .text import encode_example, use_chat

__all__ = ["METHODS", "chat_layout", "describe_base", "estimate", "load_for_training", "load_tokenizer", "train"]



# --------------------------------------------------------------------------------------------
# Bases.
# --------------------------------------------------------------------------------------------


def describe_base(base_model: str) -> Checkpoint:
    """A local model folder or a hub id as a ``full`` Checkpoint with a content id.

    Local folders are identified by their config and the SHA-256 of their weights (names and
    sizes only above 2 GB, where hashing would cost minutes); hub ids by name.
    """
    path = Path(base_model).expanduser()
    manifest_file = path / "manifest.json"
    if manifest_file.is_file():
        from .bases import located

        return located(from_dict(Checkpoint, json.loads(manifest_file.read_text())["checkpoint"]), path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError("is not a Hugging Face model folder (no config.json)", file=str(path))
        weights = sorted(path.glob("*.safetensors"))
        if not weights:
            raise UserError(
                "holds no .safetensors weights (ForgeMind never loads pickled weights)", file=str(path)
            )
        total = sum(w.stat().st_size for w in weights)
        if total < 2 << 30:
            digests: list[Any] = [[w.name, engine.file_sha256(w)] for w in weights]
        else:
            digests = [[w.name, w.stat().st_size] for w in weights]
        key = content_hash({"config": (path / "config.json").read_text(), "weights": digests})
        return Checkpoint(id=f"base-{key}", path=str(path.resolve()), base_model=str(path.resolve()),
                          method="base", kind="full", manifest={"weights": digests})
    return Checkpoint(id=f"hub-{content_hash({'hub': base_model})}", path=base_model, base_model=base_model,
                      method="base", kind="full", manifest={"hub_id": base_model})


def load_tokenizer(path: str, options: TrainerOptions) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=options.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _base_path(checkpoint: Checkpoint) -> str:
    if checkpoint.kind == "adapter":
        raise ConfigError(
            "cannot fine-tune on top of a LoRA adapter; train again with merge: true to get a full base",
            field="limits.base_model",
        )
    return checkpoint.path


def load_for_training(
    base: Checkpoint, method: str, options: TrainerOptions, device: torch.device, seed: int = 0
) -> Any:
    """The base model prepared for ``method``: trainable in full, with LoRA adapters, or
    4-bit quantised with LoRA adapters (QLoRA)."""
    engine.quiet_transformers()
    from transformers import AutoModelForCausalLM

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}", field="limits.method")
    path = _base_path(base)
    kwargs: dict[str, Any] = {"trust_remote_code": options.trust_remote_code, "use_safetensors": True}
    if method == "qlora":
        if device.type != "cuda" and not options.allow_cpu_4bit:
            raise ForgeError(
                "method qlora needs a CUDA GPU for bitsandbytes 4-bit training and none is present; "
                "use method lora (or full) on this machine",
                field="limits.method",
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ForgeError(
                "method qlora needs bitsandbytes: pip install 'forgemind-hf[cuda]'", field="limits.method"
            ) from None
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    # from_pretrained returns eval mode; a 4-bit forward in eval mode on CPU repacks the weights and
    # silently stops gradients afterwards (ENVIRONMENT-NOTES): switch to train mode before anything runs.
    model.train()
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model.train()
    else:
        model.to(device)
    top: list[int] | None = None
    if options.train_layers:
        top = fastpath.top_layer_indices(fastpath.decoder_layers(model), options.train_layers)
    if method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        targets = options.target_modules
        if top is not None and isinstance(targets, str):
            # peft takes layers_to_transform only with a list of module names
            if targets != "all-linear":
                raise ConfigError("train_layers needs target_modules as a list of module names or all-linear",
                                  field="train.target_modules")
            targets = fastpath.linear_names(model)
        config = LoraConfig(
            r=options.lora_r,
            lora_alpha=options.lora_alpha,
            lora_dropout=options.lora_dropout,
            target_modules=targets if isinstance(targets, str) else list(targets),
            task_type="CAUSAL_LM",
            layers_to_transform=top,
        )
        torch.manual_seed(seed)  # adapter init is random: same request, same adapter
        try:
            model = get_peft_model(model, config)
        except ValueError as error:
            raise ConfigError(f"LoRA cannot wrap this model: {error}", field="train.target_modules") from None
        model.train()
    elif top is not None:  # full fine-tuning of the top layers (and the final norm) only
        fastpath.freeze_below(model, top[0])
    return model


def loss_for(model: Any, options: TrainerOptions, plan: _Plan, device: torch.device, bf16: bool,
             *, cache: bool = True) -> Any:
    """The fast path's loss for :func:`engine.train_loop` (``None``: transformers' own), with the
    frozen bottom cached when ``train_layers`` and ``cache_frozen`` say so and one process trains."""
    if options.head == "all" and not options.train_layers:
        return None
    total = fastpath.decoder_layers(model)
    first = fastpath.top_layer_indices(total, options.train_layers)[0]
    frozen = None
    if cache and options.train_layers and options.cache_frozen and plan.world == 1:
        frozen = fastpath.FrozenBottomCache(model, first, device, bf16)
    return fastpath.make_loss(model, head=options.head, first_trainable=first, cache=frozen,
                              members_at=plan.members)


# --------------------------------------------------------------------------------------------
# Data.
# --------------------------------------------------------------------------------------------


def load_examples(request: TrainRequest) -> list[Example]:
    """The request's examples, refusing any that has nothing to learn (with its row number)."""
    path = request.dataset.path
    if not Path(path).is_file():
        raise DataError("the dataset snapshot does not exist", file=path)
    examples = list(read_snapshot(path))
    for i, example in enumerate(examples, start=1):
        if example.messages:
            if example.messages[-1].role != "assistant":
                raise DataError("the last message must be the assistant's answer", file=path, line=i,
                                field="messages")
        elif not example.completion.strip():
            raise DataError("has an empty completion: there is nothing to learn", file=path, line=i,
                            field="completion")
    if not examples:
        raise DataError("the dataset has no examples", file=path)
    return examples


def encode_all(examples: list[Example], tokenizer: Any, max_length: int, file: str, *, chat: bool = False,
               system: str = "", chat_loss: str = "last") -> tuple[list[Any], int]:
    sequences, truncated = [], 0
    for i, example in enumerate(examples, start=1):
        try:
            ids, labels, cut = encode_example(example, tokenizer, max_length, chat=chat, system=system,
                                              chat_loss=chat_loss)
        except DataError as error:
            error.file, error.line = file, i
            raise
        sequences.append((ids, labels))
        truncated += int(cut)
    return sequences, truncated


class _Plan:
    """The deterministic data order: step -> the examples of that step, packed."""

    def __init__(self, sequences: list[Any], options: TrainerOptions, seed: int, pad_id: int) -> None:
        self.sequences = sequences
        self.batch_size = max(1, options.batch_size)
        self.per_epoch = max(1, math.ceil(len(sequences) / self.batch_size))
        self.total_steps = max(1, math.ceil(options.epochs * self.per_epoch))
        self.capacity = options.max_length
        self.seed = seed
        self.pad_id = pad_id
        self._perm: dict[int, torch.Tensor] = {}
        self.rank, self.world = 0, 1

    def indices(self, step: int) -> list[int]:
        epoch, within = divmod(step, self.per_epoch)
        if epoch not in self._perm:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = {epoch: torch.randperm(len(self.sequences), generator=gen)}
        return self._perm[epoch][within * self.batch_size : (within + 1) * self.batch_size].tolist()

    def members(self, step: int) -> list[int]:
        """The indices of the examples this rank trains on at ``step`` (every world-th under DDP)."""
        return self.indices(step)[self.rank :: self.world]

    def batch_at(self, step: int) -> engine.Packed:
        """The step's examples packed; under DDP only this rank's share."""
        return engine.pack([self.sequences[i] for i in self.members(step)], self.capacity, self.pad_id)

    def total_tokens(self) -> int:
        return sum(len(self.sequences[i][0]) for s in range(self.total_steps) for i in self.indices(s))


def chat_layout(base: Checkpoint, tokenizer: Any, options: TrainerOptions, original_template: Any = None) -> bool:
    """Whether this request's prompt/completion examples go through the chat template
    (:func:`forgemind_hf.text.use_chat`; what the base recorded decides ``auto``).
    ``original_template``: the base tokenizer's own, where ``chat_template`` replaced it."""
    from .pretrain import CHAT_TEMPLATE

    recorded = base.manifest.get("chat_format")
    # ForgeMind's own template marks a tokenizer trained here from scratch, manifest or not
    shipped = original_template if original_template is not None else getattr(tokenizer, "chat_template", None)
    here = base.method == "pretrain" or shipped == CHAT_TEMPLATE
    return use_chat(options.chat_format, tokenizer, recorded if isinstance(recorded, str) else None,
                    pretrained_here=here)


def _prepare(request: TrainRequest, options: TrainerOptions, ctx: StageContext) -> tuple[Any, ...]:
    examples = load_examples(request)
    tokenizer = load_tokenizer(_base_path(request.base), options)
    shipped = getattr(tokenizer, "chat_template", None)
    apply_template(tokenizer, options.chat_template)  # saved with the checkpoint's tokenizer
    chat = chat_layout(request.base, tokenizer, options, shipped)
    sequences, truncated = encode_all(examples, tokenizer, options.max_length, request.dataset.path, chat=chat,
                                      system=options.system_prompt, chat_loss=options.chat_loss)
    if truncated:
        log(ctx, "warning", "examples truncated", count=truncated, max_length=options.max_length)
    seed = request.seed or options.seed
    plan = _Plan(sequences, options, seed, tokenizer.pad_token_id)
    return examples, tokenizer, plan, seed, truncated, chat


def _provenance(base: Checkpoint) -> dict[str, Any]:
    """Where the original base came from and under which licence: it travels with every model
    made from it (a base that was itself fine-tuned passes on what it inherited)."""
    out = {}
    for key in ("license", "source_file", "source_sha256", "catalogue_name"):
        value = base.manifest.get(key, base.manifest.get(f"base_{key}"))
        if value is not None:
            out[f"base_{key}"] = value
    return out


def request_id(request: TrainRequest, options: TrainerOptions, seed: int) -> str:
    """The checkpoint id: a content hash of what defines the result (never random)."""
    settings = to_dict(options)
    for name, default in LATE_FIELDS.items():
        if settings.get(name) == default:
            del settings[name]
    if "chat_template" in settings:  # a Jinja file: its content defines the result, not its path
        settings["chat_template"] = content_hash(template_source(options.chat_template) or "")
    return "ckpt-" + content_hash(
        {"base": request.base.id, "dataset": request.dataset.id, "method": request.method,
         "options": settings, "seed": seed}
    )


# --------------------------------------------------------------------------------------------
# Estimate.
# --------------------------------------------------------------------------------------------


def estimate(request: TrainRequest, options: TrainerOptions, ctx: StageContext) -> Estimate:
    """Tokens and steps exactly (the data order is known), seconds from the fastest of
    ``calibration_bursts`` short bursts of real optimiser steps on batches spread over the epoch
    (after an untimed warm-up of each; :mod:`forgemind_hf.calibration`)."""
    _, _, plan, seed, truncated, _ = _prepare(request, options, ctx)
    device = engine.device_for_training()
    bf16 = engine.use_bf16(options.bf16, device)
    model = load_for_training(request.base, request.method, options, device, seed)
    cfg = engine.LoopConfig(total_steps=plan.total_steps, learning_rate=options.learning_rate, bf16=bf16)
    optimizer, _ = engine.make_optimizer(model, cfg)
    model.train()

    # The fast path without its cache: every probe step pays the frozen bottom, so a cached run
    # trains faster than estimated (epochs after the first skip it), never slower.
    loss_fn = loss_for(model, options, plan, device, bf16, cache=False)

    def step(batch: engine.Packed) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            if loss_fn is not None:
                loss = loss_fn(model, batch, 0, device)
            else:
                loss = model(input_ids=batch.input_ids.to(device), position_ids=batch.position_ids.to(device),
                             labels=batch.labels.to(device), use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    batches = [plan.batch_at(i) for i in probe_indices(plan.per_epoch, options.calibration_steps)]
    measured = calibrate(step, batches, lambda b: b.tokens, bursts=options.calibration_bursts)
    tokens = plan.total_tokens()
    rate = measured.seconds_per_token
    seconds = tokens * rate
    price = options.price_per_gpu_hour if device.type == "cuda" else options.price_per_cpu_hour
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Estimate(
        tokens=tokens,
        steps=plan.total_steps,
        seconds=seconds,
        cost_usd=seconds / 3600 * price * world,
        basis="calibration",
        details={
            "tokens_per_s": 1 / rate,
            "calibration_steps": len(batches),
            "calibration_tokens_per_s": [round(1 / r, 1) for r in measured.bursts],
            "calibration_best_burst": measured.best,
            "device": device.type,
            "bf16": bf16,
            "price_per_hour": price,
            "examples": len(plan.sequences),
            "truncated": truncated,
        },
    )


# --------------------------------------------------------------------------------------------
# Train.
# --------------------------------------------------------------------------------------------


def train(request: TrainRequest, options: TrainerOptions, ctx: StageContext) -> Checkpoint:
    """Fine-tune as ``request`` says; resume from ``output_dir``; return the final checkpoint."""
    out = Path(request.output_dir)
    final = out / "final"
    examples, tokenizer, plan, seed, truncated, chat = _prepare(request, options, ctx)
    ckpt_id = request_id(request, options, seed)
    if (final / "manifest.json").is_file():
        done = from_dict(Checkpoint, json.loads((final / "manifest.json").read_text())["checkpoint"])
        if done.id == ckpt_id:
            log(ctx, "info", "training already finished", checkpoint=done.id)
            return done
        shutil.rmtree(final)
    device = engine.device_for_training()
    rank, world = engine.distributed()
    if world > 1 and options.batch_size < world:
        raise ConfigError(f"batch_size {options.batch_size} is smaller than the {world} processes",
                          field="train.batch_size")
    plan.rank, plan.world = rank, world
    bf16 = engine.use_bf16(options.bf16, device)
    model = load_for_training(request.base, request.method, options, device, seed)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cfg = engine.LoopConfig(
        total_steps=plan.total_steps,
        learning_rate=options.learning_rate,
        warmup_ratio=options.warmup_ratio,
        weight_decay=options.weight_decay,
        scheduler=options.scheduler,
        max_grad_norm=options.max_grad_norm,
        bf16=bf16,
        save_every_steps=options.save_every_steps,
        keep_checkpoints=options.keep_checkpoints,
        seed=seed,
        log_every_steps=options.log_every_steps,
        description=f"train {request.method}",
    )
    mode = engine.parallelism(world)
    loss_fn = loss_for(model, options, plan, device, bf16)
    result = engine.train_loop(model, plan.batch_at, cfg, out / "checkpoints", ctx, device=device, loss_fn=loss_fn)
    if mode == "fsdp":
        # The trained model is sharded over the ranks: gather it (every rank takes part) and give
        # rank 0 an ordinary, unsharded copy, so merging and saving below are the same code as ever.
        state = engine.full_state_dict(model)
        if rank == 0:
            model = load_for_training(request.base, request.method, options, torch.device("cpu"), seed)
            model.load_state_dict(state)  # strict: the gathered state covers the whole model
        del state
    if rank != 0:  # rank 0 writes the final checkpoint; the others wait for it and return it
        engine.barrier(world)
        return from_dict(Checkpoint, json.loads((final / "manifest.json").read_text())["checkpoint"])
    tmp = out / "final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    kind = "full"
    if request.method in ("lora", "qlora"):
        if options.merge:
            merged = model.merge_and_unload()
            merged.save_pretrained(tmp)
            kind = "merged"
        else:
            model.save_pretrained(tmp)
            kind = "adapter"
    else:
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    weights = sorted(tmp.glob("*.safetensors"))
    hours = result.seconds / 3600
    price = options.price_per_gpu_hour if device.type == "cuda" else options.price_per_cpu_hour
    manifest: dict[str, Any] = {
        "kind": "finetune",
        "config": to_dict(options),
        "method": request.method,
        "dataset_id": request.dataset.id,
        "examples": len(examples),
        "truncated": truncated,
        "chat_format": "chat" if chat else "raw",
        "chat_template": options.chat_template,
        "chat_loss": options.chat_loss,
        "system_prompt": options.system_prompt if chat else "",
        "base_model": request.base.base_model,
        "base_id": request.base.id,
        "base_path": request.base.path,
        **_provenance(request.base),
        "seed": seed,
        "steps": plan.total_steps,
        "tokens": result.tokens,
        "trainable_parameters": trainable,
        "resumed_from_step": result.resumed_from_step,
        "loss_curve": [round(v, 5) for v in result.losses],
        "duration_s": result.seconds,
        "tokens_per_s": result.tokens / max(result.seconds, 1e-9),
        "cost_usd": hours * price * world,
        "world_size": world,
        "parallelism": mode,
        "bf16": bf16,
        "hardware": engine.hardware(),
        "libraries": engine.library_versions(),
        "weights_sha256": {w.name: engine.file_sha256(w) for w in weights},
    }
    checkpoint = Checkpoint(
        id=ckpt_id, path=str(final.resolve()), base_model=request.base.base_model, method=request.method,
        kind=kind, dataset_id=request.dataset.id, parent=request.base.id, manifest=manifest,
    )
    (tmp / "manifest.json").write_text(json.dumps({"checkpoint": to_dict(checkpoint)}, indent=1, default=str))
    os.replace(tmp, final)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    engine.barrier(world)
    ctx.emit("metric", {"name": "train.final_loss", "value": result.losses[-1], "step": plan.total_steps})
    log(ctx, "info", "training finished", checkpoint=ckpt_id, steps=plan.total_steps,
                 seconds=round(result.seconds, 1), loss=round(result.losses[-1], 4))
    return checkpoint
