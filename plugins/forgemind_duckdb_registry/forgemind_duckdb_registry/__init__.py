"""forgemind-duckdb-registry: ForgeMind's default Lorekeeper (lineage store).

Two hooks:

- ``forgemind_record(events, home)`` appends the events to a per-run journal and fsyncs it
  (the source of truth), then, at most once a second, ingests the journals into
  ``<home>/registry/registry.duckdb`` through a short-lived connection. If another process
  holds the database past the bounded wait, the events stay safely in the journal and the
  next reader or writer ingests them.
- ``forgemind_registry(home)`` returns a :class:`DuckDBRegistry` answering queries.

Importing this package is cheap: duckdb and pyarrow are imported inside the functions that
use them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from forgemind_hookspecs import Event, RegistryBusy, hookimpl

from .journal import append_events
from .registry import CHECKPOINT_TABLES, RUN_TABLES, DuckDBRegistry
from .schema import MIGRATIONS, SCHEMA_VERSION
from .store import DEFAULT_TIMEOUT_S, _log, connect, flush, remember

#: Seconds between two ingests by one writing process (``FORGEMIND_REGISTRY_INGEST_INTERVAL``).
DEFAULT_INGEST_INTERVAL_S = 1.0

__all__ = [
    "CHECKPOINT_TABLES",
    "DEFAULT_INGEST_INTERVAL_S",
    "DEFAULT_TIMEOUT_S",
    "MIGRATIONS",
    "RUN_TABLES",
    "SCHEMA_VERSION",
    "DuckDBRegistry",
    "flush",
    "forgemind_record",
    "forgemind_registry",
]


@hookimpl
def forgemind_record(events: Sequence[Event], home: str) -> None:
    """Journal ``events`` durably, then ingest the journals into DuckDB when it is due.

    Opening DuckDB costs tens of milliseconds, so a process ingests at most once per
    ``FORGEMIND_REGISTRY_INGEST_INTERVAL`` seconds (default 1) and always on ``run.finished``;
    in between, events wait in the fsynced journal, which every reader ingests before it
    answers, so no query ever misses them.
    """
    if not events:
        return
    remember(append_events(home, events))
    key = str(Path(home).resolve())
    now = time.monotonic()
    due = now - _LAST_INGEST.get(key, -1e9) >= _ingest_interval()
    if not due and not any(e.kind in _INGEST_NOW for e in events):
        return
    try:
        with connect(home):
            pass  # opening read-write ingests every pending journal line
        _LAST_INGEST[key] = time.monotonic()
    except RegistryBusy as error:
        # Not lost: the journal holds them and whoever opens the registry next ingests them.
        _log().warning("registry.ingest_deferred", reason=str(error), events=len(events))


#: Event kinds after which a writer ingests at once (a finished run is then complete in DuckDB).
_INGEST_NOW = frozenset({"run.finished"})
_LAST_INGEST: dict[str, float] = {}


def _ingest_interval() -> float:
    raw = os.environ.get("FORGEMIND_REGISTRY_INGEST_INTERVAL", "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_INGEST_INTERVAL_S
    except ValueError:
        return DEFAULT_INGEST_INTERVAL_S


@hookimpl
def forgemind_registry(home: str | os.PathLike[str]) -> DuckDBRegistry:
    """The DuckDB registry of ``home``."""
    return DuckDBRegistry(home)
