"""The field's dataset conventions: alpaca / sharegpt / messages rows, ``save_to_disk`` folders,
Parquet and Arrow files and a Hub dataset id (offline: ``datasets.load_dataset`` of a local
dataset folder), read by the ``files`` generator and by ``forge train --data`` through the one
preset module; bad rows are one sentence with file, line (row) and field, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from attrs import evolve
from click.testing import CliRunner
from colors_pack import write_pack
from forgemind_hookspecs import DataError, GenerationPlan
from forgemind_hookspecs.presets import as_messages, example_from_row, read_data, row_of
from forgemind_hookspecs.records import Example, Message
from forgemind_hookspecs.snapshots import read_snapshot

from forgemind_core.foundry.files import FilesGenerator
from forgemind_core.foundry.packs import load_pack

datasets = pytest.importorskip("datasets")

ALPACA = [
    {"instruction": "Say the temperature of the colour.", "input": "the scarf is crimson", "output": "warm"},
    {"instruction": "the pen is cobalt", "input": "", "output": "cool"},
    {"instruction": "Name it.", "input": "the rug is coral", "output": "warm", "system": "Answer in one word."},
]
SHAREGPT = [
    {"conversations": [{"from": "human", "value": "the tile is azure"}, {"from": "gpt", "value": "cool"}]},
    {"system": "Be brief.", "conversations": [
        {"from": "human", "value": "the jar is rust"}, {"from": "gpt", "value": "warm"},
        {"from": "human", "value": "and the fan is indigo?"}, {"from": "gpt", "value": "cool"}]},
]
MESSAGES = [
    {"messages": [{"role": "user", "content": "the cup is teal"}, {"role": "assistant", "content": "cool"}],
     "category": "cool"},
    {"messages": [{"role": "system", "content": "One word."}, {"role": "user", "content": "the car is ruby"},
                  {"role": "assistant", "content": "warm"}], "category": "warm"},
]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def pack_ctx(tmp_path, stage_context):
    write_pack(tmp_path / "colors")
    return evolve(stage_context, pack=load_pack(tmp_path / "colors"), seed=3)


def _generate(options: dict, ctx) -> list[Example]:
    gen = FilesGenerator(FilesGenerator.Options(**options))
    return list(gen.generate(GenerationPlan(generator="files", count=0), ctx))


def _by_first_user(examples):
    return {next(m["content"] for m in as_messages(e) if m["role"] == "user"): e for e in examples}


def test_presets_convert_rows_to_examples():
    a = [example_from_row(r, "alpaca", file="a.jsonl", line=i + 1) for i, r in enumerate(ALPACA)]
    assert (a[0].prompt, a[0].completion) == ("Say the temperature of the colour.\n\nthe scarf is crimson", "warm")
    assert (a[1].prompt, a[1].completion, a[1].messages) == ("the pen is cobalt", "cool", ())
    assert a[2].messages == (Message("system", "Answer in one word."), Message("user", "Name it.\n\nthe rug is coral"),
                             Message("assistant", "warm"))
    s = example_from_row(SHAREGPT[1], "sharegpt", file="s.jsonl", line=2)
    assert [(m.role, m.content) for m in s.messages] == [
        ("system", "Be brief."), ("user", "the jar is rust"), ("assistant", "warm"),
        ("user", "and the fan is indigo?"), ("assistant", "cool")]
    m = example_from_row({**MESSAGES[0], "meta": '{"origin": "x"}'}, "messages", file="m.jsonl", line=1)
    assert m.category == "cool" and dict(m.meta) == {"origin": "x"} and m.messages[-1].content == "cool"


@pytest.mark.parametrize(("preset", "row", "field", "says"), [
    ("alpaca", {"instruction": "x"}, "output", "no 'output' text"),
    ("alpaca", {"instruction": "x", "output": 3}, "output", "must be text, not int"),
    ("alpaca", {"instruction": "x", "output": "y", "history": [["a"]]}, "history[0]", "pair"),
    ("sharegpt", {"conversations": [{"from": "robot", "value": "hi"}]}, "conversations[0].from", "not 'robot'"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "hi"}]}, "conversations[0]", "assistant's answer"),
    ("sharegpt", {"conversations": "not json"}, "conversations", "not a JSON list"),
    ("messages", {"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}, "messages[0].content",
     "no 'content'"),
])
def test_a_bad_row_is_one_sentence_with_file_line_and_field(preset, row, field, says):
    with pytest.raises(DataError) as caught:
        example_from_row(row, preset, file="data/x.jsonl", line=7)
    text = str(caught.value)
    assert text.startswith(f"data/x.jsonl:7: {field}: ") and says in text and "\n" not in text


def test_files_generator_reads_each_preset_from_jsonl(tmp_path, pack_ctx):
    root = tmp_path / "colors"
    _jsonl(root / "data" / "alpaca.jsonl", ALPACA)
    _jsonl(root / "data" / "sharegpt.jsonl", SHAREGPT)
    _jsonl(root / "data" / "messages.jsonl", MESSAGES)
    examples = _generate({"paths": ("data/*.jsonl",)}, pack_ctx)  # preset: auto, per file's columns
    assert len(examples) == 7
    by = _by_first_user(examples)
    crimson = by["Say the temperature of the colour.\n\nthe scarf is crimson"]
    assert crimson.completion == " warm" and crimson.source.generator == "files"  # the template's leading space
    assert crimson.source.prompt_template == "alpaca.jsonl" and crimson.meta["line"] == 1
    rust = by["the jar is rust"]
    assert [m.role for m in rust.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert rust.meta["file"].endswith("sharegpt.jsonl") and rust.meta["line"] == 2
    assert by["the car is ruby"].category == "warm" and by["the car is ruby"].messages[0].content == "One word."
    # the original alpaca_data.json is one JSON array: its rows are numbered from 1
    (root / "data" / "alpaca_data.json").write_text(json.dumps(ALPACA), encoding="utf-8")
    arrayed = _generate({"paths": ("data/alpaca_data.json",)}, pack_ctx)
    assert sorted(e.meta["line"] for e in arrayed) == [1, 2, 3] and len({e.id for e in arrayed}) == 3
    # text_format puts an alpaca prompt through the pack's prompt format, as column rows
    formatted = _generate({"paths": ("data/alpaca.jsonl",), "preset": "alpaca", "text_format": True}, pack_ctx)
    assert {e.prompt for e in formatted if not e.messages} >= {"Sentence: the pen is cobalt\nTemperature:"}


def test_files_generator_bad_preset_row_names_file_line_and_field(tmp_path, pack_ctx):
    rows = [*SHAREGPT, {"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": 5}]}]
    _jsonl(tmp_path / "colors" / "data" / "bad.jsonl", rows)
    with pytest.raises(DataError) as caught:
        _generate({"paths": ("data/bad.jsonl",)}, pack_ctx)
    assert str(caught.value) == (f"{tmp_path / 'colors' / 'data' / 'bad.jsonl'}:3: conversations[1].value: "
                                 "must be text, not int")


def _saved(tmp_path: Path) -> Path:
    folder = tmp_path / "saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list(MESSAGES),
        "test": datasets.Dataset.from_list([MESSAGES[0]]),
    }).save_to_disk(str(folder))
    return folder


def test_save_to_disk_folder_parquet_and_arrow_with_list_columns(tmp_path, pack_ctx):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = _saved(tmp_path)
    examples = _generate({"paths": (str(folder),)}, pack_ctx)
    assert sorted(e.messages[-2].content for e in examples) == ["the car is ruby", "the cup is teal"]
    assert _generate({"paths": (str(folder),), "split": "test"}, pack_ctx)[0].messages[0].content == "the cup is teal"
    # a Parquet file with a real list<struct> column, and the Arrow file save_to_disk wrote
    parquet = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist([{"system": None, **r} for r in SHAREGPT]), parquet)  # schema: row 1's keys
    assert pa.types.is_list(pq.read_schema(parquet).field("conversations").type)
    from_parquet = _generate({"paths": (str(parquet),)}, pack_ctx)
    assert {len(e.messages) for e in from_parquet} == {2, 5}
    arrow = next((folder / "train").glob("*.arrow"))
    from_arrow = _generate({"paths": (str(arrow),)}, pack_ctx)
    assert sorted(e.id for e in from_arrow) == sorted(e.id for e in examples)
    # the row of a bad table row is its 1-based row number
    pq.write_table(pa.Table.from_pylist([*ALPACA, {"instruction": "x", "input": "", "output": ""}]),
                   tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad.parquet:4: output: is empty"):
        _generate({"paths": (str(tmp_path / "bad.parquet"),)}, pack_ctx)


def test_hub_dataset_id_offline_through_a_local_dataset_folder(tmp_path, pack_ctx, monkeypatch):
    """``hub:`` calls ``datasets.load_dataset(NAME, split=...)``: offline, NAME is a local folder
    of data files (what a Hub dataset repo holds); with a network the same code reads the Hub."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    repo = tmp_path / "hub-repo"
    _jsonl(repo / "data" / "train.jsonl", ALPACA)
    _jsonl(repo / "data" / "test.jsonl", ALPACA[:1])
    examples = _generate({"hub": str(repo), "split": "train"}, pack_ctx)
    assert len(examples) == 3 and examples[0].source.prompt_template.endswith("[train]")
    assert len(_generate({"hub": str(repo), "split": "test"}, pack_ctx)) == 1
    with pytest.raises(DataError, match=r"hub:.*\[nope\]: split: "):
        _generate({"hub": str(repo), "split": "nope"}, pack_ctx)
    train = list(read_data(f"hub:{repo}:test", cache_dir=tmp_path / "cache"))
    assert [e.prompt for e in train] == ["Say the temperature of the colour.\n\nthe scarf is crimson"]


