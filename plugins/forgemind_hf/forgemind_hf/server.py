"""The ``transformers`` server backend: a checkpoint folder served on a small OpenAI-compatible API
by the hf runner, for models llama.cpp cannot take (``forge serve`` falls back to it when the GGUF
export refuses an architecture; docs/servers.md).

The server is a child process (:mod:`forgemind_hf.serve_http`) that never outlives the process
that started it: its own process group, a stdin pipe whose end-of-file ends it, and on Linux
``PR_SET_PDEATHSIG`` when started from the main thread. Heavy imports live in the child.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, ClassVar

from attrs import frozen
from forgemind_hookspecs import Endpoint, ForgeError, StageContext, hookimpl

__all__ = ["PARENT_ENV", "TransformersServer", "forgemind_register_servers"]

HOST = "127.0.0.1"
#: Set to the starting process's pid when it started the child from its main thread.
PARENT_ENV = "FORGEMIND_SERVER_PARENT"
#: The key clients must send reaches the child through its environment, not its command line.
API_KEY_ENV = "FORGEMIND_HF_SERVER_KEY"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _client_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return HOST
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class TransformersServer:
    """Serves a checkpoint folder (full or LoRA) with transformers on an OpenAI-compatible API
    (``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``; no streaming), one request
    at a time."""

    name: ClassVar[str] = "transformers"

    @frozen
    class Options:
        """:ivar host: the address to bind.
        :ivar port: ``None`` or ``0``: any free port.
        :ivar api_key: the key clients must send (``Authorization: Bearer KEY``); ``None``: any.
        :ivar alias: the served model id; ``None``: the folder's name.
        :ivar startup_timeout_s: how long to wait for ``/v1/models`` (the model loads first).
        :ivar stop_timeout_s: how long a stop waits before killing the process group.
        :ivar bf16: the hf runner's ``bf16`` (``auto``: where the device supports it).
        """

        host: str = HOST
        port: int | None = None
        api_key: str | None = None
        alias: str | None = None
        startup_timeout_s: float = 300.0
        stop_timeout_s: float = 10.0
        bf16: str | bool = "auto"

    def __init__(self, options: TransformersServer.Options | None = None) -> None:
        self.options = options or self.Options()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.endpoint: Endpoint | None = None

    def start(self, model: str, ctx: StageContext) -> Endpoint:
        if self._proc is not None and self.endpoint is not None:
            return self.endpoint
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ForgeError(f"the transformers server serves a checkpoint folder; {model} is none")
        o = self.options
        alias = o.alias or folder.name
        port = o.port or _free_port(o.host)
        log_path = Path(ctx.work_dir) / "server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
        if o.api_key:
            env[API_KEY_ENV] = o.api_key
        if threading.current_thread() is threading.main_thread():
            env[PARENT_ENV] = str(os.getpid())
        self._log = open(log_path, "ab")
        self._log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting on port {port}\n".encode())
        self._log.flush()
        cmd = [sys.executable, "-m", "forgemind_hf.serve_http", "--model", str(folder.resolve()), "--alias", alias,
               "--host", o.host, "--port", str(port), "--bf16", json.dumps(o.bf16)]
        started = time.monotonic()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT,
                                      env=env, process_group=0)
        base_url = f"http://{_client_host(o.host)}:{port}/v1"
        try:
            self._wait_ready(base_url, alias, log_path, started)
        except BaseException:
            self.stop()
            raise
        ctx.log.info("transformers_server.ready", model=alias, base_url=base_url, pid=self._proc.pid)
        self.endpoint = Endpoint(base_url=base_url, model=alias, api_key=o.api_key, pid=self._proc.pid,
                                 log=str(log_path))
        return self.endpoint

    def stop(self) -> None:
        proc, self._proc, self.endpoint = self._proc, None, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(timeout=self.options.stop_timeout_s)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.options.stop_timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_ready(self, base_url: str, alias: str, log_path: Path, started: float) -> None:
        proc = self._proc
        assert proc is not None
        headers = {"Authorization": f"Bearer {self.options.api_key}"} if self.options.api_key else {}
        while True:
            code = proc.poll()
            if code is not None:
                tail = " | ".join(line.strip() for line in log_path.read_text(errors="replace").splitlines()[-3:])
                raise ForgeError(f"the transformers server exited with code {code} while starting: "
                                 f"{tail or 'no output'} (log: {log_path})")
            try:
                with _OPENER.open(urllib.request.Request(f"{base_url}/models", headers=headers), timeout=2) as r:
                    if any(m.get("id") == alias for m in json.loads(r.read()).get("data", [])):
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() - started > self.options.startup_timeout_s:
                raise ForgeError(f"the transformers server did not answer within {self.options.startup_timeout_s:g} s "
                                 f"(startup_timeout_s); log: {log_path}")
            time.sleep(0.2)


@hookimpl
def forgemind_register_servers(register: Callable[[type], None]) -> None:
    """Offer the ``transformers`` server (``forge serve``'s fallback for what llama.cpp cannot take)."""
    register(TransformersServer)
