"""The forge CLI over a real run: run --json, status, runs, show (--rejections), lineage, errors."""

from __future__ import annotations

import json

import kernel_plugins
from click.testing import CliRunner

from forgemind_core import Forge
from forgemind_core.brain.loop import Loop
from forgemind_core.cli.main import build_cli


def invoke(forge, *args):
    return CliRunner().invoke(build_cli(forge), list(args), catch_exceptions=False)


def test_run_json_then_inspect_the_run(forge_home, colors_goal):
    forge = Forge(home=forge_home, plugins=[kernel_plugins], blocked=["hf", "openai"])
    result = invoke(forge, "run", str(colors_goal), "--json", "--run-id", "cli-run")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["run_id"] == "cli-run" and summary["outcome"] == "promoted"
    assert summary["best_checkpoint"]["id"] == summary["stable_checkpoint"]["id"]
    first = summary["iterations"][0]
    assert set(first) >= {"plan", "data", "cost_usd", "scores"}
    assert set(first["scores"]) >= {"canary", "full"} and all(0 <= s <= 1 for s in first["scores"].values())

    status = json.loads(invoke(forge, "status", "cli-run", "--json").stdout)
    assert status["status"] == "finished" and status["iterations"][0]["stages_done"][-1] == "decide"

    runs = json.loads(invoke(forge, "runs", "--json").stdout)
    assert [r["id"] for r in runs] == ["cli-run"]

    shown = json.loads(invoke(forge, "show", "cli-run", "--json").stdout)
    assert shown is not None

    stable = summary["stable_checkpoint"]["id"]
    lineage = json.loads(invoke(forge, "lineage", stable, "--json").stdout)
    text = json.dumps(lineage)
    assert "template" in text and summary["iterations"][-1]["data"]["dataset_id"] in text


def test_rejections_name_their_rule(forge_home, colors_goal):
    text = colors_goal.read_text().replace("  - backend: rules\n", "  - backend: rules\n    max_chars: 24\n")
    colors_goal.write_text(text)
    forge = Forge(home=forge_home, plugins=[kernel_plugins], blocked=["hf", "openai"])
    invoke(forge, "run", str(colors_goal), "--json", "--run-id", "rej")
    rows = json.loads(invoke(forge, "show", "rej", "--rejections", "--json").stdout)
    assert rows and all(r["filter"] == "rules" and r["reason"] for r in rows)


def test_user_errors_are_one_sentence_and_exit_2(forge_home, tmp_path):
    forge = Forge(home=forge_home)
    bad = tmp_path / "goal.yaml"
    bad.write_text("name: x\ntask: y\ntrain:\n  backend: hf\n  learning_rate: fast\n")
    result = CliRunner().invoke(build_cli(forge), ["run", str(bad)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"{bad}:5: train.learning_rate" in result.output
    two = tmp_path / "two.yaml"
    two.write_text("name: x\ntask: y\nseed: many\nlimits: {max_iterations: lots}\n")
    both = CliRunner().invoke(build_cli(forge), ["run", str(two)])
    assert both.exit_code == 2
    assert f"{two}:3: seed" in both.output and f"{two}:4: limits.max_iterations" in both.output
    missing = CliRunner().invoke(build_cli(forge), ["resume", "no-such-run"])
    assert missing.exit_code == 2 and "no run 'no-such-run'" in missing.output


def test_compare_the_iterations_of_a_run_from_recorded_reports(forge_home, colors_goal, tmp_path):
    forge = Forge(home=forge_home, plugins=[kernel_plugins], blocked=["hf", "openai"])
    summary = json.loads(invoke(forge, "run", str(colors_goal), "--json", "--run-id", "cmp").stdout)
    first, last = summary["iterations"][0]["checkpoint"], summary["iterations"][-1]["checkpoint"]
    assert first != last
    html = tmp_path / "compare.html"
    result = invoke(forge, "compare", first, last, "--json", "--html", str(html))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    text = json.dumps(data)
    assert first in text and last in text
    # the first iteration failed full-tier cases that the promoted one passes
    assert summary["iterations"][0]["scores"]["full"] < summary["iterations"][-1]["scores"]["full"]
    assert data["improvements"] and not data["regressions"]
    assert "paint it" in text  # per-case inputs side by side
    assert html.read_text().lstrip().lower().startswith("<!doctype html")


def test_the_forge_executable_keeps_stdout_for_json(forge_home, colors_goal):
    """Through the real entry point (main): plugins' logs go to stderr, stdout parses as JSON."""
    import os
    import subprocess
    import sys

    Forge(home=forge_home, plugins=[kernel_plugins], blocked=["hf", "openai"]).run(colors_goal, run_id="exe")
    env = {**os.environ, "FORGEMIND_LOG_LEVEL": "debug"}
    out = subprocess.run([sys.executable, "-m", "forgemind_core", "--home", str(forge_home), "show", "exe", "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["run"]["id"] == "exe"


def test_a_stopped_run_names_its_best_try(forge_home, colors_goal):
    colors_goal.write_text(colors_goal.read_text().replace("max_iterations: 3", "max_iterations: 1"))
    forge = Forge(home=forge_home, plugins=[kernel_plugins], blocked=["hf", "openai"])
    result = CliRunner().invoke(build_cli(forge), ["run", str(colors_goal), "--run-id", "short"], terminal_width=200)
    assert result.exit_code == 1, result.output
    assert "outcome: stopped" in result.output and "stable model:" not in result.output
    summary = Loop(forge, forge.load_goal(colors_goal), "short", None, None).summary()
    best = summary["best_checkpoint"]
    assert best["iteration"] == 1 and best["id"] == summary["iterations"][0]["checkpoint"]
    assert f"best try:     iteration 1, full {best['score']:.1%}" in result.output
    assert f"(checkpoint {best['id']})" in result.output.replace("\n", "")
