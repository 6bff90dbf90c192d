"""Benchmark of the DuckDB registry (forgemind-duckdb-registry). A script, not a test.

Two measurements, each against what it is meant to beat, in one run on one machine:

1. Writes: ``--examples`` examples (in ``examples`` events of ``--examples-per-batch``) and
   ``--metrics`` metrics (in batches of ``--metrics-per-batch`` ``metric`` events) recorded
   through the plugin's ``forgemind_record`` hook (journal append + fsync + ingest through Arrow)
   versus a baseline that INSERTs the very same rows one statement per row into the same tables
   (one transaction, so the baseline is not penalised by per-row commits). Target: >= 50x.
2. Lineage: ``registry.lineage(checkpoint)`` (the full API call: open, check the journals, walk
   the edges, summarise the dataset's sources) on a dataset of ``--lineage-examples`` examples,
   plus the raw SQL join checkpoint -> dataset -> examples -> generators on an open connection.
   Median of ``--repeats`` runs. Target: < 100 ms.

    .venv/bin/python benchmarks/registry_bench.py            # full size
    .venv/bin/python benchmarks/registry_bench.py --quick    # 10x smaller, for a smoke run

Prints a table, then one JSON object (also written to ``--json-out`` if given).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import forgemind_duckdb_registry as plugin
from forgemind_duckdb_registry.schema import migrate
from forgemind_hookspecs import Event


def _examples(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Example dicts as the kernel puts them in ``examples`` payloads (``to_dict(Example)``)."""
    gens = (("template", None, "t-sql"), ("openai", "gpt-4o-mini", "t-yaml"), ("openai", "gpt-4o", "t-py"))
    out = []
    for i in range(start, start + n):
        g, m, t = gens[i % 3]
        out.append(
            {
                "id": f"{i:016x}",
                "prompt": f"Classify this snippet: cursor.execute('SELECT * FROM t WHERE id=' + uid)  # {i}",
                "completion": "sqli" if i % 4 else "safe",
                "messages": [],
                "category": "sqli" if i % 4 else "safe",
                "source": {"generator": g, "model": m, "prompt_template": t, "seed": i, "tokens": 42,
                           "cost_usd": 0.0001},
                "meta": {},
            }
        )  # fmt: skip
    return out


def _events(n_examples: int, per_batch: int, n_metrics: int, metrics_per_batch: int) -> list[list[Event]]:
    batches: list[list[Event]] = []
    seq = 0

    def ev(kind: str, payload: dict[str, Any], stage: str) -> Event:
        nonlocal seq
        seq += 1
        return Event(
            run_id="bench", kind=kind, iteration=1, stage=stage, payload=payload, seq=seq, time=float(seq)
        )

    batches.append([ev("run.started", {"goal": {"name": "bench", "task": "t"}}, "")])
    for start in range(0, n_examples, per_batch):
        batches.append(
            [ev("examples", {"examples": _examples(min(per_batch, n_examples - start), start)}, "generate")]
        )
    for start in range(0, n_metrics, metrics_per_batch):
        batches.append(
            [ev("metric", {"name": "train.loss", "value": 1.0 / (s + 1), "step": s}, "train")
             for s in range(start, min(start + metrics_per_batch, n_metrics))]
        )  # fmt: skip
    return batches


