"""Concurrency with real processes: DuckDB lets one process at a time open the file.

The design under test (docs/decisions/0001-registry-concurrency.md): every batch is fsynced to a
per-run journal before the hook returns, then ingested through a short-lived connection under a
bounded wait; readers ingest what is pending before they answer.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import forgemind_duckdb_registry as plugin
import pytest
from _registry_events import Stream
from forgemind_hookspecs import RegistryBusy

WORKER = str(Path(__file__).parent / "_registry_worker.py")


def _worker(
    home: Path, run_id: str, batches: int, per_batch: int, *, ack: bool = False
) -> subprocess.Popen[str]:
    args = [sys.executable, WORKER, str(home), run_id, str(batches), str(per_batch)] + (
        ["--ack"] if ack else []
    )
    out = subprocess.PIPE if ack else subprocess.DEVNULL
    return subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL, text=True)


def _totals(registry: plugin.DuckDBRegistry, run_id: str) -> dict[str, int]:
    (row,) = registry.sql(
        f"""SELECT (SELECT count(*) FROM examples WHERE run_id = '{run_id}') AS examples,
                   (SELECT count(DISTINCT id) FROM examples WHERE run_id = '{run_id}') AS distinct_examples,
                   (SELECT count(*) FROM metrics WHERE run_id = '{run_id}') AS metrics,
                   (SELECT count(*) FROM events WHERE run_id = '{run_id}') AS events"""
    )
    return row


@pytest.mark.slow
def test_reader_queries_while_a_long_write_runs(forge_home: Path) -> None:
    batches, per_batch = 30, 300
    writer = _worker(forge_home, "run-long", batches, per_batch)
    registry = plugin.DuckDBRegistry(forge_home)
    seen: list[int] = []
    try:
        while writer.poll() is None:
            rows = registry.sql("SELECT count(*) AS n FROM examples")
            seen.append(rows[0]["n"])
            registry.runs()
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert len(seen) >= 3, "the reader should have answered several times during the write"
    assert seen == sorted(seen), "a reader never sees rows disappear"
    assert all(n % per_batch == 0 for n in seen), "a reader never sees half of a batch"
    assert _totals(registry, "run-long") == {
        "examples": batches * per_batch, "distinct_examples": batches * per_batch,
        "metrics": batches, "events": 2 * batches + 2,
    }  # fmt: skip
    assert registry.runs()[0]["status"] == "finished"


@pytest.mark.slow
def test_two_writers_at_once(forge_home: Path) -> None:
    batches, per_batch = 15, 200
    writers = [_worker(forge_home, run_id, batches, per_batch) for run_id in ("run-x", "run-y")]
    for w in writers:
        w.wait(timeout=120)
        assert w.returncode == 0
    registry = plugin.DuckDBRegistry(forge_home)
    for run_id in ("run-x", "run-y"):
        assert _totals(registry, run_id) == {
            "examples": batches * per_batch, "distinct_examples": batches * per_batch,
            "metrics": batches, "events": 2 * batches + 2,
        }  # fmt: skip
    assert {r["id"]: r["status"] for r in registry.runs()} == {"run-x": "finished", "run-y": "finished"}


@pytest.mark.slow
def test_writer_killed_mid_batch_loses_and_duplicates_nothing(forge_home: Path) -> None:
    batches, per_batch = 25, 500
    registry = plugin.DuckDBRegistry(forge_home)
    rng = random.Random(7)
    for attempt in range(2):  # killed twice at different points, like a flaky machine
        writer = _worker(forge_home, "run-k", batches, per_batch, ack=True)
        assert writer.stdout is not None
        acked = -1
        target = rng.randint(2, 6) + attempt * 6
        for line in writer.stdout:
            if line.startswith("ack "):
                acked = int(line.split()[1])
                if acked >= target:
                    break
        time.sleep(rng.uniform(0.0, 0.08))  # land somewhere in the next append or ingest
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
        assert writer.returncode == -signal.SIGKILL
        totals = _totals(registry, "run-k")
        assert totals["examples"] % per_batch == 0, "no batch is half-ingested"
        assert totals["examples"] >= (acked + 1) * per_batch, "every acknowledged batch survives"
        assert totals["examples"] == totals["distinct_examples"], "nothing is duplicated"
        assert totals["metrics"] * per_batch == totals["examples"]
    # The resumed run delivers everything again (same ids): the end state is exact.
    writer = _worker(forge_home, "run-k", batches, per_batch)
    writer.wait(timeout=120)
    assert writer.returncode == 0
    assert _totals(registry, "run-k") == {
        "examples": batches * per_batch, "distinct_examples": batches * per_batch,
        "metrics": batches, "events": 2 * batches + 2,
    }  # fmt: skip


def test_bounded_wait_raises_registry_busy_and_writes_survive(
    forge_home: Path, monkeypatch: pytest.MonkeyPatch, captured_logs: list[dict[str, Any]]
) -> None:
    ev = Stream("run-b")
    plugin.forgemind_record([ev("run.started", {"goal": {"name": "g"}})], str(forge_home))
    db = forge_home / "registry" / "registry.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time\nc = duckdb.connect({str(db)!r})\nprint('held', flush=True)\n"
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RegistryBusy) as caught:
            plugin.DuckDBRegistry(forge_home, timeout_s=0.3).runs()
        assert str(caught.value).startswith(str(db)) and "0.3 s" in str(caught.value)
        assert "\n" not in str(caught.value)
        # A writer does not fail: its events are in the journal, to be ingested later.
        monkeypatch.setenv("FORGEMIND_REGISTRY_TIMEOUT", "0.3")
        monkeypatch.setenv("FORGEMIND_REGISTRY_INGEST_INTERVAL", "0")  # make it try to ingest now
        plugin.forgemind_record([ev("metric", {"name": "m", "value": 3.0, "step": 1})], str(forge_home))
        assert [e["event"] for e in captured_logs if e["log_level"] == "warning"] == [
            "registry.ingest_deferred"
        ]
    finally:
        holder.kill()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
    metrics = plugin.DuckDBRegistry(forge_home).metrics("run-b")
    assert [(m["name"], m["value"]) for m in metrics] == [("m", 3.0)]
