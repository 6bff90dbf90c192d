"""What the exporters do (imports torch, transformers, peft, gguf: import only from their methods).

- :func:`write_hf`: ``save_pretrained`` of the (merged) model and its tokenizer, safetensors only.
- :func:`write_gguf`: a GGUF file for llama.cpp, following llama.cpp's ``convert_hf_to_gguf.py``
  for Llama: tensor names from ``gguf``'s tensor map, Q/K rows permuted to llama.cpp's rotary
  layout, the byte-level BPE vocabulary as tokenizer model ``gpt2`` with pre-tokenizer
  ``gpt-2`` (the GPT-2 split regex, which ``tokenizers``' ByteLevel pre-tokenizer uses), merges,
  special token ids and the chat template.
- :func:`write_ollama`: a Modelfile with the model as GGUF, as a safetensors folder, or as base
  plus adapter.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgemind_hookspecs.errors import UserError
from forgemind_hookspecs.records import Checkpoint

__all__ = ["go_template", "load_merged", "write_gguf", "write_hf", "write_ollama"]

_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def _is_adapter(checkpoint: Checkpoint) -> bool:
    return checkpoint.kind == "adapter" or (Path(checkpoint.path) / "adapter_config.json").is_file()


def _base_path(checkpoint: Checkpoint) -> str:
    base = checkpoint.manifest.get("base_path")
    if not base:
        base = json.loads((Path(checkpoint.path) / "adapter_config.json").read_text())["base_model_name_or_path"]
    return str(base)


def load_merged(checkpoint: Checkpoint) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the full model in fp32 on CPU, a LoRA adapter merged into its base
    (``merge_and_unload``). Safetensors only, no remote code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import engine

    engine.quiet_transformers()
    path = Path(checkpoint.path)
    if _is_adapter(checkpoint):
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(_base_path(checkpoint), use_safetensors=True)
        model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    else:
        if not any(path.glob("*.safetensors")):
            raise UserError("holds no .safetensors weights", file=str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model.eval()
    return model, tokenizer


def write_hf(checkpoint: Checkpoint, out: Path, mode: str) -> Path:
    """A folder ``AutoModelForCausalLM.from_pretrained`` (or, for ``mode=adapter``, peft's
    ``AutoPeftModelForCausalLM``) reads as is; returns the folder."""
    out.mkdir(parents=True, exist_ok=True)
    adapter = _is_adapter(checkpoint)
    if adapter and mode in ("adapter", "both"):
        target = out if mode == "adapter" else out / "adapter"
        target.mkdir(parents=True, exist_ok=True)
        for name in _ADAPTER_FILES:
            shutil.copyfile(Path(checkpoint.path) / name, target / name)
    if adapter and mode == "adapter":
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(checkpoint.path).save_pretrained(out)
        return out
    model, tokenizer = load_merged(checkpoint)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------------
# GGUF
# --------------------------------------------------------------------------------------------


def _permute(weights: Any, n_head: int, n_head_kv: int | None) -> Any:
    """llama.cpp's rotary layout for Q/K rows (``LlamaModel.permute`` in convert_hf_to_gguf.py)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _vocab(tokenizer: Any) -> tuple[list[str], list[int]]:
    """Tokens in id order with their GGUF token types (as convert_hf_to_gguf's ``get_vocab_base``)."""
    import gguf

    vocab = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.get_added_vocab()
    special = set(tokenizer.all_special_ids)
    tokens, types = [], []
    for i in range(size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = by_id[i]
        tokens.append(token)
        if token in added:
            types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


#: GGUF dtype -> the file type written in the header (``gguf.LlamaFileType``).
_FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0"}


def _add_tensor(writer: Any, name: str, array: Any, dtype: str) -> None:
    """One tensor as llama.cpp's converter writes it: 1-D tensors (norms) stay f32; for ``q8_0``
    each matrix whose rows are whole 32-value blocks is quantised with ``gguf.quants`` (8-bit
    values, one f16 scale per block), any other in f16."""
    import gguf
    import numpy as np

    if dtype == "f32" or array.ndim == 1:
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
        return
    if dtype == "q8_0":
        qtype = gguf.GGMLQuantizationType.Q8_0
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if array.shape[-1] % block == 0:
            data = gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)
            writer.add_tensor(name, data, raw_dtype=qtype)  # byte shape -> element shape
            return
    writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float16))


def _gguf_chat_template(tokenizer: Any) -> str:
    """The chat template as llama.cpp should render it: ForgeMind's runner and trainer put BOS
    before a rendered conversation that does not start with it (``text.prompt_ids``), while
    llama.cpp's chat handler adds no BOS of its own to a Jinja template; so a template whose
    output does not start with BOS gets ``{{ bos_token }}`` in front, and both see the same tokens."""
    template = str(tokenizer.chat_template)
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or tokenizer.bos_token_id is None:
        return template
    try:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                                 tokenize=False)
    except Exception:  # a template that needs more than one user turn: leave it as written
        return template
    return template if str(rendered).startswith(bos) else "{{ bos_token }}" + template


