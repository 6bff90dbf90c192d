"""What the kernel asks the registry instead of writing SQL: the run tree, an id of any kind, the
rows of a run or a checkpoint to export, a dataset's record, every checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import forgemind_duckdb_registry as plugin
import pytest
from _registry_events import Stream, full_run
from attrs import evolve
from forgemind_hookspecs import UserError


def _fork(home: Path, run_id: str, parent: str, *, started: float, branch: str | None) -> None:
    event = Stream(run_id)("run.started", {"goal": {"name": "g"}, "parent_run": parent, "parent_iteration": 1,
                                           "branch": branch, "forgemind_version": "0.1.0"})  # fmt: skip
    plugin.forgemind_record([evolve(event, time=started)], str(home))


def test_run_tree_rows_oldest_first_with_parents(recorded: dict[str, Any], forge_home: Path) -> None:
    _fork(forge_home, "run-b", "run-a", started=1_800_000_000.0, branch="epochs=3")
    _fork(forge_home, "run-c", "run-a", started=1_750_000_000.0, branch=None)
    rows = plugin.DuckDBRegistry(forge_home).run_tree()
    assert [r["id"] for r in rows] == ["run-a", "run-c", "run-b"]
    a, c, b = rows
    assert set(a) == {"id", "goal_name", "branch", "parent_run", "parent_iteration", "status", "outcome",
                      "started", "stable_checkpoint"}  # fmt: skip
    assert (a["parent_run"], a["branch"], a["outcome"]) == (None, "main", "promoted")
    assert a["stable_checkpoint"] == recorded["checkpoint"].id
    assert (b["parent_run"], b["parent_iteration"], b["branch"]) == ("run-a", 1, "epochs=3")
    assert c["branch"] == "main"  # no branch recorded reads as main
    json.dumps(rows)


def test_resolve_an_id_of_any_kind(recorded: dict[str, Any], forge_home: Path) -> None:
    registry = plugin.DuckDBRegistry(forge_home)
    ck, dataset = recorded["checkpoint"], recorded["dataset"]
    assert registry.resolve("run-a") == ("run", "run-a")
    assert registry.resolve(dataset.id[:8]) == ("dataset", dataset.id)
    assert registry.resolve(ck.id) == ("checkpoint", ck.id)
    assert registry.resolve(ck.id, kinds=("run", "dataset")) is None
    assert registry.resolve("nope") is None
    for batch in full_run(forge_home, "run-ab")["batches"]:
        plugin.forgemind_record(batch, str(forge_home))
    # a second run whose id starts like the first
    assert registry.resolve("run-a") == ("run", "run-a")  # the exact id wins over longer ones
    with pytest.raises(UserError, match="ambiguous"):
        registry.resolve("run-")
    with pytest.raises(UserError, match="unknown kind"):
        registry.resolve("run-a", kinds=("promotion",))


def test_rows_of_a_run_and_a_checkpoint_are_what_sql_returns(recorded: dict[str, Any], forge_home: Path) -> None:
    registry = plugin.DuckDBRegistry(forge_home)
    tables = registry.rows_of("run", "run-a")
    assert tuple(tables) == plugin.RUN_TABLES
    for table, rows in tables.items():
        column = "id" if table == "runs" else "run_id"
        assert rows == registry.sql(f"SELECT * FROM {table} WHERE {column} = 'run-a' ORDER BY ALL", max_rows=0), table
    assert len(tables["examples"]) == 30 and len(tables["runs"]) == 1
    assert isinstance(tables["iterations"][0]["plan"], str)  # JSON columns stay JSON text
    ck = recorded["checkpoint"].id
    by_checkpoint = registry.rows_of("checkpoint", ck)
    assert tuple(by_checkpoint) == ("eval_results", "eval_reports")
    assert len(by_checkpoint["eval_results"]) == 3 and len(by_checkpoint["eval_reports"]) == 3
    assert registry.rows_of("run", "no-such-run")["runs"] == []
    with pytest.raises(UserError):
        registry.rows_of("dataset", recorded["dataset"].id)


def test_dataset_record_and_every_checkpoint(recorded: dict[str, Any], forge_home: Path) -> None:
    registry = plugin.DuckDBRegistry(forge_home)
    dataset = recorded["dataset"]
    row = registry.dataset(dataset.id)
    assert row is not None and row["id"] == dataset.id and row["run_id"] == "run-a"
    assert Path(row["path"]).is_file() and row["n_examples"] == dataset.n_examples
    assert isinstance(row["stats"], dict)
    assert registry.dataset(dataset.id[:8]) is None  # full ids only
    rows = registry.checkpoints()
    assert {r["id"] for r in rows} == {recorded["checkpoint"].id, recorded["base"].id}
    assert set(rows[0]) == {"id", "path", "kind", "method", "base_model", "run_id", "iteration"}
