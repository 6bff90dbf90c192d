"""Background jobs: long work (a run, a pre-training, a fine-tuning) that outlives the page or the
shell that started it, with its progress kept on disk.

A job lives in ``<home>/jobs/<job_id>/``:

| file | what |
|---|---|
| ``job.json`` | ``id``, ``kind``, ``params``, ``status`` (``queued``, ``running``, ``finished``, ``failed``), ``pid``, ``created``, ``started``, ``ended``, ``result`` (JSON), ``error`` (one sentence) |
| ``events.jsonl`` | one line per event: ``{"time", "kind", "payload"}`` (metrics such as ``train.loss``; a run's events) |
| ``progress.json`` | the current progress bar: ``description``, ``completed``, ``total``, ``fields`` |
| ``log.txt`` | the traceback of an unexpected failure; a detached job's stdout and stderr |

Whoever wants to follow a job reads these files (``Forge.job``), so a browser reload or a second
shell re-attaches by reading state, never by holding the process that runs it. A job whose status
says ``running`` but whose process is gone reads as ``interrupted`` (a run continues with
``forge resume RUN``; a training re-submitted with the same data and output resumes from its last
checkpoint).

Jobs run in a thread of the calling process (``Forge.submit``; what the dashboard does) or in a
detached process (``Forge.submit(..., detach=True)``; what ``forge jobs submit`` does), which runs
``python -m forgemind_core.brain.jobs HOME JOB_ID [MODULE:CLASS]``. The runner is handed the kernel
it runs on (:func:`run_job`), or, across the process boundary, the kernel's class by name (the
caller's: ``forgemind_core.api:Forge``), so this room never imports the API above it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgemind_hookspecs import Event, ForgeError, UserError, to_dict

from forgemind_core.base.fsio import read_json, write_text
from forgemind_core.base.logs import configure_process_logging
from forgemind_core.base.protocols import KernelHandle

__all__ = ["JOB_KINDS", "job_dir", "list_jobs", "read_job", "run_job", "submit"]

#: What a job can do, and the Forge method each calls (with the job's params as keyword arguments).
JOB_KINDS: dict[str, str] = {
    "run": "run",
    "resume": "resume",
    "pretrain": "pretrain",
    "train": "train",
    "estimate": "estimate",
    "evaluate": "evaluate",
    "compare": "compare",
    "fork": "fork",
}

_LOCK = threading.Lock()

#: The kernel class a detached job builds when its command line names none.
DEFAULT_KERNEL = "forgemind_core:Forge"


def job_dir(home: str | os.PathLike[str], job_id: str) -> Path:
    """``<home>/jobs/<job_id>``.

    :raises UserError: ``job_id`` is not a plain folder name.
    """
    if not job_id or "/" in job_id or job_id.startswith(".") or "\\" in job_id:
        raise UserError(f"{job_id!r} is not a job id", field="job")
    return Path(home) / "jobs" / job_id


def _write_json(path: Path, data: Any) -> None:
    # The job's own layout (insertion order, nothing redacted: a detached job reads its params
    # back from job.json), written durably and atomically by base.fsio.
    write_text(path, json.dumps(data, indent=1, default=str, ensure_ascii=False))


def _update(folder: Path, **fields: Any) -> dict[str, Any]:
    with _LOCK:
        data = read_json(folder / "job.json", tolerant=True) or {}
        data.update(fields)
        _write_json(folder / "job.json", data)
        return data


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (a detached child not yet reaped) counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def submit(forge: KernelHandle, kind: str, params: Mapping[str, Any] | None = None, *, detach: bool = False,
           job_id: str | None = None) -> str:
    """Start a job of ``kind`` (see :data:`JOB_KINDS`) with ``params``; return its id at once.

    In a thread of this process on ``forge`` itself, or (``detach``) in a process of its own that
    builds a kernel of ``forge``'s class on the same home.
    """
    if kind not in JOB_KINDS:
        raise UserError(f"unknown job kind {kind!r}; expected one of {', '.join(JOB_KINDS)}", field="kind")
    params = dict(params or {})
    try:
        json.dumps(params)
    except TypeError:
        raise UserError("job parameters must be plain JSON values (text, numbers, lists, objects)",
                        field="params") from None
    job_id = job_id or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    if kind == "run" and "run_id" not in params:
        params["run_id"] = job_id
    if kind == "fork" and "new_run_id" not in params:
        params["new_run_id"] = job_id
    folder = job_dir(forge.home, job_id)
    folder.mkdir(parents=True, exist_ok=False)
    _write_json(folder / "job.json", {"id": job_id, "kind": kind, "params": params, "status": "queued",
                                      "pid": None, "created": time.time(), "started": None, "ended": None,
                                      "result": None, "error": None})
    if detach:
        log = (folder / "log.txt").open("ab")
        kernel = f"{type(forge).__module__}:{type(forge).__qualname__}"
        process = subprocess.Popen(
            [sys.executable, "-m", "forgemind_core.brain.jobs", str(Path(forge.home).resolve()), job_id, kernel],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        _update(folder, pid=process.pid)
    else:
        _update(folder, pid=os.getpid())
        threading.Thread(target=run_job, args=(forge, job_id), name=f"forgemind-job-{job_id}", daemon=True).start()
    return job_id


class _Progress:
    """``ctx.progress`` that keeps the current bar in ``progress.json`` (written at most 4x a second)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, description: str, total: float | None = None) -> Any:
        folder = self.folder
        state: dict[str, Any] = {"description": description, "completed": 0.0, "total": total, "fields": {}}
        last = [0.0]

        def flush(force: bool = False) -> None:
            now = time.monotonic()
            if force or now - last[0] > 0.25:
                last[0] = now
                with contextlib.suppress(OSError):
                    _write_json(folder / "progress.json", state)

        flush(True)

        class Task:
            def advance(self, n: float = 1, **fields: Any) -> None:
                state["completed"] += n
                state["fields"].update({k: v for k, v in fields.items() if isinstance(v, (int, float, str))})
                flush()

            def close(self) -> None:
                flush(True)

        return Task()


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except TypeError:
        return to_dict(value)


