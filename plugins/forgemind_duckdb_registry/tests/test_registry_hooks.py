"""Each hook called through a plugin manager, as the kernel calls it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import forgemind_duckdb_registry as plugin
from _registry_events import full_run
from forgemind_hookspecs import Registry


def _count(home: Path, table: str) -> int:
    con = duckdb.connect(str(home / "registry" / "registry.duckdb"), read_only=True)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def test_hook_forgemind_record(forge_home: Path, make_pm: Any) -> None:
    pm = make_pm(plugin)
    run = full_run(forge_home)
    for batch in run["batches"]:
        pm.hook.forgemind_record(events=batch, home=str(forge_home))
    n_events = sum(len(b) for b in run["batches"])
    journal = forge_home / "registry" / "journal" / "run-a.jsonl"
    assert len(journal.read_bytes().splitlines()) == n_events
    # The hook ingested on return: the database (closed again) holds every row.
    assert _count(forge_home, "events") == n_events
    assert _count(forge_home, "examples") == len(run["examples"])
    assert _count(forge_home, "verdicts") == len(run["examples"])
    assert _count(forge_home, "dataset_examples") == run["dataset"].n_examples
    assert _count(forge_home, "checkpoints") == 2
    assert _count(forge_home, "eval_reports") == 3
    assert _count(forge_home, "eval_results") == 3
    assert _count(forge_home, "metrics") == 5
    assert _count(forge_home, "decisions") == 1
    assert _count(forge_home, "promotions") == 1
    assert _count(forge_home, "reviews") == 1
    assert _count(forge_home, "lineage_edges") >= 5


def test_hook_forgemind_registry(recorded: dict[str, Any], forge_home: Path, make_pm: Any) -> None:
    pm = make_pm(plugin)
    registry = pm.hook.forgemind_registry(home=str(forge_home))
    assert isinstance(registry, plugin.DuckDBRegistry)
    protocol = {n for n in vars(Registry) if not n.startswith("_")}
    assert protocol >= {"runs", "lineage", "sql", "checkpoint", "eval_reports"}
    assert all(callable(getattr(registry, n)) for n in protocol)
    ck = recorded["checkpoint"]

    (row,) = registry.runs()
    assert row["id"] == "run-a" and row["status"] == "finished" and row["outcome"] == "promoted"
    assert row["iterations"] == 1 and row["cost_usd"] == 0.5

    detail = registry.run("run-a")
    (it,) = detail["iterations"]
    assert it["plan"]["dataset_size"] == 30
    assert it["decision"]["action"] == "promote"
    assert it["checkpoint_id"] == ck.id and it["dataset_id"] == recorded["dataset"].id
    assert it["scores"]["full"]["accuracy"] == 0.93
    assert {c["id"] for c in detail["checkpoints"]} == {ck.id, recorded["base"].id}
    assert registry.run("no-such-run") is None

    kinds = [e["kind"] for e in registry.events("run-a")]
    assert kinds[0] == "run.started" and kinds[-1] == "run.finished"
    assert [e["payload"] for e in registry.events("run-a", ["examples"])] == [{"count": 30}]

    rejected = registry.rejections("run-a")
    assert {(r["filter"], r["reason"]) for r in rejected} == {("dedupe", "duplicate"), ("rules", "unsafe")}
    assert all(r["prompt"].startswith("run-a snippet") and r["source"]["generator"] for r in rejected)

    assert [m["value"] for m in registry.metrics("run-a", "train.loss")] == [2.0, 1.9, 1.8, 1.7, 1.6]
    assert registry.metrics("run-a", "nope") == []

    (version,) = registry.channel("stable")
    assert version["version"] == 1 and version["checkpoint_id"] == ck.id and version["run_id"] == "run-a"
    assert registry.channel("beta") == []

    members = registry.examples(recorded["dataset"].id)
    assert len(members) == recorded["dataset"].n_examples
    assert {m["source"]["generator"] for m in members} == {"template", "openai"}
    assert all(m["prompt"] for m in members)

    found = registry.checkpoint(ck.id[:6])
    assert found["checkpoint"]["id"] == ck.id and found["run_id"] == "run-a" and found["iteration"] == 1
    assert registry.checkpoint("zzzz") is None

    reports = registry.eval_reports(ck.id)
    assert [r["tier"] for r in reports] == ["canary", "full", "adversarial"]
    assert len(reports[0]["results"]) == 3

    assert registry.sql("SELECT count(*) AS n FROM examples") == [{"n": 30}]
