"""The goal's ``report_to`` (docs/tracking.md): read, validated (one sentence, exit 2 through the
CLI for an unknown tracker), written back, and delivered to recorders in ``run.started``."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from forgemind_core.brain.goals import REPORT_TO, goal_dict, load_goal, validate_goal


def _goal(tmp_path: Path, report_to: str) -> Path:
    path = tmp_path / "goal.yaml"
    path.write_text(f"name: t\ntask: label colours\nreport_to: {report_to}\n", encoding="utf-8")
    return path


def test_report_to_is_read_and_written_back(tmp_path: Path) -> None:
    goal = load_goal(_goal(tmp_path, "[mlflow, wandb]"))
    assert goal.report_to == ("mlflow", "wandb")
    assert goal_dict(goal)["report_to"] == ["mlflow", "wandb"]
    assert "report_to" not in goal_dict(load_goal(_write_plain(tmp_path)))
    assert REPORT_TO == ("mlflow", "tensorboard", "wandb")


def _write_plain(tmp_path: Path) -> Path:
    path = tmp_path / "plain.yaml"
    path.write_text("name: t\ntask: label colours\n", encoding="utf-8")
    return path


def test_unknown_or_repeated_tracker_is_one_sentence_each(tmp_path: Path) -> None:
    path = _goal(tmp_path, "[mlflow, comet, mlflow]")
    assert [str(e) for e in validate_goal(path)] == [
        f"{path}:3: report_to[1]: unknown tracker 'comet'; report_to takes mlflow, tensorboard, wandb",
        f"{path}:3: report_to[2]: tracker 'mlflow' is named twice",
    ]
    not_a_list = _goal(tmp_path, "7")
    [error] = validate_goal(not_a_list)
    assert str(error).startswith(f"{not_a_list}:3: report_to: ")


def test_cli_exits_2_without_a_traceback_for_an_unknown_tracker(tmp_path: Path, forge) -> None:
    from forgemind_core.cli.main import build_cli

    path = _goal(tmp_path, "[tensorbored]")
    result = CliRunner().invoke(build_cli(forge), ["validate", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"{path}:3: report_to[0]: unknown tracker 'tensorbored'" in result.output


def test_run_started_carries_report_to_to_recorders(forge, colors_goal: Path) -> None:
    colors_goal.write_text(colors_goal.read_text() + "report_to: [tensorboard]\n")
    seen: list[object] = []

    class Recorder:
        from forgemind_hookspecs import hookimpl

        @hookimpl
        def forgemind_record(self, events, home):
            seen.extend(e.payload["goal"]["report_to"] for e in events if e.kind == "run.started")

    forge.pm.register(Recorder())
    forge.run(colors_goal)
    assert seen == [["tensorboard"]]
