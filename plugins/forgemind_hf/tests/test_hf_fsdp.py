"""FSDP with the same training code: two CPU ranks with Gloo, launched as ``accelerate launch``
with an FSDP config launches them (torchrun plus ``ACCELERATE_USE_FSDP=true``; the LoRA test uses
``FORGEMIND_DISTRIBUTED=fsdp``), shard a tiny Llama layer by layer with FSDP2, train it, save an
ordinary unsharded checkpoint and resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from forgemind_hookspecs import StageContext
from forgemind_hookspecs.converter import to_dict
from hf_testutil import request, snippet_dataset

# The child trains through HFTrainer.train, unchanged; it only wraps engine.train_loop to record,
# at the first step, how many parameter elements this rank holds locally (the FSDP shard) against
# the unsharded count, and to crash at `crash_at` (after a checkpoint was written) to test resume.
CHILD = r"""
import json, os, sys
for k in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE', 'TRANSFORMERS_OFFLINE'):
    os.environ[k] = '1'
import torch
torch.set_num_threads(1)
from pathlib import Path
from forgemind_hf import HFTrainer, engine
from forgemind_hookspecs import StageContext, TrainRequest
from forgemind_hookspecs.converter import from_dict
args = json.loads(Path(sys.argv[1]).read_text())
home = Path(args["home"])
rank = int(os.environ["RANK"])
seen = {}
real_loop = engine.train_loop

def numel(p):
    return p.to_local().numel() if hasattr(p, "to_local") else p.numel()

def loop(model, batch_at, cfg, checkpoint_dir, ctx, **kw):
    def on_step(done, loss):
        if "local" not in seen:
            seen["local"] = sum(numel(p) for p in model.parameters())
            seen["full"] = sum(p.numel() for p in model.parameters())
            seen["local_trainable"] = sum(numel(p) for p in model.parameters() if p.requires_grad)
            seen["sharded"] = engine.is_sharded(model)
        seen.setdefault("losses", []).append(loss)
        if done == args.get("crash_at"):
            report("LOSSES", {"rank": rank, "losses": seen["losses"]})
            raise SystemExit(3)
    return real_loop(model, batch_at, cfg, checkpoint_dir, ctx, on_step=on_step, **kw)

def report(tag, data):  # one file per rank: two ranks printing at once interleave their lines
    Path(sys.argv[1]).with_suffix(f".{tag}.{rank}").write_text(json.dumps(data))

engine.train_loop = loop
ctx = StageContext(home=home, work_dir=home / "work", cache_dir=home / "cache")
ckpt = HFTrainer().train(from_dict(TrainRequest, args["request"]), ctx)
report("RESULT", {"rank": rank, "id": ckpt.id, "kind": ckpt.kind, "path": ckpt.path,
                  "manifest": ckpt.manifest, "seen": seen})
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(tmp_path: Path, req: Any, name: str, crash_at: int | None = None,
            select: dict[str, str] | None = None) -> tuple[int, Path, str]:
    args = tmp_path / f"{name}.json"
    args.write_text(json.dumps({"home": str(tmp_path / "home"), "request": to_dict(req), "crash_at": crash_at}))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("FORGEMIND_DISTRIBUTED", "ACCELERATE_USE_FSDP")}
    # By default what `accelerate launch --config_file fsdp.yaml` exports for an FSDP config (docs/forge.md).
    env.update(select or {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), str(script), str(args)],
        capture_output=True, text=True, timeout=180, env=env,
    )
    return proc.returncode, args, proc.stdout[-2000:] + proc.stderr[-4000:]


def _reports(args: Path, tag: str) -> list[dict[str, Any]]:
    found = [json.loads(args.with_suffix(f".{tag}.{rank}").read_text()) for rank in (0, 1)
             if args.with_suffix(f".{tag}.{rank}").is_file()]
    return sorted(found, key=lambda r: r["rank"])


def _check_sharded(seen: list[dict[str, Any]], full_params: int) -> None:
    for rank_seen in seen:
        assert rank_seen["sharded"] is True
        assert rank_seen["full"] == full_params  # the DTensors still describe the whole model
        # each rank held about half: FSDP2 shards every parameter along dim 0 (rounded up per rank)
        assert rank_seen["local"] < 0.6 * full_params
    assert sum(r["local"] for r in seen) == pytest.approx(full_params, rel=0.02)


