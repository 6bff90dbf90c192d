"""The ``files`` generator: real JSONL, CSV and Parquet rows (read with ``datasets``) as examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import kernel_plugins
import pytest
from attrs import evolve
from colors_pack import write_pack
from forgemind_hookspecs import DataError, GenerationPlan, collect_backends, make_plugin_manager
from forgemind_hookspecs.errors import ConfigError
from forgemind_hookspecs.snapshots import read_snapshot

from forgemind_core.base.plugins import BUILTIN_PLUGINS
from forgemind_core.foundry import files
from forgemind_core.foundry.files import FilesGenerator
from forgemind_core.foundry.packs import load_pack

ROWS = [
    {"question": "the scarf is crimson", "answer": "warm", "label": "warm"},
    {"question": "the pen is cobalt", "answer": "cool", "label": "cool"},
    {"question": "the rug is coral", "answer": "warm", "label": "warm"},
    {"question": "the tile is azure", "answer": "cool", "label": "cool"},
    {"question": "the jar is rust", "answer": "warm", "label": "warm"},
    {"question": "the fan is indigo", "answer": "cool", "label": "cool"},
]
MAPPING = {"input": "question", "completion": "answer", "category": "label"}


def _write(path: Path, rows: list[dict], fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "csv":
        import csv

        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def pack_ctx(tmp_path, stage_context):
    write_pack(tmp_path / "colors")
    return evolve(stage_context, pack=load_pack(tmp_path / "colors"), seed=7)


def _generate(options: dict, ctx, count: int = 0, weights: dict | None = None) -> list:
    gen = FilesGenerator(FilesGenerator.Options(**options))
    return list(gen.generate(GenerationPlan(generator="files", count=count, category_weights=weights or {}), ctx))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_each_format_round_trips(fmt, tmp_path, pack_ctx, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    path = _write(tmp_path / "colors" / "data" / f"real.{fmt}", ROWS, fmt)
    examples = _generate({"paths": (f"data/real.{fmt}",), "columns": MAPPING, "text_format": True}, pack_ctx)
    assert len(examples) == len(ROWS)
    by_input = {e.meta["input"]: e for e in examples}
    assert set(by_input) == {r["question"] for r in ROWS}
    for row in ROWS:
        e = by_input[row["question"]]
        assert e.prompt == f"Sentence: {row['question']}\nTemperature:"
        assert e.completion == " " + row["answer"]  # the template generator's leading space
        assert e.category == row["label"]
        assert e.source.generator == "files" and e.source.model is None
        assert e.source.prompt_template == f"real.{fmt}" and e.source.seed == 7
        assert e.meta["file"] == str(path)
    # JSONL and CSV rows name their line (CSV: the header is line 1)
    first = by_input[ROWS[0]["question"]].meta["line"]
    assert first == {"jsonl": 1, "csv": 2, "parquet": 1}[fmt]
    # read with datasets into the home's cache, not ~/.cache
    assert (Path(pack_ctx.cache_dir) / "datasets").is_dir()


def test_column_mapping_without_text_format_and_label_only_rows(tmp_path, pack_ctx):
    _write(tmp_path / "qa.jsonl", [{"q": "What is 2+2?", "a": "4"}], "jsonl")
    [e] = _generate({"paths": (str(tmp_path / "qa.jsonl"),), "columns": {"prompt": "q", "completion": "a"}}, pack_ctx)
    assert (e.prompt, e.completion, e.category) == ("What is 2+2?", " 4", None)
    # default column names; a completion that already starts with a space is kept as it is
    _write(tmp_path / "pc.jsonl", [{"prompt": "p1", "completion": " cool"}], "jsonl")
    [e] = _generate({"paths": (str(tmp_path / "pc.jsonl"),)}, pack_ctx)
    assert (e.completion, e.category) == (" cool", "cool")  # a label completion names its category
    # a label column and no completion: the completion is " <label>", as the template generator writes it
    _write(tmp_path / "lab.csv", [{"text": "the cap is ruby", "label": "warm"}], "csv")
    [e] = _generate({"paths": (str(tmp_path / "lab.csv"),), "columns": {"input": "text"}, "text_format": True}, pack_ctx)
    assert (e.prompt, e.completion, e.category) == ("Sentence: the cap is ruby\nTemperature:", " warm", "warm")


def test_count_is_a_seeded_sample_and_weights_split_categories(tmp_path, pack_ctx):
    rows = [{"question": f"item {i} is {'red' if i % 2 else 'blue'}", "answer": "warm" if i % 2 else "cool",
             "label": "warm" if i % 2 else "cool"} for i in range(40)]
    _write(tmp_path / "colors" / "data" / "many.jsonl", rows, "jsonl")
    opts = {"paths": ("data/*.jsonl",), "columns": MAPPING}
    a = _generate(opts, pack_ctx, count=10)
    b = _generate(opts, pack_ctx, count=10)
    assert len(a) == 10 and [e.id for e in a] == [e.id for e in b]  # deterministic for a seed
    c = _generate(opts, evolve(pack_ctx, seed=8), count=10)
    assert [e.id for e in c] != [e.id for e in a]  # another seed, another sample
    assert [e.meta["line"] for e in a] != sorted(e.meta["line"] for e in a)  # shuffled, not the first rows
    assert len(_generate(opts, pack_ctx, count=0)) == 40  # count <= 0: every row
    assert len(_generate(opts, pack_ctx, count=500)) == 40  # never more rows than there are
    weighted = Counter(e.category for e in _generate(opts, pack_ctx, count=12, weights={"warm": 3.0, "cool": 1.0}))
    assert weighted == {"warm": 9, "cool": 3}
    only = Counter(e.category for e in _generate(opts, pack_ctx, count=6, weights={"warm": 0.0}))
    assert only == {"cool": 6}


def test_pack_data_files_are_the_default_paths(tmp_path, stage_context):
    root = tmp_path / "colors"
    write_pack(root)
    _write(root / "data" / "real.jsonl", ROWS, "jsonl")
    (root / "pack.yaml").write_text((root / "pack.yaml").read_text() + "data: [data/*.jsonl]\n")
    ctx = evolve(stage_context, pack=load_pack(root))
    assert len(_generate({"columns": MAPPING, "text_format": True}, ctx)) == len(ROWS)
    with pytest.raises(ConfigError, match="paths"):
        _generate({}, evolve(stage_context, pack=None))


def test_bad_rows_name_file_and_line(tmp_path, pack_ctx):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "warm"}\n\n{"prompt": "b", "completion": \n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        _generate({"paths": (str(bad),)}, pack_ctx)
    assert (info.value.file, info.value.line) == (str(bad), 3)
    assert f"{bad}:3: " in str(info.value) and "not valid JSON" in str(info.value)

    empty = _write(tmp_path / "empty.jsonl", [{"prompt": "a", "completion": "warm"}, {"prompt": " ", "completion": "cool"}],
                   "jsonl")
    with pytest.raises(DataError) as info:
        _generate({"paths": (str(empty),)}, pack_ctx)
    assert (info.value.line, info.value.field) == (2, "prompt") and "empty" in str(info.value)

    ragged = tmp_path / "ragged.csv"
    ragged.write_text("prompt,completion\na,warm\n\nb,cool,extra\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        _generate({"paths": (str(ragged),)}, pack_ctx)
    assert info.value.line == 4 and "3 fields" in str(info.value)

    missing = _write(tmp_path / "m.jsonl", [{"question": "x"}], "jsonl")
    with pytest.raises(DataError, match="no column 'answer'"):
        _generate({"paths": (str(missing),), "columns": {"prompt": "question", "completion": "answer"}}, pack_ctx)
    with pytest.raises(ConfigError, match="no data file matches"):
        _generate({"paths": ("nowhere/*.csv",)}, pack_ctx)


def test_hook_forgemind_register_generators_files():
    found = collect_backends(make_plugin_manager([files]), "generators")
    assert found["files"].cls is FilesGenerator
    assert BUILTIN_PLUGINS["forgemind.files"] == "forgemind_core.foundry.files"
    code = "import sys, forgemind_core.foundry.files; print(sorted(m for m in ('datasets', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out  # heavy imports wait for generate()


def test_loop_mixes_real_files_and_template_data(tmp_path):
    goal = write_pack(tmp_path / "colors")
    # real rows cover the colours the basic templates never use (the full suite needs them)
    rows = [{"text": f"the {thing} I bought is {colour}", "label": label}
            for label, colours in (("warm", ["scarlet", "coral", "ruby", "rust"]),
                                   ("cool", ["navy", "cobalt", "indigo", "sapphire"]))
            for colour in colours for thing in ("vase", "rug")]
    rows.append({"text": "the lamp is beige", "label": "lukewarm"})  # not a label: rules drops it
    _write(tmp_path / "colors" / "data" / "real.csv", rows, "csv")
    text = goal.read_text().replace(
        "  - backend: template\n    share: 1.0\n",
        "  - backend: template\n    share: 0.5\n"
        "  - backend: files\n    share: 0.5\n    paths: [data/real.csv]\n    text_format: true\n"
        "    columns: {input: text, category: label}\n",
    ).replace("max_iterations: 3", "max_iterations: 1").replace("initial_examples: 16", "initial_examples: 34")
    goal.write_text(text)
    from forgemind_core import Forge

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    forge = Forge(home=tmp_path / "home", plugins=[kernel_plugins], blocked=["hf", "openai"])
    summary = forge.run(str(goal), run_id="mixed")
    it = summary["iterations"][0]
    run = tmp_path / "home" / "runs" / "mixed" / "iter-1"
    by_generator = json.loads((run / "generate.json").read_text())["by_generator"]
    assert by_generator == {"template": 17, "files": 17}
    assert it["data"]["dropped_by_reason"] == {"rules.label": 1}  # the lukewarm row
    kept = list(read_snapshot(json.loads((run / "dataset.json").read_text())["dataset"]["path"]))
    sources = Counter(e.source.generator for e in kept)
    assert sources == {"template": 17, "files": 16}
    for e in kept:
        if e.source.generator == "files":
            assert e.source.prompt_template == "real.csv" and e.source.model is None
            assert e.prompt.startswith("Sentence: ") and e.completion in (" warm", " cool")
    assert summary["outcome"] == "promoted", summary["reasons"]
