"""The readouts a person reads first (issue 19): ``forge runs``, ``forge show`` (table and
``--plot``), ``forge lineage``, ``forge status`` while training, ``forge plugins``, a relative
home used from another folder, and ``success.metric`` checked against the tiers' metrics — each
through the CLI, asserting the printed cells against what the run recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import kernel_plugins
import pytest
from click.testing import CliRunner

from forgemind_core import Forge
from forgemind_core.cli.main import build_cli
from forgemind_core.lorekeeper.readouts import local_time


def invoke(forge: Forge, *args: str):
    return CliRunner().invoke(build_cli(forge), list(args), catch_exceptions=False, terminal_width=120)


def _forge(home) -> Forge:
    return Forge(home=home, plugins=[kernel_plugins], blocked=["hf", "openai"])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One real two-iteration colors run (memo backends), shared by the read-only tests."""
    from colors_pack import write_pack

    root = tmp_path_factory.mktemp("readouts")
    forge = _forge(root / "home")
    ran = forge.run(write_pack(root / "colors"), run_id="shown")
    summary = forge.summary("shown")  # what forge show reads: the run's summary plus the loss curves
    assert len(ran["iterations"]) >= 2
    assert [{k: v for k, v in it.items() if k != "loss_curve"} for it in summary["iterations"]] == ran["iterations"]
    assert all(it["loss_curve"] for it in summary["iterations"])
    return forge, summary


def test_runs_fills_id_goal_and_a_readable_start(finished):
    forge, summary = finished
    result = invoke(forge, "runs")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.strip().startswith("shown"))
    started = forge.runs()[0]["started"]
    cells = row.split()
    assert cells[:5] == ["shown", "colors", "finished", summary["outcome"], str(len(summary["iterations"]))]
    assert local_time(started, seconds=False) in row
    assert str(started) not in result.output and str(int(started)) not in result.output


def test_show_prints_the_summary_table_and_json_keeps_the_record(finished):
    forge, summary = finished
    result = invoke(forge, "show", "shown")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "run shown (colors)"
    header = next(line for line in lines if line.split()[:2] == ["it", "plan"]).split()
    assert header == ["it", "plan", "gen", "kept", "canary", "full", "loss", "time", "cost", "decision"]
    for item in summary["iterations"]:
        row = next(line for line in lines if line.split()[:1] == [str(item["iteration"])]).split()
        generation = item["plan"]["generation"][0]
        assert row[1:3] == [str(generation["count"]), generation["strategy"]]
        assert row[3:5] == [str(item["data"]["generated"]), str(item["data"]["kept"])]
        assert row[5:7] == [f"{item['scores']['canary']:.0%}", f"{item['scores']['full']:.0%}"]
        assert row[7] == f"{item['loss_curve'][-1]:.3f}"
        assert row[8] == f"{item['seconds']:.1f}s" and row[9] == f"${item['cost_usd']:.4f}"
        assert row[10] == item["decision"]["action"]
        assert f"iteration {item['iteration']}: {item['decision']['action']} - {item['decision']['reasons'][0]}" in result.output
    assert f"outcome: {summary['outcome']}" in result.output
    # what is wrong inside the failures, from each iteration's recorded evaluation
    from forgemind_core.base.fsio import read_json
    from forgemind_core.base.runfolder import RunFolder
    from forgemind_core.trials.analysis import tier_findings

    findings = [(item["iteration"], row) for item in summary["iterations"] for row in tier_findings(
        read_json(RunFolder(forge.home, "shown").stage_file(item["iteration"], "evaluate"))["reports"], limit=3)]
    assert findings, "the colours run's first try fails cases: its analysis has findings"
    for iteration, (tier, what, finding) in findings:
        assert f"iteration {iteration} {tier}: {what}: {finding}" in " ".join(result.output.split())
    assert "{" not in result.output  # no raw JSON

    as_json = json.loads(invoke(forge, "show", "shown", "--json").stdout)
    assert as_json == json.loads(json.dumps(forge.show("shown"), default=str))
    assert invoke(forge, "show", "shown", "--config").output.startswith("# ") or "name: colors" in invoke(
        forge, "show", "shown", "--config").output
    assert invoke(forge, "show", "shown", "--rejections").exit_code == 0


