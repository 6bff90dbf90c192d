"""A training process killed with SIGKILL resumes from its last checkpoint and finishes with the
same result as an uninterrupted run (optimiser, scheduler, RNG and data position restored)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from forgemind_hookspecs import StageContext
from forgemind_hookspecs.converter import to_dict
from hf_testutil import snippet_dataset

CHILD = r"""
import json, sys
import os
for k in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE', 'TRANSFORMERS_OFFLINE'):
    os.environ[k] = '1'
from forgemind_hf import HFTrainer
from forgemind_hookspecs import StageContext, TrainRequest
from forgemind_hookspecs.converter import from_dict
from pathlib import Path
args = json.loads(sys.argv[1])
home = Path(args["home"])
ctx = StageContext(home=home, work_dir=home / "work", cache_dir=home / "cache")
request = from_dict(TrainRequest, args["request"])
ckpt = HFTrainer().train(request, ctx)
print(json.dumps({"resumed": ckpt.manifest["resumed_from_step"], "curve": ckpt.manifest["loss_curve"]}))
"""


def _spawn(tmp_path: Path, request: dict) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    arg = json.dumps({"home": str(tmp_path / "home"), "request": request})
    return subprocess.Popen([sys.executable, "-c", CHILD, arg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tiny_base: Path, stage_context: StageContext, tmp_path: Path) -> None:
    from forgemind_hf import HFTrainer
    from hf_testutil import request

    dataset = snippet_dataset(tmp_path / "ds", 96, seed=7)
    trainer = HFTrainer()
    base = trainer.load_base(str(tiny_base), stage_context)
    hyper = {"epochs": 3, "batch_size": 8, "save_every_steps": 4, "lora_dropout": 0.1, "learning_rate": 3e-3}
    killed = request(base, dataset, tmp_path / "killed", **hyper)
    proc = _spawn(tmp_path, to_dict(killed))
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = [p for p in checkpoints.glob("checkpoint-*") if not p.name.endswith(".tmp") and (p / "state.json").exists()]
        if any(int(p.name.split("-")[1]) >= 8 for p in done):
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the child ended before it could be killed: {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "final").exists()

    resumed_proc = _spawn(tmp_path, to_dict(killed))
    out, err = resumed_proc.communicate(timeout=180)
    assert resumed_proc.returncode == 0, err[-2000:]
    resumed = json.loads(out.strip().splitlines()[-1])
    assert resumed["resumed"] >= 8

    straight = trainer.train(request(base, dataset, tmp_path / "straight", **hyper), stage_context)
    assert len(resumed["curve"]) == len(straight.manifest["loss_curve"]) == straight.manifest["steps"]
    assert resumed["curve"] == pytest.approx(straight.manifest["loss_curve"], abs=2e-4)
