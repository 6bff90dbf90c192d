"""The query side: :class:`DuckDBRegistry`, what ``forgemind_registry(home)`` returns.

Each method opens the database for the duration of one query (ingesting pending journal lines
first, so answers include every event recorded so far), and returns plain JSON-compatible
lists and dicts. :meth:`DuckDBRegistry.sql` runs user SQL on a separate *read-only* connection
with file access disabled, so a write is refused by DuckDB itself, not only by our parser.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs import UserError

from .store import connect, default_timeout

__all__ = ["CHECKPOINT_TABLES", "RUN_TABLES", "SQL_MAX_ROWS", "SQL_MEMORY_LIMIT", "SQL_TIMEOUT_S", "DuckDBRegistry"]

#: ``sql()``'s default limits: it holds the registry's lock while it runs, so that every reader
#: and the run's ingest wait on it; 10 s is the time they wait before giving up (store.py).
SQL_TIMEOUT_S = 10.0
SQL_MAX_ROWS = 10_000
SQL_MEMORY_LIMIT = "1GB"

_TIER_ORDER = {"canary": 0, "full": 1, "adversarial": 2}

#: The tables of a run's history (``rows_of("run", id)``), each filtered to the run.
RUN_TABLES: tuple[str, ...] = (
    "runs", "iterations", "events", "examples", "verdicts", "datasets", "checkpoints", "eval_reports",
    "eval_results", "metrics", "decisions", "promotions",
)  # fmt: skip
#: A checkpoint's tables (``rows_of("checkpoint", id)``), each filtered to the checkpoint.
CHECKPOINT_TABLES: tuple[str, ...] = ("eval_results", "eval_reports")
#: What :meth:`DuckDBRegistry.resolve` looks in, per kind.
_KIND_TABLES = {"run": "runs", "dataset": "datasets", "checkpoint": "checkpoints"}


def _fetch(
    con: Any, query: str, params: Sequence[Any] = (), json_cols: Iterable[str] = ()
) -> list[dict[str, Any]]:
    cursor = con.execute(query, list(params))
    names = [d[0] for d in cursor.description]
    decode = set(json_cols)
    rows = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        for col in decode & row.keys():
            if row[col] is not None:
                row[col] = json.loads(row[col])
        rows.append(row)
    return rows


def _jsonable(value: Any) -> Any:
    """User SQL may return dates, decimals, blobs, nested values: make them JSON-compatible."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID | _dt.timedelta):
        return str(value)
    return str(value)


