"""`sql()` is bounded (time, rows, memory), and a reader's whole wait for the lock stays within
its timeout even when it opens the database twice (issue 22, point 6)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import forgemind_duckdb_registry as plugin
import pytest
from _registry_events import Stream
from forgemind_duckdb_registry import store
from forgemind_hookspecs import RegistryBusy, UserError


@pytest.fixture
def registry(forge_home: Path) -> plugin.DuckDBRegistry:
    ev = Stream("run-s")
    plugin.forgemind_record([ev("run.started", {"goal": {"name": "g"}})], str(forge_home))
    return plugin.DuckDBRegistry(forge_home)


def test_a_long_query_is_interrupted_and_releases_the_registry(registry: plugin.DuckDBRegistry) -> None:
    with pytest.raises(UserError) as caught:
        registry.sql("SELECT count(*) FROM range(10000000000000::BIGINT)", timeout_s=0.5)
    assert str(caught.value) == (
        "sql: the query ran for more than 0.5 s and was stopped: narrow it, or raise the time limit "
        "(forge sql --timeout)")
    assert [r["id"] for r in registry.runs()] == ["run-s"]  # the lock is free again


def test_a_huge_result_is_refused_without_being_built(registry: plugin.DuckDBRegistry) -> None:
    with pytest.raises(UserError, match=r"returns more than 10000 rows: add a LIMIT, or raise the row cap"):
        registry.sql("SELECT * FROM range(1000000000000::BIGINT)")  # a trillion rows: only 10,001 are made
    assert len(registry.sql("SELECT * FROM range(3)", max_rows=3)) == 3
    with pytest.raises(UserError, match="more than 2 rows"):
        registry.sql("SELECT * FROM range(3)", max_rows=2)
    assert len(registry.sql("SELECT * FROM range(12000)", max_rows=0)) == 12000


def test_memory_is_capped_by_duckdb(registry: plugin.DuckDBRegistry) -> None:
    with pytest.raises(UserError, match=r"needed more than 64MB of memory and was stopped"):
        registry.sql("SELECT list(range) FROM range(100000000)", memory_limit="64MB")
    with pytest.raises(UserError, match=r"memory limit 'lots'"):
        registry.sql("SELECT 1", memory_limit="lots")


@pytest.mark.parametrize("query", [
    "SELECT 1 AS a;", "SELECT 1 AS a; -- a comment", "SELECT 1 AS a -- a comment\n;;",
    "SELECT 1 AS a /* ; */ ;", "WITH t AS (SELECT 1 AS a) SELECT * FROM t", "FROM (SELECT 1 AS a)",
])
def test_queries_run_the_same_inside_the_row_cap(registry: plugin.DuckDBRegistry, query: str) -> None:
    assert registry.sql(query) == [{"a": 1}]


def test_order_and_strings_survive_the_row_cap(registry: plugin.DuckDBRegistry) -> None:
    rows = registry.sql("SELECT range AS n, ';' AS s FROM range(5) ORDER BY range DESC -- last")
    assert rows == [{"n": n, "s": ";"} for n in (4, 3, 2, 1, 0)]


_HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1]); print("held", flush=True)
for line in sys.stdin:
    if line.strip() == "release":
        con.close(); con = None; print("released", flush=True)
    elif line.strip() == "grab":
        while con is None:
            try:
                con = duckdb.connect(sys.argv[1])
            except duckdb.Error:
                pass
        print("held", flush=True)
"""


def test_the_whole_wait_of_a_query_stays_within_the_timeout(
    registry: plugin.DuckDBRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the database, lets go once (the reader's first connection gets in
    and ingests), then holds it again before the reader's second connection: the reader gives up
    when its timeout is spent in total, not a full timeout after its second attempt began."""
    timeout = 2.0
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(store.db_path(registry.home))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None

    def say(word: str, answer: str) -> None:
        holder.stdin.write(word + "\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        assert holder.stdout.readline().strip() == answer  # type: ignore[union-attr]

    real_open = store._open
    opened: list[bool] = []
    handshake = {"s": 0.0}

    def open_second_after_the_holder(path: Path, read_only: bool, deadline: float, timeout_s: float) -> Any:
        if read_only and not opened:
            opened.append(True)
            started = time.monotonic()
            say("grab", "held")  # the holder takes the file back between the reader's two connections
            handshake["s"] = time.monotonic() - started
        return real_open(path, read_only, deadline, timeout_s)

    monkeypatch.setattr(store, "_open", open_second_after_the_holder)
    try:
        assert holder.stdout.readline().strip() == "held"
        releaser = threading.Timer(0.6 * timeout, say, ("release", "released"))
        started = time.monotonic()
        releaser.start()
        with pytest.raises(RegistryBusy, match="more than 2 s"):
            plugin.DuckDBRegistry(registry.home, timeout_s=timeout).sql("SELECT 1")
        waited = time.monotonic() - started - handshake["s"]
        releaser.join()
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdin.close()
        holder.stdout.close()
    assert opened, "the reader's first connection should have got in while the holder let go"
    assert waited <= timeout + 0.5, f"waited {waited:.2f} s with a {timeout:g} s timeout"
