"""The GGUF exporter's q8_0: matrices quantised by the gguf package (norms f32), a file about half
the f16 one, read back by gguf's reader, loaded by llama.cpp with the HF model's greedy tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")

from forgemind_hf.export import GGUFExporter  # noqa: E402
from forgemind_hf.export_impl import load_merged, write_gguf  # noqa: E402
from forgemind_hookspecs import Checkpoint, UserError  # noqa: E402

PROMPTS = ["def add(a, b):\n", "class Point:\n    def", "return a +", "import os\nimport"]


@pytest.fixture(scope="module")
def base_checkpoint(tiny_base: Path) -> Checkpoint:
    return Checkpoint(id="tiny-base", path=str(tiny_base), base_model=str(tiny_base), method="full", kind="full")


def test_q8_0_quantises_the_matrices_and_keeps_norms_f32(base_checkpoint: Checkpoint, tmp_path: Path) -> None:
    q8 = write_gguf(base_checkpoint, tmp_path / "q8", dtype="q8_0")
    f16 = write_gguf(base_checkpoint, tmp_path / "f16", dtype="f16")
    reader = gguf.GGUFReader(str(q8))
    assert int(reader.fields["general.file_type"].contents()) == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    types = {t.name: gguf.GGMLQuantizationType(int(t.tensor_type)) for t in reader.tensors}
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    for name, qtype in types.items():
        want = gguf.GGMLQuantizationType.F32 if len(shapes[name]) == 1 else gguf.GGMLQuantizationType.Q8_0
        assert qtype == want, name
    vocab = int(reader.fields["llama.vocab_size"].contents())
    assert shapes["token_embd.weight"] == (64, vocab)  # element shape, not the quantised byte shape
    # 8 bits + one f16 scale per 32 values = 8.5 bits against f16's 16: about 0.53 of the size
    ratio = q8.stat().st_size / f16.stat().st_size
    assert 0.45 < ratio < 0.7, ratio


def test_an_unknown_dtype_is_one_sentence(base_checkpoint: Checkpoint, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown GGUF dtype 'q4'"):
        write_gguf(base_checkpoint, tmp_path / "x", dtype="q4")
    assert GGUFExporter.Options(dtype="q8_0").dtype == "q8_0"


def test_llama_cpp_loads_q8_0_with_the_hf_greedy_tokens(base_checkpoint: Checkpoint, tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it builds from source)")
    import torch

    path = write_gguf(base_checkpoint, tmp_path / "q8", dtype="q8_0")
    model, tokenizer = load_merged(base_checkpoint)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, verbose=False, seed=0)
    try:
        for prompt in PROMPTS:
            ids = [tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]
            assert llm.tokenize(prompt.encode(), add_bos=True, special=False) == ids
            with torch.no_grad():
                hf = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    do_sample=False, max_new_tokens=4, eos_token_id=tokenizer.eos_token_id,
                                    pad_token_id=tokenizer.pad_token_id)
            hf_new = hf[0, len(ids):].tolist()
            ours: list[int] = []
            for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
                ours.append(token)
                if token == tokenizer.eos_token_id or len(ours) == len(hf_new):
                    break
            assert ours == hf_new, prompt
    finally:
        llm.close()
