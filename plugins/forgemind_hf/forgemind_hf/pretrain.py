"""Pre-training from scratch: corpus -> byte-level BPE tokenizer -> Llama of a preset size.

Content-addressed: the base's key hashes the corpus text actually used, the preset and the
options, and the finished base lives in ``<cache>/bases/<key>``; asking again returns it at
once. Training runs in ``<key>.partial`` with resumable checkpoints, so a killed pre-training
resumes; the folder is renamed into place only when complete.
"""

from __future__ import annotations

import ast
import functools
import glob
import hashlib
import json
import os
import shutil
import sysconfig
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgemind_hookspecs.backends import StageContext
from forgemind_hookspecs.converter import to_dict
from forgemind_hookspecs.dataformats import read_examples
from forgemind_hookspecs.errors import DataError, UserError
from forgemind_hookspecs.records import Checkpoint, PretrainSpec, content_hash

from .logs import log
from .options import Preset, preset

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "base_key", "corpus_files", "corpus_texts", "pretrain", "python_docs_texts",
           "train_tokenizer"]

#: Role markers are single special tokens; a finished turn ends with EOS.
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".jsonl"}
_STDLIB_SKIP = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "turtledemo", "__pycache__"}


def corpus_files(corpus: str) -> list[Path]:
    """The files of a corpus spec: ``stdlib``, a file, a folder (recursive) or a glob.

    Order is a deterministic pseudo-shuffle (by path hash), so a byte cap samples the whole
    corpus rather than its alphabetically first package.
    """
    if corpus == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        files = [
            p for p in root.rglob("*.py")
            if not (set(p.relative_to(root).parts[:-1]) & _STDLIB_SKIP) and not p.name.startswith("test_")
        ]
        rel = {p: str(p.relative_to(root)) for p in files}
    else:
        path = Path(corpus).expanduser()
        if path.is_file():
            return [path]
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _TEXT_SUFFIXES]
        else:
            files = [Path(p) for p in glob.glob(os.path.expanduser(corpus), recursive=True) if Path(p).is_file()]
        rel = {p: str(p) for p in files}
    if not files:
        raise UserError(f"the corpus {corpus!r} names no readable text files", field="pretrain.corpus")
    return sorted(files, key=lambda p: hashlib.sha256(rel[p].encode()).hexdigest())


@functools.lru_cache(maxsize=1)
def python_docs_texts() -> tuple[str, ...]:
    """The ``python-docs`` corpus: English prose that every Python installation ships — the
    docstrings of the standard library's modules, classes and functions (read with ``ast``,
    never imported) and the reference topics of ``pydoc_data`` (~2 MB). A base for tasks in
    English rather than code. One document per module, in the order of :func:`corpus_files`."""
    texts: list[str] = []
    for path in corpus_files("stdlib"):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        docs = [
            doc for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and (doc := ast.get_docstring(node))
        ]
        if docs:
            texts.append("\n\n".join(docs))
    topics = Path(sysconfig.get_paths()["stdlib"]) / "pydoc_data" / "topics.py"
    if topics.is_file():
        tree = ast.parse(topics.read_text(encoding="utf-8"))
        texts.extend(
            node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > 200
        )
    return tuple(texts)


def corpus_texts(corpus: str, max_bytes: int) -> list[str]:
    """Read documents of the corpus until ``max_bytes`` (UTF-8) are collected.

    ``stdlib`` is the standard library's source, ``python-docs`` its English prose (see
    :func:`python_docs_texts`); otherwise a file, folder or glob: ``.jsonl`` files use their
    ``text`` field (validated row by row); other files are one document each; undecodable
    files in folders/globs are skipped (the stdlib has a few).
    """
    texts: list[str] = []
    used = 0
    if corpus == "python-docs":
        for doc in python_docs_texts():
            if used >= max_bytes:
                break
            doc = doc[: max_bytes - used]
            texts.append(doc)
            used += len(doc.encode("utf-8"))
        return texts
    for path in corpus_files(corpus):
        if used >= max_bytes:
            break
        if path.suffix.lower() == ".jsonl":
            docs = [e.completion for e in read_examples(path, format="text")]
        else:
            try:
                docs = [path.read_text(encoding="utf-8")]
            except (UnicodeDecodeError, OSError):
                if corpus not in ("stdlib",) and Path(corpus).is_file():
                    raise DataError("is not UTF-8 text", file=str(path)) from None
                continue
        for doc in docs:
            if used >= max_bytes:
                break
            if doc.strip():
                doc = doc[: max_bytes - used] if len(doc) > max_bytes - used else doc
                texts.append(doc)
                used += len(doc.encode("utf-8"))
    if not texts:
        raise UserError(f"the corpus {corpus!r} holds no text", field="pretrain.corpus")
    return texts


