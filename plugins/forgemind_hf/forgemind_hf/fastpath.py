"""Fine-tuning a pretrained base fast on a CPU: train only the top layers, run the frozen bottom
once, and compute the vocabulary head only where there is a label.

On SmolLM2-135M (30 layers, a 49,152-token vocabulary) the language-model head alone costs as
much as nine decoder layers per token, and a classification example has ~4 label tokens in ~80.
Three options of the ``hf`` trainer remove that waste; each is exact, not an approximation of
the same training:

- ``head: labels`` — the head runs on the positions whose next token is a label, not on every
  position; the loss is the same mean cross-entropy over label tokens.
- ``train_layers: K`` — LoRA adapters (or, for full fine-tuning, trainable weights) only in the
  top K decoder layers; gradients stop there, so the bottom layers need no backward pass.
- ``cache_frozen: true`` (with ``train_layers``) — the frozen bottom layers' output for each
  training sequence is computed once (the first time the sequence is seen) and reused every later
  epoch, so the bottom layers run once per sequence instead of once per epoch.

Works on decoder models whose ``get_decoder()`` has ``layers`` (a ``ModuleList``) and ``norm``
(Llama, Mistral, Qwen2, Gemma, SmolLM2 ...); anything else is one ConfigError naming the option.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from forgemind_hookspecs.errors import ConfigError

from . import engine

__all__ = ["FrozenBottomCache", "decoder_layers", "freeze_below", "label_loss", "linear_names", "make_loss", "top_layer_indices"]


class _Pass(torch.nn.Module):
    """A decoder layer that hands its input straight on (transformers 5 layers return a tensor)."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states


def _decoder(model: torch.nn.Module) -> Any:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    if decoder is None or not isinstance(getattr(decoder, "layers", None), torch.nn.ModuleList) \
            or not hasattr(decoder, "norm"):
        raise ConfigError(
            f"train_layers and head: labels need a decoder with layers and a final norm; "
            f"{type(base).__name__} has none",
            field="train.train_layers",
        )
    return decoder


def decoder_layers(model: torch.nn.Module) -> int:
    """How many decoder layers ``model`` has."""
    return len(_decoder(model).layers)


def top_layer_indices(total: int, train_layers: int) -> list[int]:
    """The indices of the top ``train_layers`` of ``total`` layers (all of them for 0).

    :raises ConfigError: ``train_layers`` is negative or more than the model has.
    """
    if train_layers < 0 or train_layers > total:
        raise ConfigError(f"train_layers is {train_layers}; this base has {total} decoder layers "
                          f"(0 trains them all)", field="train.train_layers")
    return list(range(total - (train_layers or total), total))


def linear_names(model: torch.nn.Module) -> list[str]:
    """The names of the linear layers inside the decoder layers (``q_proj``, ..., ``down_proj``):
    what ``target_modules: all-linear`` means there, as the list peft needs with ``train_layers``."""
    layers = _decoder(model).layers
    return sorted({name.rsplit(".", 1)[-1] for name, module in layers.named_modules()
                   if isinstance(module, torch.nn.Linear)})


