"""The plugin's hooks: trainers, runners and CLI commands, through a real plugin manager."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import forgemind_hf
from click.testing import CliRunner
from forgemind_hookspecs import DataError, collect_backends, make_plugin_manager
from hf_testutil import snippet_examples, write_jsonl


def test_hook_forgemind_register_trainers() -> None:
    backends = collect_backends(make_plugin_manager([forgemind_hf]), "trainers")
    info = backends["hf"]
    assert info.cls is forgemind_hf.HFTrainer and info.plugin
    opts = info.options({"epochs": 1, "lora_r": 4})
    assert opts.epochs == 1 and opts.lora_r == 4 and opts.bf16 == "auto"


def test_hook_forgemind_register_runners() -> None:
    backends = collect_backends(make_plugin_manager([forgemind_hf]), "runners")
    assert backends["hf"].cls is forgemind_hf.HFRunner
    assert backends["hf"].options({"batch_size": 4}).batch_size == 4


def test_plugin_import_is_light() -> None:
    code = "import sys, forgemind_hf, forgemind_hf.cli; print(sorted(m for m in ('torch','transformers','peft','datasets','pyarrow','duckdb','openai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _cli() -> click.Group:
    @click.group()
    def cli() -> None:
        """test group"""

    make_plugin_manager([forgemind_hf]).hook.forgemind_register_commands(cli=cli)
    return cli


def test_hook_forgemind_register_commands(tiny_base: Path, tmp_path: Path, monkeypatch) -> None:
    cli = _cli()
    assert {"pretrain", "train", "estimate", "generate"} <= set(cli.commands)
    monkeypatch.setenv("FORGEMIND_HOME", str(tmp_path / "home"))
    data = write_jsonl(tmp_path / "d.jsonl", snippet_examples(32, seed=9))
    runner = CliRunner()
    sets = ["--set", "epochs=1", "--set", "bf16=false", "--set", "batch_size=8"]
    est = runner.invoke(cli, ["estimate", "--base", str(tiny_base), "--data", str(data), *sets, "--json"])
    assert est.exit_code == 0, est.output
    assert json.loads(est.stdout)["steps"] == 4
    out = tmp_path / "ckpt"
    res = runner.invoke(cli, ["train", "--base", str(tiny_base), "--data", str(data), "--out", str(out), *sets, "--json"])
    assert res.exit_code == 0, res.output
    ckpt = json.loads(res.stdout)
    assert ckpt["kind"] == "adapter" and Path(ckpt["path"]) == (out / "final").resolve()
    gen = runner.invoke(cli, ["generate", ckpt["path"], "Code: print(x)\nLabel:", "Code: eval(x)\nLabel:",
                              "--max-new-tokens", "3", "--json"])
    assert gen.exit_code == 0, gen.output
    assert len(json.loads(gen.stdout)) == 2
    # a user mistake reaches the kernel as a ForgeError naming the line (the kernel prints it, exit 2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
    failed = runner.invoke(cli, ["train", "--base", str(tiny_base), "--data", str(bad)])
    assert isinstance(failed.exception, DataError) and failed.exception.line == 2
    usage = runner.invoke(cli, ["train", "--base", str(tiny_base), "--data", str(data), "--set", "oops"])
    assert usage.exit_code == 2 and "KEY=VALUE" in usage.output
