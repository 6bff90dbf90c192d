"""Exporters: a checkpoint as a Hugging Face folder, an Ollama bundle or a GGUF file.

The kernel (``forge export``) writes ``forge.yaml`` and the model card beside what these write;
it hands each exporter ``metadata`` with the evaluation's generation settings
(``generation: {temperature, max_new_tokens}``). Heavy imports live in :mod:`.export_impl`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from attrs import frozen
from forgemind_hookspecs import Checkpoint, StageContext, hookimpl

__all__ = ["GGUFExporter", "HFExporter", "OllamaExporter", "forgemind_register_exporters"]


class HFExporter:
    """A transformers folder (safetensors, tokenizer, chat template) for from_pretrained and push_to_hub."""

    name: ClassVar[str] = "hf"

    @frozen
    class Options:
        """:ivar mode: for a LoRA checkpoint: ``merged`` (the adapter merged into the base at the
            top of the folder), ``adapter`` (the adapter alone, for peft), or ``both`` (merged
            model at the top, the adapter in ``adapter/``). Full checkpoints are always whole."""

        mode: Literal["merged", "adapter", "both"] = "both"

    def __init__(self, options: HFExporter.Options | None = None) -> None:
        self.options = options or HFExporter.Options()

    def export(self, checkpoint: Checkpoint, out_dir: Path, metadata: Mapping[str, Any], ctx: StageContext) -> Path:
        from .export_impl import write_hf

        return write_hf(checkpoint, Path(out_dir), self.options.mode)

    def push(self, folder: Path, repo_id: str, ctx: StageContext, *, private: bool = False) -> dict[str, Any]:
        """Upload the finished bundle ``folder`` (model, tokenizer, forge.yaml, README.md) to the
        Hub repo ``repo_id`` with ``huggingface_hub`` (token from ``HF_TOKEN``, see :mod:`.hub`)."""
        from .hub import push_folder

        result = push_folder(Path(folder), repo_id, private=private)
        ctx.log.info("pushed the bundle to the Hub", repo_id=repo_id, commit=result["commit_oid"])
        return result


class GGUFExporter:
    """One GGUF file (Llama architecture) for llama.cpp, Ollama and LM Studio, written with `gguf`."""

    name: ClassVar[str] = "gguf"

    @frozen
    class Options:
        """:ivar dtype: ``f32`` (exact), ``f16`` (half the size) or ``q8_0`` (about a quarter:
            8-bit weights with one scale per 32, quantised by the ``gguf`` package as llama.cpp's
            converter does; matrices whose rows are not whole blocks stay f16) for the weight
            matrices. Norms stay f32 in every case."""

        dtype: Literal["f32", "f16", "q8_0"] = "f32"

    def __init__(self, options: GGUFExporter.Options | None = None) -> None:
        self.options = options or GGUFExporter.Options()

    def export(self, checkpoint: Checkpoint, out_dir: Path, metadata: Mapping[str, Any], ctx: StageContext) -> Path:
        from .export_impl import write_gguf

        return write_gguf(checkpoint, Path(out_dir), dtype=self.options.dtype, name=str(metadata.get("name") or ""))


class OllamaExporter:
    """An Ollama bundle: a Modelfile (FROM, ADAPTER, TEMPLATE, PARAMETER) with the model beside it."""

    name: ClassVar[str] = "ollama"

    @frozen
    class Options:
        """:ivar source: ``gguf`` (``FROM ./model.gguf``), ``safetensors`` (``FROM ./model``, the
            merged model folder), or ``adapter`` (``FROM ./base`` plus ``ADAPTER ./adapter``; LoRA
            checkpoints only)."""

        source: Literal["gguf", "safetensors", "adapter"] = "gguf"
        dtype: Literal["f32", "f16", "q8_0"] = "f32"

    def __init__(self, options: OllamaExporter.Options | None = None) -> None:
        self.options = options or OllamaExporter.Options()

    def export(self, checkpoint: Checkpoint, out_dir: Path, metadata: Mapping[str, Any], ctx: StageContext) -> Path:
        from .export_impl import write_ollama

        return write_ollama(checkpoint, Path(out_dir), self.options.source, self.options.dtype, metadata)


@hookimpl
def forgemind_register_exporters(register: Callable[[type], None]) -> None:
    """Offer the ``hf``, ``gguf`` and ``ollama`` exporters."""
    register(HFExporter)
    register(GGUFExporter)
    register(OllamaExporter)