def freeze_below(model: torch.nn.Module, first: int) -> None:
    """Full fine-tuning of the top layers: only decoder layers ``first`` and up and the final norm
    keep ``requires_grad`` (embeddings and the head, often tied to them, are frozen too)."""
    decoder = _decoder(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for layer in list(decoder.layers)[first:]:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    for parameter in decoder.norm.parameters():
        parameter.requires_grad_(True)


@contextlib.contextmanager
def _only_layers(decoder: Any, keep: range, *, norm: bool) -> Iterator[None]:
    """Within the block, the decoder runs only the layers in ``keep`` (the others pass their input
    on) and, unless ``norm``, skips its final norm. The model is restored on leaving, errors too."""
    saved = list(decoder.layers)
    saved_norm = decoder.norm
    try:
        for i in range(len(saved)):
            if i not in keep:
                decoder.layers[i] = _Pass()
        if not norm:
            decoder.norm = torch.nn.Identity()
        yield
    finally:
        for i, layer in enumerate(saved):
            decoder.layers[i] = layer
        decoder.norm = saved_norm


def label_loss(hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module) -> torch.Tensor:
    """Mean next-token cross-entropy over the label tokens, with ``head`` applied only at the
    positions that predict a label (``labels`` is -100 elsewhere), in float32 like transformers'."""
    shifted = labels[:, 1:]
    keep = shifted != -100
    logits = head(hidden[:, :-1][keep]).float()
    return torch.nn.functional.cross_entropy(logits, shifted[keep])


class FrozenBottomCache:
    """The frozen bottom layers' output per training sequence, filled on first sight.

    ``hidden(batch, members)`` returns the hidden state entering the first trainable layer for a
    packed batch: cached rows for sequences seen before, one bottom pass (no grad) over the batch
    for any it has not seen. ``members`` are the sequences' global indices in batch order.
    """

    def __init__(self, model: torch.nn.Module, first_trainable: int, device: torch.device, bf16: bool) -> None:
        self.decoder = _decoder(model)
        self.first = first_trainable
        self.device, self.bf16 = device, bf16
        self.rows: dict[int, torch.Tensor] = {}
        self.bottom_passes = 0

    def hidden(self, batch: engine.Packed, members: Sequence[int]) -> torch.Tensor:
        layout = batch.layout
        if any(m not in self.rows for m in members):
            with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16), \
                    _only_layers(self.decoder, range(self.first), norm=False):
                out = self.decoder(input_ids=batch.input_ids.to(self.device),
                                   position_ids=batch.position_ids.to(self.device), use_cache=False).last_hidden_state
            self.bottom_passes += 1
            for row, at, local, n in layout:
                self.rows.setdefault(members[local], out[row, at : at + n].detach().clone())
        width = batch.input_ids.shape[1]
        first = next(iter(self.rows.values()))
        hidden = torch.zeros((batch.input_ids.shape[0], width, first.shape[-1]), dtype=first.dtype,
                             device=self.device)
        for row, at, local, n in layout:
            hidden[row, at : at + n] = self.rows[members[local]][:n]
        return hidden


def make_loss(
    model: torch.nn.Module,
    *,
    head: str,
    first_trainable: int,
    cache: FrozenBottomCache | None,
    members_at: Callable[[int], Sequence[int]],
) -> Callable[[torch.nn.Module, engine.Packed, int, torch.device], torch.Tensor]:
    """The training loss for :func:`engine.train_loop` (its ``loss_fn``) with these options.

    ``head`` is ``labels`` (the head only at label positions) or ``all`` (transformers' own loss);
    ``cache`` (optional) supplies the frozen bottom's output; ``members_at(step)`` names the
    step's sequences for the cache.
    """
    decoder = _decoder(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    output = base.get_output_embeddings()
    total = len(decoder.layers)

    def loss(forward: torch.nn.Module, batch: engine.Packed, step: int, device: torch.device) -> torch.Tensor:
        labels = batch.labels.to(device)
        positions = batch.position_ids.to(device)
        if cache is not None:
            entering = cache.hidden(batch, members_at(step))
            with _only_layers(decoder, range(first_trainable, total), norm=True):
                hidden = decoder(inputs_embeds=entering, position_ids=positions, use_cache=False).last_hidden_state
        elif head == "labels":
            hidden = decoder(input_ids=batch.input_ids.to(device), position_ids=positions,
                             use_cache=False).last_hidden_state
        else:
            return forward(input_ids=batch.input_ids.to(device), position_ids=positions, labels=labels,
                           use_cache=False).loss
        if head == "labels":
            return label_loss(hidden, labels, output)
        logits = output(hidden).float()
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())

    return loss
