"""One test per kernel-facing hook that no backend plugin of this repository implements yet
(datasette style: each calls the hook through a real plugin manager and checks the result)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import click
from attrs import frozen
from click.testing import CliRunner
from forgemind_hookspecs import (
    Checkpoint,
    Decision,
    Goal,
    ReviewDecision,
    ReviewItem,
    collect_backends,
    hookimpl,
)

from forgemind_core import Forge
from forgemind_core.brain import planners as brain
from forgemind_core.cli.main import build_cli


class ApproveAll:
    """Approves every item (a test reviewer)."""

    name: ClassVar[str] = "approve_all"

    @frozen
    class Options:
        reviewer: str = "bot"

    def __init__(self, options):
        self.options = options

    def review(self, items, ctx):
        return [ReviewDecision(item_id=i.id, action="approve", reviewer=self.options.reviewer) for i in items]


class FolderExporter:
    """Writes the checkpoint's id into a folder (a test exporter)."""

    name: ClassVar[str] = "folder"

    @frozen
    class Options:
        pass

    def __init__(self, options):
        self.options = options

    def export(self, checkpoint, out_dir, metadata, ctx):
        out = Path(out_dir) / "MODEL_ID"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(checkpoint.id + " " + metadata.get("author", ""))
        return out


class TestPlugin:
    @hookimpl
    def forgemind_register_reviewers(self, register):
        register(ApproveAll)

    @hookimpl
    def forgemind_register_exporters(self, register):
        register(FolderExporter)

    @hookimpl
    def forgemind_register_commands(self, cli):
        @cli.command()
        @click.argument("name")
        def hello(name):
            """Say hello (added by a plugin)."""
            click.echo(f"hello {name}")


def test_hook_forgemind_register_reviewers(stage_context):
    forge = Forge(home=stage_context.home, plugins=[("test", TestPlugin())], entry_points=False, builtins=False)
    reviewer = forge.backend("reviewers", "approve_all", {"reviewer": "ada"})
    item = ReviewItem(id="i1", run_id="r", subject_kind="example", subject_id="e1")
    [decision] = reviewer.review([item], stage_context)
    assert (decision.item_id, decision.action, decision.reviewer) == ("i1", "approve", "ada")
    assert forge.catalogue()["reviewers"]["approve_all"].plugin == "test"


def test_hook_forgemind_register_exporters(stage_context, tmp_path):
    forge = Forge(home=stage_context.home, plugins=[("test", TestPlugin())], entry_points=False, builtins=False)
    exporter = forge.backend("exporters", "folder")
    path = exporter.export(Checkpoint(id="ck1", path="p", base_model="b", method="lora"), tmp_path / "out",
                           {"author": "ada"}, stage_context)
    assert path.read_text() == "ck1 ada"


def test_hook_forgemind_register_planners(make_pm, stage_context):
    planners = collect_backends(make_pm(brain), "planners")
    assert set(planners) == {"default", "fixed"}
    planner = planners["default"].cls(planners["default"].cls.Options(initial_examples=40))
    decision = planner.plan(Goal(name="g", task="t"), [], stage_context)
    assert isinstance(decision, Decision) and decision.action == "iterate"
    assert decision.next_plan.generation[0].count == 40 and decision.reasons


def test_hook_forgemind_register_executors(make_pm, stage_context):
    executors = collect_backends(make_pm(brain), "executors")
    local = executors["local"].cls(executors["local"].cls.Options(workers=2))
    assert local.map(abs, [-3, 4, -5], stage_context) == [3, 4, 5]
    assert local.map(str, [7], stage_context) == ["7"]


def test_hook_forgemind_register_commands(tmp_path):
    forge = Forge(home=tmp_path, plugins=[("test", TestPlugin())], entry_points=False)
    result = CliRunner().invoke(build_cli(forge), ["hello", "ada"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello ada\n"
    assert "Say hello" in CliRunner().invoke(build_cli(forge), ["--help"]).output
