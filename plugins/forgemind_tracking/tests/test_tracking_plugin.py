"""report_to against the real libraries, offline: a recorded run of the memo test backends (no
training) sent to MLflow (SQLite tracking store, file artifact store), TensorBoard (event files
read back with EventAccumulator) and W&B (WANDB_MODE=offline, its run folder read back)."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import forgemind_tracking
import pytest
from forgemind_hookspecs import Event
from forgemind_tracking import TrackerWarning

# the kernel's test helpers (memo backends, the colors pack) live in the repository's tests/
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One colors run with ``report_to`` all three, the trackers configured by their own env vars."""
    import kernel_plugins
    from colors_pack import write_pack

    from forgemind_core import Forge

    root = tmp_path_factory.mktemp("tracking")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "MLFLOW_EXPERIMENT_NAME": "colors-exp",
        "WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb"), "WANDB_SILENT": "true",
        "FORGEMIND_TENSORBOARD_DIR": str(root / "tb"),
    }
    (root / "wandb").mkdir()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from mlflow import MlflowClient

    MlflowClient().create_experiment("colors-exp", artifact_location=(root / "artifacts").as_uri())
    goal = write_pack(root / "colors")
    goal.write_text(goal.read_text() + "report_to: [mlflow, tensorboard, wandb]\n")
    forge = Forge(home=root / "home", plugins=[kernel_plugins], blocked=["hf", "openai"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TrackerWarning)
        summary = forge.run(goal)
    forgemind_tracking.reset()
    yield root, summary, forge, [w for w in caught if issubclass(w.category, TrackerWarning)]
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_no_tracker_warned_and_the_run_promoted(tracked):
    _, summary, _, caught = tracked
    assert [str(w.message) for w in caught] == []
    assert summary["outcome"] == "promoted"


def test_mlflow_run_params_metrics_texts_and_stable_alias(tracked):
    from mlflow import MlflowClient, search_runs

    root, summary, _, _ = tracked
    runs = search_runs(experiment_names=["colors-exp"], output_format="list")
    assert [r.info.run_name for r in runs] == [summary["run_id"]]
    run = runs[0]
    assert run.data.params["name"] == "colors"
    assert run.data.params["report_to"] == '["mlflow", "tensorboard", "wandb"]'
    assert run.data.tags["forgemind.outcome"] == "promoted"
    assert run.info.status == "FINISHED"
    client = MlflowClient()
    loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.value for m in loss][:3] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert [m.step for m in loss] == list(range(len(loss)))
    iterations = summary["iterations"]
    accuracy = client.get_metric_history(run.info.run_id, "eval/full/accuracy")
    assert [m.step for m in accuracy] == [it["iteration"] for it in iterations]
    assert any(k.startswith("eval/full/category/") for k in run.data.metrics)
    assert client.get_metric_history(run.info.run_id, "data/examples")[0].value > 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"goal.json", "plan", "decision", "checkpoint"} <= artifacts
    reasons = client.download_artifacts(run.info.run_id, "decision/iteration_1.txt", str(root))
    assert Path(reasons).read_text().startswith("decision of iteration 1")
    stable = client.get_model_version_by_alias("colors", "stable")
    assert stable.run_id == run.info.run_id
    assert stable.tags["forgemind.checkpoint_id"] == summary["best_checkpoint"]["id"]
    assert (root / "artifacts" / run.info.run_id / "artifacts" / "checkpoint" / "model.json").is_file()


def test_tensorboard_event_files_read_back(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, summary, _, _ = tracked
    acc = EventAccumulator(str(root / "tb" / summary["run_id"]))
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "eval/full/accuracy", "data/examples"} <= set(tags["scalars"])
    assert [e.value for e in acc.Scalars("train/loss")][:3] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert [e.step for e in acc.Scalars("eval/full/accuracy")] == [it["iteration"] for it in summary["iterations"]]
    assert {"goal", "plan", "decision", "promotion"} <= set(tags["tensors"])
    goal_text = acc.Tensors("goal")[0].tensor_proto.string_val[0].decode()
    assert "| `report_to` | `[\"mlflow\", \"tensorboard\", \"wandb\"]` |" in goal_text
    decisions = acc.Tensors("decision")
    assert [e.step for e in decisions] == [it["iteration"] for it in summary["iterations"]]
    assert decisions[-1].tensor_proto.string_val[0].decode().startswith(f"decision of iteration {decisions[-1].step}: promote")


