"""`forge review` end to end: the interactive form in a real terminal (pexpect, a pty), resumed
after quitting, and the non-interactive form (flags, JSONL export/import)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest
from click.testing import CliRunner
from test_warden import POLICY, TaintedPlugin, _goal

from forgemind_core import Forge
from forgemind_core.cli.main import build_cli


@pytest.fixture
def queued(tmp_path, forge_home):
    """A home whose finished run left 6 examples pending review (pending: skip)."""
    import kernel_plugins

    forge = Forge(home=forge_home, plugins=[kernel_plugins, TaintedPlugin()], blocked=["hf"])
    goal = _goal(tmp_path / "colors", policy=POLICY + "review: {sample: 0.35, pending: skip}\n",
                 filters="filter: [{backend: safety}, {backend: rules}]\n")
    goal.write_text(goal.read_text().replace("max_iterations: 3", "max_iterations: 1"))
    forge.run(goal, run_id="q")
    assert len(forge.review_queue("q")) == 6
    return forge


def _spawn(home: Path) -> pexpect.spawn:
    env = {**os.environ, "USER": "tester", "FORGEMIND_HOME": str(home), "COLUMNS": "120", "TERM": "xterm"}
    return pexpect.spawn(sys.executable, ["-m", "forgemind_core", "review"], env=env, encoding="utf-8",
                         timeout=30, dimensions=(50, 120))


def test_interactive_review_in_a_real_terminal_is_resumable(queued):
    before = queued.review_queue("q")
    child = _spawn(queued.home)
    child.expect("item 1/6")
    child.expect("approve.*reject.*edit.*skip.*quit")
    child.send("x")  # not a key: ignored
    child.send("a")
    child.expect("approved: recorded")
    child.expect("item 2/6")
    child.send("r")
    child.expect("reason")
    child.sendline("label does not fit")
    child.expect("rejected: recorded")
    child.expect("item 3/6")
    child.send("e")
    child.expect("new completion")
    child.sendline(" neither")
    child.expect("reason")
    child.sendline("")
    child.expect("edited: recorded")
    child.expect("item 4/6")
    child.send("s")
    child.expect("skipped")
    child.expect("item 5/6")
    child.send("q")
    child.expect(r"approved 1, rejected 1, edited 1, skipped 1; 3 still pending")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    decided = {r["item_id"]: r for r in queued.review_queue("q", status="decided")}
    assert decided[before[0]["item_id"]]["action"] == "approve"
    assert decided[before[1]["item_id"]]["reason"] == "label does not fit"
    assert decided[before[2]["item_id"]]["edited"] == {"completion": " neither"}
    assert {r["reviewer"] for r in decided.values()} == {"tester"}
    pending = [r["item_id"] for r in queued.review_queue("q")]
    assert pending == [r["item_id"] for r in before[3:]]  # the skipped one and the two never shown

    child = _spawn(queued.home)  # a second session starts where the first left off
    child.expect("item 1/3")
    child.expect(before[3]["item_id"])
    child.send("q")
    child.expect("3 still pending")
    child.expect(pexpect.EOF)


def test_non_interactive_review_and_jsonl_round_trip(queued, tmp_path):
    cli = build_cli(queued)
    runner = CliRunner()
    rows = json.loads(runner.invoke(cli, ["review", "q", "--list", "--json"]).output)
    assert len(rows) == 6 and all(r["scores"] == {} and r["reasons"] for r in rows)
    a, b, c, *rest = [r["item_id"] for r in rows]
    result = runner.invoke(cli, ["review", "--approve", a, "--reject", b, "--reason", "off topic", "--reviewer", "dee"])
    assert result.exit_code == 0 and f"{b}: reject by dee" in result.output
    result = runner.invoke(cli, ["review", "--edit", c, "--completion", " warm", "--reviewer", "dee"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, ["review", "--edit", c]).exit_code == 2
    out = tmp_path / "queue.jsonl"
    assert runner.invoke(cli, ["review", "--export", str(out)]).exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["item_id"] for line in lines] == rest and all(line["decision"] is None for line in lines)
    lines[0]["decision"] = {"action": "reject", "reason": "duplicate of another"}
    lines[1]["decision"] = {"action": "approve"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(lines[0]) + "\n" + json.dumps({**lines[1], "decision": {"action": "maybe"}}) + "\n")
    result = runner.invoke(cli, ["review", "--import", str(bad)])
    assert result.exit_code == 2 and f"{bad}:2: decision.action: expected one of" in result.output
    assert len(queued.review_queue("q")) == 3  # nothing of the bad file was recorded
    bad.write_text(json.dumps(lines[0]) + "\n{not json\n")
    result = runner.invoke(cli, ["review", "--import", str(bad)])
    assert result.exit_code == 2 and f"{bad}:2: not JSON (Expecting property name" in result.output
    assert len(queued.review_queue("q")) == 3
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = runner.invoke(cli, ["review", "--import", str(out), "--reviewer", "eve"])
    assert result.exit_code == 0, result.output
    assert [r["item_id"] for r in queued.review_queue("q")] == [lines[2]["item_id"]]
    decided = {r["item_id"]: r for r in queued.review_queue("q", status="decided")}
    assert decided[lines[0]["item_id"]]["reviewer"] == "eve"
    assert decided[lines[0]["item_id"]]["reason"] == "duplicate of another"
    assert runner.invoke(cli, ["review", "--approve", "zzz"]).exit_code == 2
