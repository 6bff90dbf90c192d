"""The registry's tables and their forward migrations.

The schema version lives in the ``meta`` table. :data:`MIGRATIONS` maps each version to the SQL
steps that bring a database from the previous version to it; opening a database applies every
missing step in one transaction, so a file written by an older plugin is upgraded in place and
never half-upgraded. Steps are only ever appended: a released step is never edited.

JSON columns are ``VARCHAR`` holding JSON text (DuckDB's ``json_*`` functions read them).
"""

from __future__ import annotations

from typing import Any

from forgemind_hookspecs import PluginError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

_V1: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    # How far each journal file has been ingested; updated in the same transaction as the rows.
    "CREATE TABLE journal_offsets (file VARCHAR PRIMARY KEY, byte_offset BIGINT NOT NULL)",
    """CREATE TABLE runs (
        id VARCHAR PRIMARY KEY, goal_name VARCHAR, task VARCHAR, goal_file VARCHAR,
        parent_run VARCHAR, parent_iteration INTEGER, branch VARCHAR, forgemind_version VARCHAR,
        status VARCHAR, started DOUBLE, finished DOUBLE, outcome VARCHAR, reasons VARCHAR,
        stable_checkpoint VARCHAR, goal VARCHAR)""",
    """CREATE TABLE iterations (
        run_id VARCHAR, iteration INTEGER, plan VARCHAR, planner_decision VARCHAR,
        decision VARCHAR, dataset_id VARCHAR, checkpoint_id VARCHAR, estimate VARCHAR,
        PRIMARY KEY (run_id, iteration))""",
    """CREATE TABLE events (
        id VARCHAR PRIMARY KEY, run_id VARCHAR, seq BIGINT, kind VARCHAR, iteration INTEGER,
        stage VARCHAR, time DOUBLE, payload VARCHAR)""",
    """CREATE TABLE examples (
        id VARCHAR, run_id VARCHAR, iteration INTEGER, event_id VARCHAR, prompt VARCHAR,
        completion VARCHAR, messages VARCHAR, category VARCHAR, generator VARCHAR, model VARCHAR,
        prompt_template VARCHAR, seed BIGINT, tokens BIGINT, cost_usd DOUBLE, meta VARCHAR)""",
    """CREATE TABLE verdicts (
        run_id VARCHAR, iteration INTEGER, event_id VARCHAR, example_id VARCHAR, filter VARCHAR,
        keep BOOLEAN, rule VARCHAR, score DOUBLE, reason VARCHAR)""",
    """CREATE TABLE datasets (
        id VARCHAR PRIMARY KEY, run_id VARCHAR, iteration INTEGER, path VARCHAR,
        n_examples BIGINT, parents VARCHAR, stats VARCHAR, members_loaded BOOLEAN)""",
    """CREATE TABLE dataset_examples (
        dataset_id VARCHAR, example_id VARCHAR, category VARCHAR, generator VARCHAR,
        model VARCHAR, prompt_template VARCHAR, seed BIGINT)""",
    """CREATE TABLE checkpoints (
        id VARCHAR PRIMARY KEY, run_id VARCHAR, iteration INTEGER, stage VARCHAR, path VARCHAR,
        base_model VARCHAR, method VARCHAR, kind VARCHAR, dataset_id VARCHAR, parent VARCHAR,
        manifest VARCHAR, record VARCHAR)""",
    """CREATE TABLE eval_reports (
        run_id VARCHAR, iteration INTEGER, event_id VARCHAR, checkpoint_id VARCHAR, tier VARCHAR,
        metrics VARCHAR, report VARCHAR)""",
    """CREATE TABLE eval_results (
        run_id VARCHAR, iteration INTEGER, event_id VARCHAR, checkpoint_id VARCHAR, tier VARCHAR,
        case_id VARCHAR, output VARCHAR, score DOUBLE, passed BOOLEAN, scorer VARCHAR,
        category VARCHAR, expected VARCHAR, details VARCHAR)""",
    """CREATE TABLE metrics (
        run_id VARCHAR, iteration INTEGER, stage VARCHAR, event_id VARCHAR, seq BIGINT,
        name VARCHAR, step BIGINT, value DOUBLE, time DOUBLE)""",
    """CREATE TABLE decisions (
        run_id VARCHAR, iteration INTEGER, event_id VARCHAR, action VARCHAR, reasons VARCHAR,
        checkpoint_id VARCHAR, next_plan VARCHAR, time DOUBLE)""",
    """CREATE TABLE promotions (
        channel VARCHAR, version INTEGER, checkpoint_id VARCHAR, run_id VARCHAR, iteration INTEGER,
        event_id VARCHAR, time DOUBLE, PRIMARY KEY (channel, version), UNIQUE (channel, checkpoint_id))""",
    """CREATE TABLE reviews (
        item_id VARCHAR PRIMARY KEY, run_id VARCHAR, iteration INTEGER, subject_kind VARCHAR,
        subject_id VARCHAR, payload VARCHAR, scores VARCHAR, reasons VARCHAR, created DOUBLE,
        action VARCHAR, reviewer VARCHAR, reason VARCHAR, edited VARCHAR, decided DOUBLE)""",
    """CREATE TABLE lineage_edges (
        src VARCHAR, src_kind VARCHAR, dst VARCHAR, dst_kind VARCHAR, relation VARCHAR,
        run_id VARCHAR, UNIQUE (src, dst, relation))""",
)

