"""forgemind-hf: the Forge on Hugging Face — pre-training, fine-tuning, estimates, inference.

This module is what the ``forgemind`` entry point ``hf`` loads. It stays light (no torch,
transformers or peft at import) so ``forge --help`` and ``forge plugins`` remain fast: the
backends import their heavy modules inside their methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from forgemind_hookspecs import hookimpl
from forgemind_hookspecs.backends import StageContext, TrainRequest
from forgemind_hookspecs.records import Checkpoint, Estimate, PretrainSpec

from .export import GGUFExporter, HFExporter, OllamaExporter, forgemind_register_exporters
from .options import METHODS, PRESETS, RunnerOptions, TrainerOptions, merge_options
from .server import TransformersServer, forgemind_register_servers

__all__ = [
    "PRESETS",
    "GGUFExporter",
    "HFExporter",
    "HFRunner",
    "HFTrainer",
    "OllamaExporter",
    "RunnerOptions",
    "TrainerOptions",
    "TransformersServer",
    "forgemind_register_commands",
    "forgemind_register_exporters",
    "forgemind_register_runners",
    "forgemind_register_servers",
    "forgemind_register_trainers",
]


class HFTrainer:
    """Pre-train from scratch and fine-tune (full, LoRA, QLoRA) Hugging Face causal LMs."""

    name: ClassVar[str] = "hf"
    Options: ClassVar[type] = TrainerOptions
    #: What ``limits.method`` and ``pretrain.preset`` may be: goal validation asks the trainer.
    methods: ClassVar[tuple[str, ...]] = METHODS
    presets: ClassVar[tuple[str, ...]] = tuple(PRESETS)

    def __init__(self, options: TrainerOptions | None = None) -> None:
        self.options = options or TrainerOptions()

    def pretrain(self, spec: PretrainSpec, ctx: StageContext) -> Checkpoint:
        """Build (or reuse from ``ctx.cache_dir/bases``) the base model ``spec`` describes."""
        from .pretrain import pretrain

        return pretrain(spec, ctx, price_per_gpu_hour=self.options.price_per_gpu_hour,
                        price_per_cpu_hour=self.options.price_per_cpu_hour)

    def load_base(self, base_model: str, ctx: StageContext) -> Checkpoint:
        """``"pretrain"`` builds the goal's pre-trained base; otherwise a shipped model by name
        (``smollm2-135m-instruct``), a ``.gguf`` file (both converted once into the cache), a local
        Hugging Face folder or a hub id (see :mod:`forgemind_hf.bases`)."""
        if base_model == "pretrain":
            spec = ctx.goal.pretrain if ctx.goal is not None else PretrainSpec()
            return self.pretrain(spec, ctx)
        from .bases import resolve_base

        return resolve_base(base_model, ctx)

    def estimate(self, request: TrainRequest, ctx: StageContext) -> Estimate:
        """Exact tokens and steps; seconds from a short calibration run on this hardware."""
        from .finetune import estimate

        return estimate(request, merge_options(self.options, request.hyperparameters), ctx)

    def train(self, request: TrainRequest, ctx: StageContext) -> Checkpoint:
        """Fine-tune, resuming from the newest checkpoint in ``request.output_dir``."""
        from .finetune import train

        return train(request, merge_options(self.options, request.hyperparameters), ctx)


class HFRunner:
    """Batched generation (KV cache, greedy or sampled) on a ForgeMind or Hugging Face checkpoint."""

    name: ClassVar[str] = "hf"
    Options: ClassVar[type] = RunnerOptions

    def __init__(self, options: RunnerOptions | None = None) -> None:
        self.options = options or RunnerOptions()

    def generate(
        self,
        checkpoint: Checkpoint,
        prompts: Sequence[str],
        ctx: StageContext,
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
    ) -> list[str]:
        """One completion per prompt, stopping at EOS (the layout training used); the options'
        ``max_new_tokens``/``temperature`` apply where the caller passes none."""
        from .runner import generate

        return generate(
            checkpoint,
            prompts,
            self.options,
            max_new_tokens=self.options.max_new_tokens if max_new_tokens is None else max_new_tokens,
            temperature=self.options.temperature if temperature is None else temperature,
        )


@hookimpl
def forgemind_register_trainers(register: Callable[[type], None]) -> None:
    """Offer the ``hf`` trainer."""
    register(HFTrainer)


@hookimpl
def forgemind_register_runners(register: Callable[[type], None]) -> None:
    """Offer the ``hf`` runner."""
    register(HFRunner)


@hookimpl
def forgemind_register_commands(cli: Any) -> None:
    """Add ``pretrain``, ``train``, ``estimate`` and ``generate`` to the ``forge`` CLI."""
    from .cli import register_commands

    register_commands(cli)

