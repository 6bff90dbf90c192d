"""Plugin discovery: entry points, built-ins, the block-list, broken plugins, unknown hooks, and
two kernels in one process with different plugin sets."""

from __future__ import annotations

import json
from importlib import metadata
from typing import ClassVar

import pytest
from attrs import frozen
from click.testing import CliRunner
from forgemind_hookspecs import PluginError, UnknownBackend, hookimpl

from forgemind_core import Forge
from forgemind_core.cli.main import build_cli


class Echo:
    """Repeats the prompt (a test generator)."""

    name: ClassVar[str] = "echo"

    @frozen
    class Options:
        times: int = 1

    def __init__(self, options):
        self.options = options

    def generate(self, plan, ctx):
        return []


class EchoPlugin:
    @hookimpl
    def forgemind_register_generators(self, register):
        register(Echo)


def test_installed_plugins_are_found_through_entry_points(tmp_path):
    rows = {r["name"]: r for r in Forge(home=tmp_path).plugins()}
    assert rows["duckdb"]["distribution"] == "forgemind-duckdb-registry"
    assert "forgemind_registry" in rows["duckdb"]["hooks"] and rows["duckdb"]["error"] is None
    assert rows["hf"]["backends"] == {"exporters": ["gguf", "hf", "ollama"], "runners": ["hf"],
                                      "servers": ["transformers"], "trainers": ["hf"]}
    assert not any(r["builtin"] for r in rows.values())


def test_builtins_are_ordinary_plugins_listed_with_all(tmp_path):
    rows = {r["name"]: r for r in Forge(home=tmp_path).plugins(include_builtins=True)}
    assert rows["forgemind.template"]["builtin"] and rows["forgemind.template"]["backends"] == {"generators": ["template"]}
    assert rows["forgemind.brain"]["backends"]["planners"] == ["default", "fixed"]


def test_block_list_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGEMIND_DISABLE_PLUGINS", "hf, forgemind.template")
    forge = Forge(home=tmp_path)
    names = {r["name"] for r in forge.plugins(include_builtins=True)}
    assert "hf" not in names and "forgemind.template" not in names and "duckdb" in names
    with pytest.raises(UnknownBackend, match="no trainer named 'hf'; installed: none"):
        forge.backend("trainers", "hf")


def test_a_plugin_that_fails_to_import_is_reported_and_does_not_break_forge(tmp_path, monkeypatch):
    real = metadata.entry_points

    def with_broken(**kwargs):
        found = list(real(**kwargs))
        if kwargs.get("group") == "forgemind":
            found.append(metadata.EntryPoint(name="broken", value="forgemind_no_such_module_xyz", group="forgemind"))
        return found

    monkeypatch.setattr(metadata, "entry_points", with_broken)
    forge = Forge(home=tmp_path)
    rows = {r["name"]: r for r in forge.plugins()}
    assert rows["broken"]["error"].startswith("ModuleNotFoundError")
    assert "hf" in forge.catalogue()["trainers"]
    result = CliRunner().invoke(build_cli(forge), ["plugins", "--json"])
    assert result.exit_code == 0
    assert any(r["name"] == "broken" and r["error"] for r in json.loads(result.output))


def test_a_hookimpl_without_a_spec_is_rejected(tmp_path):
    class Typo:
        @hookimpl
        def forgemind_register_generator(self, register):  # missing the final "s"
            pass

    with pytest.raises(PluginError, match="forgemind_register_generator"):
        Forge(home=tmp_path, plugins=[Typo()], entry_points=False).catalogue()


def test_two_kernels_in_one_process_keep_their_own_plugins(tmp_path):
    with_echo = Forge(home=tmp_path / "a", plugins=[("echo", EchoPlugin())], entry_points=False)
    without = Forge(home=tmp_path / "b", entry_points=False)
    assert "echo" in with_echo.catalogue()["generators"]
    assert "echo" not in without.catalogue()["generators"]
    assert with_echo.pm is not without.pm
    assert with_echo.backend("generators", "echo", {"times": 2}).options.times == 2


def test_backend_options_are_typed(tmp_path):
    forge = Forge(home=tmp_path, plugins=[("echo", EchoPlugin())], entry_points=False)
    with pytest.raises(Exception, match="bad options for generator 'echo'"):
        forge.backend("generators", "echo", {"times": "many"})
    with pytest.raises(Exception, match="extra fields"):
        forge.backend("generators", "echo", {"tims": 2})


def test_forge_plugins_json_lists_versions_and_backends(tmp_path):
    result = CliRunner().invoke(build_cli(Forge(home=tmp_path)), ["plugins", "--all", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["duckdb"]["version"] == metadata.version("forgemind-duckdb-registry")
    assert rows["forgemind.scorers"]["backends"]["scorers"] == sorted(rows["forgemind.scorers"]["backends"]["scorers"])
