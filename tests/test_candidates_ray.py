"""Candidates on Ray (plugins/forgemind_ray): a local Ray instance runs an iteration's three
candidates; the best wins; every candidate is a branch in the registry; a worker killed in the
middle of a candidate is retried and its partial work never reaches the registry."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from forgemind_core.brain.loop import run_dir  # noqa: E402

SEARCH = """\
search:
  candidates: 3
  space: {strategy: [basic, varied], dataset_size: [6, 16]}
executor: {backend: ray, num_cpus: 1, max_retries: 2}
"""


@pytest.fixture(scope="module")
def ray_instance():
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def ray_forge(ray_instance, forge_home):
    import kernel_plugins

    from forgemind_core import Forge

    return Forge(home=forge_home, plugins=[kernel_plugins], blocked=["hf", "openai"])


def _goal(colors_goal: Path, train: str = "train: {backend: memo}") -> Path:
    text = colors_goal.read_text().replace("max_iterations: 3", "max_iterations: 1")
    colors_goal.write_text(text.replace("train: {backend: memo}", train) + SEARCH)
    return colors_goal


def _candidates(forge, run_id: str) -> dict:
    return json.loads((run_dir(forge.home, run_id) / "iter-1" / "candidates.json").read_text())


def test_three_candidates_on_ray_the_best_wins_and_all_are_branches(ray_forge, colors_goal):
    summary = ray_forge.run(_goal(colors_goal))
    data = _candidates(ray_forge, summary["run_id"])
    rows = data["candidates"]
    assert len(rows) == 3 and all(r["status"] == "finished" for r in rows)
    assert all(r["pid"] != os.getpid() for r in rows)  # ran in Ray workers
    best = max(r["scores"].get("full", 0.0) for r in rows)
    winner = next(r for r in rows if r["run_id"] == data["winner_run"])
    assert winner["scores"]["full"] == best == summary["iterations"][0]["scores"]["full"]
    runs = {r["id"]: r for r in ray_forge.registry().runs()}
    for r in rows:
        assert runs[r["run_id"]]["parent_run"] == summary["run_id"]
        assert runs[r["run_id"]]["branch"].startswith("candidate-1.")


def test_a_killed_worker_is_retried_and_leaves_no_partial_records(ray_forge, colors_goal):
    goal = _goal(colors_goal, "train: {backend: memo, sleep_s: 3.0}")
    run_id = "colors-ray-kill"
    victim = run_dir(ray_forge.home, f"{run_id}-c1.1")
    out: list = []
    errors: list = []

    def drive() -> None:
        try:
            out.append(ray_forge.run(goal, run_id=run_id))
        except BaseException as error:  # surfaced by the assertions below
            errors.append(error)

    driver = threading.Thread(target=drive)
    driver.start()
    deadline = time.monotonic() + 120
    while not ((victim / "iter-1" / "train").is_dir() and (victim / ".attempts").is_dir()):
        assert time.monotonic() < deadline and driver.is_alive(), "candidate 1 never started training"
        time.sleep(0.05)
    killed = int(next((victim / ".attempts").iterdir()).name)
    os.kill(killed, signal.SIGKILL)  # mid-training: the sleep is inside the trainer
    assert not ray_forge.registry().events(f"{run_id}-c1.1")  # nothing of it reached the registry
    driver.join(timeout=180)
    assert not driver.is_alive() and not errors, errors
    attempts = sorted(int(p.name) for p in (victim / ".attempts").iterdir())
    assert killed in attempts and len(attempts) == 2  # Ray ran it again in another worker
    done = json.loads((victim / "candidate.json").read_text())
    assert done["status"] == "finished" and done["pid"] != killed
    checkpoints = ray_forge.registry().events(f"{run_id}-c1.1", ["checkpoint"])
    trained = [e for e in checkpoints if e["stage"] == "train"]
    assert len(trained) == 1  # one checkpoint, made by the retry
    assert trained[0]["payload"]["checkpoint"]["manifest"]["pid"] == done["pid"]
    assert len(_candidates(ray_forge, run_id)["candidates"]) == 3
    assert out[0]["outcome"] in ("promoted", "stopped")
