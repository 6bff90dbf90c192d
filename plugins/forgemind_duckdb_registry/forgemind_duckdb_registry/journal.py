"""The per-run journal: the registry's source of truth.

DuckDB lets one process at a time open its file, so a writer cannot count on getting the
database when an event happens. Instead every event is first appended as one JSON line to
``<home>/registry/journal/<run>.jsonl`` and fsynced; only then does the hook return. The
database is a queryable index built from these files (see :mod:`.store`).

Invariants that make this crash-safe:

- a line is complete only when it ends with ``\\n``; readers never consume a line without it;
- appenders hold an exclusive ``flock`` on the file, readers a shared one, so a reader never
  sees half of a write;
- a process killed mid-append leaves a partial last line; the next append cuts it off (that
  event's hook call never returned, so the kernel delivers it again).
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from forgemind_hookspecs import Event, content_hash, to_dict

__all__ = [
    "Appended",
    "append_events",
    "event_line",
    "journal_dir",
    "journal_files",
    "journal_path",
    "read_complete_lines",
]

_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def journal_dir(home: str | os.PathLike[str]) -> Path:
    """``<home>/registry/journal``: where the journals live."""
    return Path(home) / "registry" / "journal"


def journal_path(home: str | os.PathLike[str], run_id: str) -> Path:
    """The journal file of ``run_id`` (a hash stands in for ids that are not file-name safe)."""
    name = run_id if _SAFE.match(run_id) and not run_id.startswith(".") else f"run-{content_hash(run_id)}"
    return journal_dir(home) / f"{name}.jsonl"


class _Lossy(Exception):
    """A payload value needed converting, so the parsed line would differ from the dict."""


def _default(value: Any) -> Any:
    # Payloads should already be plain data; a record slipped in is unstructured rather than lost.
    if attrs.has(type(value)):
        return to_dict(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


def _strict(value: Any) -> Any:
    raise _Lossy


def _event_dict(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "run_id": event.run_id,
        "kind": event.kind,
        "iteration": event.iteration,
        "stage": event.stage,
        "seq": event.seq,
        "time": event.time,
        "payload": event.payload,
    }


def event_line(event: Event) -> bytes:
    """One event as a complete journal line (UTF-8 JSON + ``\\n``)."""
    return _encode(_event_dict(event), _default)


def _encode(data: dict[str, Any], default: Any) -> bytes:
    # orjson: encoding the journal was the largest single cost of a write (about 40% with the
    # standard library's encoder). Its output is plain JSON; a NaN becomes null.
    import orjson

    return orjson.dumps(data, default=default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)


@attrs.frozen
class Appended:
    """What one append wrote: ``path`` bytes ``start``..``end`` of the file ``identity``
    (device, inode), and the events as the ingester would parse them back, or ``None`` when
    parsing the line would not give the same dicts (a payload value needed converting)."""

    path: Path
    identity: tuple[int, int]
    start: int
    end: int
    events: list[dict[str, Any]] | None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_events(home: str | os.PathLike[str], events: Sequence[Event]) -> list[Appended]:
    """Append ``events`` to their runs' journals and fsync them; say what was written where.

    When this returns, the events survive a crash of this process or of the machine.
    """
    by_run: dict[str, list[Event]] = {}
    for event in events:
        by_run.setdefault(event.run_id, []).append(event)
    folder = journal_dir(home)
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _fsync_dir(folder.parent)
    appended: list[Appended] = []
    for run_id, run_events in by_run.items():
        dicts: list[dict[str, Any]] | None = [_event_dict(e) for e in run_events]
        try:
            data = b"".join(_encode(d, _strict) for d in dicts or ())
        except (_Lossy, TypeError):  # orjson wraps what `default` raises in a TypeError
            dicts = None
            data = b"".join(event_line(e) for e in run_events)
        path = journal_path(home, run_id)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _cut_partial_tail(fd)
            start = os.lseek(fd, 0, os.SEEK_END)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            stat = os.fstat(fd)
        finally:
            os.close(fd)  # closing releases the flock
        if created:
            _fsync_dir(folder)
        appended.append(Appended(path, (stat.st_dev, stat.st_ino), start, start + len(data), dicts))
    return appended


def _cut_partial_tail(fd: int) -> None:
    """Drop an incomplete last line left by a process killed mid-append."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return
    if os.pread(fd, 1, size - 1) == b"\n":
        return
    # Search backwards for the last newline, in blocks.
    end = size
    keep = 0
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        index = block.rfind(b"\n")
        if index >= 0:
            keep = start + index + 1
            break
        end = start
    os.ftruncate(fd, keep)
    os.fsync(fd)


def read_complete_lines(path: Path, offset: int) -> tuple[list[bytes], int]:
    """The complete lines of ``path`` after byte ``offset`` and the offset just past them.

    A file shorter than ``offset`` was replaced (e.g. deleted and written again): it is read from
    the start, and the event-id check downstream drops what was ingested before.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        size = os.fstat(fd).st_size
        if size < offset:
            offset = 0
        if size == offset:
            return [], offset
        chunks: list[bytes] = []
        position = offset
        while position < size:
            chunk = os.pread(fd, min(size - position, 1 << 24), position)
            if not chunk:
                break
            chunks.append(chunk)
            position += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    last = data.rfind(b"\n")
    if last < 0:
        return [], offset
    complete = data[: last + 1]
    return complete.splitlines(), offset + last + 1


def journal_files(home: str | os.PathLike[str]) -> Iterable[Path]:
    """Every journal file in ``home``, sorted by name."""
    folder = journal_dir(home)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.jsonl"))