@pytest.mark.slow
def test_fsdp_full_finetune_saves_unsharded_and_resumes(tiny_base: Path, stage_context: StageContext,
                                                        tmp_path: Path) -> None:
    import torch
    from forgemind_hf import HFTrainer
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    dataset = snippet_dataset(tmp_path / "ds", 48, seed=11)
    base = HFTrainer().load_base(str(tiny_base), stage_context)
    req = request(base, dataset, tmp_path / "fsdp", method="full", epochs=2, batch_size=8, learning_rate=2e-3,
                  save_every_steps=4)

    # Run 1 crashes after step 7: checkpoint-4 was gathered from the shards and written by rank 0.
    rc, out, err = _launch(tmp_path, req, "crash", crash_at=7)
    assert rc != 0 and not (tmp_path / "fsdp" / "final").exists(), err
    crashed = _reports(out, "LOSSES")
    assert [r["rank"] for r in crashed] == [0, 1], err
    ckpt4 = tmp_path / "fsdp" / "checkpoints" / "checkpoint-4"
    assert (ckpt4 / "trainable.safetensors").is_file()
    reference = AutoModelForCausalLM.from_pretrained(tiny_base, use_safetensors=True)
    full_params = sum(p.numel() for p in reference.parameters())
    saved4 = load_file(str(ckpt4 / "trainable.safetensors"))
    assert {k: tuple(v.shape) for k, v in saved4.items()} == {
        k: tuple(p.shape) for k, p in reference.named_parameters()}  # whole tensors, not shards
    assert torch.load(ckpt4 / "optimizer.pt", weights_only=True)["layout"] == "fsdp"

    # Run 2 resumes from checkpoint-4 and finishes.
    rc, out, err = _launch(tmp_path, req, "resume")
    assert rc == 0, err
    results = _reports(out, "RESULT")
    assert [r["rank"] for r in results] == [0, 1]
    manifest = results[0]["manifest"]
    assert results[0]["id"] == results[1]["id"] and results[0]["kind"] == "full"
    assert manifest["parallelism"] == "fsdp" and manifest["world_size"] == 2
    assert manifest["resumed_from_step"] == 4
    _check_sharded([r["seen"] for r in results], full_params)

    curve = manifest["loss_curve"]
    assert len(curve) == 12 and sum(curve[-3:]) < 0.8 * sum(curve[:3])
    # Steps 5-7 again after the resume equal the crashed run's: weights, Adam moments and the
    # schedule came back from the gathered checkpoint (a lost optimiser state changes steps 6-7).
    assert curve[4:7] == pytest.approx(crashed[0]["losses"][4:7], abs=1e-4)

    # The final model is an ordinary unsharded transformers checkpoint.
    final = Path(results[0]["path"])
    weights = load_file(str(final / "model.safetensors"))
    ref_state = reference.state_dict()
    assert set(weights) <= set(ref_state)
    assert all(tuple(weights[k].shape) == tuple(ref_state[k].shape) for k in weights)
    loaded = AutoModelForCausalLM.from_pretrained(final, use_safetensors=True)
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in ref_state.items()}
    changed = [k for k, v in loaded.state_dict().items() if not torch.equal(v, ref_state[k])]
    assert len(changed) == len(ref_state)  # every tensor of the full model was trained and saved
    batch = torch.tensor([[1, 5, 9, 13, 17]])
    assert torch.isfinite(loaded(input_ids=batch).logits).all()


@pytest.mark.slow
def test_fsdp_lora_saves_adapter(tiny_base: Path, stage_context: StageContext, tmp_path: Path) -> None:
    import torch
    from forgemind_hf import HFTrainer
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    dataset = snippet_dataset(tmp_path / "ds", 48, seed=11)
    base = HFTrainer().load_base(str(tiny_base), stage_context)
    req = request(base, dataset, tmp_path / "lora", method="lora", epochs=2, batch_size=8, learning_rate=5e-3,
                  lora_dropout=0.0)
    rc, out, err = _launch(tmp_path, req, "lora", select={"FORGEMIND_DISTRIBUTED": "fsdp"})
    assert rc == 0, err
    results = _reports(out, "RESULT")
    assert [r["rank"] for r in results] == [0, 1]
    manifest = results[0]["manifest"]
    assert manifest["parallelism"] == "fsdp" and results[0]["kind"] == "adapter"
    curve = manifest["loss_curve"]
    assert len(curve) == 12 and sum(curve[-3:]) < 0.9 * sum(curve[:3])

    plain = AutoModelForCausalLM.from_pretrained(tiny_base, use_safetensors=True)
    full_params = sum(p.numel() for p in plain.parameters()) + manifest["trainable_parameters"]
    seen = [r["seen"] for r in results]
    _check_sharded(seen, full_params)
    assert all(s["local_trainable"] < 0.6 * manifest["trainable_parameters"] for s in seen)

    final = Path(results[0]["path"])
    adapter = load_file(str(final / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert sum(v.numel() for v in adapter.values()) == manifest["trainable_parameters"]
    assert any(("lora_B" in k) and v.abs().sum() > 0 for k, v in adapter.items())  # B starts at 0: trained
    batch = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        plain_logits = plain(input_ids=batch).logits.clone()
    model = PeftModel.from_pretrained(plain, final)
    with torch.no_grad():
        tuned = model(input_ids=batch).logits.clone()
        with model.disable_adapter():
            untouched = model(input_ids=batch).logits
    assert torch.allclose(untouched, plain_logits)  # the base weights were left as they were
    assert not torch.allclose(tuned, plain_logits, atol=1e-4)  # the saved adapter changes the output
