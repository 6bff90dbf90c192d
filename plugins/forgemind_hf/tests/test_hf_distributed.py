"""The same training code under a multi-process launcher (torchrun, which ``accelerate launch``
wraps): two CPU ranks with Gloo train one DDP model, each on its share of every step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from forgemind_hookspecs import StageContext
from forgemind_hookspecs.converter import to_dict
from hf_testutil import request, snippet_dataset

CHILD = r"""
import json, os, sys
for k in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE', 'TRANSFORMERS_OFFLINE'):
    os.environ[k] = '1'
import torch
torch.set_num_threads(1)
from pathlib import Path
from forgemind_hf import HFTrainer
from forgemind_hookspecs import StageContext, TrainRequest
from forgemind_hookspecs.converter import from_dict
args = json.loads(Path(sys.argv[1]).read_text())
home = Path(args["home"])
ctx = StageContext(home=home, work_dir=home / "work", cache_dir=home / "cache")
ckpt = HFTrainer().train(from_dict(TrainRequest, args["request"]), ctx)
print("RESULT " + json.dumps({"rank": int(os.environ["RANK"]), "id": ckpt.id, "world": ckpt.manifest["world_size"],
                              "tokens": ckpt.manifest["tokens"], "curve": ckpt.manifest["loss_curve"]}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_rank_ddp_training_on_cpu(tiny_base: Path, stage_context: StageContext, tmp_path: Path) -> None:
    from forgemind_hf import HFTrainer

    dataset = snippet_dataset(tmp_path / "ds", 48, seed=11)
    base = HFTrainer().load_base(str(tiny_base), stage_context)
    req = request(base, dataset, tmp_path / "ddp", epochs=2, batch_size=8, learning_rate=5e-3)
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"home": str(tmp_path / "home"), "request": to_dict(req)}))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), str(script), str(args)],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line.split("RESULT ", 1)[1]) for line in proc.stdout.splitlines() if "RESULT " in line]
    assert sorted(r["rank"] for r in results) == [0, 1]
    assert results[0]["id"] == results[1]["id"] and results[0]["world"] == 2
    # every example of every step was trained exactly once across the two ranks
    from forgemind_hf.text import encode_example
    from forgemind_hookspecs.snapshots import read_snapshot
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    per_epoch = sum(len(encode_example(e, tokenizer, 256)[0]) for e in read_snapshot(dataset.path))
    assert results[0]["tokens"] == 2 * per_epoch
    curve = results[0]["curve"]
    assert len(curve) == 12 and sum(curve[-3:]) < sum(curve[:3])
    assert (tmp_path / "ddp" / "final" / "adapter_model.safetensors").is_file()
