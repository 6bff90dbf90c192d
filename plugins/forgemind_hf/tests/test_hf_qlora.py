"""QLoRA: gradients reach the LoRA weights of a 4-bit model (the bitsandbytes CPU trap), and a
real QLoRA run where CUDA exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from forgemind_hf.engine import pack
from forgemind_hf.finetune import load_for_training
from forgemind_hf.options import TrainerOptions
from forgemind_hookspecs import StageContext
from hf_testutil import request, snippet_dataset

bnb = pytest.importorskip("bitsandbytes")


def test_gradients_reach_lora_weights_of_a_4bit_model(tiny_base: Path, stage_context: StageContext) -> None:
    from forgemind_hf.finetune import describe_base

    options = TrainerOptions(allow_cpu_4bit=True, lora_r=4)
    model = load_for_training(describe_base(str(tiny_base)), "qlora", options, torch.device("cpu"))
    quantised = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised, "the base layers were not quantised"
    assert all(m.weight.dtype == torch.uint8 for m in quantised)
    batch = pack([([1, 40, 41, 42, 43, 2], [-100, -100, 41, 42, 43, 2])] * 2, capacity=16, pad_id=0)
    lora_a = {n: p for n, p in model.named_parameters() if "lora_A" in n}
    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    optimizer = torch.optim.AdamW([*lora_a.values(), *lora_b.values()], lr=1e-2)
    for _ in range(2):  # step 1 moves lora_B off zero, so step 2 must give lora_A a gradient too
        loss = model(input_ids=batch.input_ids, position_ids=batch.position_ids, labels=batch.labels,
                     use_cache=False).loss
        loss.backward()
        grads_b = [p.grad for p in lora_b.values()]
        grads_a = [p.grad for p in lora_a.values()]
        assert all(g is not None and float(g.abs().sum()) > 0 for g in grads_b)
        optimizer.step()
        optimizer.zero_grad()
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads_a)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


@pytest.mark.gpu
def test_qlora_trains_on_cuda(tiny_base: Path, stage_context: StageContext, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from forgemind_hf import HFTrainer

    dataset = snippet_dataset(tmp_path / "ds", 64, seed=8)
    trainer = HFTrainer()
    base = trainer.load_base(str(tiny_base), stage_context)
    ckpt = trainer.train(request(base, dataset, tmp_path / "q", method="qlora", epochs=2, bf16=True), stage_context)
    curve = ckpt.manifest["loss_curve"]
    assert ckpt.kind == "adapter" and curve[-1] < curve[0]
