"""The dashboard without a browser: binding rules, uploads, what the views show, the command."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from forgemind_dashboard.learn import GLOSSARY, explainer_html
from forgemind_dashboard.security import check_bind, is_loopback, safe_name, store_upload
from forgemind_dashboard.views import (
    comparison_html,
    events_log,
    export_markdown,
    lineage_markdown,
    loss_frame,
    metric_frame,
    metric_plot_start,
    pretrain_yaml,
    review_rows,
    run_tree_html,
)
from forgemind_hookspecs import UserError


def test_loopback_needs_no_token_anything_else_does():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.3.2.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "a-long-secret")
    with pytest.raises(UserError, match="access token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(UserError, match="at least 8"):
        check_bind("0.0.0.0", "short")


def test_forge_dashboard_refuses_a_public_host_without_a_token(tmp_path, monkeypatch):
    from forgemind_core import Forge
    from forgemind_core.cli.main import build_cli

    monkeypatch.delenv("FORGEMIND_DASHBOARD_TOKEN", raising=False)
    cli = build_cli(Forge(home=tmp_path))
    result = CliRunner().invoke(cli, ["dashboard", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "give an access token" in result.output and "Traceback" not in result.output


def test_uploads_stay_inside_the_home_whatever_their_name(tmp_path):
    home = tmp_path / "home"
    src = tmp_path / "incoming.jsonl"
    src.write_text('{"prompt": "a", "completion": "b"}\n')
    for name in ("../../evil.jsonl", "/etc/passwd", "..\\..\\evil.jsonl", "....//x.jsonl", "", ".bashrc"):
        dest = store_upload(home, src, name, max_bytes=1000)
        assert dest.is_relative_to((home / "uploads").resolve()), (name, dest)
        assert dest.read_text() == src.read_text()
    assert not (tmp_path / "evil.jsonl").exists() and not list(tmp_path.glob("*/evil.jsonl"))[:0]
    assert safe_name("../../my data (1).csv") == "my_data_1_.csv"
    with pytest.raises(UserError, match="more than"):
        store_upload(home, src, "big.jsonl", max_bytes=10)


def test_views_show_what_the_api_returns():
    events = [{"time": 0, "kind": "metric", "payload": {"name": "train.loss", "value": 2.5, "step": 1}},
              {"time": 0, "kind": "metric", "payload": {"name": "train.tokens_per_s", "value": 9.0, "step": 1}},
              {"time": 0, "kind": "metric", "payload": {"name": "train.loss", "value": 1.5, "step": 2}}]
    frame = loss_frame(events)
    assert list(frame["loss"]) == [2.5, 1.5] and list(frame["step"]) == [1, 2]
    assert "train.loss = 2.5000" in events_log(events) and "tokens_per_s" not in events_log(events)
    assert "steps: 6" in pretrain_yaml("c.txt", "tiny", {"steps": 6}) and "--steps 6" in pretrain_yaml("c.txt", "tiny", {"steps": 6})
    page = comparison_html({"checkpoints": ["a", "b"], "tiers": {"full": {"accuracy": {"a": 1.0, "b": 0.5},
                                                                        "delta": {"b": -0.5}}},
                            "counts": {"regression": 1},
                            "cases": [{"status": "regression", "input": "<x>", "expected": "y",
                                       "outputs": {"a": {"output": "y", "passed": True},
                                                   "b": {"output": "z <b>", "passed": False,
                                                         "diff": [["-", "y"], ["+", "z <b>"]]}}}]})
    assert "&lt;x&gt;" in page and "<ins class=\"fm-add\">z &lt;b&gt;</ins>" in page and "-50.0 pts" in page
    # the tree is Forge.runs_tree's (what forge runs --tree prints), labelled the same way
    tree = run_tree_html([{"id": "r1", "branch": "main", "status": "finished", "outcome": "promoted",
                           "children": [{"id": "r2", "parent_run": "r1", "parent_iteration": 2,
                                         "branch": "more-epochs", "status": "running", "children": []}]}])
    assert tree == ('<ul class="fm-tree"><li><b>main</b>: <code>r1</code> (finished, promoted)'
                    "<ul><li><b>more-epochs</b> @ iteration 2: <code>r2</code> (running, -)</li></ul></li></ul>")
    traced = lineage_markdown({"id": "c1", "kind": "checkpoint",
                               "ancestors": [{"id": "d1", "kind": "dataset", "relation": "trained", "depth": 1},
                                             {"id": "run1", "kind": "run", "relation": "produced", "depth": 2}],
                               "descendants": [],
                               "datasets": [{"id": "d1", "n_examples": 4, "sources": [
                                   {"generator": "template", "model": None, "prompt_template": "warm", "examples": 4}]}]})
    assert "- dataset `d1` (trained)\n    - run `run1` (produced)" in traced and "None" not in traced
    assert "- 4 examples: generator `template`, template `warm`" in traced
    rows = review_rows([{"item_id": "i1", "subject_kind": "example", "run_id": "q", "iteration": 1,
                         "payload": {"example": {"prompt": "the sky", "completion": " cool"}},
                         "reasons": ["sampled"]}])
    assert rows == [["i1", "example", "q", 1, "the sky →  cool", "sampled"]]
    shown = export_markdown({"checkpoint_id": "c1", "target": "hf", "out": "/h/exports/x", "path": "/h/exports/x",
                             "files": ["README.md", "config.json"]}, "/h/exports/x.zip")
    assert "`/h/exports/x.zip`" in shown and "**2 files:**\n- `README.md`\n- `config.json`" in shown


def test_plots_start_with_the_column_types_their_data_has():
    """Gradio's LinePlot builds its chart from the start value's column types and series and then
    only swaps rows: an empty start frame whose series column is not text gives a colour scale vega
    draws no line with (the metric plot showed axes but no lines); one without rows, no legend."""
    import gradio as gr

    run = {"iterations": [{"iteration": 1, "scores": {"canary": {"accuracy": 1.0}, "full": {"accuracy": 0.75}}},
                          {"iteration": 2, "scores": {"full": {"accuracy": 1.0, "checkpoint_id": "c"}}}]}
    frame = metric_frame(run, "accuracy")
    assert frame.values.tolist() == [[1, 1.0, "canary"], [1, 0.75, "full"], [2, 1.0, "full"]]
    start_rows = metric_plot_start()
    assert list(start_rows["tier"]) == ["canary", "full", "adversarial"] and start_rows["value"].isna().all()
    for empty, full, x, y, colour in ((start_rows, frame, "iteration", "value", "tier"),
                                      (loss_frame([]), loss_frame([{"kind": "metric", "payload": {
                                          "name": "train.loss", "value": 2.0, "step": 3, "iteration": 1}}]),
                                       "step", "loss", "series")):
        plot = gr.LinePlot(empty, x=x, y=y, color=colour)
        start, later = plot.postprocess(empty).datatypes, plot.postprocess(full).datatypes
        assert start == later and start[colour] == "nominal" and start[x] == start[y] == "quantitative"


def test_learn_mode_defines_the_terms_it_uses():
    html = explainer_html("fine_tuning")
    assert "{" not in html and html.count("<abbr") >= 5
    assert GLOSSARY["batch size"] in html.replace("&#x27;", "'")


def test_confinement_resolves_symlinks_and_dots_before_the_check(tmp_path, monkeypatch):
    from forgemind_dashboard.security import Confinement, safe_id

    home, project, outside = tmp_path / "home", tmp_path / "project", tmp_path / "outside"
    for folder in (home, project, outside):
        folder.mkdir()
    (outside / "secret.txt").write_text("s3cr3t")
    (home / "link").symlink_to(outside / "secret.txt")
    (project / "dir-link").symlink_to(outside)
    (project / "goal.yaml").write_text("name: g\n")
    monkeypatch.chdir(project)
    confine = Confinement(home)  # default allow-list: the current folder
    assert confine.roots == (home.resolve(), project.resolve())
    assert confine.path("goal.yaml") == (project / "goal.yaml").resolve()
    assert confine.path(home / "new" / "file.txt").is_relative_to(home.resolve())  # a file yet to be written
    for bad in (home / "link", project / "dir-link" / "secret.txt", "../outside/secret.txt",
                f"{home}/../outside/secret.txt", "/etc/passwd", "/proc/self/environ", "a\0b"):
        with pytest.raises(UserError, match="outside the folders this dashboard may read") as caught:
            confine.path(bad)
        assert "s3cr3t" not in str(caught.value)
    # /proc, /sys and /dev are refused even inside an allowed folder; a root folder is never allowed
    assert not Confinement(home, ["/usr"]).allows(Path("/proc/self/environ"))
    with pytest.raises(UserError, match="every file of the machine"):
        Confinement(home, ["/"])
    # a checkpoint or base: an id or hub id passes as typed, a path is confined
    assert confine.reference("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    assert confine.reference("ckpt-1234") == "ckpt-1234"
    with pytest.raises(UserError):
        confine.reference(str(outside))
    # a goal's values that name paths, and its pack's, relative ones against the goal's folder
    confine.goal_text("name: g\ntask: a task with words\npack: .\n", project)
    with pytest.raises(UserError, match=r"goal\.review\.policy"):
        confine.goal_text(f"name: g\ntask: t\nreview:\n  policy: {outside / 'secret.txt'}\n", project)
    with pytest.raises(UserError, match=r"goal\.pack"):
        confine.goal_text("name: g\ntask: t\npack: ../outside\n", project)
    (project / "pack").mkdir()
    (project / "pack" / "pack.yaml").write_text("name: p\nslots: ../../outside/secret.txt\n")
    with pytest.raises(UserError, match=r"pack\.slots"):
        confine.goal_text("name: g\ntask: t\npack: pack\n", project)
    assert safe_id("run-1") == "run-1" and safe_id("stable:v1") == "stable:v1"
    for bad_id in ("../x", "/etc", "a/b", ".hidden"):
        with pytest.raises(UserError, match="is not a run id"):
            safe_id(bad_id, "run id")


def test_forge_dashboard_refuses_to_allow_a_root_folder(tmp_path, monkeypatch):
    from forgemind_core import Forge
    from forgemind_core.cli.main import build_cli

    monkeypatch.delenv("FORGEMIND_DASHBOARD_TOKEN", raising=False)
    result = CliRunner().invoke(build_cli(Forge(home=tmp_path)), ["dashboard", "--allow", "/"])
    assert result.exit_code == 2 and "every file of the machine" in result.output
    assert "Traceback" not in result.output


def test_every_answer_is_scrubbed_of_the_token_and_secret_environment_values(tmp_path, monkeypatch):
    """A run listing (or any answer) holding a secret reaches the client as [REDACTED]."""
    from forgemind_dashboard.app import launch
    from gradio_client import Client

    from forgemind_core import Forge

    secret = "sk-unit" + "x" * 30
    monkeypatch.setenv("SOME_SERVICE_API_KEY", secret)
    forge = Forge(home=tmp_path / "home")
    monkeypatch.setattr(forge, "runs", lambda: [{"id": "r1", "goal_name": f"uses {secret} and token-abcdefgh1"}])
    monkeypatch.setattr(forge, "runs_tree", lambda: [])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    demo = launch(forge, port=free_port, token="token-abcdefgh1", block=False, quiet=True, allow=[tmp_path])
    try:
        client = Client(f"http://127.0.0.1:{free_port}/", auth=("x", "token-abcdefgh1"), verbose=False,
                        download_files=tmp_path / "downloads")
        answer = repr(client.predict(api_name="/rn_refresh_fn"))
    finally:
        demo.close()
    assert "uses [REDACTED] and [REDACTED]" in answer and secret not in answer and "token-abcdefgh1" not in answer