def test_show_plot_draws_the_runs_losses_and_scores(finished):
    forge, summary = finished
    result = invoke(forge, "show", "shown", "--plot")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "training loss per step, run shown" in text and "score per iteration (%)" in text
    loss_part, score_part = text.split("score per iteration (%)")
    ticks = {line.split("┤")[0].strip() for line in loss_part.splitlines() if "┤" in line}
    for item in summary["iterations"]:
        assert f"{item['loss_curve'][0]:.3f}" in ticks and f"{item['loss_curve'][-1]:.3f}" in ticks
        assert f"iteration {item['iteration']}" in loss_part
    score_ticks = {line.split("┤")[0].strip() for line in score_part.splitlines() if "┤" in line}
    for item in summary["iterations"]:
        for score in item["scores"].values():
            value = round(100 * score, 1)
            assert (f"{value:.0f}%" if value == int(value) else f"{value:.1f}%") in score_ticks
    assert all(f"it {item['iteration']}" in score_part for item in summary["iterations"])
    assert "canary" in score_part and "full" in score_part
    assert "\x1b[" not in text  # no colour codes outside a terminal


def test_lineage_draws_the_tree_with_sources_verdicts_evaluations_and_promotion(finished):
    forge, summary = finished
    stable = summary["stable_checkpoint"]["id"]
    data = forge.lineage(stable)
    result = invoke(forge, "lineage", stable)
    assert result.exit_code == 0, result.output
    text = result.output
    last = summary["iterations"][-1]
    assert text.splitlines()[0].startswith(f"checkpoint {stable}: train")
    dataset = next(d for d in data["datasets"] if d["id"] == last["data"]["dataset_id"])
    assert f"<- trained: dataset {dataset['id']}: {dataset['n_examples']} examples" in text
    for source in dataset["sources"]:
        assert f"{source['generator']} / {source['prompt_template']} x {source['examples']}" in text
    assert f"verdicts of iteration {last['iteration']}: kept {last['data']['kept']}, dropped {last['data']['dropped']}" in text
    parent = dataset["parents"][0]
    assert f"<- derived: dataset {parent}" in text
    assert f"<- base_of: checkpoint {data['checkpoints'][0]['id']}" in text or "<- base_of: checkpoint" in text
    for tier, score in last["scores"].items():
        assert f"{tier}: accuracy {score:.0%} of " in text
    assert "-> promoted: stable:v1 (run shown," in text
    assert "id:" not in text and "kind:" not in text  # not the old flattened key lines
    assert json.loads(invoke(forge, "lineage", stable, "--json").stdout) == json.loads(json.dumps(data, default=str))


def test_plugins_has_no_empty_backend_cell(finished):
    forge, _ = finished
    result = invoke(forge, "plugins", "--all")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip()
            for line in result.output.splitlines() if line.startswith("│") and line.split("│")[1].strip()}
    assert rows["dashboard"] == "commands: dashboard"
    assert rows["duckdb"].startswith("the registry")
    assert all(cell for cell in rows.values()), rows


