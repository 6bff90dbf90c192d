"""QLoRA: gradients reach the LoRA weights of a 4-bit model (the bitsandbytes CPU trap), and a
real QLoRA run where CUDA exists."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from forgemind_hf.engine import pack
from forgemind_hf.finetune import load_for_training
from forgemind_hf.options import TrainerOptions
from forgemind_hookspecs import StageContext
from hf_testutil import request, snippet_dataset

bnb = pytest.importorskip("bitsandbytes")


def _quantised(tiny_base: Path) -> torch.nn.Module:
    from forgemind_hf.finetune import describe_base

    options = TrainerOptions(allow_cpu_4bit=True, lora_r=4, lora_dropout=0.0)
    return load_for_training(describe_base(str(tiny_base)), "qlora", options, torch.device("cpu"), seed=0)


def _lora_a_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    batch = pack([([1, 40, 41, 42, 43, 2], [-100, -100, 41, 42, 43, 2])] * 2, capacity=16, pad_id=0)
    model.zero_grad()
    loss = model(input_ids=batch.input_ids, position_ids=batch.position_ids, labels=batch.labels,
                 use_cache=False).loss
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}


def _reference_grads(model: torch.nn.Module, tiny_base: Path) -> dict[str, torch.Tensor]:
    """The same LoRA gradients through an fp32 copy whose base weights are the dequantised 4-bit ones."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    ref = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_base),
                         LoraConfig(r=4, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, bnb.nn.Linear4bit):
                weight = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
                ref.get_submodule(name).weight.copy_(weight.float())
        params = dict(model.named_parameters())
        for name, p in ref.named_parameters():
            if "lora_" in name:
                p.copy_(params[name].float())
    ref.train()
    return _lora_a_grads(ref)


def _relative_error(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    return sum(float((got[k].float() - want[k]).norm()) for k in want) / sum(float(want[k].norm()) for k in want)


def _with_nonzero_lora_b(model: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def test_gradients_reach_lora_weights_of_a_4bit_model(tiny_base: Path) -> None:
    model = _with_nonzero_lora_b(_quantised(tiny_base))  # lora_B != 0 so lora_A's gradient is non-trivial
    quantised = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised and all(m.weight.dtype == torch.uint8 for m in quantised)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    grads = _lora_a_grads(model)
    assert grads and all(float(g.abs().sum()) > 0 for g in grads.values())
    # the gradient through the quantised base layers is the right one, not merely non-zero
    assert _relative_error(grads, _reference_grads(model, tiny_base)) < 0.1


def test_the_reference_check_catches_the_eval_mode_trap(tiny_base: Path) -> None:
    """What the trainer avoids: an eval-mode forward first repacks the CPU weights, and later
    gradients through the base layers are silently wrong (the check above must be able to fail)."""
    model = _with_nonzero_lora_b(_quantised(tiny_base))
    model.eval()
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 40, 41]]), use_cache=False)
    model.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grads = _lora_a_grads(model)
    error = _relative_error(grads, _reference_grads(model, tiny_base))
    if not any("autograd kernel was not registered" in str(w.message) for w in caught):
        # bitsandbytes repacks CPU 4-bit weights for an eval forward only where its packed kernel
        # exists (AVX-512 CPUs): elsewhere there is no trap, and the gradients stay right.
        assert error < 0.1
        pytest.skip("this CPU's bitsandbytes 4-bit kernel does not repack in eval mode: no trap to catch here")
    assert error > 0.1


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