def base_key(texts: list[str], p: Preset, options: Mapping[str, Any]) -> str:
    """The content address of a base: corpus text, preset and options."""
    digest = hashlib.sha256()
    for t in texts:
        digest.update(hashlib.sha256(t.encode("utf-8")).digest())
    return content_hash({"corpus": digest.hexdigest(), "preset": to_dict(p), "options": dict(options), "v": 1})


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer (no unknown tokens) with BOS/EOS/PAD and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[3:]})
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 1 << 30
    return fast


def build_model(p: Preset, tokenizer: Any, seed: int) -> Any:
    """A randomly initialised Llama of the preset's size (tied embeddings)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=p.hidden,
        intermediate_size=p.ffn,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.heads,
        max_position_embeddings=p.context,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def _token_rows(texts: list[str], tokenizer: Any, seq_len: int) -> Any:
    import torch

    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(eos)
    n = len(stream) // seq_len
    if n < 2:
        raise UserError(
            f"the corpus has only {len(stream)} tokens, fewer than two rows of {seq_len}", field="pretrain.corpus"
        )
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)


def _val_loss(model: Any, rows: Any, bf16: bool, device: Any) -> float:
    import torch

    was_training = model.training
    model.eval()
    losses = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(rows), 8):
            chunk = rows[i : i + 8].to(device)
            losses.append(float(model(input_ids=chunk, labels=chunk, use_cache=False).loss))
    model.train(was_training)
    return sum(losses) / max(len(losses), 1)


def pretrain(spec: PretrainSpec, ctx: StageContext, *, price_per_gpu_hour: float = 2.0,
             price_per_cpu_hour: float = 0.05) -> Checkpoint:
    """Build (or reuse) the base model ``spec`` describes; return it as a ``full`` Checkpoint."""
    from . import engine

    engine.quiet_transformers()
    options = dict(spec.options)
    p = preset(spec.preset, options)
    seed = int(options.get("seed", 0))
    texts = corpus_texts(spec.corpus, p.corpus_bytes)
    key = base_key(texts, p, options)
    # absolute: a manifest must not hold paths relative to whatever the working directory was
    bases = Path(ctx.cache_dir).expanduser().resolve() / "bases"
    final = bases / key
    if (final / "manifest.json").is_file():
        log(ctx, "info", "pre-trained base reused", key=key, path=str(final))
        return _checkpoint_from(final)

    import torch

    from . import engine

    started = time.time()
    work = bases / f"{key}.partial"
    work.mkdir(parents=True, exist_ok=True)
    tok_dir = work / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        tokenizer = train_tokenizer(texts, p.vocab)
        tokenizer.save_pretrained(tok_dir)
    device = engine.device_for_training()
    bf16 = engine.use_bf16(options.get("bf16", "auto"), device)
    rows = _token_rows(texts, tokenizer, p.seq_len)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(rows), generator=generator)
    n_val = max(1, min(16, len(rows) // 50))
    val, train_rows = rows[order[:n_val]], rows[order[n_val:]]
    steps = p.steps or max(1, p.tokens // (p.seq_len * p.batch_size))
    per_epoch = max(1, len(train_rows) // p.batch_size)
    rank, world = engine.distributed()
    if p.batch_size < world:
        raise UserError(f"batch_size {p.batch_size} is smaller than the {world} processes",
                        field="pretrain.options.batch_size")

    def batch_at(step: int) -> engine.Packed:
        """The step's rows; under DDP/FSDP only this rank's share (every world-th row)."""
        epoch, within = divmod(step, per_epoch)
        perm = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(seed * 7919 + epoch + 1))
        idx = perm[within * p.batch_size : (within + 1) * p.batch_size][rank::world]
        ids = train_rows[idx]
        positions = torch.arange(p.seq_len).expand_as(ids)
        return engine.Packed(ids, ids.clone(), positions, int(ids.numel()))

    model = build_model(p, tokenizer, seed).to(device)
    val_before = _val_loss(model, val, bf16, device)
    cfg = engine.LoopConfig(
        total_steps=steps,
        learning_rate=p.learning_rate,
        warmup_ratio=p.warmup_ratio,
        scheduler="cosine",
        bf16=bf16,
        save_every_steps=int(options.get("save_every_steps", 100)),
        seed=seed,
        log_every_steps=max(1, steps // 100),
        description=f"pre-train {p.name}",
    )
    result = engine.train_loop(model, batch_at, cfg, work / "checkpoints", ctx, device=device)
    if engine.is_sharded(model):  # FSDP: gather the whole model; rank 0 continues with a plain copy
        state = engine.full_state_dict(model)
        if rank == 0:
            model = build_model(p, tokenizer, seed)
            model.load_state_dict(state)
        del state
    if rank != 0:  # rank 0 evaluates and writes the base; the others wait for it
        engine.barrier(world)
        return _checkpoint_from(final)
    val_after = _val_loss(model, val, bf16, next(model.parameters()).device)
    out = work / "model"
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    hours = result.seconds / 3600
    cost = hours * (price_per_gpu_hour if device.type == "cuda" else price_per_cpu_hour) * world
    n_params = sum(t.numel() for t in model.parameters())
    manifest: dict[str, Any] = {
        "kind": "pretrain",
        "corpus": spec.corpus,
        "corpus_documents": len(texts),
        "corpus_tokens": int(rows.numel()),
        "preset": to_dict(p),
        "options": options,
        "parameters": n_params,
        "seed": seed,
        "steps": steps,
        "tokens": result.tokens,
        "val_loss_before": val_before,
        "val_loss_after": val_after,
        "loss_curve": _downsample(result.losses),
        "duration_s": result.seconds,
        "wall_s": time.time() - started,
        "cost_usd": cost,
        "bf16": bf16,
        "world_size": world,
        "parallelism": engine.parallelism(world),
        "hardware": engine.hardware(),
        "libraries": engine.library_versions(),
        "weights_sha256": engine.file_sha256(out / "model.safetensors"),
    }
    checkpoint = Checkpoint(id=f"base-{key}", path=str(final / "model"), base_model=f"pretrain:{spec.preset}",
                            method="pretrain", kind="full", manifest=manifest)
    _write_manifest(out, checkpoint)
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    shutil.copy2(out / "manifest.json", work / "manifest.json")
    if final.exists():  # another process finished first: keep theirs
        shutil.rmtree(work, ignore_errors=True)
    else:
        os.replace(work, final)
    engine.barrier(world)
    ctx.emit("metric", {"name": "pretrain.val_loss", "value": val_after, "step": steps})
    log(ctx, "info", "pre-trained base", key=key, steps=steps, val_loss=val_after, seconds=round(result.seconds, 1))
    return _checkpoint_from(final)


def _downsample(values: list[float], points: int = 200) -> list[float]:
    if len(values) <= points:
        return [round(v, 5) for v in values]
    stride = len(values) / points
    return [round(values[int(i * stride)], 5) for i in range(points)] + [round(values[-1], 5)]


def _write_manifest(folder: Path, checkpoint: Checkpoint) -> None:
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps({"checkpoint": to_dict(checkpoint)}, indent=1, default=str))
    os.replace(tmp, folder / "manifest.json")


def _checkpoint_from(folder: Path) -> Checkpoint:
    from forgemind_hookspecs.converter import from_dict

    from .bases import located

    data = json.loads((folder / "manifest.json").read_text())
    # a base cached before paths were absolute (or in a home that moved) holds a stale path
    return located(from_dict(Checkpoint, data["checkpoint"]), folder)