def test_forge_train_reader_takes_every_source(tmp_path, forge):
    """``Forge.train``'s reader (``adhoc.dataset_from_file``) snapshots each source as a dataset."""
    from forgemind_core.adhoc import dataset_from_file

    folder = _saved(tmp_path)
    alpaca_json = tmp_path / "alpaca_data.json"  # the original alpaca file is one JSON array
    alpaca_json.write_text(json.dumps(ALPACA), encoding="utf-8")
    sharegpt = _jsonl(tmp_path / "sg.jsonl", SHAREGPT)
    for data, fmt, n in ((folder, None, 2), (alpaca_json, None, 3), (alpaca_json, "alpaca", 3), (sharegpt, None, 2),
                         (next((folder / "train").glob("*.arrow")), "messages", 2)):
        ref = dataset_from_file(forge, data, format=fmt)
        snap = list(read_snapshot(ref.path))
        assert len(snap) == ref.n_examples == n, data
    rows = {e.prompt or e.messages[-2].content for e in read_snapshot(dataset_from_file(forge, alpaca_json).path)}
    assert "the pen is cobalt" in rows


def test_forge_train_cli_bad_row_is_exit_2_before_any_training(tmp_path, forge_home):
    pytest.importorskip("forgemind_hf")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from forgemind_core import Forge
    from forgemind_core.cli.main import build_cli

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([MESSAGES[0], {"messages": [{"role": "user", "content": "hi"}],
                                                       "category": None}]), bad)
    cli = build_cli(Forge(home=forge_home, blocked=["openai"]))
    result = CliRunner().invoke(cli, ["train", "--base", str(tmp_path / "no-base"), "--data", str(bad)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"Error: {bad}:2: messages[0]: the last turn must be the assistant's answer "
                     "(the part that is learnt)"]
    result = CliRunner().invoke(cli, ["train", "--base", "x", "--data", "hub:"])
    assert result.exit_code == 2 and "names no dataset" in result.output


def test_row_of_round_trips_every_preset():
    examples = [example_from_row(r, "alpaca", file="a", line=1) for r in ALPACA]
    examples += [example_from_row(r, "sharegpt", file="s", line=1) for r in SHAREGPT]
    examples += [example_from_row(r, "messages", file="m", line=1) for r in MESSAGES]
    for preset in ("alpaca", "sharegpt", "messages"):
        for e in examples:
            row = json.loads(json.dumps(row_of(e, preset)))  # through JSON, as a file holds it
            back = example_from_row(row, preset, file="x", line=1)
            assert as_messages(back) == as_messages(e) and back.category == e.category, (preset, row)
            # the kind of example stays, except a bare user/assistant chat, which alpaca holds as
            # prompt/completion; and chat presets hold every example as a chat
            bare_chat = [m.role for m in e.messages] == ["user", "assistant"]
            if (preset == "alpaca" and not bare_chat) or (preset != "alpaca" and e.messages):
                assert back.id == e.id, (preset, row)
            else:
                assert bool(back.messages) == (preset != "alpaca"), (preset, row)


def test_forge_validate_data_lists_every_bad_preset_row(tmp_path, forge):
    from forgemind_core.cli.main import build_cli

    bad = _jsonl(tmp_path / "chats.jsonl", [
        SHAREGPT[0],
        {"conversations": [{"from": "human", "value": "x"}]},
        SHAREGPT[1],
        {"conversations": [{"from": "robot", "value": "x"}, {"from": "gpt", "value": "y"}]},
    ])
    result = CliRunner().invoke(build_cli(forge), ["validate", "--data", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line.split(":")[1] for line in lines] == ["2", "4"]
    assert "conversations[0].from" in lines[1]
    folder = _saved(tmp_path)
    result = CliRunner().invoke(build_cli(forge), ["validate", "--data", str(folder)])
    assert (result.exit_code, result.stdout) == (0, "ok\n")
    alpaca_json = tmp_path / "alpaca_data.json"
    alpaca_json.write_text(json.dumps([*ALPACA, {"instruction": "x", "output": ""}]), encoding="utf-8")
    result = CliRunner().invoke(build_cli(forge), ["validate", "--data", str(alpaca_json), "--format", "alpaca"])
    assert result.exit_code == 2 and f"{alpaca_json}:4: output: is empty" in result.stderr
