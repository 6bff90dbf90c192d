"""Candidates (docs/candidates.md): K plans per iteration run as branches of the run, the best by
the success criterion wins, the run adopts its work; the goal's search section is validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from forgemind_hookspecs import ConfigError, GenerationPlan, Plan, SearchSection

from forgemind_core.brain.candidates import DONE, propose
from forgemind_core.brain.goals import load_goal
from forgemind_core.brain.loop import run_dir

SEARCH = """\
search:
  candidates: 3
  space: {strategy: [basic, varied], dataset_size: [6, 16]}
executor: {backend: local, workers: WORKERS}
"""


def _goal(colors_goal: Path, workers: int = 1, iterations: int = 1) -> Path:
    text = colors_goal.read_text().replace("max_iterations: 3", f"max_iterations: {iterations}")
    colors_goal.write_text(text + SEARCH.replace("WORKERS", str(workers)))
    return colors_goal


def _candidates(forge, run_id: str, n: int = 1) -> list[dict]:
    data = json.loads((run_dir(forge.home, run_id) / f"iter-{n}" / "candidates.json").read_text())
    return data["candidates"]


def test_propose_keeps_the_planners_plan_first_and_draws_distinct_points():
    plan = Plan(iteration=1, generation=(GenerationPlan("template", count=10, strategy="basic"),),
                train={"learning_rate": 0.001}, dataset_size=10)
    search = SearchSection(candidates=4, space={"train.learning_rate": (0.001, 0.003), "dataset_size": (10, 20)})
    proposed = propose(search, plan, seed=7)
    assert [p.candidate for p, _ in proposed] == [0, 1, 2, 3]
    assert proposed[0] == (plan, {})
    changes = [c for _, c in proposed[1:]]
    assert sorted(map(str, changes)) == sorted(map(str, [{"train.learning_rate": 0.003}, {"dataset_size": 20},
                                                          {"dataset_size": 20, "train.learning_rate": 0.003}]))
    for p, c in proposed[1:]:
        assert p.train["learning_rate"] == c.get("train.learning_rate", 0.001)
        assert sum(g.count for g in p.generation) == c.get("dataset_size", 10) == p.dataset_size
    assert propose(search, plan, seed=7) == proposed  # a resumed driver proposes the same


def test_three_candidates_run_as_branches_and_the_best_wins(forge, colors_goal):
    summary = forge.run(_goal(colors_goal))
    run_id = summary["run_id"]
    rows = _candidates(forge, run_id)
    assert len(rows) == 3 and all(r["status"] == "finished" for r in rows)
    best = max(r["scores"].get("full", 0.0) for r in rows)
    data = json.loads((run_dir(forge.home, run_id) / "iter-1" / "candidates.json").read_text())
    winner = next(r for r in rows if r["run_id"] == data["winner_run"])
    assert winner["scores"]["full"] == best
    assert min(r["scores"].get("full", 0.0) for r in rows) < best  # the search space made a difference
    # The run adopted the winner's work: its plan, dataset and checkpoint.
    it = summary["iterations"][0]
    assert it["plan"] == winner["plan"] and it["checkpoint"] == winner["checkpoint_id"]
    assert it["scores"]["full"] == best
    # Every candidate is a branch of the run in the registry; only the run itself promotes.
    runs = {r["id"]: r for r in forge.registry().runs()}
    for r in rows:
        assert runs[r["run_id"]]["parent_run"] == run_id
        assert runs[r["run_id"]]["branch"].startswith("candidate-1.")
        assert forge.registry().events(r["run_id"], ["checkpoint"])  # ingested by the driver
    promoted = {row["run_id"] for row in forge.registry().channel("stable")}
    assert promoted <= {run_id}
    tree = json.dumps(forge.runs_tree())
    assert all(r["run_id"] in tree for r in rows)
    # A loser stays forkable: its goal comes back as a file that validates.
    loser = next(r for r in rows if r["run_id"] != winner["run_id"])
    assert "max_iterations: 1" in forge.config(loser["run_id"])


def test_a_resumed_driver_does_not_rerun_finished_candidates(forge, colors_goal):
    goal = forge.load_goal(_goal(colors_goal))
    summary = forge.run(goal, run_id="colors-resume")
    rows = _candidates(forge, "colors-resume")
    folder = run_dir(forge.home, "colors-resume")
    # As if the driver died after the candidates finished but before it recorded the stage.
    for name in ("candidates.json", "generate.json", "filter.json", "dataset.json", "estimate.json", "train.json",
                 "evaluate.json", "decide.json"):
        (folder / "iter-1" / name).unlink()
    state = json.loads((folder / "state.json").read_text())
    state.update(status="running", iteration=1, stage="plan")
    (folder / "state.json").write_text(json.dumps(state))
    attempts = {r["run_id"]: sorted((run_dir(forge.home, r["run_id"]) / ".attempts").iterdir()) for r in rows}
    again = forge.resume("colors-resume")
    assert again["iterations"][0]["checkpoint"] == summary["iterations"][0]["checkpoint"]
    for r in rows:
        assert sorted((run_dir(forge.home, r["run_id"]) / ".attempts").iterdir()) == attempts[r["run_id"]]
        assert (run_dir(forge.home, r["run_id"]) / DONE).is_file()


def test_candidates_in_parallel_worker_processes(forge, colors_goal):
    summary = forge.run(_goal(colors_goal, workers=2))
    rows = _candidates(forge, summary["run_id"])
    assert len({r["pid"] for r in rows}) >= 2  # spawned workers, not this process
    assert all(r["status"] == "finished" for r in rows)


def test_the_budget_bounds_the_candidates_together(forge, colors_goal):
    path = _goal(colors_goal, iterations=2)
    path.write_text(path.read_text().replace("train: {backend: memo}", "train: {backend: memo, cost_per_example: 0.01}")
                    .replace("max_iterations: 2}", "max_iterations: 2, budget_usd: 0.5}"))
    summary = forge.run(path)
    assert summary["cost_usd"] <= 0.5 + 1e-9
    spent = sum(r.get("cost_usd", 0.0) for n in (1, 2)
                if (run_dir(forge.home, summary["run_id"]) / f"iter-{n}" / "candidates.json").exists()
                for r in _candidates(forge, summary["run_id"], n))
    assert spent == pytest.approx(summary["cost_usd"])


@pytest.mark.parametrize(("snippet", "message"), [
    ("search: {candidates: 0}", "search.candidates: expected an integer from 1 to 1024, got 0"),
    ("search: {candidates: 2, space: {train.lr: []}}", "search.space.train.lr: expected a non-empty list"),
    ("search: {candidates: 2, space: {colour: [1]}}", "search.space.colour: unknown search key"),
    ("search: {candidates: 2, space: {dataset_size: [0]}}", "search.space.dataset_size: expected a list of positive"),
])
def test_search_mistakes_name_file_line_and_field(colors_goal, snippet, message):
    colors_goal.write_text(colors_goal.read_text() + snippet + "\n")
    line = len(colors_goal.read_text().splitlines())
    with pytest.raises(ConfigError) as raised:
        load_goal(colors_goal)
    assert str(raised.value).startswith(f"{colors_goal}:{line}: {message}")