class DuckDBRegistry:
    """Runs, lineage and history of one ForgeMind home, from its DuckDB registry.

    :param home: the ForgeMind home folder.
    :param timeout_s: how long to wait for another process holding the database before raising
        :class:`~forgemind_hookspecs.errors.RegistryBusy` (default ``FORGEMIND_REGISTRY_TIMEOUT``
        or 10 s).
    """

    def __init__(self, home: str | os.PathLike[str], *, timeout_s: float | None = None) -> None:
        self.home = Path(home)
        self.timeout_s = default_timeout() if timeout_s is None else timeout_s

    def __repr__(self) -> str:
        return f"DuckDBRegistry({str(self.home)!r})"

    def _query(
        self, query: str, params: Sequence[Any] = (), json_cols: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        with connect(self.home, timeout_s=self.timeout_s) as con:
            return _fetch(con, query, params, json_cols)

    # --- runs ---------------------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """One row per run, newest first."""
        return self._query(
            """SELECT r.id, r.goal_name, r.status, r.started, r.finished,
                      (SELECT count(*) FROM iterations i WHERE i.run_id = r.id AND i.iteration > 0) AS iterations,
                      r.outcome, r.cost_usd, r.parent_run, r.branch, r.stable_checkpoint
               FROM runs r ORDER BY r.started DESC NULLS LAST, r.id"""
        )

    def run(self, run_id: str) -> dict[str, Any] | None:
        """A run's row, its iterations (plan, planner decision, scores per tier, decision,
        dataset, checkpoint, estimate) and its checkpoints. Accepts a unique id prefix."""
        with connect(self.home, timeout_s=self.timeout_s) as con:
            rid = _resolve(con, "runs", run_id, "run")
            if rid is None:
                return None
            row = _fetch(con, "SELECT * FROM runs WHERE id = ?", [rid], ("reasons", "goal"))[0]
            iterations = _fetch(
                con,
                "SELECT * FROM iterations WHERE run_id = ? ORDER BY iteration",
                [rid],
                ("plan", "planner_decision", "decision", "estimate"),
            )
            reports = _fetch(  # the run's eval.report events: its own and those a fork reused
                con,
                """SELECT iteration, payload ->> 'checkpoint_id' AS checkpoint_id, payload ->> 'tier' AS tier,
                          json_extract(payload, '$.metrics')::VARCHAR AS metrics
                   FROM events WHERE run_id = ? AND kind = 'eval.report' ORDER BY seq""",
                [rid],
                ("metrics",),
            )
            checkpoints = _fetch(
                con,
                """SELECT id, iteration, stage, path, base_model, method, kind, dataset_id, parent
                   FROM checkpoints WHERE run_id = ? ORDER BY iteration, id""",
                [rid],
            )
        by_iteration = {it["iteration"]: it for it in iterations}
        for it in iterations:
            it.pop("run_id", None)
            it["scores"] = {}
        for report in reports:
            target = by_iteration.get(report["iteration"])
            if target is not None:
                target["scores"][report["tier"]] = {
                    "checkpoint_id": report["checkpoint_id"],
                    **(report["metrics"] or {}),
                }
        return {"run": row, "iterations": iterations, "checkpoints": checkpoints}

    def events(self, run_id: str, kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The run's events in ``seq`` order. Bulk payloads are summarised (``examples`` and
        ``verdicts`` give counts, ``eval.report`` its metrics): their rows live in their tables."""
        query = "SELECT id, seq, kind, iteration, stage, time, payload FROM events WHERE run_id = ?"
        params: list[Any] = [run_id]
        if kinds:
            query += " AND list_contains(?, kind)"
            params.append(list(kinds))
        return self._query(query + " ORDER BY seq, id", params, ("payload",))

    def rejections(self, run_id: str) -> list[dict[str, Any]]:
        """Every dropped example of the run: filter, rule, score, reason, prompt and source."""
        rows = self._query(
            """SELECT v.example_id, v.iteration, v.filter, v.rule, v.score, v.reason,
                      x.prompt, x.completion, x.category, x.generator, x.model, x.prompt_template, x.seed
               FROM verdicts v
               LEFT JOIN (SELECT DISTINCT ON (id) * FROM examples WHERE run_id = ? ORDER BY id, iteration) x
                 ON x.id = v.example_id
               WHERE v.run_id = ? AND NOT v.keep
               ORDER BY v.iteration, v.filter, v.example_id""",
            [run_id, run_id],
        )
        for row in rows:
            row["source"] = {k: row.pop(k) for k in ("generator", "model", "prompt_template", "seed")}
        return rows

    def metrics(self, run_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """The run's metrics as rows: iteration, stage, name, step, value, time."""
        query = "SELECT iteration, stage, name, step, value, time FROM metrics WHERE run_id = ?"
        params: list[Any] = [run_id]
        if name is not None:
            query += " AND name = ?"
            params.append(name)
        return self._query(query + " ORDER BY iteration, seq", params)

    def reviews(
        self, run_id: str | None = None, *, status: str | None = None, subject_kind: str | None = None
    ) -> list[dict[str, Any]]:
        """The review queue, oldest first: each ``review.item`` with its latest decision and
        ``status`` (``pending`` until a decision other than ``skip``, then ``decided``)."""
        query = """SELECT *, CASE WHEN action IS NULL OR action = 'skip' THEN 'pending' ELSE 'decided' END
                          AS status FROM reviews WHERE subject_kind IS NOT NULL"""
        params: list[Any] = []
        if run_id is not None:
            query += " AND run_id = ?"
            params.append(run_id)
        if status is not None:
            query += " AND (CASE WHEN action IS NULL OR action = 'skip' THEN 'pending' ELSE 'decided' END) = ?"
            params.append(status)
        if subject_kind is not None:
            query += " AND subject_kind = ?"
            params.append(subject_kind)
        return self._query(query + " ORDER BY created, item_id", params, ("payload", "scores", "reasons", "edited"))

    def channel(self, channel: str = "stable") -> list[dict[str, Any]]:
        """The versions on a channel, newest first."""
        return self._query(
            """SELECT channel, version, checkpoint_id, run_id, iteration, time FROM promotions
               WHERE channel = ? ORDER BY version DESC""",
            [channel],
        )

    # --- data and checkpoints -----------------------------------------------------------------

    def examples(self, dataset_id: str) -> list[dict[str, Any]]:
        """The members of a dataset with their source (generator, model, prompt template, seed)
        and, where the ``examples`` event was recorded, their text."""
        rows = self._query(
            """WITH members AS (SELECT * FROM dataset_examples WHERE dataset_id = ?)
               SELECT m.example_id AS id, x.prompt, x.completion, x.messages, m.category,
                      m.generator, m.model, m.prompt_template, m.seed
               FROM members m
               LEFT JOIN (SELECT DISTINCT ON (id) id, prompt, completion, messages FROM examples
                          WHERE id IN (SELECT example_id FROM members) ORDER BY id, iteration) x
                 ON x.id = m.example_id
               ORDER BY m.example_id""",
            [dataset_id],
            ("messages",),
        )
        for row in rows:
            row["source"] = {k: row.pop(k) for k in ("generator", "model", "prompt_template", "seed")}
        return rows

    def checkpoint(self, checkpoint_id: str) -> dict[str, Any] | None:
        """A checkpoint's record with its run and iteration; accepts a unique id prefix.

        :raises UserError: the prefix matches several checkpoints.
        """
        with connect(self.home, timeout_s=self.timeout_s) as con:
            cid = _resolve(con, "checkpoints", checkpoint_id, "checkpoint")
            if cid is None:
                return None
            row = _fetch(
                con,
                "SELECT record, run_id, iteration, stage FROM checkpoints WHERE id = ?",
                [cid],
                ("record",),
            )[0]
        return {
            "checkpoint": row["record"],
            "run_id": row["run_id"],
            "iteration": row["iteration"],
            "stage": row["stage"],
        }

    def eval_reports(self, checkpoint_id: str) -> list[dict[str, Any]]:
        """The latest EvalReport dict per tier for a checkpoint (canary, full, adversarial)."""
        with connect(self.home, timeout_s=self.timeout_s) as con:
            cid = _resolve(con, "checkpoints", checkpoint_id, "checkpoint") or checkpoint_id
            rows = _fetch(
                con,
                """SELECT r.tier, r.report FROM eval_reports r JOIN events e ON e.id = r.event_id
                   WHERE r.checkpoint_id = ? ORDER BY e.time, e.seq""",
                [cid],
                ("report",),
            )
        latest = {row["tier"]: row["report"] for row in rows}
        return [latest[t] for t in sorted(latest, key=lambda t: (_TIER_ORDER.get(t, 9), t))]

    # --- lineage ------------------------------------------------------------------------------

    def lineage(self, node_id: str) -> dict[str, Any]:
        """Ancestors and descendants of a checkpoint, dataset, example, run or promotion
        (``stable:v3``).

        Ancestors follow edges backwards (checkpoint <- dataset <- run, checkpoint <- base
        checkpoint, dataset <- the teacher checkpoint that ``generated`` or ``judged`` its
        examples <- the teacher's own dataset, ...; an example <- the checkpoint that wrote it); every dataset among the node and its ancestors comes with a summary
        of its examples' sources (generator, model, prompt template, count). Descendants follow
        edges forwards (dataset -> checkpoints -> promotions, run -> forks, ...).

        :raises UserError: no node has that id (or it is an ambiguous prefix).
        """
        with connect(self.home, timeout_s=self.timeout_s) as con:
            node_id, kind = _node(con, node_id)
            result: dict[str, Any] = {"id": node_id, "kind": kind}
            if kind == "example":
                origins = _fetch(
                    con,
                    """SELECT DISTINCT run_id, iteration, generator, model, prompt_template, seed
                       FROM examples WHERE id = ? ORDER BY run_id, iteration""",
                    [node_id],
                )
                result["origins"] = origins
                ancestors = [
                    {"id": o["run_id"], "kind": "run", "relation": "generated", "child": node_id, "depth": 1}
                    for o in origins
                ]
                for teacher in _teachers(con, node_id):  # a served checkpoint wrote it: its lineage too
                    ancestors.append(
                        {"id": teacher, "kind": "checkpoint", "relation": "generated", "child": node_id, "depth": 1}
                    )
                    ancestors += [{**a, "depth": a["depth"] + 1} for a in _walk(con, teacher, forward=False)]
                seeds = [
                    r["dataset_id"]
                    for r in _fetch(
                        con,
                        "SELECT DISTINCT dataset_id FROM dataset_examples WHERE example_id = ?",
                        [node_id],
                    )
                ]
                descendants = [
                    {"id": d, "kind": "dataset", "relation": "member_of", "parent": node_id, "depth": 1}
                    for d in seeds
                ]
                for d in seeds:
                    descendants += [{**x, "depth": x["depth"] + 1} for x in _walk(con, d, forward=True)]
            else:
                ancestors = _walk(con, node_id, forward=False)
                descendants = _walk(con, node_id, forward=True)
            result["ancestors"] = ancestors
            result["descendants"] = descendants
            datasets = [node_id] if kind == "dataset" else []
            datasets += [a["id"] for a in ancestors if a["kind"] == "dataset"]
            result["datasets"] = _datasets(con, datasets)
            checkpoints = [node_id] if kind == "checkpoint" else []
            checkpoints += [a["id"] for a in ancestors if a["kind"] == "checkpoint"]
            result["checkpoints"] = _checkpoints(con, checkpoints)
            promoted = [node_id] if kind == "checkpoint" else []
            promoted += [d["id"] for d in descendants if d["kind"] == "checkpoint"]
            result["promotions"] = (
                _fetch(
                    con,
                    """SELECT channel, version, checkpoint_id, run_id, time FROM promotions
                       WHERE list_contains(?, checkpoint_id) ORDER BY channel, version""",
                    [promoted],
                )
                if promoted
                else []
            )
            reviewed = [node_id, *promoted]
            result["reviews"] = _fetch(  # approvals of its promotion, decisions on an example
                con,
                """SELECT item_id, run_id, subject_kind, subject_id, action, reviewer, reason, decided
                   FROM reviews WHERE list_contains(?, subject_id) AND action IS NOT NULL ORDER BY decided""",
                [reviewed],
            )
            result["runs"] = sorted(
                {a["id"] for a in ancestors if a["kind"] == "run"} | ({node_id} if kind == "run" else set())
            )
        return result

    # --- what the kernel asks for: the run tree, ids of any kind, rows to export ---------------

    def run_tree(self) -> list[dict[str, Any]]:
        """Every run as a node of the tree of forks, oldest first: id, goal name, branch
        (``main`` when none), parent run and iteration, status, outcome, started, stable checkpoint."""
        return self._query(
            """SELECT id, goal_name, coalesce(branch, 'main') AS branch, parent_run, parent_iteration,
                      status, outcome, started, stable_checkpoint
               FROM runs ORDER BY started NULLS LAST, id"""
        )

    def resolve(
        self, node_id: str, kinds: Sequence[str] = ("run", "dataset", "checkpoint")
    ) -> tuple[str, str] | None:
        """``(kind, full id)`` of the first of ``kinds`` holding ``node_id`` exactly or as the
        prefix of exactly one id; ``None`` if none does.

        :raises UserError: the prefix matches several ids of one kind.
        """
        unknown = [k for k in kinds if k not in _KIND_TABLES]
        if unknown:
            raise UserError(f"unknown kind {unknown[0]!r}; expected one of {', '.join(_KIND_TABLES)}")
        with connect(self.home, timeout_s=self.timeout_s) as con:
            for kind in kinds:
                rows = con.execute(
                    f"SELECT id FROM {_KIND_TABLES[kind]} WHERE starts_with(id, ?) ORDER BY id = ? DESC, id LIMIT 2",
                    [node_id, node_id],
                ).fetchall()
                if rows and (rows[0][0] == node_id or len(rows) == 1):
                    return kind, rows[0][0]
                if rows:
                    raise UserError(
                        f"the id prefix {node_id!r} is ambiguous; give more characters", field="id"
                    )
        return None

    def rows_of(self, kind: str, node_id: str) -> dict[str, list[dict[str, Any]]]:
        """A run's rows of every history table, or a checkpoint's evaluation rows, table by
        table, as :meth:`sql` returns them (JSON columns as JSON text), in ``ORDER BY ALL`` order.

        :raises UserError: ``kind`` is neither ``run`` nor ``checkpoint``.
        """
        if kind == "run":
            tables = {t: "id" if t == "runs" else "run_id" for t in RUN_TABLES}
        elif kind == "checkpoint":
            tables = {t: "checkpoint_id" for t in CHECKPOINT_TABLES}
        else:
            raise UserError(f"rows_of() takes a run or a checkpoint, not a {kind!r}", field="kind")
        out: dict[str, list[dict[str, Any]]] = {}
        with connect(self.home, timeout_s=self.timeout_s) as con:
            for table, column in tables.items():
                cursor = con.execute(f"SELECT * FROM {table} WHERE {column} = ? ORDER BY ALL", [node_id])
                names = [d[0] for d in cursor.description]
                out[table] = [
                    {n: _jsonable(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()
                ]
        return out

    def dataset(self, dataset_id: str) -> dict[str, Any] | None:
        """A dataset's record (id, run, iteration, snapshot path as recorded, size, parents,
        stats), or ``None``."""
        rows = self._query(
            """SELECT id, run_id, iteration, path, n_examples, parents, stats
               FROM datasets WHERE id = ?""",
            [dataset_id],
            ("parents", "stats"),
        )
        return rows[0] if rows else None

    def checkpoints(self) -> list[dict[str, Any]]:
        """Every recorded checkpoint (id, path, kind, method, base model, run, iteration), the
        latest run and iteration first."""
        return self._query(
            """SELECT id, path, kind, method, base_model, run_id, iteration FROM checkpoints
               ORDER BY run_id DESC, iteration DESC"""
        )

    # --- SQL ----------------------------------------------------------------------------------

    def sql(
        self,
        query: str,
        *,
        timeout_s: float | None = SQL_TIMEOUT_S,
        max_rows: int | None = SQL_MAX_ROWS,
        memory_limit: str | None = SQL_MEMORY_LIMIT,
    ) -> list[dict[str, Any]]:
        """Run one read-only query (SELECT, WITH ... SELECT, VALUES, ...) over the tables.

        The query holds the registry's lock while it runs, so it is bounded: DuckDB interrupts
        it after ``timeout_s`` seconds, stops it past ``memory_limit`` (DuckDB's own setting,
        e.g. ``"1GB"``), and it runs wrapped in ``LIMIT max_rows + 1`` so that a huge result is
        never built. ``None`` (or 0) lifts a limit.

        :raises UserError: the text is not exactly one SELECT statement, does not parse, fails
            (a missing table, a type error; DuckDB's message is kept), or passes a limit.
        """
        import duckdb

        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error as error:
            raise UserError(f"the query does not parse: {_first_line(error)}", field="sql") from None
        if len(statements) != 1:
            raise UserError(
                f"give exactly one SELECT statement; the query holds {len(statements)} statements",
                field="sql",
            )
        statement_type = statements[0].type
        if statement_type != duckdb.StatementType.SELECT:
            raise UserError(
                f"the registry is read-only: only SELECT queries run here, not {statement_type.name}",
                field="sql",
            )
        text = _body(query)
        if max_rows:
            text = f"SELECT * FROM (\n{text}\n) AS forgemind_sql LIMIT {int(max_rows) + 1}"
        deadline = time.monotonic() + self.timeout_s  # one bounded wait for both connections
        with connect(self.home, timeout_s=self.timeout_s, deadline=deadline):
            pass  # ingest pending journal lines before the read-only connection opens
        with connect(self.home, timeout_s=self.timeout_s, read_only=True, deadline=deadline) as con:
            timer = threading.Timer(timeout_s, con.interrupt) if timeout_s else None
            try:
                con.execute("SET memory_limit = ?", [memory_limit]) if memory_limit else None
            except duckdb.Error as error:
                raise UserError(f"memory limit {memory_limit!r}: {_first_line(error)}", field="sql") from None
            try:
                if timer is not None:
                    timer.start()
                cursor = con.execute(text)
                names = [d[0] for d in cursor.description]
                values = cursor.fetchall()
            except duckdb.InterruptException:
                raise UserError(
                    f"the query ran for more than {timeout_s:g} s and was stopped: narrow it, or raise "
                    "the time limit (forge sql --timeout)",
                    field="sql",
                ) from None
            except duckdb.OutOfMemoryException:
                raise UserError(
                    f"the query needed more than {memory_limit} of memory and was stopped: narrow it, or "
                    "raise the limit (forge sql --memory-limit)",
                    field="sql",
                ) from None
            except duckdb.Error as error:
                raise UserError(f"the query failed: {_first_line(error)}", field="sql") from None
            finally:
                if timer is not None:
                    timer.cancel()
        if max_rows and len(values) > max_rows:
            raise UserError(
                f"the query returns more than {max_rows} rows: add a LIMIT, or raise the row cap "
                "(forge sql --max-rows)",
                field="sql",
            )
        return [{n: _jsonable(v) for n, v in zip(names, row, strict=True)} for row in values]


def _body(query: str) -> str:
    """One statement's text without its trailing semicolons and comments (found by DuckDB's own
    tokenizer, so a ``;`` inside a string or a comment is left alone), to run as a subquery."""
    import duckdb

    tokens = duckdb.tokenize(query)
    end = 0
    for i, (offset, kind) in enumerate(tokens):
        stop = tokens[i + 1][0] if i + 1 < len(tokens) else len(query)
        if kind != duckdb.token_type.comment and not query[offset:stop].lstrip().startswith(";"):
            end = stop
    return query[:end].rstrip()


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _resolve(con: Any, table: str, ident: str, what: str) -> str | None:
    """An exact id, or the one id starting with ``ident``; ``None`` if none matches."""
    if con.execute(f"SELECT 1 FROM {table} WHERE id = ?", [ident]).fetchone():
        return ident
    if not ident:
        return None
    matches = [
        r[0]
        for r in con.execute(f"SELECT id FROM {table} WHERE starts_with(id, ?) LIMIT 6", [ident]).fetchall()
    ]
    if len(matches) > 1:
        shown = ", ".join(matches[:5])
        raise UserError(
            f"the {what} id prefix {ident!r} is ambiguous: it matches {shown}; give more characters"
        )
    return matches[0] if matches else None


def _node(con: Any, ident: str) -> tuple[str, str]:
    for table, kind in (("checkpoints", "checkpoint"), ("datasets", "dataset"), ("runs", "run")):
        found = _resolve(con, table, ident, kind)
        if found is not None:
            return found, kind
    if (
        con.execute("SELECT 1 FROM examples WHERE id = ? LIMIT 1", [ident]).fetchone()
        or con.execute("SELECT 1 FROM dataset_examples WHERE example_id = ? LIMIT 1", [ident]).fetchone()
    ):
        return ident, "example"
    if con.execute(
        "SELECT 1 FROM lineage_edges WHERE dst = ? AND dst_kind = 'promotion'", [ident]
    ).fetchone():
        return ident, "promotion"
    raise UserError(f"no checkpoint, dataset, example, run or promotion has the id {ident!r}")


def _walk(con: Any, start: str, *, forward: bool) -> list[dict[str, Any]]:
    """Every node reachable from ``start`` along lineage edges (depth-limited against cycles)."""
    if forward:
        near, far, far_kind, link = "src", "dst", "dst_kind", "parent"
    else:
        near, far, far_kind, link = "dst", "src", "src_kind", "child"
    rows = _fetch(
        con,
        f"""WITH RECURSIVE walk(id, kind, relation, {link}, depth) AS (
                SELECT {far}, {far_kind}, relation, {near}, 1 FROM lineage_edges WHERE {near} = ?
                UNION
                SELECT e.{far}, e.{far_kind}, e.relation, e.{near}, w.depth + 1
                FROM lineage_edges e JOIN walk w ON e.{near} = w.id WHERE w.depth < 64
            )
            SELECT id, kind, relation, {link}, min(depth) AS depth FROM walk
            GROUP BY ALL ORDER BY depth, kind, id""",
        [start],
    )
    return rows


def _teachers(con: Any, example_id: str) -> list[str]:
    """The recorded checkpoints that generated ``example_id``: its ``source.model`` is a
    checkpoint id, or the name a checkpoint was served under to the run that made it."""
    rows = con.execute(
        """SELECT c.id FROM examples e JOIN checkpoints c ON c.id = e.model WHERE e.id = ?
           UNION
           SELECT s.checkpoint_id FROM examples e JOIN served_models s
             ON s.run_id = e.run_id AND s.served_model = e.model AND s.pillar = 'generators'
           WHERE e.id = ?
           ORDER BY 1""",
        [example_id, example_id],
    ).fetchall()
    return [r[0] for r in rows]


def _datasets(con: Any, ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = _fetch(
        con,
        """SELECT id, run_id, iteration, path, n_examples, parents, stats, members_loaded
           FROM datasets WHERE list_contains(?, id) ORDER BY id""",
        [ids],
        ("parents", "stats"),
    )
    sources = _fetch(
        con,
        """SELECT dataset_id, generator, model, prompt_template, count(*) AS examples
           FROM dataset_examples WHERE dataset_id IN (SELECT unnest(?::VARCHAR[]))
           GROUP BY ALL ORDER BY dataset_id, examples DESC, generator, model, prompt_template""",
        [ids],
    )
    by_id: dict[str, list[dict[str, Any]]] = {}
    for s in sources:
        by_id.setdefault(s.pop("dataset_id"), []).append(s)
    for row in rows:
        row["sources"] = by_id.get(row["id"], [])
    return rows


def _checkpoints(con: Any, ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = _fetch(
        con,
        """SELECT id, run_id, iteration, stage, path, base_model, method, kind, dataset_id, parent,
                  coalesce(json_extract_string(manifest, '$.license'),
                           json_extract_string(manifest, '$.base_license')) AS license,
                  coalesce(json_extract_string(manifest, '$.source_file'),
                           json_extract_string(manifest, '$.base_source_file')) AS source_file
           FROM checkpoints WHERE list_contains(?, id) ORDER BY iteration, id""",
        [ids],
    )
    # A pretrained base (and every model made from it) names its licence and source file; a base
    # built here has neither, and its rows keep their old shape.
    return [{k: v for k, v in row.items() if v is not None or k not in ("license", "source_file")} for row in rows]
