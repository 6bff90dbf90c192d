"""Fine-tuning on a tiny Llama built in the test: LoRA learns, manifests, merges, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from forgemind_hf import HFRunner, HFTrainer
from forgemind_hf.engine import pack
from forgemind_hookspecs import DataError, Example, ForgeError, StageContext
from forgemind_hookspecs.snapshots import write_snapshot
from hf_testutil import accuracy, request, snippet_dataset, snippet_examples
from safetensors.torch import load_file


def test_pack_keeps_sequences_apart() -> None:
    seqs = [([1, 2, 3], [-100, 2, 3]), ([4, 5], [-100, 5]), ([6, 7, 8, 9], [-100, -100, 8, 9])]
    batch = pack(seqs, capacity=6, pad_id=0)
    assert batch.tokens == 9
    assert batch.input_ids.numel() <= 12  # two rows of <= 6: at most 3 pad tokens
    for row_ids, row_pos in zip(batch.input_ids.tolist(), batch.position_ids.tolist(), strict=True):
        starts = [i for i, p in enumerate(row_pos) if p == 0]
        segments = [row_ids[a:b] for a, b in zip(starts, [*starts[1:], len(row_ids)], strict=True)]
        assert all(seg in ([1, 2, 3], [4, 5], [6, 7, 8, 9]) or set(seg) == {0} for seg in segments)


def test_packed_attention_matches_separate_sequences(tiny_base: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    a, b = [1, 40, 41, 42, 43], [1, 50, 51]
    batch = pack([(a, a), (b, b)], capacity=16, pad_id=0)
    with torch.no_grad():
        packed = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([b])).logits[0]
    assert torch.allclose(packed[5:8], alone, atol=1e-4)  # b after a: no attention across the boundary


def test_lora_learns_snippet_labels(tiny_base: Path, stage_context: StageContext, emitted: list, tmp_path: Path) -> None:
    dataset = snippet_dataset(tmp_path / "ds", 300, seed=1)
    held_out = snippet_examples(60, seed=2)
    trainer = HFTrainer()
    base = trainer.load_base(str(tiny_base), stage_context)
    runner = HFRunner()
    before = accuracy(runner.generate(base, [r["prompt"] for r in held_out], stage_context, max_new_tokens=4), held_out)
    ckpt = trainer.train(request(base, dataset, tmp_path / "out", epochs=3, learning_rate=5e-3), stage_context)
    after = accuracy(runner.generate(ckpt, [r["prompt"] for r in held_out], stage_context, max_new_tokens=4), held_out)
    curve = ckpt.manifest["loss_curve"]
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5 - 0.5
    assert before < 0.2 and after >= 0.9, (before, after)
    # adapter only, safetensors, manifest file equal to the record
    folder = Path(ckpt.path)
    assert ckpt.kind == "adapter" and (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "model.safetensors").exists()
    assert all(".lora_" in k for k in load_file(folder / "adapter_model.safetensors"))
    on_disk = json.loads((folder / "manifest.json").read_text())["checkpoint"]
    assert on_disk["id"] == ckpt.id and ckpt.id.startswith("ckpt-")
    for key in ("config", "dataset_id", "base_id", "seed", "libraries", "hardware", "duration_s", "cost_usd"):
        assert key in ckpt.manifest, key
    assert ckpt.dataset_id == dataset.id and ckpt.parent == base.id
    losses = [p for k, p in emitted if k == "metric" and p["name"] == "train.loss"]
    assert len(losses) == ckpt.manifest["steps"] and losses[-1]["step"] == ckpt.manifest["steps"]
    # same request again: the finished checkpoint is returned, id unchanged (content-addressed)
    again = trainer.train(request(base, dataset, tmp_path / "out", epochs=3, learning_rate=5e-3), stage_context)
    assert again.id == ckpt.id and again.manifest["duration_s"] == ckpt.manifest["duration_s"]


def test_full_finetune_and_merge(tiny_base: Path, stage_context: StageContext, tmp_path: Path) -> None:
    dataset = snippet_dataset(tmp_path / "ds", 64, seed=3)
    trainer = HFTrainer()
    base = trainer.load_base(str(tiny_base), stage_context)
    full = trainer.train(request(base, dataset, tmp_path / "full", method="full", epochs=1), stage_context)
    assert full.kind == "full" and (Path(full.path) / "model.safetensors").is_file()
    merged = trainer.train(request(base, dataset, tmp_path / "merged", epochs=1, merge=True), stage_context)
    assert merged.kind == "merged" and (Path(merged.path) / "model.safetensors").is_file()
    outputs = HFRunner().generate(merged, ["Code: print(x)\nLabel:"] * 2, stage_context, max_new_tokens=3,
                                  temperature=0.8)
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)


def test_estimate_counts_exactly_and_prices(tiny_base: Path, stage_context: StageContext, tmp_path: Path) -> None:
    dataset = snippet_dataset(tmp_path / "ds", 40, seed=4)
    trainer = HFTrainer()
    base = trainer.load_base(str(tiny_base), stage_context)
    est = trainer.estimate(request(base, dataset, tmp_path / "o", epochs=2, batch_size=8,
                                   price_per_cpu_hour=3600.0), stage_context)
    assert est.steps == 10 and est.basis == "calibration"
    assert est.seconds > 0 and est.cost_usd == pytest.approx(est.seconds * 1.0, rel=1e-6)
    ckpt = trainer.train(request(base, dataset, tmp_path / "o", epochs=2, batch_size=8), stage_context)
    assert ckpt.manifest["tokens"] == est.tokens


def test_qlora_without_cuda_is_one_clear_error(tiny_base: Path, stage_context: StageContext, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present: qlora runs")
    dataset = snippet_dataset(tmp_path / "ds", 8, seed=5)
    trainer = HFTrainer()
    base = trainer.load_base(str(tiny_base), stage_context)
    with pytest.raises(ForgeError, match="needs a CUDA GPU"):
        trainer.train(request(base, dataset, tmp_path / "q", method="qlora"), stage_context)


def test_bad_data_and_options_are_refused(tiny_base: Path, stage_context: StageContext, tmp_path: Path) -> None:
    trainer = HFTrainer()
    base = trainer.load_base(str(tiny_base), stage_context)
    bad = write_snapshot([Example(prompt="a", completion="b"), Example(prompt="c", completion="  ")], tmp_path / "ds")
    with pytest.raises(DataError) as info:
        trainer.train(request(base, bad, tmp_path / "o"), stage_context)
    assert info.value.line == 2 and info.value.field == "completion"
    good = snippet_dataset(tmp_path / "ds2", 4, seed=6)
    with pytest.raises(ForgeError, match="unknown training option"):
        trainer.train(request(base, good, tmp_path / "o", lora_rank=8), stage_context)
    with pytest.raises(ForgeError, match="unknown method"):
        trainer.train(request(base, good, tmp_path / "o", method="dpo"), stage_context)


def test_chat_examples_train_through_the_chat_template(tiny_base: Path, stage_context: StageContext,
                                                       tmp_path: Path) -> None:
    from forgemind_hf.text import encode_example
    from forgemind_hookspecs import Message
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    chat = Example(messages=(Message("system", "Label code."), Message("user", "print(x)"),
                             Message("assistant", "benign")))
    ids, labels, _ = encode_example(chat, tokenizer, 256)
    prompt_part = tokenizer.decode([i for i, lab in zip(ids, labels, strict=True) if lab == -100])
    assert prompt_part.endswith("<|assistant|>\n") and "<|user|>\nprint(x)" in prompt_part
    assert tokenizer.decode([lab for lab in labels if lab != -100]) == "benign</s>"
    dataset = write_snapshot([chat] * 8, tmp_path / "ds")
    ckpt = HFTrainer().train(request(HFTrainer().load_base(str(tiny_base), stage_context), dataset,
                                     tmp_path / "chat", epochs=2, batch_size=4), stage_context)
    assert ckpt.manifest["examples"] == 8 and ckpt.manifest["loss_curve"][-1] < ckpt.manifest["loss_curve"][0]


def test_truncation_with_the_contracts_default_logger(tiny_base: Path, tmp_path: Path) -> None:
    """A bare StageContext carries a stdlib logger (no key-value arguments): logging must not crash."""
    ctx = StageContext(home=tmp_path, work_dir=tmp_path / "w", cache_dir=tmp_path / "c")
    long = Example(prompt="Code: " + "print(x) " * 60 + "\nLabel:", completion=" benign")
    dataset = write_snapshot([long, Example(prompt="Code: eval(x)\nLabel:", completion=" dangerous")], tmp_path / "ds")
    trainer = HFTrainer()
    ckpt = trainer.train(request(trainer.load_base(str(tiny_base), ctx), dataset, tmp_path / "t", epochs=1,
                                 max_length=32), ctx)
    assert ckpt.manifest["truncated"] == 1 and ckpt.manifest["tokens"] <= 32 + 32


def test_bf16_setting_accepts_goal_file_spellings() -> None:
    from forgemind_hf.engine import use_bf16

    cpu = torch.device("cpu")
    assert use_bf16("false", cpu) is False and use_bf16("True", cpu) is True and use_bf16(False, cpu) is False
    assert isinstance(use_bf16("auto", cpu), bool)
    with pytest.raises(ForgeError, match="bf16 must be"):
        use_bf16("sometimes", cpu)