def _wandb_records(path: Path):
    """The records of a W&B offline ``run-*.wandb`` file: wandb's LevelDB-style log (a 7-byte
    ``:W&B`` header, 32 KiB blocks of ``crc, length, type`` chunks) of ``Record`` protobufs, read
    here because wandb 0.31 no longer ships a Python reader."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            continue
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_run_folder_read_back(tracked):
    root, summary, _, _ = tracked
    [folder] = (root / "wandb" / "wandb").glob("offline-run-*")
    config, final, history, artifacts = {}, {}, [], []
    for record in _wandb_records(next(folder.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            config.update({_key(u): json.loads(u.value_json) for u in record.config.update})
        elif kind == "summary":
            final.update({_key(u): json.loads(u.value_json) for u in record.summary.update})
        elif kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "artifact":
            artifacts.append(record.artifact)
    assert config["name"] == "colors"
    assert config["report_to"] == ["mlflow", "tensorboard", "wandb"]
    losses = [(h["train/step"], h["train/loss"]) for h in history if "train/loss" in h]
    assert losses[:3] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    scores = [(h["iteration"], h["eval/full/accuracy"]) for h in history if "eval/full/accuracy" in h]
    assert [i for i, _ in scores] == [it["iteration"] for it in summary["iterations"]]
    assert final["forgemind/outcome"] == "promoted"
    assert final["decision/iteration_1"].startswith("decision of iteration 1")
    [artifact] = artifacts
    assert (artifact.type, artifact.name) == ("model", "colors-model")
    assert "stable" in artifact.aliases
    assert json.loads(artifact.metadata)["checkpoint_id"] == summary["best_checkpoint"]["id"]
    assert "model.json" in {entry.path for entry in artifact.manifest.contents}


def test_a_failing_tracker_is_one_warning_and_the_run_goes_on(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")  # MLflow cannot make its database under it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/a-file/m.db")
    monkeypatch.setenv("FORGEMIND_TENSORBOARD_DIR", str(tmp_path / "tb"))
    goal = {"name": "g", "report_to": ["mlflow", "tensorboard"]}
    events = [
        Event(run_id="r1", kind="run.started", payload={"goal": goal}, seq=1),
        Event(run_id="r1", kind="metric", iteration=1, payload={"name": "train.loss", "value": 0.7, "step": 0}, seq=2),
        Event(run_id="r1", kind="metric", iteration=1, payload={"name": "train.loss", "value": 0.6, "step": 1}, seq=3),
    ]
    with pytest.warns(TrackerWarning) as caught:
        forgemind_tracking.forgemind_record(events[:2], str(tmp_path))
        forgemind_tracking.forgemind_record(events, str(tmp_path))  # repeated ids: no-ops
    assert len(caught) == 1 and "tracker 'mlflow' failed" in str(caught[0].message)
    forgemind_tracking.reset()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb" / "r1"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(0, pytest.approx(0.7)), (1, pytest.approx(0.6))]
    state = json.loads((tmp_path / "tracking" / "r1.json").read_text())
    assert state["off"] == ["mlflow"] and state["last_seq"] == 3


def test_a_run_without_report_to_sends_nothing(tmp_path):
    forgemind_tracking.forgemind_record(
        [Event(run_id="r2", kind="run.started", payload={"goal": {"name": "g"}}, seq=1)], str(tmp_path)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no tracker folder, no state file


def test_a_resumed_run_in_a_new_process_continues_the_same_mlflow_run(tmp_path, monkeypatch):
    """State in <home>/tracking/<run>.json: after reset() (as a new process would start), the
    redelivered events are no-ops and the new ones go to the same MLflow run, steps continued;
    a promotion approved later (forge approve) registers the checkpoint recorded earlier."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "resume-exp")
    MlflowClient().create_experiment("resume-exp", artifact_location=(tmp_path / "art").as_uri())
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "weights.bin").write_bytes(b"w")
    loss = lambda seq, value: Event(  # noqa: E731
        run_id="r3", kind="metric", iteration=1, payload={"name": "train.loss", "value": value, "step": 0}, seq=seq)
    first = [Event(run_id="r3", kind="run.started", payload={"goal": {"name": "resumed", "report_to": ["mlflow"]}}, seq=1),
             loss(2, 0.9),
             Event(run_id="r3", kind="checkpoint", iteration=1, stage="train",
                   payload={"checkpoint": {"id": "ck1", "path": str(tmp_path / "ckpt")}}, seq=3)]
    forgemind_tracking.forgemind_record(first, str(tmp_path))
    forgemind_tracking.reset()
    forgemind_tracking.forgemind_record([*first[1:], loss(4, 0.4)], str(tmp_path))
    forgemind_tracking.forgemind_record(
        [Event(run_id="r3", kind="run.finished", payload={"outcome": "candidate"}, seq=5)], str(tmp_path))
    forgemind_tracking.reset()
    forgemind_tracking.forgemind_record(
        [Event(run_id="r3", kind="promotion", stage="decide", payload={"checkpoint_id": "ck1", "channel": "stable"}, seq=6)],
        str(tmp_path))
    client = MlflowClient()
    [run] = client.search_runs([client.get_experiment_by_name("resume-exp").experiment_id])
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")] == [(0, 0.9), (1, 0.4)]
    assert run.data.tags["forgemind.outcome"] == "candidate"
    stable = client.get_model_version_by_alias("resumed", "stable")
    assert (stable.run_id, stable.tags["forgemind.checkpoint_id"]) == (run.info.run_id, "ck1")
    assert (tmp_path / "art" / run.info.run_id / "artifacts" / "checkpoint" / "weights.bin").read_bytes() == b"w"
