"""Short-lived DuckDB connections under a bounded wait, and ingesting the journals into them.

Only one process at a time may open a DuckDB file, so nobody keeps it open: every writer and
reader opens it, does its work and closes it, retrying with jittered exponential backoff while
another process holds it. Within one process a lock per database file serialises connections
(DuckDB refuses a read-only and a read-write connection to one file in one process at once).

Whoever opens the database first ingests every complete journal line not yet ingested, in one
transaction that also advances ``journal_offsets``; so a reader always sees every event whose
``forgemind_record`` call has returned, and a crash mid-ingest leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forgemind_hookspecs import RegistryBusy

from .journal import Appended, journal_files, read_complete_lines
from .schema import migrate

__all__ = ["DEFAULT_TIMEOUT_S", "connect", "db_path", "default_timeout", "flush", "ingest", "remember"]


def _log() -> Any:
    """The structlog logger, imported on first use (structlog costs ~0.1 s to import). Where it
    writes is the host application's choice (the ``forge`` CLI sends it to stderr)."""
    import structlog

    return structlog.get_logger("forgemind.registry")


#: How long a reader or writer waits for another process to release the database.
DEFAULT_TIMEOUT_S = 10.0

#: What this process appended and has not ingested yet, by journal file identity: ingest takes
#: these parsed dicts instead of decoding the same lines again (the JSON decode was the biggest
#: cost of a write). Anything not found here is read from the file, so it is only a shortcut.
_RECENT: dict[tuple[int, int], list[Appended]] = {}
_RECENT_GUARD = threading.Lock()
_RECENT_MAX_EVENTS = 1_000_000

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def default_timeout() -> float:
    """``FORGEMIND_REGISTRY_TIMEOUT`` (seconds) if set, else :data:`DEFAULT_TIMEOUT_S`."""
    raw = os.environ.get("FORGEMIND_REGISTRY_TIMEOUT")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            _log().warning("registry.bad_timeout", value=raw)
    return DEFAULT_TIMEOUT_S


def db_path(home: str | os.PathLike[str]) -> Path:
    """``<home>/registry/registry.duckdb``."""
    return Path(home) / "registry" / "registry.duckdb"


def _process_lock(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.Lock()
        return lock


def _busy(path: Path, timeout_s: float) -> RegistryBusy:
    return RegistryBusy(
        f"another process kept the registry locked for more than {timeout_s:g} s; "
        "try again, or raise FORGEMIND_REGISTRY_TIMEOUT",
        file=str(path),
    )


def _is_lock_error(error: Exception) -> bool:
    text = str(error).lower()
    return "lock" in text or "different configuration" in text


def _open(path: Path, read_only: bool, deadline: float, timeout_s: float) -> Any:
    import duckdb

    config: dict[str, str | bool | int | float | list[str]] = (
        {"enable_external_access": False} if read_only else {}
    )
    delay = 0.005
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except (duckdb.IOException, duckdb.ConnectionException) as error:
            if not _is_lock_error(error):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _busy(path, timeout_s) from None
            time.sleep(min(remaining, delay * (0.5 + random.random())))
            delay = min(delay * 2, 0.25)


@contextmanager
def connect(
    home: str | os.PathLike[str],
    *,
    timeout_s: float | None = None,
    read_only: bool = False,
    deadline: float | None = None,
) -> Iterator[Any]:
    """A DuckDB connection to ``home``'s registry, held only for the ``with`` block.

    A read-write connection migrates the schema and ingests pending journal lines first.

    :param deadline: a ``time.monotonic()`` past which to stop waiting (default: ``timeout_s``
        from now); an operation that opens the database twice passes one deadline to both, so
        its whole wait stays within ``timeout_s``.
    :raises RegistryBusy: the database stayed locked for longer than ``timeout_s``.
    """
    timeout_s = default_timeout() if timeout_s is None else timeout_s
    path = db_path(home)
    deadline = time.monotonic() + timeout_s if deadline is None else deadline
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _process_lock(path)
    if not lock.acquire(timeout=max(deadline - time.monotonic(), 0.001)):
        raise _busy(path, timeout_s)
    try:
        if read_only and not path.exists():
            con = _open(path, False, deadline, timeout_s)
            migrate(con)
            con.close()
        con = _open(path, read_only, deadline, timeout_s)
        try:
            if not read_only:
                migrate(con)
                ingest(con, home)
            yield con
        finally:
            con.close()
    finally:
        lock.release()


def flush(home: str | os.PathLike[str], *, timeout_s: float | None = None) -> int:
    """Ingest every pending journal line now; return how many events the registry holds."""
    with connect(home, timeout_s=timeout_s) as con:
        return int(con.execute("SELECT count(*) FROM events").fetchone()[0])


# --------------------------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------------------------


def _dumps(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class _Batch:
    """Column buffers of the bulk tables, filled event by event, written once through Arrow."""

    EXAMPLES = (
        "id", "run_id", "iteration", "event_id", "prompt", "completion", "messages", "category",
        "generator", "model", "prompt_template", "seed", "tokens", "cost_usd", "meta",
    )  # fmt: skip
    VERDICTS = ("run_id", "iteration", "event_id", "example_id", "filter", "keep", "rule", "score", "reason")
    METRICS = ("run_id", "iteration", "stage", "event_id", "seq", "name", "step", "value", "time")
    RESULTS = (
        "run_id", "iteration", "event_id", "checkpoint_id", "tier", "case_id", "output", "score",
        "passed", "scorer", "category", "expected", "details",
    )  # fmt: skip
    EVENTS = ("id", "run_id", "seq", "kind", "iteration", "stage", "time", "payload")

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[Any]]] = {
            "examples": {c: [] for c in self.EXAMPLES},
            "verdicts": {c: [] for c in self.VERDICTS},
            "metrics": {c: [] for c in self.METRICS},
            "eval_results": {c: [] for c in self.RESULTS},
            "events": {c: [] for c in self.EVENTS},
        }

    def write(self, con: Any) -> None:
        import pyarrow as pa

        for table, columns in self.tables.items():
            if not next(iter(columns.values())):
                continue
            arrow = pa.table(columns)
            con.register("_fm_batch", arrow)
            try:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _fm_batch")
            finally:
                con.unregister("_fm_batch")


