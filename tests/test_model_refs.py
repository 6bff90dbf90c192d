"""Model references (forgemind_core.lorekeeper.models.resolve_model) against a real registry
built by tiny runs of the colors goal: checkpoint ids and prefixes, stable:GOAL[@VERSION],
checkpoint folders, export bundles, GGUF files, and the one-sentence errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from forgemind_hookspecs import UserError

from forgemind_core.lorekeeper.models import BUNDLE_RECORD, resolve_model


@pytest.fixture
def promoted(forge, colors_goal):
    """Two runs of the colors goal, both promoted: versions 1 and 2 of stable."""
    first = forge.run(colors_goal, run_id="gen-a")
    second = forge.fork("gen-a", overrides={"train.epochs": 3}, branch="more", new_run_id="gen-b")
    assert first["stable_checkpoint"]["id"] != second["stable_checkpoint"]["id"]
    return first["stable_checkpoint"]["id"], second["stable_checkpoint"]["id"]


def _resolve(forge, ref: str):
    return resolve_model(forge.registry(), forge.home, ref)


def test_checkpoint_id_prefix_and_channel(forge, promoted):
    cid, second = promoted
    rows = {r["run_id"]: r for r in forge.registry().channel("stable")}
    v1, v2 = rows["gen-a"]["version"], rows["gen-b"]["version"]
    assert v2 > v1

    by_id = _resolve(forge, cid)
    assert (by_id.named_by, by_id.checkpoint_id, by_id.run_id, by_id.goal_name, by_id.version) == (
        "checkpoint", cid, "gen-a", "colors", v1)
    assert by_id.checkpoint is not None and by_id.path == by_id.checkpoint.path and Path(by_id.path).exists()
    assert _resolve(forge, cid[:10]).checkpoint_id == cid

    latest = _resolve(forge, "stable:colors")
    assert (latest.named_by, latest.checkpoint_id, latest.run_id, latest.version, latest.channel) == (
        "channel", second, "gen-b", v2, "stable")
    assert latest.label == f"colors@v{v2}"
    pinned = _resolve(forge, f"stable:colors@{v1}")
    assert (pinned.checkpoint_id, pinned.version) == (cid, v1)


def test_folder_bundle_and_gguf(forge, promoted, tmp_path):
    cid = promoted[0]
    folder = _resolve(forge, cid).path
    by_folder = _resolve(forge, folder)
    assert (by_folder.named_by, by_folder.checkpoint_id, by_folder.run_id, by_folder.goal_name) == (
        "folder", cid, "gen-a", "colors")

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.gguf").write_bytes(b"GGUF")
    (bundle / BUNDLE_RECORD).write_text(json.dumps({"checkpoint": cid, "run_id": "gen-a", "target": "gguf"}))
    by_bundle = _resolve(forge, str(bundle))
    assert (by_bundle.named_by, by_bundle.kind, by_bundle.path, by_bundle.checkpoint_id, by_bundle.goal_name) == (
        "bundle", "gguf", str((bundle / "model.gguf").resolve()), cid, "colors")
    by_file = _resolve(forge, str(bundle / "model.gguf"))
    assert (by_file.named_by, by_file.kind, by_file.checkpoint_id) == ("gguf", "gguf", cid)

    loose = tmp_path / "loose.gguf"
    loose.write_bytes(b"GGUF")
    plain = _resolve(forge, str(loose))
    assert (plain.named_by, plain.kind, plain.checkpoint_id, plain.path) == ("gguf", "gguf", None, str(loose.resolve()))


def test_errors_name_the_ref_and_what_exists(forge, promoted, tmp_path):
    with pytest.raises(UserError) as error:
        _resolve(forge, "stable:nope")
    assert "'stable:nope'" in str(error.value) and "colors" in str(error.value)
    with pytest.raises(UserError) as error:
        _resolve(forge, "stable:colors@999")
    assert "no version 999" in str(error.value)
    with pytest.raises(UserError) as error:
        _resolve(forge, "zzzz-no-such")
    assert "'zzzz-no-such'" in str(error.value) and "stable:colors" in str(error.value)
    with pytest.raises(UserError) as error:
        _resolve(forge, str(tmp_path / "missing.gguf"))
    assert "no such file" in str(error.value)
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(UserError) as error:
        _resolve(forge, str(text))
    assert ".gguf" in str(error.value)


def test_fresh_home_says_there_is_no_registry(forge):
    with pytest.raises(UserError) as error:
        _resolve(forge, "stable:colors")
    assert "no model of goal 'colors'" in str(error.value)
    with pytest.raises(UserError) as error:
        _resolve(forge, "abc123")
    assert "no registry yet" in str(error.value)


def test_a_catalogue_name_is_its_shipped_gguf(forge):
    from forgemind_hookspecs.models import SHIPPED_MODELS, find_shipped_model

    name = next(iter(SHIPPED_MODELS))
    try:
        path = find_shipped_model(name, field="model")
    except UserError as missing:  # its package is not installed: the same sentence names the install
        with pytest.raises(UserError) as error:
            _resolve(forge, name)
        assert str(error.value) == str(missing)
        return
    ref = _resolve(forge, name.upper())
    assert (ref.named_by, ref.kind, ref.path, ref.checkpoint_id, ref.label) == (
        "catalogue", "gguf", str(path), None, name)