def run_job(forge: KernelHandle, job_id: str) -> dict[str, Any]:
    """Run a queued job to its end in this thread, on ``forge`` (the kernel whose method of the
    job's kind it calls); its state goes to its folder. Returns job.json."""
    folder = job_dir(forge.home, job_id)
    job = read_json(folder / "job.json", tolerant=True)
    if job is None:
        raise UserError(f"no job {job_id!r} in {forge.home}", field="job")
    _update(folder, status="running", started=time.time(), pid=os.getpid())
    events = (folder / "events.jsonl").open("a", encoding="utf-8")
    lock = threading.Lock()

    def sink(kind: str, payload: Mapping[str, Any]) -> None:
        line = json.dumps({"time": time.time(), "kind": kind, "payload": payload}, default=str, ensure_ascii=False)
        with lock:
            events.write(line + "\n")
            events.flush()

    def on_event(event: Event) -> None:
        payload = dict(event.payload)
        if event.kind in ("examples", "verdicts"):  # bulk: the registry has them; keep the log light
            payload = {"count": len(payload.get(event.kind) or ())}
        elif event.kind == "eval.report":
            report = payload.get("report") or {}
            payload = {"tier": report.get("tier"), "metrics": report.get("metrics"),
                       "checkpoint_id": report.get("checkpoint_id")}
        sink(event.kind, {**payload, "iteration": event.iteration, "stage": event.stage})

    params = dict(job.get("params") or {})
    progress = _Progress(folder)
    try:
        kind = job["kind"]
        if kind in ("run", "resume"):
            target = params.pop("goal", None) if kind == "run" else params.pop("run_id", None)
            method = getattr(forge, JOB_KINDS[kind])
            result: Any = method(target, on_event=on_event, **params)
        elif kind == "fork":
            result = getattr(forge, JOB_KINDS[kind])(on_event=on_event, **params)
        elif kind in ("pretrain", "train"):
            result = getattr(forge, JOB_KINDS[kind])(on_event=sink, progress=progress, **params)
        else:
            result = getattr(forge, JOB_KINDS[kind])(progress=progress, **params)
        data = _update(folder, status="finished", ended=time.time(), result=_jsonable(to_dict(result))
                       if not isinstance(result, (dict, list)) else _jsonable(result))
    except ForgeError as error:
        data = _update(folder, status="failed", ended=time.time(), error=str(error))
    except BaseException as error:  # a job must always end with a status
        with (folder / "log.txt").open("a", encoding="utf-8") as log:
            log.write(traceback.format_exc())
        data = _update(folder, status="failed", ended=time.time(),
                       error=f"{type(error).__name__}: {error} (traceback in {folder / 'log.txt'})")
        if not isinstance(error, Exception):
            raise
    finally:
        events.close()
    return data


def read_job(home: str | os.PathLike[str], job_id: str, *, events: bool = True) -> dict[str, Any]:
    """A job's state: job.json plus ``progress`` and (with ``events``) every event line."""
    folder = job_dir(home, job_id)
    data: dict[str, Any] | None = read_json(folder / "job.json", tolerant=True)
    if data is None:
        raise UserError(f"no job {job_id!r} in {home}", field="job")
    if data.get("status") in ("queued", "running") and not _pid_alive(data.get("pid")):
        data["status"] = "interrupted"
        data["error"] = data.get("error") or "the process running this job is gone"
    data["progress"] = read_json(folder / "progress.json", tolerant=True)
    if events:
        rows = []
        with contextlib.suppress(OSError):
            for line in (folder / "events.jsonl").read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    rows.append(json.loads(line))
        data["events"] = rows
    log = folder / "log.txt"
    data["log"] = log.read_text(encoding="utf-8", errors="replace")[-20_000:] if log.is_file() else ""
    return data


def list_jobs(home: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every job of ``home``, newest first, without their events."""
    root = Path(home) / "jobs"
    if not root.is_dir():
        return []
    jobs = [read_job(home, p.name, events=False) for p in root.iterdir() if (p / "job.json").is_file()]
    return sorted(jobs, key=lambda j: j.get("created") or 0, reverse=True)


def _kernel_class(spec: str) -> Any:
    """The class ``module:Name`` names (what :func:`submit` passes a detached job)."""
    module, _, name = spec.partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


def _main(argv: list[str]) -> int:
    """``python -m forgemind_core.brain.jobs HOME JOB_ID [MODULE:CLASS]``: run a detached job on
    a kernel of that class (default :data:`DEFAULT_KERNEL`) built on ``HOME``."""
    home, job_id, *rest = argv
    configure_process_logging(os.environ.get("FORGEMIND_LOG_LEVEL", "warning"))
    data = run_job(_kernel_class(rest[0] if rest else DEFAULT_KERNEL)(home=home), job_id)
    return 0 if data.get("status") == "finished" else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