def remember(appended: Sequence[Appended]) -> None:
    """Keep what this process just appended, so that ingesting it needs no JSON decode."""
    with _RECENT_GUARD:
        if sum(len(a.events or ()) for chunks in _RECENT.values() for a in chunks) > _RECENT_MAX_EVENTS:
            _RECENT.clear()  # ingest has been deferred for long: fall back to reading the files
        for a in appended:
            _RECENT.setdefault(a.identity, []).append(a)


def _take_recent(identity: tuple[int, int], position: int, size: int) -> tuple[list[dict[str, Any]], int]:
    """The remembered events that continue the file exactly at ``position``, and where they end."""
    with _RECENT_GUARD:
        chunks = sorted(_RECENT.pop(identity, []), key=lambda a: a.start)
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        if chunk.end <= position:
            continue  # ingested already (by another process, from the file)
        if chunk.start != position or chunk.events is None or chunk.end > size:
            break
        events.extend(chunk.events)
        position = chunk.end
    return events, position


def ingest(con: Any, home: str | os.PathLike[str]) -> int:
    """Ingest every complete, not yet ingested journal line of ``home``; return how many events.

    One transaction: the rows and the new journal offsets commit together or not at all.
    """
    files = list(journal_files(home))
    if not files:
        return 0
    offsets = dict(con.execute("SELECT file, byte_offset FROM journal_offsets").fetchall())
    stats = [(f, f.stat()) for f in files]
    pending = [(f, st) for f, st in stats if st.st_size != offsets.get(f.name, 0)]
    if not pending:
        return 0
    con.execute("BEGIN TRANSACTION")
    try:
        events: list[dict[str, Any]] = []
        new_offsets: dict[str, int] = {}
        for path, st in pending:
            start = offsets.get(path.name, 0)
            if start <= st.st_size:
                recent, start = _take_recent((st.st_dev, st.st_ino), start, st.st_size)
                events.extend(recent)
            lines, end = read_complete_lines(path, start)
            for number, line in enumerate(lines, 1):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    _log().warning("registry.bad_journal_line", file=str(path), line=number, offset=start)
            new_offsets[path.name] = end
        fresh = _unseen(con, events)
        _apply(con, fresh, Path(home))
        con.executemany(
            "INSERT OR REPLACE INTO journal_offsets VALUES (?, ?)", [list(kv) for kv in new_offsets.items()]
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    if fresh:
        _log().debug("registry.ingested", events=len(fresh), files=len(new_offsets))
    return len(fresh)


def _unseen(con: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop events whose id was ingested before or repeats within this batch."""
    if not events:
        return []
    import pyarrow as pa

    ids = pa.table({"id": [e["id"] for e in events]})
    con.register("_fm_ids", ids)
    try:
        seen = {row[0] for row in con.execute("SELECT e.id FROM events e JOIN _fm_ids USING (id)").fetchall()}
    finally:
        con.unregister("_fm_ids")
    fresh = []
    for event in events:
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        fresh.append(event)
    return fresh


def _apply(con: Any, events: Sequence[dict[str, Any]], home: Path) -> None:
    batch = _Batch()
    for event in events:
        kind = event["kind"]
        payload = event.get("payload") or {}
        handler = _HANDLERS.get(kind)
        summary = handler(con, batch, event, payload, home) if handler else None
        cols = batch.tables["events"]
        cols["id"].append(event["id"])
        cols["run_id"].append(event["run_id"])
        cols["seq"].append(int(event.get("seq") or 0))
        cols["kind"].append(kind)
        cols["iteration"].append(int(event.get("iteration") or 0))
        cols["stage"].append(event.get("stage") or "")
        cols["time"].append(float(event.get("time") or 0.0))
        cols["payload"].append(_dumps(payload if summary is None else summary))
    batch.write(con)


def _edge(
    con: Any, src: str | None, src_kind: str, dst: str | None, dst_kind: str, relation: str, run_id: str
) -> None:
    if not src or not dst:
        return
    con.execute(
        "INSERT OR IGNORE INTO lineage_edges VALUES (?, ?, ?, ?, ?, ?)",
        [src, src_kind, dst, dst_kind, relation, run_id],
    )


def _iteration(con: Any, event: Mapping[str, Any], **values: Any) -> None:
    run_id, iteration = event["run_id"], int(event.get("iteration") or 0)
    con.execute(
        "INSERT INTO iterations (run_id, iteration) VALUES (?, ?) ON CONFLICT DO NOTHING", [run_id, iteration]
    )
    for column, value in values.items():
        con.execute(
            f"UPDATE iterations SET {column} = ? WHERE run_id = ? AND iteration = ?",
            [value, run_id, iteration],
        )


def _on_run_started(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    goal = p.get("goal") or {}
    con.execute(
        """INSERT OR IGNORE INTO runs (id, goal_name, task, goal_file, parent_run, parent_iteration, branch,
           forgemind_version, status, started, goal, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, 0.0)""",
        [
            event["run_id"], goal.get("name"), goal.get("task"), p.get("goal_file"), p.get("parent_run"),
            p.get("parent_iteration"), p.get("branch"), p.get("forgemind_version"), event.get("time"), _dumps(goal),
        ],
    )  # fmt: skip
    _edge(con, p.get("parent_run"), "run", event["run_id"], "run", "forked", event["run_id"])


def _on_run_resumed(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    con.execute("UPDATE runs SET status = 'running', finished = NULL WHERE id = ?", [event["run_id"]])


def _on_run_finished(
    con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path
) -> None:
    con.execute(
        """UPDATE runs SET status = 'finished', finished = ?, outcome = ?, reasons = ?, stable_checkpoint = ?
           WHERE id = ?""",
        [
            event.get("time"),
            p.get("outcome"),
            _dumps(p.get("reasons") or []),
            p.get("stable_checkpoint"),
            event["run_id"],
        ],
    )


def _on_plan(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    _iteration(con, event, plan=_dumps(p.get("plan")), planner_decision=_dumps(p.get("decision")))


def _on_examples(
    con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path
) -> dict[str, Any]:
    cols = batch.tables["examples"]
    run_id, iteration, event_id = event["run_id"], int(event.get("iteration") or 0), event["id"]
    examples = p.get("examples") or []
    for ex in examples:
        source = ex.get("source") or {}
        messages = ex.get("messages") or []
        meta = ex.get("meta") or {}
        cols["id"].append(ex.get("id"))
        cols["run_id"].append(run_id)
        cols["iteration"].append(iteration)
        cols["event_id"].append(event_id)
        cols["prompt"].append(ex.get("prompt", ""))
        cols["completion"].append(ex.get("completion", ""))
        cols["messages"].append(_dumps(messages) if messages else "[]")
        cols["category"].append(ex.get("category"))
        cols["generator"].append(source.get("generator"))
        cols["model"].append(source.get("model"))
        cols["prompt_template"].append(source.get("prompt_template"))
        cols["seed"].append(source.get("seed"))
        cols["tokens"].append(int(source.get("tokens") or 0))
        cols["cost_usd"].append(float(source.get("cost_usd") or 0.0))
        cols["meta"].append(_dumps(meta) if meta else "{}")
    return {"count": len(examples)}


def _on_verdicts(
    con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path
) -> dict[str, Any]:
    cols = batch.tables["verdicts"]
    run_id, iteration, event_id = event["run_id"], int(event.get("iteration") or 0), event["id"]
    verdicts = p.get("verdicts") or []
    dropped = 0
    for v in verdicts:
        keep = bool(v.get("keep"))
        dropped += not keep
        cols["run_id"].append(run_id)
        cols["iteration"].append(iteration)
        cols["event_id"].append(event_id)
        cols["example_id"].append(v.get("example_id"))
        cols["filter"].append(v.get("filter"))
        cols["keep"].append(keep)
        cols["rule"].append(v.get("rule", ""))
        cols["score"].append(v.get("score"))
        cols["reason"].append(v.get("reason", ""))
    return {"count": len(verdicts), "dropped": dropped}


def _resolve(path: str, home: Path) -> Path | None:
    candidate = Path(path)
    if candidate.exists():
        return candidate
    if not candidate.is_absolute() and (home / candidate).exists():
        return home / candidate
    return None


def _on_dataset(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    ref = p.get("dataset") or {}
    did = ref.get("id")
    if not did:
        return
    run_id = event["run_id"]
    known = con.execute("SELECT 1 FROM datasets WHERE id = ?", [did]).fetchone()
    if known is None:
        path = _resolve(ref.get("path", ""), home)
        loaded = False
        if path is not None:
            _load_members(con, did, path)
            loaded = True
        else:
            _log().warning("registry.snapshot_missing", dataset=did, path=ref.get("path"))
        con.execute(
            "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                did, run_id, int(event.get("iteration") or 0), ref.get("path"), ref.get("n_examples"),
                _dumps(ref.get("parents") or []), _dumps(ref.get("stats") or {}), loaded,
            ],
        )  # fmt: skip
    _edge(con, run_id, "run", did, "dataset", "reused" if p.get("inherited_from") else "produced", run_id)
    for parent in ref.get("parents") or []:
        _edge(con, parent, "dataset", did, "dataset", "derived", run_id)
    _teacher_edges(con, run_id, did)
    _iteration(con, event, dataset_id=did)


#: A served checkpoint's relation to the run it served, by the pillar of the client that used it.
_SERVED_RELATION = {"generators": "generated", "filters": "judged", "adversaries": "attacked",
                    "runners": "answered"}


def _teacher_edges(con: Any, run_id: str, dataset_id: str) -> None:
    """Teacher checkpoint -> dataset: ``generated`` when examples of the dataset name a recorded
    checkpoint as their ``source.model`` (a served checkpoint answers under its id), ``judged``
    when a filter of the run that built it was served by one (every example of the dataset went
    through the run's filters)."""
    teachers = con.execute(
        """SELECT DISTINCT de.model FROM dataset_examples de JOIN checkpoints c ON c.id = de.model
           WHERE de.dataset_id = ?
           UNION
           SELECT DISTINCT s.checkpoint_id FROM served_models s JOIN dataset_examples de
             ON de.model = s.served_model AND de.dataset_id = ?
           WHERE s.run_id = ? AND s.pillar = 'generators'""",
        [dataset_id, dataset_id, run_id],
    ).fetchall()
    for (cid,) in teachers:
        _edge(con, cid, "checkpoint", dataset_id, "dataset", "generated", run_id)
    judges = con.execute(
        "SELECT DISTINCT checkpoint_id FROM served_models WHERE run_id = ? AND pillar = 'filters'", [run_id]
    ).fetchall()
    for (cid,) in judges:
        _edge(con, cid, "checkpoint", dataset_id, "dataset", "judged", run_id)


def _on_server_used(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    """A recorded checkpoint served a stage of this run: its row in ``served_models`` and the
    edge checkpoint -> run (``generated``, ``judged``, ``attacked`` or ``answered``)."""
    cid = p.get("checkpoint_id")
    if not cid:
        return
    run_id, pillar = event["run_id"], str(p.get("pillar") or "")
    con.execute(
        "INSERT OR IGNORE INTO served_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id, p.get("key"), cid, p.get("served_model"), pillar, p.get("client"), p.get("field"),
            p.get("ref"), p.get("checkpoint_run"), p.get("goal"), p.get("version"), event["id"],
        ],
    )  # fmt: skip
    _edge(con, cid, "checkpoint", run_id, "run", _SERVED_RELATION.get(pillar, "served"), run_id)


def _load_members(con: Any, dataset_id: str, path: Path) -> None:
    """Membership rows straight from the snapshot's Parquet, in bulk."""
    import pyarrow.parquet as pq

    members = pq.read_table(path, columns=["id", "category", "source"])
    con.register("_fm_members", members)
    try:
        con.execute(
            """INSERT INTO dataset_examples
               SELECT ?, id, category,
                      json_extract_string(source, '$.generator'),
                      json_extract_string(source, '$.model'),
                      json_extract_string(source, '$.prompt_template'),
                      TRY_CAST(json_extract_string(source, '$.seed') AS BIGINT)
               FROM _fm_members""",
            [dataset_id],
        )
    finally:
        con.unregister("_fm_members")


def _on_estimate(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    _iteration(con, event, estimate=_dumps(p.get("estimate")))


def _on_checkpoint(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    ck = p.get("checkpoint") or {}
    cid = ck.get("id")
    if not cid:
        return
    run_id = event["run_id"]
    con.execute(
        "INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            cid, run_id, int(event.get("iteration") or 0), event.get("stage"), ck.get("path"), ck.get("base_model"),
            ck.get("method"), ck.get("kind"), ck.get("dataset_id"), ck.get("parent"),
            _dumps(ck.get("manifest") or {}), _dumps(ck),
        ],
    )  # fmt: skip
    _edge(con, run_id, "run", cid, "checkpoint", "reused" if p.get("inherited_from") else "produced", run_id)
    _edge(con, ck.get("dataset_id"), "dataset", cid, "checkpoint", "trained", run_id)
    _edge(con, ck.get("parent"), "checkpoint", cid, "checkpoint", "base_of", run_id)
    if event.get("stage") == "train":
        _iteration(con, event, checkpoint_id=cid)


def _on_metric(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    cols = batch.tables["metrics"]
    cols["run_id"].append(event["run_id"])
    cols["iteration"].append(int(event.get("iteration") or 0))
    cols["stage"].append(event.get("stage") or "")
    cols["event_id"].append(event["id"])
    cols["seq"].append(int(event.get("seq") or 0))
    cols["name"].append(p.get("name"))
    cols["step"].append(int(p.get("step") or 0))
    value = p.get("value")
    cols["value"].append(None if value is None else float(value))
    cols["time"].append(float(event.get("time") or 0.0))


def _on_cost(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    if p.get("total_usd") is not None:
        con.execute(
            "UPDATE runs SET cost_usd = greatest(coalesce(cost_usd, 0), ?) WHERE id = ?",
            [float(p["total_usd"]), event["run_id"]],
        )


def _on_eval_report(
    con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path
) -> dict[str, Any]:
    report = p.get("report") or {}
    run_id, iteration, event_id = event["run_id"], int(event.get("iteration") or 0), event["id"]
    cid, tier = report.get("checkpoint_id"), report.get("tier")
    summary = {"checkpoint_id": cid, "tier": tier, "metrics": report.get("metrics") or {}}
    if p.get("inherited_from"):
        # A fork re-recording its parent's report of a reused checkpoint: the rows stay the
        # parent's (eval_reports/eval_results hold each scored case once); the fork's event
        # (its scores for `forge show`) names where they are.
        return {**summary, "inherited_from": p["inherited_from"]}
    con.execute(
        "INSERT INTO eval_reports VALUES (?, ?, ?, ?, ?, ?, ?)",
        [run_id, iteration, event_id, cid, tier, _dumps(report.get("metrics") or {}), _dumps(report)],
    )
    cols = batch.tables["eval_results"]
    for r in report.get("results") or []:
        cols["run_id"].append(run_id)
        cols["iteration"].append(iteration)
        cols["event_id"].append(event_id)
        cols["checkpoint_id"].append(cid)
        cols["tier"].append(r.get("tier") or tier)
        cols["case_id"].append(r.get("case_id"))
        cols["output"].append(r.get("output"))
        cols["score"].append(r.get("score"))
        cols["passed"].append(r.get("passed"))
        cols["scorer"].append(r.get("scorer"))
        cols["category"].append(r.get("category"))
        cols["expected"].append(r.get("expected"))
        cols["details"].append(_dumps(r.get("details") or {}))
    return summary


def _on_decision(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    d = p.get("decision") or {}
    con.execute(
        "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            event["run_id"], int(event.get("iteration") or 0), event["id"], d.get("action"),
            _dumps(d.get("reasons") or []), d.get("checkpoint_id"), _dumps(d.get("next_plan")), event.get("time"),
        ],
    )  # fmt: skip
    _iteration(con, event, decision=_dumps(d))


def _on_promotion(
    con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path
) -> dict[str, Any]:
    channel = p.get("channel") or "stable"
    cid = p.get("checkpoint_id")
    run_id = p.get("run_id") or event["run_id"]
    existing = con.execute(
        "SELECT version FROM promotions WHERE channel = ? AND checkpoint_id = ?", [channel, cid]
    ).fetchone()
    if existing is not None:
        return {**p, "channel": channel, "version": existing[0], "already_promoted": True}
    version = con.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM promotions WHERE channel = ?", [channel]
    ).fetchone()[0]
    con.execute(
        "INSERT INTO promotions VALUES (?, ?, ?, ?, ?, ?, ?)",
        [channel, version, cid, run_id, int(event.get("iteration") or 0), event["id"], event.get("time")],
    )
    _edge(con, cid, "checkpoint", f"{channel}:v{version}", "promotion", "promoted", event["run_id"])
    if p.get("approved_by"):  # a candidate promoted later by `forge approve` (the Warden)
        con.execute(
            "UPDATE runs SET outcome = 'promoted', stable_checkpoint = ? WHERE id = ? AND outcome = 'candidate'",
            [cid, run_id],
        )
    return {**p, "channel": channel, "version": version}


def _on_review_item(con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path) -> None:
    item = p.get("item") or {}
    con.execute(
        """INSERT INTO reviews (item_id, run_id, iteration, subject_kind, subject_id, payload, scores, reasons,
           created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (item_id) DO UPDATE SET subject_kind = excluded.subject_kind,
           subject_id = excluded.subject_id, payload = excluded.payload, scores = excluded.scores,
           reasons = excluded.reasons""",
        [
            item.get("id"), item.get("run_id") or event["run_id"], int(event.get("iteration") or 0),
            item.get("subject_kind"), item.get("subject_id"), _dumps(item.get("payload") or {}),
            _dumps(item.get("scores") or {}), _dumps(item.get("reasons") or []), event.get("time"),
        ],
    )  # fmt: skip


def _on_review_decision(
    con: Any, batch: _Batch, event: dict[str, Any], p: Mapping[str, Any], home: Path
) -> None:
    d = p.get("decision") or {}
    con.execute(
        "INSERT INTO reviews (item_id, run_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [d.get("item_id"), event["run_id"]],
    )
    con.execute(
        "UPDATE reviews SET action = ?, reviewer = ?, reason = ?, edited = ?, decided = ? WHERE item_id = ?",
        [
            d.get("action"),
            d.get("reviewer"),
            d.get("reason", ""),
            _dumps(d.get("edited")),
            d.get("time"),
            d.get("item_id"),
        ],
    )


_HANDLERS: dict[str, Any] = {
    "run.started": _on_run_started,
    "run.resumed": _on_run_resumed,
    "run.finished": _on_run_finished,
    "plan": _on_plan,
    "examples": _on_examples,
    "verdicts": _on_verdicts,
    "dataset": _on_dataset,
    "estimate": _on_estimate,
    "checkpoint": _on_checkpoint,
    "metric": _on_metric,
    "cost": _on_cost,
    "eval.report": _on_eval_report,
    "decision": _on_decision,
    "promotion": _on_promotion,
    "review.item": _on_review_item,
    "review.decision": _on_review_decision,
    "server.used": _on_server_used,
}
