"""The fast path is exact: the head only at label positions, the top layers only, and the frozen
bottom's cached output give the loss and gradients of the plain forward, and the cache saves the
bottom pass on every later epoch."""

from __future__ import annotations

import pytest
import torch
from forgemind_hf import engine, fastpath
from forgemind_hookspecs import ConfigError


def _model(layers: int = 4, lora_top: int | None = None) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    if lora_top is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
            layers_to_transform=fastpath.top_layer_indices(layers, lora_top), init_lora_weights=False))
    model.train()
    return model


def _sequences(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(6, 14, (1,), generator=gen))
        ids = torch.randint(3, 97, (length,), generator=gen).tolist()
        out.append((ids, [-100] * (length - 2) + ids[-2:]))  # two label tokens at the end
    return out


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def test_label_head_gives_transformers_loss_and_gradients() -> None:
    model = _model()
    batch = engine.pack(_sequences(6, 1), 32, 0)
    reference = model(input_ids=batch.input_ids, position_ids=batch.position_ids, labels=batch.labels,
                      use_cache=False).loss
    reference.backward()
    expected = _grads(model)
    model.zero_grad()
    loss = fastpath.make_loss(model, head="labels", first_trainable=0, cache=None, members_at=lambda s: [])(
        model, batch, 0, torch.device("cpu"))
    loss.backward()
    assert torch.allclose(loss, reference, atol=1e-5)
    got = _grads(model)
    assert got.keys() == expected.keys() and len(got) > 10
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, atol=1e-5), name


def test_cached_bottom_gives_the_plain_lora_loss_and_gradients_and_runs_once_per_sequence() -> None:
    model = _model(layers=4, lora_top=2)
    sequences = _sequences(8, 2)
    first = 4 - 2
    cache = fastpath.FrozenBottomCache(model, first, torch.device("cpu"), bf16=False)
    steps = [[0, 1, 2, 3], [4, 5, 6, 7], [5, 0, 7, 2]]  # the third step re-uses sequences seen before
    loss_fn = fastpath.make_loss(model, head="labels", first_trainable=first, cache=cache,
                                 members_at=lambda s: steps[s])
    for step, members in enumerate(steps):
        batch = engine.pack([sequences[i] for i in members], 40, 0)
        model.zero_grad()
        reference = model(input_ids=batch.input_ids, position_ids=batch.position_ids, labels=batch.labels,
                          use_cache=False).loss
        reference.backward()
        expected = _grads(model)
        model.zero_grad()
        loss = loss_fn(model, batch, step, torch.device("cpu"))
        loss.backward()
        assert torch.allclose(loss, reference, atol=1e-5), step
        got = _grads(model)
        assert got.keys() == expected.keys() and all("lora" in n for n in got)
        assert all(torch.allclose(got[n], expected[n], atol=1e-5) for n in expected), step
    assert cache.bottom_passes == 2  # the third batch came from the cache alone
    assert sorted(cache.rows) == list(range(8))


def test_the_model_is_whole_again_after_a_pass_even_when_it_raises() -> None:
    model = _model(layers=3)
    decoder = model.get_decoder()
    before = list(decoder.layers), decoder.norm
    with pytest.raises(RuntimeError), fastpath._only_layers(decoder, range(1), norm=False):
        assert isinstance(decoder.layers[2], fastpath._Pass)
        raise RuntimeError("boom")
    assert list(decoder.layers) == before[0] and decoder.norm is before[1]


def test_train_layers_out_of_range_is_one_config_error() -> None:
    assert fastpath.top_layer_indices(30, 8) == list(range(22, 30))
    assert fastpath.top_layer_indices(4, 0) == [0, 1, 2, 3]
    for bad in (-1, 31):
        with pytest.raises(ConfigError, match="30 decoder layers"):
            fastpath.top_layer_indices(30, bad)


# The trainer with the fast path: the same loss curve as the plain path, and a checkpoint that
# differs only where the options say so.


def _train(tiny_base, stage_context, tmp_path, name: str, method: str = "lora", **fast):  # type: ignore[no-untyped-def]
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from forgemind_hf import HFTrainer
    from hf_testutil import request, snippet_dataset

    trainer = HFTrainer()
    base = trainer.load_base(str(tiny_base), stage_context)
    dataset = snippet_dataset(tmp_path / "ds", 48, seed=5)
    return trainer.train(request(base, dataset, tmp_path / name, method=method, epochs=2, batch_size=8,
                                 learning_rate=3e-3, **fast), stage_context)


def test_trainer_fast_path_trains_the_same_curve_as_the_plain_path(tiny_base, stage_context, tmp_path) -> None:  # type: ignore[no-untyped-def]
    plain = _train(tiny_base, stage_context, tmp_path, "plain", train_layers=1, cache_frozen=False)
    fast = _train(tiny_base, stage_context, tmp_path, "fast", train_layers=1, head="labels")  # cache on
    a, b = plain.manifest["loss_curve"], fast.manifest["loss_curve"]
    assert len(a) == len(b) == 12
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-3, (a, b)
    assert b[-1] < b[0]  # and it learns
    assert plain.id != fast.id  # the options are part of what defines a checkpoint
    # LoRA went into the top layer only (the tiny base has two)
    from safetensors.torch import load_file

    keys = list(load_file(f"{fast.path}/adapter_model.safetensors"))
    assert keys and all(".layers.1." in k for k in keys), keys


def test_full_fine_tuning_of_the_top_layers_leaves_the_rest_untouched(tiny_base, stage_context, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file

    ckpt = _train(tiny_base, stage_context, tmp_path, "full", method="full", train_layers=1, head="labels")
    before, after = load_file(f"{tiny_base}/model.safetensors"), load_file(f"{ckpt.path}/model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("model.layers.1.", "model.norm.")) for k in changed), sorted(changed)
    assert ckpt.manifest["trainable_parameters"] < sum(t.numel() for t in before.values())