def write_gguf(checkpoint: Checkpoint, out: Path, *, dtype: str = "f32", name: str = "",
               filename: str = "model.gguf") -> Path:
    """Write ``out/model.gguf`` from the (merged) model; Llama architecture only."""
    import gguf

    model, tokenizer = load_merged(checkpoint)
    config = model.config
    if config.model_type != "llama":
        raise UserError(f"GGUF export supports Llama-architecture models; this one is {config.model_type!r}",
                        field="target")
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("GGUF export needs a fast (tokenizer.json) byte-level BPE tokenizer", field="target")
    tok_json = json.loads(tokenizer.backend_tokenizer.to_str())
    if (tok_json.get("model") or {}).get("type") != "BPE":
        raise UserError("GGUF export supports byte-level BPE tokenizers only", field="target")
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    n_layers = config.num_hidden_layers
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head

    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(name or Path(checkpoint.path).name)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") if isinstance(rope, Mapping) else None
    writer.add_rope_freq_base(float(theta or getattr(config, "rope_theta", 10000.0)))
    writer.add_vocab_size(int(config.vocab_size))
    if dtype not in _FILE_TYPES:
        raise UserError(f"unknown GGUF dtype {dtype!r}; choose {', '.join(_FILE_TYPES)}", field="dtype")
    writer.add_file_type(getattr(gguf.LlamaFileType, _FILE_TYPES[dtype]))

    tokens, types = _vocab(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = (tok_json.get("model") or {}).get("merges") or []
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    for kind, token_id in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                           ("pad", tokenizer.pad_token_id)):
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(int(token_id))
    writer.add_add_bos_token(tokenizer.bos_token_id is not None)
    writer.add_add_eos_token(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(_gguf_chat_template(tokenizer))

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    state = {k: v.detach().to("cpu").float().numpy() for k, v in model.state_dict().items()}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for key, array in state.items():
        if key.endswith("rotary_emb.inv_freq") or (tied and key == "lm_head.weight"):
            continue
        if key.endswith("self_attn.q_proj.weight"):
            array = _permute(array, n_head, n_head)
        elif key.endswith("self_attn.k_proj.weight"):
            array = _permute(array, n_head, n_kv)
        new_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise UserError(f"GGUF export cannot map the tensor {key!r}", field="target")
        _add_tensor(writer, new_name, array, dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# --------------------------------------------------------------------------------------------
# Ollama
# --------------------------------------------------------------------------------------------

#: Jinja chat templates Ollama's Go templates can say exactly, by their Jinja text.
_KNOWN_TEMPLATES: dict[str, str] = {
    # ForgeMind's pre-trained bases (forgemind_hf.pretrain.CHAT_TEMPLATE)
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}":
    "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}{EOS}\n{{ end }}<|assistant|>\n",
}


def go_template(chat_template: str | None, eos: str) -> str | None:
    """The Ollama ``TEMPLATE`` for a tokenizer's Jinja chat template, or ``None`` when it is not
    one this exporter can translate exactly."""
    if not chat_template:
        return None
    known = _KNOWN_TEMPLATES.get(chat_template)
    return known.replace("{EOS}", eos) if known is not None else None


def _quoted(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def write_ollama(checkpoint: Checkpoint, out: Path, source: str, dtype: str, metadata: Mapping[str, Any]) -> Path:
    """``out/Modelfile`` plus the model it names; returns the Modelfile's path."""
    from transformers import AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Ollama Modelfile written by ForgeMind for checkpoint {checkpoint.id}",
             "# ollama create NAME -f Modelfile && ollama run NAME"]
    if source == "gguf":
        write_gguf(checkpoint, out, dtype=dtype, name=str(metadata.get("name") or ""))
        lines.append("FROM ./model.gguf")
    elif source == "safetensors":
        write_hf(checkpoint, out / "model", "merged")
        lines.append("FROM ./model")
    else:
        if not _is_adapter(checkpoint):
            raise UserError("source=adapter needs a LoRA checkpoint; this one is a full model", field="option")
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(_base_path(checkpoint), use_safetensors=True)
        base.save_pretrained(out / "base", safe_serialization=True)
        AutoTokenizer.from_pretrained(checkpoint.path).save_pretrained(out / "base")
        (out / "adapter").mkdir(exist_ok=True)
        for name in _ADAPTER_FILES:
            shutil.copyfile(Path(checkpoint.path) / name, out / "adapter" / name)
        lines += ["FROM ./base", "ADAPTER ./adapter"]
    tokenizer = AutoTokenizer.from_pretrained(checkpoint.path)
    template = go_template(getattr(tokenizer, "chat_template", None), tokenizer.eos_token or "")
    if template is not None:
        lines.append(f"TEMPLATE {_quoted(template)}")
    elif getattr(tokenizer, "chat_template", None):
        lines.append("# the tokenizer's chat template could not be translated to Ollama's Go template;")
        lines.append("# Ollama reads the one in the GGUF file (tokenizer.chat_template) where it can")
    generation = dict(metadata.get("generation") or {})
    lines.append(f"PARAMETER temperature {float(generation.get('temperature', 0.0)):g}")
    lines.append(f"PARAMETER num_predict {int(generation.get('max_new_tokens', 64))}")
    if tokenizer.eos_token:
        lines.append(f'PARAMETER stop "{tokenizer.eos_token}"')
    if metadata.get("prompt_format"):
        lines.append(f"# evaluation prompts were laid out as: {json.dumps(metadata['prompt_format'])}")
    path = out / "Modelfile"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