def _baseline(db: Path, batches: list[list[Event]]) -> float:
    """Row-by-row INSERTs of the same rows into the same tables."""
    import duckdb

    con = duckdb.connect(str(db))
    migrate(con)
    t0 = time.perf_counter()
    con.execute("BEGIN TRANSACTION")
    for batch in batches:
        for e in batch:
            if e.kind == "examples":
                for x in e.payload["examples"]:
                    s = x["source"]
                    con.execute(
                        "INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [x["id"], e.run_id, e.iteration, e.id, x["prompt"], x["completion"], "[]", x["category"],
                         s["generator"], s["model"], s["prompt_template"], s["seed"], s["tokens"], s["cost_usd"], "{}"],
                    )  # fmt: skip
            elif e.kind == "metric":
                p = e.payload
                con.execute(
                    "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [e.run_id, e.iteration, e.stage, e.id, e.seq, p["name"], p["step"], p["value"], e.time],
                )
    con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def bench_writes(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    # Warm both sides up (lazy imports inside duckdb/pyarrow) before anything is timed.
    warm = root / "warm"
    warm.mkdir()
    for batch in _events(20, 10, 20, 10):
        plugin.forgemind_record(batch, str(warm))
    plugin.flush(warm)
    _baseline(root / "warm.duckdb", _events(20, 10, 20, 10))
    batches = _events(args.examples, args.examples_per_batch, args.metrics, args.metrics_per_batch)
    home = root / "writes"
    home.mkdir()
    t0 = time.perf_counter()
    for batch in batches:
        plugin.forgemind_record(batch, str(home))
    plugin.flush(home)  # measured too: every row is in DuckDB, not only in the journal
    plugin_s = time.perf_counter() - t0
    (counts,) = plugin.DuckDBRegistry(home).sql(
        "SELECT (SELECT count(*) FROM examples) AS examples, (SELECT count(*) FROM metrics) AS metrics"
    )
    assert counts == {"examples": args.examples, "metrics": args.metrics}, counts
    baseline_s = _baseline(root / "baseline.duckdb", batches)
    rows = args.examples + args.metrics
    return {
        "rows": rows,
        "hook_calls": len(batches),
        "plugin_s": plugin_s,
        "baseline_row_by_row_s": baseline_s,
        "plugin_rows_per_s": rows / plugin_s,
        "baseline_rows_per_s": rows / baseline_s,
        "speedup": baseline_s / plugin_s,
        "target_speedup": 50.0,
    }


def bench_lineage(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from forgemind_duckdb_registry.store import connect
    from forgemind_hookspecs.snapshots import COLUMNS, dataset_id

    n = args.lineage_examples
    home = root / "lineage"
    (home / "datasets").mkdir(parents=True)
    idx = pa.array(range(n), pa.int64())
    ids = pc.utf8_lpad(pc.cast(idx, pa.string()), 16, "0")
    gen = pc.cast(pc.bit_wise_and(idx, 3), pa.string())
    source = pc.binary_join_element_wise(
        '{"generator":"gen', gen, '","model":"model', gen, '","prompt_template":"tpl', gen, '","seed":0}', ""
    )
    table = pa.table(
        {
            "id": ids,
            "prompt": pc.binary_join_element_wise("prompt ", ids, ""),
            "completion": pa.array(["label"] * n),
            "messages": pa.array(["[]"] * n),
            "category": pc.binary_join_element_wise("cat", gen, ""),
            "source": source,
            "meta": pa.array(["{}"] * n),
        }
    ).select(list(COLUMNS))
    did = dataset_id(ids.to_pylist())
    path = home / "datasets" / f"{did}.parquet"
    pq.write_table(table, path)
    # Setup, not measured: the examples table as the examples events would have filled it.
    with connect(home) as con:
        con.register("_t", table)
        con.execute(
            """INSERT INTO examples BY NAME SELECT id, 'bench' AS run_id, 1 AS iteration, 'e' AS event_id, prompt,
               completion, messages, category, json_extract_string(source, '$.generator') AS generator,
               json_extract_string(source, '$.model') AS model,
               json_extract_string(source, '$.prompt_template') AS prompt_template, 0 AS seed, 0 AS tokens,
               0.0 AS cost_usd, meta FROM _t"""
        )
        con.unregister("_t")
    seq = iter(range(1, 100))

    def ev(kind: str, payload: dict[str, Any], stage: str) -> Event:
        s = next(seq)
        return Event(
            run_id="bench", kind=kind, iteration=1, stage=stage, payload=payload, seq=s, time=float(s)
        )

    ck = {"id": "ckbench0001", "path": "x", "base_model": "pretrain:tiny", "method": "lora", "kind": "adapter",
          "dataset_id": did, "parent": "base0001"}  # fmt: skip
    plugin.forgemind_record([ev("run.started", {"goal": {"name": "bench"}}, "")], str(home))
    t0 = time.perf_counter()
    plugin.forgemind_record(
        [ev("dataset", {"dataset": {"id": did, "path": str(path), "n_examples": n}}, "dataset")], str(home)
    )
    plugin.flush(home)
    ingest_snapshot_s = time.perf_counter() - t0
    plugin.forgemind_record(
        [
            ev("checkpoint", {"checkpoint": {"id": "base0001", "path": "b", "base_model": "pretrain:tiny",
                                              "method": "pretrain"}}, "base"),
            ev("checkpoint", {"checkpoint": ck}, "train"),
            ev("promotion", {"checkpoint_id": ck["id"], "channel": "stable", "run_id": "bench"}, "decide"),
        ],
        str(home),
    )  # fmt: skip
    registry = plugin.DuckDBRegistry(home)
    api: list[float] = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = registry.lineage(ck["id"])
        api.append(time.perf_counter() - t0)
    assert sum(s["examples"] for s in result["datasets"][0]["sources"]) == n
    assert len(result["datasets"][0]["sources"]) == 4
    join_sql = """SELECT x.generator, x.model, x.prompt_template, count(*) AS examples
                  FROM checkpoints c JOIN dataset_examples de ON de.dataset_id = c.dataset_id
                  JOIN examples x ON x.id = de.example_id
                  WHERE c.id = ? GROUP BY ALL ORDER BY examples DESC"""
    raw: list[float] = []
    with connect(home) as con:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            rows = con.execute(join_sql, [ck["id"]]).fetchall()
            raw.append(time.perf_counter() - t0)
    assert sum(r[3] for r in rows) == n
    return {
        "examples": n,
        "ingest_snapshot_s": ingest_snapshot_s,
        "lineage_api_median_ms": statistics.median(api) * 1000,
        "lineage_api_runs_ms": [round(x * 1000, 2) for x in api],
        "join_through_examples_median_ms": statistics.median(raw) * 1000,
        "join_through_examples_runs_ms": [round(x * 1000, 2) for x in raw],
        "target_ms": 100.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--metrics", type=int, default=10_000)
    parser.add_argument("--examples-per-batch", type=int, default=1_000)
    parser.add_argument("--metrics-per-batch", type=int, default=100)
    parser.add_argument("--lineage-examples", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="divide every size by 10")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.examples //= 10
        args.metrics //= 10
        args.lineage_examples //= 10
    import duckdb
    import pyarrow

    with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
        root = Path(tmp)
        writes = bench_writes(args, root)
        lineage = bench_lineage(args, root)
    report = {
        "benchmark": "registry",
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "machine": platform.machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "writes": writes,
        "lineage": lineage,
    }
    print(f"{'measurement':<52} {'value':>14}  target")
    print(f"{'writes: rows (examples + metrics)':<52} {writes['rows']:>14,}")
    print(f"{'writes: plugin hook (journal+fsync+Arrow ingest) s':<52} {writes['plugin_s']:>14.3f}")
    print(f"{'writes: row-by-row INSERT baseline s':<52} {writes['baseline_row_by_row_s']:>14.3f}")
    print(f"{'writes: speedup (baseline / plugin)':<52} {writes['speedup']:>13.1f}x  >= 50x")
    print(f"{'lineage: examples in the dataset':<52} {lineage['examples']:>14,}")
    print(f"{'lineage: ingest of the snapshot (dataset event) s':<52} {lineage['ingest_snapshot_s']:>14.3f}")
    print(
        f"{'lineage: registry.lineage(checkpoint) median ms':<52} {lineage['lineage_api_median_ms']:>14.1f}  < 100 ms"
    )
    print(
        f"{'lineage: SQL join via examples table, median ms':<52} {lineage['join_through_examples_median_ms']:>14.1f}"
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
