"""forgemind-llamacpp: a GGUF served by llama.cpp's OpenAI-compatible server (docs/servers.md).

A goal asks for it with a ``server:`` key beside an OpenAI-compatible client backend::

    generate:
      - backend: openai
        model: smollm2-135m-instruct        # a catalogue name or a .gguf file
        server: {backend: llamacpp, n_ctx: 2048}

The kernel starts :class:`LlamaCppServer` the first time a stage needs it, hands the client the
server's ``base_url`` and model name, and stops it when the run ends. The server process writes
its log into the run folder and never outlives the process that started it (see
:mod:`forgemind_llamacpp._serve`).
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
from forgemind_hookspecs import ConfigError, Endpoint, ForgeError, StageContext, content_hash, hookimpl
from forgemind_hookspecs.models import find_shipped_model, shipped_model

from ._serve import PARENT_ENV

__all__ = ["LlamaCppServer", "resolve_model"]

HOST = "127.0.0.1"
#: Stable ports are drawn from this range (see ``port``); a taken one falls back to any free port.
PORT_RANGE = (20000, 40000)
#: What the openai plugin's clients should know of this server without asking it: it is
#: llama-cpp-python's (serial, so concurrency 1 unless the goal sets it; schemas go as its
#: grammar-constrained ``json_object``, since OpenAI's ``json_schema`` is HTTP 500 there).
CLIENT_DEFAULTS = {"dialect": "llamacpp"}


def resolve_model(model: str, base_dir: Path | None = None) -> tuple[Path, str]:
    """``(GGUF file, served name)`` for a catalogue name (``smollm2-135m-instruct``) or a path
    (relative to ``base_dir``, the goal file's folder).

    :raises ConfigError: unknown name, missing file, or the catalogue model's package is not
        installed (the message names the ``pip install``).
    """
    if shipped_model(model) is not None:
        return find_shipped_model(model, field="model"), model.strip().lower()
    path = Path(os.path.expanduser(model))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.is_file():
        return path.resolve(), path.stem
    if path.suffix.lower() == ".gguf" or os.sep in model:
        raise ConfigError(f"no such GGUF file: {path}", field="model")
    find_shipped_model(model, field="model")  # raises: unknown name, listing the catalogue
    raise AssertionError("unreachable")


#: Where the server's API key travels: its environment (llama_cpp.server's settings read
#: ``API_KEY``), never its command line, which every user of the machine can read.
API_KEY_ENV = "API_KEY"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _free(port: int, host: str = HOST) -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _any_free_port(host: str = HOST) -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _client_host(host: str) -> str:
    """The address a client on this machine uses for a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        return HOST
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


class LlamaCppServer:
    """Serves a GGUF with llama.cpp's OpenAI-compatible server (llama-cpp-python) on 127.0.0.1
    (or ``host``)."""

    name: ClassVar[str] = "llamacpp"

    @frozen
    class Options:
        """:ivar n_ctx: context window in tokens (prompt and answer together).
        :ivar n_threads: CPU threads; ``None``: every core this process may use.
        :ivar startup_timeout_s: how long to wait for ``/v1/models`` to answer.
        :ivar stop_timeout_s: how long a stop waits before killing the process group.
        :ivar port: ``None``: a port derived from the model file and these options, stable
            across runs so the openai plugin's response cache (keyed by ``base_url``) hits on a
            resume or a rerun, or any free port when that one is taken; ``0``: any free port.
        :ivar chat_format: llama.cpp's ``--chat_format`` (``None``: the GGUF's own template).
        :ivar extra_args: further ``llama_cpp.server`` arguments, e.g. ``[--n_batch, "256"]``.
        :ivar host: the address to bind; anything but loopback is the caller's decision (``forge
            serve`` asks for a token first).
        :ivar api_key: the key clients must send (``Authorization: Bearer KEY``); ``None``: any.
            It reaches the server through its environment, not its command line.
        :ivar alias: the served model id (``/v1/models``); ``None``: the catalogue name or the
            file's stem.
        """

        n_ctx: int = 2048
        n_threads: int | None = None
        startup_timeout_s: float = 180.0
        stop_timeout_s: float = 10.0
        port: int | None = None
        chat_format: str | None = None
        extra_args: tuple[str, ...] = ()
        host: str = HOST
        api_key: str | None = None
        alias: str | None = None

    def __init__(self, options: LlamaCppServer.Options | None = None) -> None:
        self.options = options or self.Options()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.endpoint: Endpoint | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, model: str, ctx: StageContext) -> Endpoint:
        if self._proc is not None and self.endpoint is not None:
            return self.endpoint
        base = Path(ctx.goal.source).parent if ctx.goal is not None and ctx.goal.source else None
        path, alias = resolve_model(model, base)
        alias = self.options.alias or alias
        log_path = Path(ctx.work_dir) / "server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        port = self._port(path)
        for attempt in (1, 2):  # a port taken between our check and the server's bind: once more
            try:
                endpoint = self._launch(path, alias, port, log_path, ctx)
            except _PortTaken:
                if attempt == 2:
                    raise ForgeError(f"the llama.cpp server could not bind a port on {self.options.host} "
                                     f"(log: {log_path})") from None
                port = _any_free_port(self.options.host)
                continue
            self.endpoint = endpoint
            return endpoint
        raise AssertionError("unreachable")

    def stop(self) -> None:
        proc, self._proc, self.endpoint = self._proc, None, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()  # the server's parent-watch thread ends it at once
            try:
                proc.wait(timeout=self.options.stop_timeout_s)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # anything left in its process group
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.options.stop_timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- helpers --------------------------------------------------------------------------

    def _port(self, path: Path) -> int:
        host = self.options.host
        if self.options.port is not None:
            return self.options.port or _any_free_port(host)
        stat = path.stat()
        seed = content_hash([str(path), stat.st_size, self.options.n_ctx, self.options.chat_format,
                             list(self.options.extra_args)], length=8)
        low, high = PORT_RANGE
        preferred = low + int(seed, 16) % (high - low)
        return preferred if _free(preferred, host) else _any_free_port(host)

    def _command(self, path: Path, alias: str, port: int) -> list[str]:
        o = self.options
        cmd = [sys.executable, "-m", "forgemind_llamacpp._serve", "--model", str(path), "--model_alias", alias,
               "--host", o.host, "--port", str(port), "--n_ctx", str(o.n_ctx),
               "--n_threads", str(o.n_threads or _cores())]
        if o.chat_format:
            cmd += ["--chat_format", o.chat_format]
        return cmd + [str(a) for a in o.extra_args]

    def _launch(self, path: Path, alias: str, port: int, log_path: Path, ctx: StageContext) -> Endpoint:
        env = dict(os.environ)
        env.pop(API_KEY_ENV, None)  # a key in our environment is not one this server was asked for
        if self.options.api_key:
            env[API_KEY_ENV] = self.options.api_key
        if threading.current_thread() is threading.main_thread():
            env[PARENT_ENV] = str(os.getpid())
        if self._log is None:
            self._log = open(log_path, "ab")  # open for the server's whole life
        self._log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting on port {port}\n".encode())
        self._log.flush()
        started = time.monotonic()
        self._proc = subprocess.Popen(
            self._command(path, alias, port),
            stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, process_group=0,  # its own group: a Ctrl-C in the terminal is ours to handle
        )
        base_url = f"http://{_client_host(self.options.host)}:{port}/v1"
        try:
            self._wait_ready(base_url, alias, log_path, started, model=str(path))
        except BaseException:
            self.stop()
            raise
        ctx.log.info("llamacpp.ready", model=alias, base_url=base_url, pid=self._proc.pid,
                     seconds=round(time.monotonic() - started, 2))
        return Endpoint(base_url=base_url, model=alias, api_key=self.options.api_key,
                        client_defaults=dict(CLIENT_DEFAULTS), pid=self._proc.pid, log=str(log_path))

    def _wait_ready(self, base_url: str, alias: str, log_path: Path, started: float, *, model: str) -> None:
        proc = self._proc
        assert proc is not None
        deadline = started + self.options.startup_timeout_s
        while True:
            code = proc.poll()
            if code is not None:
                tail = _tail(log_path)
                if "address already in use" in tail.lower():
                    raise _PortTaken
                raise ForgeError(f"the llama.cpp server for {model} exited with code {code} while starting: "
                                 f"{tail or 'no output'} (log: {log_path})")
            if _answers(f"{base_url}/models", alias, self.options.api_key):
                return
            if time.monotonic() > deadline:
                raise ForgeError(f"the llama.cpp server for {model} did not answer within "
                                 f"{self.options.startup_timeout_s:g} s (startup_timeout_s); log: {log_path}")
            time.sleep(0.2)


class _PortTaken(Exception):
    pass


#: No proxy for 127.0.0.1, whatever HTTP_PROXY says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str, alias: str, api_key: str | None = None) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with _OPENER.open(request, timeout=2) as response:
            data = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return any(item.get("id") == alias for item in data.get("data", []) if isinstance(item, dict))


@hookimpl
def forgemind_register_servers(register: Callable[[type], None]) -> None:
    register(LlamaCppServer)
