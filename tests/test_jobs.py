"""Background jobs and the Forge's operations outside a run (``Forge.submit``, ``job``, ``train``, ...)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from forgemind_hookspecs import UserError


def _wait(forge, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = forge.job(job_id)
        if data["status"] not in ("queued", "running"):
            return data
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {forge.job(job_id)}")


def _data(tmp_path: Path) -> Path:
    rows = [{"prompt": f"Sentence: a {c} wall\nTemperature:", "completion": f" {t}"}
            for c, t in [("red", "warm"), ("blue", "cool"), ("amber", "warm"), ("teal", "cool")]]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_job_runs_in_the_background_and_keeps_its_events_on_disk(forge, tmp_path):
    data = _data(tmp_path)
    job_id = forge.submit("train", {"base": "memo-base", "data": str(data), "method": "full", "trainer": "memo"})
    job = _wait(forge, job_id)
    assert job["status"] == "finished", job
    losses = [e["payload"]["value"] for e in job["events"] if e["payload"].get("name") == "train.loss"]
    assert losses == [1.0, 0.5, pytest.approx(1 / 3)]
    assert Path(job["result"]["path"]).joinpath("model.json").is_file()
    # a second reader (a reloaded page) sees the same state from the folder alone
    from forgemind_core import Forge

    again = Forge(home=forge.home, entry_points=False).job(job_id)
    assert again["status"] == "finished" and again["events"] == job["events"]
    assert [j["id"] for j in forge.jobs()] == [job_id]
    assert forge.checkpoints()[0]["path"] == job["result"]["path"]


def test_run_job_links_the_run_and_records_iterations(forge, colors_goal):
    job_id = forge.submit("run", {"goal": str(colors_goal)})
    job = _wait(forge, job_id, 120)
    assert job["status"] == "finished", job
    assert job["result"]["run_id"] == job_id == job["params"]["run_id"]
    kinds = {e["kind"] for e in job["events"]}
    assert {"run.started", "plan", "eval.report", "run.finished"} <= kinds
    assert forge.status(job_id)["status"] == "finished"


def test_a_failed_job_says_why_in_one_sentence(forge, tmp_path):
    job_id = forge.submit("train", {"base": "memo-base", "data": str(tmp_path / "missing.jsonl"), "trainer": "memo"})
    job = _wait(forge, job_id)
    assert job["status"] == "failed" and "no such data file" in job["error"]


def test_a_job_whose_process_is_gone_reads_as_interrupted(forge):
    folder = Path(forge.home) / "jobs" / "train-x"
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"id": "train-x", "kind": "train", "status": "running",
                                                 "pid": 2**22 + 12345, "created": 1}))
    assert forge.job("train-x")["status"] == "interrupted"
    with pytest.raises(UserError):
        forge.job("../etc")
    with pytest.raises(UserError, match="unknown job kind"):
        forge.submit("format-disk", {})


def test_forge_jobs_cli_submits_detached_and_follows(forge, tmp_path):
    from forgemind_core.cli.main import build_cli

    cli = build_cli(forge)
    result = CliRunner().invoke(cli, ["jobs", "submit", "train", "-p", f"data={tmp_path / 'nope.jsonl'}",
                                      "-p", "base=x", "--json"])
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.output)["job"]
    assert forge.job(job_id)["pid"] != __import__("os").getpid()
    shown = CliRunner().invoke(cli, ["jobs", "show", job_id, "--follow"])
    assert shown.exit_code == 1 and "failed" in shown.output and "no such data file" in shown.output
    listed = CliRunner().invoke(cli, ["jobs"])
    assert job_id in listed.output and "failed" in listed.output


def test_preview_data_and_typed_evaluation(forge, tmp_path):
    data = _data(tmp_path)
    preview = forge.preview_data(data)
    assert preview["problems"] == [] and preview["rows"][0]["completion"] == " warm"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "completion": "y"}\n{"prompt": 3}\n')
    problems = forge.preview_data(bad)["problems"]
    assert len(problems) == 1 and problems[0].line == 2
    ckpt = forge.train("memo-base", data, method="full", trainer="memo")
    report = forge.evaluate(ckpt.path, [{"input": "a red wall", "expected": "warm"},
                                        {"input": "a navy wall", "expected": "lukewarm"}],
                            runner="memo", prompt_format="Sentence: {input}\nTemperature:")
    assert [r.passed for r in report.results] == [True, False]