def test_a_relative_home_works_from_another_folder(tmp_path, monkeypatch, colors_goal):
    monkeypatch.delenv("FORGEMIND_HOME", raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    forge = _forge(None)
    result = invoke(forge, "--home", ".forgemind", "run", str(colors_goal), "--run-id", "rel", "--json")
    assert result.exit_code == 0, result.output
    dataset = json.loads(result.stdout)["iterations"][-1]["data"]["dataset_id"]
    assert forge.registry().dataset(dataset)["path"] == str(first / ".forgemind" / "datasets" / f"{dataset}.parquet")

    monkeypatch.chdir(second)  # read from elsewhere, naming the same home relatively
    again = _forge(None)
    out = invoke(again, "--home", "../first/.forgemind", "export-data", dataset, "--out", "exported",
                 "--format", "jsonl", "--json")
    assert out.exit_code == 0, out.output
    written = list((second / "exported").rglob("*.jsonl"))
    assert written and sum(len(p.read_text().splitlines()) for p in written) == again.registry().dataset(dataset)["n_examples"]
    shown = invoke(again, "--home", "../first/.forgemind", "show", "rel")
    assert shown.exit_code == 0 and "run rel (colors)" in shown.output


def test_a_misspelt_success_metric_is_one_sentence_exit_2(forge, colors_goal):
    text = colors_goal.read_text()
    colors_goal.write_text(text.replace("metric: accuracy", "metric: acuracy"))
    line = next(i for i, row in enumerate(colors_goal.read_text().splitlines(), 1) if "acuracy" in row)
    for command in ("validate", "run"):
        result = CliRunner().invoke(build_cli(forge), [command, str(colors_goal)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert f"{colors_goal}:{line}: success.metric" in result.output
        assert "'acuracy' is not a metric the evaluation tiers report" in result.output
        assert "did you mean 'accuracy'?" in result.output
    colors_goal.write_text(text.replace("metric: accuracy", "metric: pass_rate"))
    assert CliRunner().invoke(build_cli(forge), ["validate", str(colors_goal)]).exit_code == 0


def test_status_shows_step_loss_and_eta_of_a_run_another_process_drives(forge_home, colors_goal):
    colors_goal.write_text(colors_goal.read_text().replace("train: {backend: memo}", "train: {backend: held}"))
    assert "backend: held" in colors_goal.read_text()
    writer = Path(__file__).parent / "_readouts_writer.py"
    proc = subprocess.Popen([sys.executable, str(writer), str(forge_home), str(colors_goal), "live"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = _forge(forge_home)
    try:
        deadline = time.monotonic() + 60
        state: dict = {}
        while time.monotonic() < deadline and proc.poll() is None:
            if (forge_home / "runs" / "live" / "state.json").exists():
                state = reader.status("live")
                if (state.get("running") or {}).get("step") == 4:
                    break
            time.sleep(0.2)
        output = invoke(reader, "status", "live").output
        assert state.get("running"), (state, proc.poll())
        running = state["running"]
        assert state["driven_by_pid"] == proc.pid
        assert (running["stage"], running["iteration"], running["loss"]) == ("train", 1, 0.25)
        steps = json.loads((forge_home / "runs" / "live" / "iter-1" / "estimate.json").read_text())["estimate"]["steps"]
        assert running["total_steps"] == steps
        assert running["eta_s"] is not None and running["eta_s"] > 0
        assert f"running: train of iteration 1: step 4/{steps}, train.loss 0.250, ETA" in output
        assert "last finished stage 'estimate'" in output
        as_json = json.loads(invoke(reader, "status", "live", "--json").stdout)
        assert as_json["running"]["step"] == 4
    finally:
        (forge_home / "release").touch()
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 1), err
    assert reader.status("live")["running"] is None and reader.status("live")["status"] == "finished"


def test_lineage_walks_back_through_a_teacher_checkpoint(tmp_path):
    """A second run whose examples a checkpoint of the first wrote (``source.model`` = its id):
    the student's tree has the teacher under its dataset, with the teacher's own data under it."""
    from colors_pack import write_pack
    from forgemind_hookspecs import Checkpoint, Example, Source, Verdict, to_dict
    from forgemind_hookspecs.snapshots import write_snapshot

    from forgemind_core.base.events import make_event

    forge = _forge(tmp_path / "home")
    teacher_run = forge.run(write_pack(tmp_path / "colors"), run_id="teacher")
    teacher = teacher_run["stable_checkpoint"]["id"]
    teacher_data = teacher_run["iterations"][-1]["data"]["dataset_id"]
    examples = [Example(prompt=f"paint {i}", completion="warm", category="warm",
                        source=Source("openai", model=teacher, prompt_template="ask")) for i in range(3)]
    ref = write_snapshot(examples, forge.home / "datasets")
    student = Checkpoint(id="ck-student", path=str(tmp_path / "student"), base_model="memo-base", method="full",
                         kind="full", dataset_id=ref.id)
    events = [
        make_event("student", "run.started", payload={"goal": {"name": "student"}, "forgemind_version": "0.1.0"}),
        make_event("student", "examples", iteration=1, stage="generate", payload={"examples": to_dict(examples)}),
        make_event("student", "verdicts", iteration=1, stage="filter",
                   payload={"verdicts": [to_dict(Verdict(e.id, "rules", True)) for e in examples]}),
        make_event("student", "dataset", iteration=1, stage="dataset", payload={"dataset": to_dict(ref)}),
        make_event("student", "checkpoint", iteration=1, stage="train", payload={"checkpoint": to_dict(student)}),
    ]
    forge.record(events)
    data = forge.lineage("ck-student")
    assert any(a["id"] == teacher and a["relation"] == "generated" for a in data["ancestors"])
    text = invoke(forge, "lineage", "ck-student").output
    lines = text.splitlines()
    assert lines[0] == "checkpoint ck-student: train, full (run student, iteration 1)"
    assert f"<- trained: dataset {ref.id}: 3 examples (run student, iteration 1)" in text
    assert f"openai {teacher} / ask x 3" in text
    at = next(i for i, line in enumerate(lines) if f"<- generated: checkpoint {teacher}: train, full (run teacher," in line)
    below = "\n".join(lines[at + 1:])
    assert f"<- trained: dataset {teacher_data}:" in below  # the teacher's own data, under the teacher
    student_data = next(line for line in lines if f"<- trained: dataset {ref.id}" in line)
    assert lines[at].index("<-") > student_data.index("<-")  # drawn under the student's dataset
