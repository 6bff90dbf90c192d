"""Inference for evaluation: batched generation with the KV cache, greedy or sampled.

Models are cached per process (keyed by checkpoint id), because an evaluation calls
``generate`` many times on the same checkpoint. Imports torch at module level: import it only
inside the runner's methods.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from forgemind_hookspecs.errors import ConfigError, UserError
from forgemind_hookspecs.records import Checkpoint

from . import engine
from .options import RunnerOptions
from .text import CHAT_FORMATS, chat_prompt, prompt_ids

__all__ = ["clear_cache", "generate", "load", "prompt_layout"]

_CACHE: OrderedDict[str, tuple[Any, Any, torch.device, bool]] = OrderedDict()
_CACHE_SIZE = 2


def clear_cache() -> None:
    """Forget every cached model (tests, or to free memory)."""
    _CACHE.clear()


def load(checkpoint: Checkpoint, options: RunnerOptions) -> tuple[Any, Any, torch.device, bool]:
    """``(model, tokenizer, device, bf16)`` for a checkpoint, from the per-process cache.

    Safetensors only; an adapter is applied on top of its base (read from the manifest's
    ``base_path``); no remote code unless ``trust_remote_code`` is set.
    """
    key = f"{checkpoint.id}:{checkpoint.path}"
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    from transformers import AutoModelForCausalLM, AutoTokenizer
    engine.quiet_transformers()  # a bar per load would drown the loop's own output
    path = Path(checkpoint.path)
    device = engine.device_for_training()
    common = {"trust_remote_code": options.trust_remote_code}
    if checkpoint.kind == "adapter" or (path / "adapter_config.json").is_file():
        from peft import PeftModel

        base_path = checkpoint.manifest.get("base_path") or _adapter_base(path)
        model = AutoModelForCausalLM.from_pretrained(base_path, use_safetensors=True, **common)
        model = PeftModel.from_pretrained(model, str(path))
    else:
        if path.is_dir() and not any(path.glob("*.safetensors")):
            raise UserError("holds no .safetensors weights", file=str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, **common)
    tokenizer = AutoTokenizer.from_pretrained(str(path), **common)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    bf16 = engine.use_bf16(options.bf16, device)
    _CACHE[key] = (model, tokenizer, device, bf16)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return _CACHE[key]


def _adapter_base(path: Path) -> str:
    config = json.loads((path / "adapter_config.json").read_text())
    return str(config["base_model_name_or_path"])


def prompt_layout(checkpoint: Checkpoint, tokenizer: Any, options: RunnerOptions) -> tuple[bool, str]:
    """``(chat, system_prompt)``: how this checkpoint's prompts are rendered — as it was trained
    (its manifest's ``chat_format``/``system_prompt``; raw where it records none), unless the
    options force a layout or a system prompt.

    :raises ConfigError: an unknown ``chat_format``, or ``chat`` for a tokenizer without a template.
    """
    if options.chat_format not in CHAT_FORMATS:
        raise ConfigError(f"unknown chat_format {options.chat_format!r}; expected one of {', '.join(CHAT_FORMATS)}",
                          field="evaluate.runner.chat_format")
    recorded = checkpoint.manifest.get("chat_format")
    chat = recorded == "chat" if options.chat_format == "auto" else options.chat_format == "chat"
    if chat and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("chat_format is chat but the checkpoint's tokenizer has no chat template",
                          field="evaluate.runner.chat_format")
    system = options.system_prompt or str(checkpoint.manifest.get("system_prompt") or "")
    return chat, system


def generate(
    checkpoint: Checkpoint,
    prompts: Sequence[str],
    options: RunnerOptions,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
) -> list[str]:
    """One completion per prompt: ``[BOS] prompt`` in (or the prompt as the user's turn of the chat
    template, for a checkpoint trained that way), text up to EOS out (the training layout).

    Prompts are sorted by length and left-padded per batch (less padding), then put back in order.
    """
    if not prompts:
        return []
    model, tokenizer, device, bf16 = load(checkpoint, options)
    chat, system = prompt_layout(checkpoint, tokenizer, options)
    if chat:
        encoded = [prompt_ids(chat_prompt(p, tokenizer, system), tokenizer, templated=True) for p in prompts]
    else:
        encoded = [prompt_ids(p, tokenizer) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    outputs: list[str] = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    sample = temperature > 0
    if sample:
        torch.manual_seed(options.seed)
    for start in range(0, len(order), max(1, options.batch_size)):
        members = order[start : start + options.batch_size]
        width = max(len(encoded[i]) for i in members)
        ids = torch.full((len(members), width), pad, dtype=torch.long)
        mask = torch.zeros((len(members), width), dtype=torch.long)
        for row, i in enumerate(members):
            seq = encoded[i]
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        kwargs: dict[str, Any] = {"do_sample": sample, "max_new_tokens": max_new_tokens, "use_cache": True,
                                  "eos_token_id": tokenizer.eos_token_id, "pad_token_id": pad}
        if sample:
            kwargs.update(temperature=temperature, top_p=options.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        for row, i in enumerate(members):
            outputs[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True)
    return outputs
