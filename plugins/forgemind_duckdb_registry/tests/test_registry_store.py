"""Idempotency, migrations, read-only SQL, lineage and journal repair, in one process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import forgemind_duckdb_registry as plugin
import pytest
from _registry_events import Stream, full_run
from forgemind_duckdb_registry.journal import journal_path
from forgemind_duckdb_registry.schema import SCHEMA_VERSION, migrate, schema_version
from forgemind_duckdb_registry.store import connect, db_path
from forgemind_hookspecs import PluginError, UserError


def _counts(home: Path) -> dict[str, int]:
    tables = ("events", "examples", "verdicts", "dataset_examples", "metrics", "eval_results", "promotions")
    with connect(home) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def test_redelivered_events_are_no_ops(recorded: dict[str, Any], forge_home: Path) -> None:
    before = _counts(forge_home)
    everything = [e for batch in recorded["batches"] for e in batch]
    plugin.forgemind_record(everything, str(forge_home))  # a resumed run re-delivers all of it
    plugin.forgemind_record(everything[:7] + everything[:7], str(forge_home))  # and repeats within a batch
    assert _counts(forge_home) == before
    registry = plugin.DuckDBRegistry(forge_home)
    assert [v["version"] for v in registry.channel()] == [1]
    assert len(registry.events("run-a")) == len(everything)


def test_promotion_versions_one_per_checkpoint_per_channel(forge_home: Path) -> None:
    ev = Stream("run-p")
    promote = [ev("promotion", {"checkpoint_id": c, "channel": ch, "run_id": "run-p"}, stage="decide")
               for c, ch in (("ck1", "stable"), ("ck2", "stable"), ("ck1", "stable"), ("ck1", "beta"))]  # fmt: skip
    plugin.forgemind_record(promote[:2], str(forge_home))
    plugin.forgemind_record(promote[2:], str(forge_home))
    registry = plugin.DuckDBRegistry(forge_home)
    assert [(v["version"], v["checkpoint_id"]) for v in registry.channel("stable")] == [
        (2, "ck2"),
        (1, "ck1"),
    ]
    assert [(v["version"], v["checkpoint_id"]) for v in registry.channel("beta")] == [(1, "ck1")]
    (again,) = registry.events("run-p", ["promotion"])[2:3]
    assert again["payload"]["already_promoted"] is True and again["payload"]["version"] == 1


def test_upgrades_a_version_1_file(forge_home: Path) -> None:
    path = db_path(forge_home)
    path.parent.mkdir(parents=True)
    con = duckdb.connect(str(path))
    assert migrate(con, target=1) == 1
    con.execute(
        "INSERT INTO runs (id, goal_name, status, started) VALUES ('old-run', 'legacy', 'finished', 1.0)"
    )
    con.close()
    registry = plugin.DuckDBRegistry(forge_home)
    (row,) = registry.runs()
    assert row["id"] == "old-run" and row["goal_name"] == "legacy"
    assert row["cost_usd"] == 0.0  # the column version 2 added, with its default
    with connect(forge_home) as con:
        assert schema_version(con) == SCHEMA_VERSION == 3
        assert con.execute("SELECT count(*) FROM all_edges").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM served_models").fetchone()[0] == 0  # version 3's table


def test_refuses_a_file_from_a_newer_plugin(forge_home: Path) -> None:
    path = db_path(forge_home)
    path.parent.mkdir(parents=True)
    con = duckdb.connect(str(path))
    migrate(con)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(PluginError, match="newer than this plugin"):
        plugin.DuckDBRegistry(forge_home).runs()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DELETE FROM runs", "read-only"),
        ("INSERT INTO runs (id) VALUES ('x')", "read-only"),
        ("DROP TABLE runs", "read-only"),
        ("COPY runs TO 'out.csv'", "read-only"),
        ("ATTACH 'other.duckdb' AS o", "read-only"),
        ("CREATE TABLE t AS SELECT 1", "read-only"),
        ("SELECT 1; DELETE FROM runs", "exactly one"),
        ("SELEC nonsense", "does not parse"),
        ("SELECT * FROM no_such_table", "the query failed"),
        ("SELECT * FROM read_csv('/etc/hostname')", "the query failed"),
    ],
)
def test_sql_is_read_only(recorded: dict[str, Any], forge_home: Path, query: str, message: str) -> None:
    registry = plugin.DuckDBRegistry(forge_home)
    with pytest.raises(UserError, match=message) as caught:
        registry.sql(query)
    assert "\n" not in str(caught.value)
    assert registry.sql("SELECT count(*) AS n FROM runs") == [{"n": 1}]  # nothing was changed


def test_sql_connection_itself_refuses_writes(recorded: dict[str, Any], forge_home: Path) -> None:
    # Not only the parser: the connection sql() uses cannot write even if a statement got through.
    with connect(forge_home, read_only=True) as con, pytest.raises(duckdb.Error, match="read-only"):
        con.execute("DELETE FROM runs")


def test_sql_returns_json_compatible_rows(recorded: dict[str, Any], forge_home: Path) -> None:
    rows = plugin.DuckDBRegistry(forge_home).sql(
        "WITH g AS (SELECT generator, count(*) AS n FROM examples GROUP BY ALL) "
        "SELECT generator, n, DATE '2024-01-02' AS d, 1.5::DECIMAL(4,2) AS x FROM g ORDER BY generator"
    )
    assert rows == [
        {"generator": "openai", "n": 15, "d": "2024-01-02", "x": 1.5},
        {"generator": "template", "n": 15, "d": "2024-01-02", "x": 1.5},
    ]
    json.dumps(rows)


def test_lineage_round_trip(recorded: dict[str, Any], forge_home: Path) -> None:
    registry = plugin.DuckDBRegistry(forge_home)
    ck, base, ds = recorded["checkpoint"], recorded["base"], recorded["dataset"]

    up = registry.lineage(ck.id)
    assert up["kind"] == "checkpoint"
    assert {(a["id"], a["kind"]) for a in up["ancestors"]} == {
        (ds.id, "dataset"),
        (base.id, "checkpoint"),
        ("run-a", "run"),
    }
    (dataset,) = up["datasets"]
    assert dataset["id"] == ds.id and dataset["n_examples"] == 28
    sources = {(s["generator"], s["model"], s["prompt_template"]): s["examples"] for s in dataset["sources"]}
    assert sources == {("template", None, "t-sql"): 14, ("openai", "gpt-x", "t-yaml"): 14}
    assert {c["id"] for c in up["checkpoints"]} == {ck.id, base.id}
    assert up["runs"] == ["run-a"]
    assert [(p["channel"], p["version"]) for p in up["promotions"]] == [("stable", 1)]
    assert [(d["id"], d["kind"]) for d in up["descendants"]] == [("stable:v1", "promotion")]

    down = registry.lineage(ds.id)
    assert {(d["id"], d["kind"]) for d in down["descendants"]} == {
        (ck.id, "checkpoint"),
        ("stable:v1", "promotion"),
    }
    assert [p["checkpoint_id"] for p in down["promotions"]] == [ck.id]

    kept = next(e for e in recorded["examples"] if e.id not in recorded["dropped"])
    ex = registry.lineage(kept.id)
    assert ex["kind"] == "example"
    assert [(o["generator"], o["prompt_template"]) for o in ex["origins"]] == [
        (kept.source.generator, kept.source.prompt_template)
    ]
    assert {(d["id"], d["kind"]) for d in ex["descendants"]} >= {(ds.id, "dataset"), (ck.id, "checkpoint")}

    dropped = registry.lineage(next(iter(recorded["dropped"])))
    assert dropped["descendants"] == []  # a rejected example reached no dataset

    run = registry.lineage("run-a")
    assert {d["id"] for d in run["descendants"]} >= {ds.id, ck.id, base.id, "stable:v1"}

    with pytest.raises(UserError, match="no checkpoint, dataset, example, run or promotion"):
        registry.lineage("nothing-like-this")


def test_ambiguous_checkpoint_prefix_is_one_sentence(forge_home: Path) -> None:
    ev = Stream("run-c")
    cks = [{"id": f"abc{i}", "path": "p", "base_model": "b", "method": "lora"} for i in range(2)]
    plugin.forgemind_record(
        [ev("checkpoint", {"checkpoint": c}, stage="train") for c in cks], str(forge_home)
    )
    registry = plugin.DuckDBRegistry(forge_home)
    with pytest.raises(UserError, match="ambiguous"):
        registry.checkpoint("abc")
    assert registry.checkpoint("abc1")["checkpoint"]["id"] == "abc1"


def test_partial_journal_line_is_cut_and_never_ingested(forge_home: Path) -> None:
    ev = Stream("run-j")
    plugin.forgemind_record([ev("run.started", {"goal": {"name": "g"}})], str(forge_home))
    path = journal_path(forge_home, "run-j")
    with path.open("ab") as f:  # what a process killed mid-append leaves behind
        f.write(b'{"id":"half-written","run_id":"run-j","kind":"met')
    registry = plugin.DuckDBRegistry(forge_home)
    assert len(registry.events("run-j")) == 1  # readers skip the incomplete line
    plugin.forgemind_record([ev("metric", {"name": "m", "value": 1.0, "step": 0})], str(forge_home))
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["id"] != "half-written" for line in lines)
    assert [e["kind"] for e in registry.events("run-j")] == ["run.started", "metric"]


def test_missing_snapshot_is_recorded_without_members(forge_home: Path) -> None:
    ev = Stream("run-m")
    ref = {"id": "d1", "path": str(forge_home / "gone.parquet"), "n_examples": 3}
    plugin.forgemind_record([ev("dataset", {"dataset": ref}, iteration=1, stage="dataset")], str(forge_home))
    (row,) = plugin.DuckDBRegistry(forge_home).sql("SELECT members_loaded, n_examples FROM datasets")
    assert row == {"members_loaded": False, "n_examples": 3}


def test_run_ids_that_are_not_file_names(forge_home: Path) -> None:
    ev = Stream("../../etc/passwd")
    plugin.forgemind_record([ev("run.started", {"goal": {"name": "g"}})], str(forge_home))
    files = list((forge_home / "registry" / "journal").iterdir())
    assert len(files) == 1 and files[0].name.startswith("run-")
    assert plugin.DuckDBRegistry(forge_home).runs()[0]["id"] == "../../etc/passwd"


def test_writer_ingests_at_most_once_per_interval_but_readers_see_everything(
    forge_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORGEMIND_REGISTRY_INGEST_INTERVAL", "3600")
    ev = Stream("run-t")
    plugin.forgemind_record([ev("run.started", {"goal": {"name": "g"}})], str(forge_home))  # first: ingests
    plugin.forgemind_record(
        [ev("metric", {"name": "m", "value": float(i), "step": i}) for i in range(3)], str(forge_home)
    )
    con = duckdb.connect(str(db_path(forge_home)), read_only=True)
    try:  # the database itself has not been touched by the second call ...
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    finally:
        con.close()
    # ... but the journal has, and a reader ingests it before answering.
    assert [m["step"] for m in plugin.DuckDBRegistry(forge_home).metrics("run-t")] == [0, 1, 2]
    plugin.forgemind_record([ev("run.finished", {"outcome": "stopped"})], str(forge_home))  # always ingests
    con = duckdb.connect(str(db_path(forge_home)), read_only=True)
    try:
        assert con.execute("SELECT status FROM runs").fetchone()[0] == "finished"
    finally:
        con.close()


def test_ingest_from_memory_equals_ingest_from_the_journal(tmp_path: Path) -> None:
    from forgemind_duckdb_registry.journal import append_events
    from forgemind_hookspecs import Source

    run = full_run(tmp_path / "shared")
    extra = Stream("run-z")("metric", {"name": "odd", "value": 1.0, "step": 0, "source": Source("g")})
    batches = [*run["batches"], [extra]]  # a record inside a payload: not remembered, read from the file
    a, b = tmp_path / "a", tmp_path / "b"
    for batch in batches:
        plugin.forgemind_record(batch, str(a))  # remembered in memory, ingested without decoding
        append_events(b, batch)  # only in the journal: ingested by decoding the file
    plugin.flush(b)
    for table in ("events", "examples", "verdicts", "metrics", "datasets", "dataset_examples", "checkpoints",
                  "eval_reports", "eval_results", "promotions", "reviews", "lineage_edges"):  # fmt: skip
        query = f"SELECT * FROM {table} ORDER BY ALL"
        assert plugin.DuckDBRegistry(a).sql(query) == plugin.DuckDBRegistry(b).sql(query), table
    (odd,) = plugin.DuckDBRegistry(b).events("run-z")
    assert odd["payload"]["source"]["generator"] == "g"


def test_lineage_names_the_licence_and_source_of_a_pretrained_base(forge_home: Path) -> None:
    """A GGUF base records its licence and source file; lineage shows them on the base and on
    every checkpoint made from it, and a base built here keeps its rows unchanged."""
    from forgemind_hookspecs import Checkpoint, to_dict

    base = Checkpoint(id="base-gguf-1234", path="/h/cache/bases/gguf-1234/model", base_model="smollm2-135m-instruct",
                      method="base", manifest={"license": "apache-2.0", "source_file": "/site/SmolLM2.gguf"})
    ck = Checkpoint(id="ck-from-gguf", path="/h/ck", base_model="smollm2-135m-instruct", method="lora",
                    kind="adapter", parent=base.id,
                    manifest={"base_license": "apache-2.0", "base_source_file": "/site/SmolLM2.gguf"})
    plain = Checkpoint(id="base-here", path="/h/base", base_model="pretrain:tiny", method="pretrain")
    ev = Stream("run-g")
    plugin.forgemind_record(events=[ev("checkpoint", {"checkpoint": to_dict(c)}, iteration=1, stage=stage)
                                    for stage, c in [("base", base), ("train", ck), ("base", plain)]],
                            home=str(forge_home))
    registry = plugin.DuckDBRegistry(forge_home)
    rows = {c["id"]: c for c in registry.lineage(ck.id)["checkpoints"]}
    assert rows[ck.id]["license"] == rows[base.id]["license"] == "apache-2.0"
    assert rows[ck.id]["source_file"] == rows[base.id]["source_file"] == "/site/SmolLM2.gguf"
    here = {c["id"]: c for c in registry.lineage(plain.id)["checkpoints"]}[plain.id]
    assert "license" not in here and "source_file" not in here
