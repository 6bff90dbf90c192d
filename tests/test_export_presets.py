"""``forge export-data --format alpaca|sharegpt|messages`` writes a recorded dataset as JSON Lines
with real lists (and ``jsonl`` tables carry ``messages`` and ``meta`` as JSON, not JSON text);
the files read back through the same presets — with the ``files`` generator and ``forge train``'s
reader — to the same examples."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from forgemind_hookspecs import GenerationPlan
from forgemind_hookspecs.presets import as_messages, read_data
from forgemind_hookspecs.snapshots import read_snapshot

from forgemind_core.cli.main import build_cli
from forgemind_core.foundry.files import FilesGenerator

pytest.importorskip("datasets")

SHAREGPT = [
    {"conversations": [{"from": "human", "value": f"Sentence: the {thing} is {colour}\nTemperature:"},
                       {"from": "gpt", "value": f" {label}"}], "category": label}
    for label, colours in (("warm", ["scarlet", "coral"]), ("cool", ["navy", "cobalt"]))
    for colour in colours for thing in ("vase", "rug")
]
SHAREGPT.append({"system": "One word.", "conversations": [
    {"from": "human", "value": "Sentence: the hat is ruby\nTemperature:"}, {"from": "gpt", "value": " warm"},
    {"from": "human", "value": "Sentence: the cap is teal\nTemperature:"}, {"from": "gpt", "value": " cool"}]})


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A one-iteration colours run whose data mixes template rows and sharegpt chats read by the
    ``files`` generator (half of 18: all nine chats); the memo backends train and score it."""
    import kernel_plugins
    from colors_pack import write_pack

    from forgemind_core import Forge

    root = tmp_path_factory.mktemp("presets")
    goal = write_pack(root / "colors")
    data = root / "colors" / "data" / "chats.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(r) + "\n" for r in SHAREGPT), encoding="utf-8")
    goal.write_text(goal.read_text().replace(
        "  - backend: template\n    share: 1.0\n",
        "  - backend: template\n    share: 0.5\n  - backend: files\n    share: 0.5\n    paths: [data/chats.jsonl]\n",
    ).replace("max_iterations: 3", "max_iterations: 1").replace("initial_examples: 16", "initial_examples: 18"))
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    forge = Forge(home=root / "home", plugins=[kernel_plugins], blocked=["hf", "openai"])
    summary = forge.run(str(goal), run_id="chats")
    dataset_id = summary["iterations"][0]["data"]["dataset_id"]
    snapshot = list(read_snapshot(forge.registry().dataset(dataset_id)["path"]))
    return forge, dataset_id, snapshot, root


def test_the_recorded_dataset_holds_chats_and_prompt_completion_rows(recorded):
    _, _, snapshot, _ = recorded
    chats = [e for e in snapshot if e.messages]
    assert chats and any(not e.messages for e in snapshot)
    assert {e.source.generator for e in chats} == {"files"}
    assert max(len(e.messages) for e in chats) == 5  # the system + two-turn chat kept whole


@pytest.mark.parametrize("preset", ["alpaca", "sharegpt", "messages"])
def test_export_data_preset_reads_back_to_the_same_examples(recorded, preset, tmp_path):
    forge, dataset_id, snapshot, _ = recorded
    result = CliRunner().invoke(build_cli(forge), ["export-data", dataset_id[:10], "--format", preset,
                                                   "--out", str(tmp_path / preset), "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    path = tmp_path / preset / "examples.jsonl"
    assert written["files"] == [{"path": str(path), "rows": len(snapshot)}]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    key = {"alpaca": "instruction", "sharegpt": "conversations", "messages": "messages"}[preset]
    assert all(key in row and isinstance(row["meta"], dict) for row in rows)
    if preset != "alpaca":
        assert all(isinstance(row[key], list) and isinstance(row[key][0], dict) for row in rows)
    else:
        assert any(isinstance(row.get("history"), list) and row.get("system") == "One word." for row in rows)
    # back through forge train's reader (the preset detected from the columns) ...
    back = list(read_data(path))
    original = {e.id: e for e in snapshot}
    assert sorted(json.dumps(as_messages(e)) for e in back) == sorted(json.dumps(as_messages(e)) for e in snapshot)
    assert {r["id"] for r in rows} == set(original)
    # alpaca keeps every example's id but a bare user/assistant chat's (it holds that as
    # prompt/completion); the chat presets keep every chat's id
    def same_kind(e):
        roles = [m.role for m in e.messages]
        return roles != ["user", "assistant"] if preset == "alpaca" else bool(roles)

    kept = {e.id for e in snapshot if same_kind(e)}
    assert kept and kept <= {e.id for e in back}
    assert sorted(str(e.category) for e in back) == sorted(str(e.category) for e in snapshot)
    # ... and through the files generator, as a goal's `generate: [{backend: files, paths: [...]}]`
    gen = FilesGenerator(FilesGenerator.Options(paths=(str(path),)))
    ctx = forge.context(run_id="readback", stage="generate")
    again = list(gen.generate(GenerationPlan(generator="files", count=0), ctx))
    assert sorted(json.dumps(as_messages(e)) for e in again) == sorted(json.dumps(as_messages(e)) for e in snapshot)


def test_jsonl_tables_carry_real_lists_and_objects(recorded, tmp_path):
    forge, dataset_id, snapshot, _ = recorded
    out = forge.export_data(dataset_id, tmp_path / "jsonl", format="jsonl")
    rows = [json.loads(line) for line in Path(out["files"][0]["path"]).read_text(encoding="utf-8").splitlines()]
    by_id = {r["id"]: r for r in rows}
    for e in snapshot:
        row = by_id[e.id]
        assert row["messages"] == [{"role": m.role, "content": m.content} for m in e.messages]
        assert row["meta"] == json.loads(json.dumps(dict(e.meta)))
    out = forge.export_data(dataset_id, tmp_path / "pq", format="parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(out["files"][0]["path"]).to_pylist()
    chat = next(r for r in table if r["messages"])
    assert isinstance(chat["messages"], list) and set(chat["messages"][0]) == {"role", "content"}


def test_a_preset_of_a_run_or_checkpoint_is_exit_2(recorded, tmp_path):
    forge, _, _, _ = recorded
    result = CliRunner().invoke(build_cli(forge), ["export-data", "chats", "--format", "sharegpt",
                                                   "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--format sharegpt writes a dataset's examples, and 'chats' is a run" in result.output