_V2: tuple[str, ...] = (
    # A run's spend so far (from ``cost`` events), so ``forge runs`` can show it without a scan.
    "ALTER TABLE runs ADD COLUMN cost_usd DOUBLE DEFAULT 0.0",
    # Every edge including example -> dataset membership, which lives in dataset_examples rather
    # than being copied (a million-example dataset would double the store).
    """CREATE VIEW all_edges AS
        SELECT src, src_kind, dst, dst_kind, relation, run_id FROM lineage_edges
        UNION ALL
        SELECT example_id, 'example', dataset_id, 'dataset', 'member_of', NULL FROM dataset_examples""",
)

_V3: tuple[str, ...] = (
    # A recorded checkpoint served to a run (``server.used``): which client backend of which
    # pillar used it, under which served model name. The teacher edges (checkpoint -> run,
    # checkpoint -> dataset) are in lineage_edges; this table says which stage used it.
    """CREATE TABLE served_models (
        run_id VARCHAR, key VARCHAR, checkpoint_id VARCHAR, served_model VARCHAR, pillar VARCHAR,
        client VARCHAR, field VARCHAR, ref VARCHAR, checkpoint_run VARCHAR, goal VARCHAR, version INTEGER,
        event_id VARCHAR, UNIQUE (run_id, key, pillar, client))""",
)

#: version -> the SQL steps that reach it from the version before. Append only.
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _V1, 2: _V2, 3: _V3}

#: The version this plugin writes.
SCHEMA_VERSION: int = max(MIGRATIONS)


def schema_version(con: Any) -> int:
    """The schema version of an open database (0 for an empty one)."""
    import duckdb

    try:
        # Asking ``meta`` directly costs ~1 ms; information_schema costs ~10 ms on every open.
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.CatalogException:
        return 0
    return int(row[0]) if row else 0


def migrate(con: Any, target: int = SCHEMA_VERSION) -> int:
    """Bring ``con``'s database up to ``target`` in one transaction; return the version reached.

    :raises PluginError: the file was written by a newer plugin (a higher version than known).
    """
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        raise PluginError(
            f"the registry has schema version {current}, newer than this plugin's {SCHEMA_VERSION}; "
            "upgrade forgemind-duckdb-registry"
        )
    if current >= target:
        return current
    con.execute("BEGIN TRANSACTION")
    try:
        for version in range(current + 1, target + 1):
            for step in MIGRATIONS[version]:
                con.execute(step)
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
            [str(target)],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return target
