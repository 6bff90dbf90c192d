"""Load, fork, branches and diff (forgemind_core/brain/forks.py) through the real loop, on the colours
pack with the memo trainer (tests/kernel_plugins.py), which trains in milliseconds."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner
from forgemind_hookspecs import UserError

from forgemind_core.brain.forks import affected_stage, apply_overrides
from forgemind_core.cli.main import build_cli


@pytest.fixture
def parent(forge, colors_goal):
    summary = forge.run(colors_goal, run_id="parent")
    assert summary["outcome"] == "promoted" and len(summary["iterations"]) == 2
    return summary


def _stages_run(events, iteration):
    return [e.stage for e in events if e.kind == "stage.started" and e.iteration == iteration]


def test_fork_with_one_changed_setting_trains_only_what_changed(forge, parent):
    events = []
    child = forge.fork("parent", overrides={"train.epochs": 3}, branch="more-epochs", new_run_id="child",
                       on_event=events.append)
    assert child["outcome"] == "promoted"
    # Nothing of iteration 1 and no base ran again; iteration 2 re-ran from the estimate on.
    assert [e for e in events if e.kind == "stage.started" and e.iteration in (0, 1)] == []
    assert _stages_run(events, 2) == ["estimate", "train", "evaluate", "decide"]
    p_its, c_its = parent["iterations"], child["iterations"]
    assert c_its[0]["checkpoint"] == p_its[0]["checkpoint"]  # reused
    assert c_its[1]["data"]["dataset_id"] == p_its[1]["data"]["dataset_id"]  # the same data...
    assert c_its[1]["checkpoint"] != p_its[1]["checkpoint"]  # ...trained again with epochs 3
    assert Path(child["stable_checkpoint"]["path"]).is_relative_to(Path(child["run_dir"]))  # trained by the fork
    assert child["stable_checkpoint"]["id"] == c_its[1]["checkpoint"]
    # No example was copied into the fork's registry rows: the data is linked, not duplicated.
    assert forge.sql("SELECT count(*) AS n FROM examples WHERE run_id = 'child'") == [{"n": 0}]

    lineage = forge.lineage(child["stable_checkpoint"]["id"])
    ancestors = {(a["id"], a["relation"]) for a in lineage["ancestors"]}
    assert (c_its[1]["data"]["dataset_id"], "trained") in ancestors
    assert (p_its[0]["data"]["dataset_id"], "derived") in ancestors  # through the parent's data
    assert {"parent", "child"} <= set(lineage["runs"])
    assert ("parent", "forked") in ancestors
    reused = forge.sql("SELECT dst, relation FROM lineage_edges WHERE src = 'child' AND relation = 'reused'")
    assert {r["dst"] for r in reused} >= {p_its[0]["checkpoint"], p_its[0]["data"]["dataset_id"]}


def test_fork_points_and_what_reruns(forge, parent):
    events = []
    child = forge.fork("parent", iteration=1, overrides={"filter.0.max_chars": 500}, new_run_id="f1",
                       on_event=events.append)
    assert _stages_run(events, 1)[:1] == ["filter"]
    assert child["iterations"][0]["data"]["generated"] == parent["iterations"][0]["data"]["generated"]
    assert affected_stage(["success.threshold"]) == ("decide", False)
    assert affected_stage(["generate.0.share", "train.epochs"]) == ("plan", False)
    assert affected_stage(["pretrain.preset"]) == ("estimate", True)
    assert affected_stage(["name"]) == (None, False)


def test_fork_at_a_later_iteration_replans_when_generation_changes(forge, parent):
    events = []
    forge.fork("parent", iteration=2, overrides={"seed": 4}, new_run_id="f2", on_event=events.append)
    # iteration 2's plan comes from iteration 1's decision: that decision is made again
    assert _stages_run(events, 1) == ["decide"]
    assert _stages_run(events, 2)[0] == "plan"


def test_show_config_runs_again_as_is(forge, parent, colors_goal, tmp_path):
    parent_goal = colors_goal
    text = forge.config("parent", 1)
    assert "backend: replay" in text and "max_iterations: 1" in text
    goal_file = tmp_path / "again.yaml"
    goal_file.write_text(text)
    again = forge.run(goal_file, run_id="again")
    first = parent["iterations"][0]
    assert again["iterations"][0]["data"]["dataset_id"] == first["data"]["dataset_id"]
    assert again["iterations"][0]["scores"] == first["scores"]
    whole = forge.load_goal(_write(tmp_path / "whole.yaml", forge.config("parent")))
    assert attrs.evolve(whole, source=None) == attrs.evolve(forge.load_goal(parent_goal), source=None)
    with pytest.raises(UserError, match="iterations 1 to 2, not 5"):
        forge.config("parent", 5)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bad_overrides_are_one_sentence(forge, parent):
    runner = CliRunner()
    cli = build_cli(forge)
    result = runner.invoke(cli, ["fork", "parent", "--set", "train.epochs=fast"])
    assert result.exit_code == 2, result.output
    assert "train.epochs" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli, ["fork", "parent", "--set", "nonsense"])
    assert result.exit_code == 2 and "key=value" in result.output
    result = runner.invoke(cli, ["fork", "parent", "--iteration", "7", "--set", "seed=1"])
    assert result.exit_code == 2 and "iterations 1 to 2, not 7" in result.output
    assert not any(p.name.startswith("colors-") for p in (Path(forge.home) / "runs").iterdir())


def test_apply_overrides_reports_changed_keys(forge, colors_goal):
    goal = forge.load_goal(colors_goal)
    new, changed = apply_overrides(goal, {"train.epochs": 3, "success.threshold": 0.8}, forge.catalogue())
    assert changed == ["success.threshold", "train.epochs"]
    assert new.train.options["epochs"] == 3 and new.success.threshold == 0.8 and new.source == goal.source


def test_cli_tree_diff_and_show_config(forge, parent):
    runner = CliRunner()
    cli = build_cli(forge)
    result = runner.invoke(cli, ["fork", "parent", "--set", "train.epochs=3", "--run-id", "child", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["run_id"] == "child"
    result = runner.invoke(cli, ["runs", "--tree", "--json"])
    roots = json.loads(result.output)
    assert [(r["id"], [c["id"] for c in r["children"]]) for r in roots] == [("parent", ["child"])]
    assert roots[0]["children"][0]["branch"] == "epochs=3" and roots[0]["branch"] == "main"
    result = runner.invoke(cli, ["runs", "--tree"])
    assert "epochs=3 @ iteration 2: child" in result.output
    result = runner.invoke(cli, ["diff", "parent", "child", "--json"])
    diff = json.loads(result.output)
    assert diff["config"] == [{"key": "train.epochs", "a": None, "b": 3}]
    assert [i["same_dataset"] for i in diff["iterations"]] == [True, True]
    assert [i["same_checkpoint"] for i in diff["iterations"]] == [True, False]
    result = runner.invoke(cli, ["diff", "parent", "child"])
    assert result.exit_code == 0 and "train.epochs" in result.output
    result = runner.invoke(cli, ["show", "child", "--config"])
    assert result.exit_code == 0 and "epochs: 3" in result.output and "forked from parent" in result.output


def test_a_custom_adversary_survives_fork_show_config_and_diff(forge, parent, tmp_path):
    forge.fork("parent", overrides={"evaluate.adversary.rounds": 3}, new_run_id="adv", run=False)
    text = forge.config("adv")
    assert "# evaluate.adversary" not in text  # written as a setting, not as a comment
    again = forge.load_goal(_write(tmp_path / "adv.yaml", text))
    assert again.evaluate.adversary.backend == "perturb" and dict(again.evaluate.adversary.options) == {"rounds": 3}
    assert forge.diff("parent", "adv")["config"] == [{"key": "evaluate.adversary.rounds", "a": None, "b": 3}]


def test_a_fork_links_its_reused_evaluations_and_records_no_row_twice(forge, parent):
    child = forge.fork("parent", overrides={"train.epochs": 3}, new_run_id="child")
    runner = CliRunner()
    query = ("SELECT checkpoint_id, tier, case_id, count(*) AS n FROM eval_results "
             "GROUP BY ALL HAVING count(*) > 1")
    result = runner.invoke(build_cli(forge), ["sql", query, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []  # no scored case stored twice (under parent and child)
    assert forge.sql("SELECT checkpoint_id, tier FROM eval_reports GROUP BY ALL HAVING count(*) > 1") == []
    # The child's evaluation rows are those of the checkpoint it trained, nothing of iteration 1.
    own = forge.sql("SELECT DISTINCT iteration, checkpoint_id FROM eval_results WHERE run_id = 'child'")
    assert own == [{"iteration": 2, "checkpoint_id": child["iterations"][1]["checkpoint"]}]
    # Reused stages are linked, not copied: their events name the parent, no metric is re-recorded.
    inherited = forge.sql("SELECT iteration, payload ->> 'inherited_from' AS src FROM events "
                          "WHERE run_id = 'child' AND kind = 'eval.report' ORDER BY iteration, seq")
    assert {(r["iteration"], r["src"]) for r in inherited} == {(1, "parent"), (2, None)}
    assert forge.sql("SELECT count(*) AS n FROM metrics WHERE run_id = 'child' AND iteration = 1") == [{"n": 0}]
    # forge show still gives the child's reused iteration its scores, from the parent's report.
    shown = forge.registry().run("child")["iterations"]
    assert shown[0]["scores"] and shown[0]["scores"] == forge.registry().run("parent")["iterations"][0]["scores"]
    assert shown[1]["scores"]["full"]["checkpoint_id"] == child["iterations"][1]["checkpoint"]
    # forge diff compares the same numbers: the shared iteration scores alike.
    first = forge.diff("parent", "child")["iterations"][0]
    assert first["same_checkpoint"] and first["a"]["scores"] == first["b"]["scores"]


def test_forks_of_a_reviewed_run_reuse_the_reviewers_decisions(tmp_path, forge_home):
    """A run under a Warden policy (pending: wait) whose review a human finished: a fork that
    reuses the data reuses the review stage; a fork that filters again reviews again with the
    same decisions. Either way it never waits for a human on an example already decided."""
    import kernel_plugins
    from test_warden import POLICY, TaintedPlugin, _goal

    from forgemind_core import Forge
    from forgemind_core.warden.review import ReviewPending

    forge = Forge(home=forge_home, plugins=[kernel_plugins, TaintedPlugin()], blocked=["hf"])
    policy = POLICY + "review: {sample: 0.25, pending: wait, wait_timeout_s: 0.3, poll_s: 0.05}\n"
    goal = _goal(tmp_path / "colors", policy=policy, filters="filter: [{backend: safety}, {backend: rules}]\n")
    goal.write_text(goal.read_text().replace("max_iterations: 3", "max_iterations: 1"))
    with pytest.raises(ReviewPending):
        forge.run(goal, run_id="reviewed")
    first, *rest = forge.review_queue("reviewed")
    forge.review(first["item_id"], "reject", reason="wrong label", reviewer="ann")
    for row in rest:
        forge.review(row["item_id"], "approve", reviewer="bob")
    parent = forge.resume("reviewed")
    data = parent["iterations"][0]["data"]
    assert data["dropped_by_reason"]["review.rejected"] == 1

    # The data is reused (train.epochs): so is the review stage, with the humans' decisions.
    events = []
    child = forge.fork("reviewed", overrides={"train.epochs": 3}, new_run_id="same-data", on_event=events.append)
    assert _stages_run(events, 1) == ["estimate", "train", "evaluate", "decide"]
    assert not [e for e in events if e.kind.startswith("review.")]
    assert child["iterations"][0]["data"]["dataset_id"] == data["dataset_id"]
    assert child["iterations"][0]["data"]["dropped_by_reason"] == data["dropped_by_reason"]
    reused = forge.sql("SELECT payload FROM events WHERE run_id = 'same-data' AND kind = 'run.started'")
    assert "review" in json.loads(reused[0]["payload"])["goal"]  # a policy run...
    assert json.loads((Path(forge.home) / "runs" / "same-data" / "state.json").read_text())[
        "parent"]["reused"]["1"][:4] == ["plan", "generate", "filter", "review"]  # ...whose review is reused

    # The data is made again (a filter setting): the same examples are reviewed again, each
    # with the decision already made on it, named as inherited; nobody is asked twice.
    events = []
    again = forge.fork("reviewed", overrides={"filter.1.max_chars": 30000}, new_run_id="refiltered",
                       on_event=events.append)
    assert _stages_run(events, 1)[:2] == ["filter", "review"]
    inherited = [e.payload for e in events if e.kind == "review.decision"]
    assert len(inherited) == 1 + len(rest) and {p["inherited_from"] for p in inherited} == {"reviewed"}
    assert forge.review_queue("refiltered") == []
    decided = {r["subject_id"]: (r["action"], r["reviewer"]) for r in forge.review_queue("refiltered", status="decided")}
    assert decided[first["subject_id"]] == ("reject", "ann")
    assert {decided[r["subject_id"]] for r in rest} == {("approve", "bob")}
    assert again["iterations"][0]["data"]["dataset_id"] == data["dataset_id"]  # the same decisions, the same data

    # A fork of that fork inherits them through it (three generations).
    third = forge.fork("refiltered", overrides={"filter.1.max_chars": 25000}, new_run_id="third")
    assert third["iterations"][0]["data"]["dataset_id"] == data["dataset_id"]
    assert forge.review_queue("third") == []


def test_three_generations_tree_diff_and_lineage(forge, parent):
    """parent (2 iterations) -> child forked at iteration 1 -> grandchild of the child: the tree
    names each branch under its parent, and the grandchild's model traces back to the
    grandparent's data through the child."""
    child = forge.fork("parent", iteration=1, overrides={"train.epochs": 3}, branch="epochs3", new_run_id="child")
    grandchild = forge.fork("child", iteration=1, overrides={"train.learning_rate": 0.2}, branch="lr02",
                            new_run_id="grandchild")
    runner = CliRunner()
    cli = build_cli(forge)
    result = runner.invoke(cli, ["runs", "--tree", "--json"])
    (root,) = json.loads(result.output)
    assert (root["id"], root["branch"]) == ("parent", "main")
    (kid,) = root["children"]
    assert (kid["id"], kid["branch"], kid["parent_iteration"]) == ("child", "epochs3", 1)
    (grandkid,) = kid["children"]
    assert (grandkid["id"], grandkid["branch"], grandkid["parent_iteration"]) == ("grandchild", "lr02", 1)
    text = runner.invoke(cli, ["runs", "--tree"]).output
    lines = [line for line in text.splitlines() if "child" in line or "parent" in line]
    assert [line.strip(" │├└─") for line in lines] == [
        "main: parent (finished, promoted)",
        f"epochs3 @ iteration 1: child (finished, {child['outcome']})",
        f"lr02 @ iteration 1: grandchild (finished, {grandchild['outcome']})",
    ]
    assert lines[2].index("lr02") > lines[1].index("epochs3")  # drawn under the child

    # The fork at iteration 1 shares iteration 1's data with its parent, not its model.
    diff = forge.diff("parent", "grandchild")
    assert diff["iterations"][0]["same_dataset"] and not diff["iterations"][0]["same_checkpoint"]
    assert {c["key"] for c in diff["config"]} == {"train.epochs", "train.learning_rate"}

    first = grandchild["iterations"][0]
    assert first["data"]["dataset_id"] == parent["iterations"][0]["data"]["dataset_id"]
    lineage = forge.lineage(first["checkpoint"])
    ancestors = {(a["id"], a["relation"]) for a in lineage["ancestors"]}
    assert (parent["iterations"][0]["data"]["dataset_id"], "trained") in ancestors  # the grandparent's data
    assert {("parent", "forked"), ("child", "forked")} <= ancestors
    assert {"parent", "child", "grandchild"} <= set(lineage["runs"])
    last = forge.lineage(grandchild["iterations"][-1]["checkpoint"])
    assert parent["iterations"][0]["data"]["dataset_id"] in {a["id"] for a in last["ancestors"]}
