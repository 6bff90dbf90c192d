"""forgemind-duckdb-registry: ForgeMind's default Lorekeeper (lineage store).

Two hooks:

- ``forgemind_record(events, home)`` appends the events to a per-run journal and fsyncs it
  (the source of truth), then ingests the journal into ``<home>/registry/registry.duckdb``
  through a short-lived connection. If another process holds the database past the bounded
  wait, the events stay safely in the journal and the next reader or writer ingests them.
- ``forgemind_registry(home)`` returns a :class:`DuckDBRegistry` answering queries.

Importing this package is cheap: duckdb and pyarrow are imported inside the functions that
use them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from forgemind_hookspecs import Event, RegistryBusy, hookimpl

from .journal import append_events
from .registry import DuckDBRegistry
from .schema import MIGRATIONS, SCHEMA_VERSION
from .store import DEFAULT_TIMEOUT_S, _log, connect, flush

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "DuckDBRegistry",
    "flush",
    "forgemind_record",
    "forgemind_registry",
]


@hookimpl
def forgemind_record(events: Sequence[Event], home: str) -> None:
    """Journal ``events`` durably, then ingest them into DuckDB (deferred if it stays busy)."""
    if not events:
        return
    append_events(home, events)
    try:
        with connect(home):
            pass  # opening read-write ingests every pending journal line
    except RegistryBusy as error:
        # Not lost: the journal holds them and whoever opens the registry next ingests them.
        _log().warning("registry.ingest_deferred", reason=str(error), events=len(events))


@hookimpl
def forgemind_registry(home: str | os.PathLike[str]) -> DuckDBRegistry:
    """The DuckDB registry of ``home``."""
    return DuckDBRegistry(home)
