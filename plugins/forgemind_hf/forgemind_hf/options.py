"""Typed settings of the ``hf`` trainer and runner, and the pre-training presets.

Pure attrs, no heavy imports: ``forge plugins`` and the goal loader read these without torch.
Goal files write the field names as they are (``train: {backend: hf, epochs: 2, lora_r: 16}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from attrs import define, field, frozen
from forgemind_hookspecs.bounds import FieldValueError, above, at_least, between, one_of
from forgemind_hookspecs.errors import ConfigError

__all__ = ["LATE_FIELDS", "METHODS", "PRESETS", "Preset", "RunnerOptions", "TrainerOptions", "merge_options", "preset"]

#: The fine-tuning methods of the ``hf`` trainer (``limits.method``; declared on the trainer as
#: ``HFTrainer.methods`` so that goal validation checks it without importing torch).
METHODS: tuple[str, ...] = ("full", "lora", "qlora")


@define(frozen=True)
class TrainerOptions:
    """Hyper-parameters of the ``hf`` trainer (every field has a default).

    ``batch_size`` counts *examples* per optimiser step for fine-tuning (they are packed into
    rows of at most ``max_length`` tokens, so no compute goes to padding) and *rows of
    ``seq_len`` tokens* per step for pre-training. ``bf16`` is ``"auto"`` (on where the hardware
    computes bf16 natively: CUDA with bf16, CPUs with AVX512-BF16/AMX), ``true`` or ``false``.

    ``chat_format`` says how a prompt/completion example is laid out: ``auto`` (the default) puts it
    through the base's chat template when the base is an instruction-tuned chat model (a GGUF or Hub
    base whose tokenizer has a template; never a base pre-trained here from scratch), ``raw`` never,
    ``chat`` always. ``system_prompt`` is the system message of that conversation (empty: the
    template's own default, if any). The runner reads both from the checkpoint's manifest.
    ``chat_template`` is the template chat examples are rendered with: ``base`` (the tokenizer's
    own), ``chatml`` or a Jinja file; it is saved with the checkpoint's tokenizer. ``chat_loss``
    ``assistant`` learns every assistant turn of a multi-turn chat, ``last`` only the final one
    (:mod:`forgemind_hf.chat`).

    The fast path (:mod:`forgemind_hf.fastpath`; each is exact, not an approximation): ``head:
    labels`` runs the vocabulary head only where the next token is a label (``all``: everywhere,
    transformers' own loss); ``train_layers: K`` puts LoRA adapters (full: trainable weights) in
    the top K decoder layers only (0: all); ``cache_frozen`` (with ``train_layers``, one process)
    runs the frozen bottom layers once per training sequence and reuses their output every epoch.
    """

    epochs: float = field(default=2.0, validator=above(0))
    learning_rate: float = field(default=1e-3, validator=above(0))
    batch_size: int = field(default=16, validator=at_least(1))
    lora_r: int = field(default=16, validator=at_least(1))
    lora_alpha: int = 32
    lora_dropout: float = field(default=0.05, validator=between(0, 1))
    target_modules: tuple[str, ...] | str = "all-linear"
    max_length: int = field(default=256, validator=at_least(1))
    warmup_ratio: float = field(default=0.05, validator=between(0, 1))
    weight_decay: float = field(default=0.0, validator=at_least(0))
    scheduler: str = "linear"
    bf16: str | bool = "auto"
    seed: int = 0
    save_every_steps: int = 50
    keep_checkpoints: int = 2
    merge: bool = False
    price_per_gpu_hour: float = 2.0
    price_per_cpu_hour: float = 0.05
    calibration_steps: int = field(default=3, validator=at_least(1))
    calibration_bursts: int = field(default=3, validator=at_least(1))
    max_grad_norm: float = 1.0
    allow_cpu_4bit: bool = False
    trust_remote_code: bool = False
    log_every_steps: int = 1
    chat_format: str = "auto"
    system_prompt: str = ""
    head: str = field(default="all", validator=one_of("all", "labels"))
    train_layers: int = field(default=0, validator=at_least(0))
    cache_frozen: bool = True
    chat_template: str = "base"
    chat_loss: str = field(default="assistant", validator=one_of("assistant", "last"))


#: Fields added after checkpoint ids were published: they enter a checkpoint's id only when set
#: away from their default, so every checkpoint trained before them keeps its id.
LATE_FIELDS: dict[str, Any] = {"chat_format": "auto", "system_prompt": "", "head": "all", "train_layers": 0,
                               "cache_frozen": True, "chat_template": "base", "chat_loss": "assistant",
                               "calibration_bursts": 3}


@define(frozen=True)
class RunnerOptions:
    """Settings of the ``hf`` runner: prompts per forward pass and sampling defaults.

    ``max_new_tokens`` and ``temperature`` apply when the caller does not pass its own (the loop
    passes the goal's ``evaluate.runner.max_new_tokens``; ``forge generate`` has flags).
    ``chat_format`` ``auto`` renders prompts as the checkpoint was trained (its manifest's
    ``chat_format`` and ``system_prompt``; raw where it records none); ``raw`` or ``chat`` force one
    layout. A non-empty ``system_prompt`` replaces the recorded one.
    """

    batch_size: int = field(default=16, validator=at_least(1))
    max_new_tokens: int = field(default=64, validator=at_least(1))
    temperature: float = field(default=0.0, validator=at_least(0))
    top_p: float = field(default=1.0, validator=above(0, 1))
    seed: int = 0
    bf16: str | bool = "auto"
    trust_remote_code: bool = False
    chat_format: str = "auto"
    system_prompt: str = ""


@frozen
class Preset:
    """A Llama-architecture size for pre-training from scratch, and how long to train it.

    ``tokens`` caps the training tokens (the corpus is read up to ``corpus_bytes``);
    ``steps`` (0 = derived from ``tokens``) overrides it.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    context: int
    vocab: int
    seq_len: int
    batch_size: int
    learning_rate: float
    tokens: int
    corpus_bytes: int
    steps: int = 0
    warmup_ratio: float = 0.05


PRESETS: dict[str, Preset] = {
    # ~4.3M parameters; ~3 minutes on 2 CPU cores with bf16 autocast.
    "tiny": Preset("tiny", 4, 256, 4, 704, 512, 4096, 256, 8, 2e-3, 1_000_000, 4_000_000),
    # ~30M parameters; minutes on a GPU, an hour or so on a CPU.
    "small": Preset("small", 6, 512, 8, 1408, 1024, 8192, 512, 16, 1e-3, 20_000_000, 40_000_000),
    # ~120M parameters (GPU).
    "base": Preset("base", 12, 768, 12, 2048, 2048, 16384, 1024, 32, 6e-4, 300_000_000, 1_500_000_000),
}


def preset(name: str, overrides: Mapping[str, Any] | None = None) -> Preset:
    """The preset ``name`` with ``overrides`` (any :class:`Preset` field, e.g. ``steps``, ``tokens``).

    :raises ConfigError: unknown preset or override.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}", field="pretrain.preset")
    base = PRESETS[name]
    known = {f.name for f in attrs.fields(Preset)} - {"name"}
    extra = dict(overrides or {})
    bad = sorted(set(extra) - known - {"seed", "bf16", "save_every_steps"})
    if bad:
        raise ConfigError(
            f"unknown pre-training option(s) {', '.join(bad)}; expected {', '.join(sorted(known))}",
            field="pretrain.options",
        )
    return attrs.evolve(base, **{k: v for k, v in extra.items() if k in known})


def merge_options(options: TrainerOptions, overrides: Mapping[str, Any] | None) -> TrainerOptions:
    """``options`` with ``overrides`` (a plan's or request's hyper-parameters) applied.

    :raises ConfigError: an override names no field of :class:`TrainerOptions`.
    """
    if not overrides:
        return options
    known = {f.name: f for f in attrs.fields(TrainerOptions)}
    bad = sorted(set(overrides) - set(known))
    if bad:
        raise ConfigError(
            f"unknown training option(s) {', '.join(bad)}; expected some of {', '.join(sorted(known))}",
            field=f"train.{bad[0]}",
        )
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        default = known[key].default
        try:
            if isinstance(default, bool) or key == "bf16":
                values[key] = _as_bool_or_auto(value) if key == "bf16" else _as_bool(value)
            elif isinstance(default, int):
                values[key] = int(value)
            elif isinstance(default, float):
                values[key] = float(value)
            elif key == "target_modules":
                values[key] = value if isinstance(value, str) else tuple(value)
            else:
                values[key] = value
        except (TypeError, ValueError):
            raise ConfigError(
                f"{value!r} is not a valid {type(default).__name__}", field=f"train.{key}"
            ) from None
    try:
        return attrs.evolve(options, **values)
    except FieldValueError as error:  # a declared bound: one sentence naming the option
        raise ConfigError(error.message, field=f"train.{error.name}") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(value, int):
        return bool(value)
    raise ValueError(value)


def _as_bool_or_auto(value: Any) -> str | bool:
    if isinstance(value, str) and value.lower() == "auto":
        return "auto"
    return _as_bool(value)

