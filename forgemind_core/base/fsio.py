"""Crash-safe file I/O, written once: every JSON file the kernel writes goes through here.

- :func:`write_json` / :func:`write_text`: durable and atomic — written to a temporary file
  beside the target, flushed, fsynced, then renamed over it, so a reader sees the old file or the
  new one, never half of one, and a power cut after the call returns loses nothing.
- :func:`read_json`: ``None`` for a missing file; a corrupt one raises unless ``tolerant``.
- :func:`append_jsonl` / :func:`read_jsonl`: append-only JSONL; a reader stops at a torn last
  line (a crash mid-append) and, with ``repair``, cuts it off so the next append starts clean.
- :func:`link_or_copy`: copy a file into another run's folder atomically (a copy, never a hard
  link: the parent's files stay the parent's alone).

Secrets are redacted on the way out (:func:`forgemind_core.base.logs.redact`): no record stores
an API key's value or a URL's ``user:pass@``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from forgemind_core.base.logs import redact

__all__ = ["append_jsonl", "dumps_line", "link_or_copy", "read_json", "read_jsonl", "write_json", "write_text"]


def _tmp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` durably and atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON (secrets redacted, keys sorted) durably and atomically."""
    write_text(path, json.dumps(redact(data), indent=1, sort_keys=True, default=str, ensure_ascii=False))


def read_json(path: Path, *, tolerant: bool = False) -> Any:
    """The JSON in ``path``; ``None`` when there is no such file (or, when ``tolerant``, when it
    cannot be read or parsed: for files another process may be replacing or a user may have
    edited, where "no answer" is the right answer)."""
    path = Path(path)
    if not tolerant:
        if not path.is_file():
            return None
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def dumps_line(record: Any) -> str:
    """One JSONL line (keys sorted, newline included)."""
    return json.dumps(record, sort_keys=True, default=str, ensure_ascii=False) + "\n"


def append_jsonl(path: Path | IO[str], records: Iterable[Any]) -> None:
    """Append ``records`` as JSON lines and fsync before returning (to a path, or an open file)."""
    if isinstance(path, (str, Path)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as out:
            append_jsonl(out, records)
        return
    for record in records:
        path.write(dumps_line(record))
    path.flush()
    os.fsync(path.fileno())


def read_jsonl(path: Path, *, repair: bool = False) -> list[Any]:
    """The complete lines of ``path`` parsed, in order (``[]`` when missing). Reading stops at the
    first line that is torn (no newline) or not JSON — what a crash mid-append leaves; with
    ``repair`` the file is cut back to the last good line, so an append continues it cleanly."""
    path = Path(path)
    if not path.is_file():
        return []
    records: list[Any] = []
    good = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                records.append(json.loads(raw))
            except ValueError:
                break
            good += len(raw)
    if repair and good != path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return records


def link_or_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically (a copy, not a hard link: the source stays its owner's)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(dst)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
