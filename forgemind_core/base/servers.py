"""Model servers a run starts for its client backends (docs/servers.md).

A backend choice in a goal may carry a ``server:`` key beside its options::

    generate:
      - backend: openai
        model: smollm2-135m-instruct
        server: {backend: llamacpp, n_ctx: 2048}

The client backend (here the openai generator) is then not pointed at a remote API: a
:class:`~forgemind_hookspecs.backends.Server` backend (``forgemind_register_servers``) serves
``model`` locally and the client is built with that server's ``base_url`` and served model name.
The run's :class:`ServerPool` starts each server the first time a stage needs it, shares it
between every stage that asks for the same (server backend, model, server options), and stops
them all when the run ends, normally or not.

``model`` may also be a *model reference* (docs/servers.md, "Model references"): ``stable:GOAL``,
``stable:GOAL@VERSION``, a checkpoint id, a checkpoint folder or an export bundle. The pool asks
its injected :class:`~forgemind_core.base.protocols.ModelResolver` (the Lorekeeper's) what it
names, once per run, has the checkpoint's GGUF made (cached under the home), serves that file and
records the checkpoint, its run, goal and version in ``server.started``, and each client stage
that uses it in ``server.used`` (the registry's teacher edge).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
from forgemind_hookspecs import ConfigError, Endpoint, StageContext, UserError, content_hash

from forgemind_core.base.protocols import ModelResolver, ServedModel

__all__ = ["SERVER_KEY", "ServerPool", "layout_defaults", "split_server"]

#: The reserved key of a backend choice that asks for a served model.
SERVER_KEY = "server"

#: The client options a server's endpoint fills in.
_INJECTED = ("base_url", "model")


def split_server(options: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """``(the backend's own options, the server spec or None)``."""
    own = {k: v for k, v in options.items() if k != SERVER_KEY}
    return own, options.get(SERVER_KEY)


def client_problem(options_cls: type, options: Mapping[str, Any]) -> str | None:
    """Why a backend with ``options_cls`` cannot be a served model's client, or ``None``."""
    fields = attrs.fields_dict(options_cls) if attrs.has(options_cls) else {}
    missing = [name for name in _INJECTED if name not in fields]
    if missing:
        return f"this backend cannot use a server: its options have no {' or '.join(missing)}"
    if not options.get("model"):
        return "a server needs the model option beside it (the model to serve: a catalogue name or a .gguf path)"
    return None


class ServerPool:
    """The servers of one run, keyed by (server backend, model, server options).

    :param forge: the kernel whose catalogue offers the servers and the client backends.
    :param context: makes the :class:`StageContext` handed to a server (called once, on the
        first start); each server gets its own folder under its ``work_dir``.
    :param record: ``record(kind, stage=..., payload=..., key=...)`` for the ``server.started``,
        ``server.used`` and ``server.stopped`` events (the loop's recorder), or ``None``.
    :param resolver: resolves model references (``stable:GOAL``, checkpoint ids); ``None``:
        every model is handed to the server backend as written (a catalogue name or a GGUF).
    :param base_dir: the goal file's folder, for relative paths in ``model``.
    """

    def __init__(self, forge: Any, *, context: Callable[[], StageContext],
                 record: Callable[..., None] | None = None, resolver: ModelResolver | None = None,
                 base_dir: Path | None = None) -> None:
        self.forge = forge
        self._context_factory = context
        self._context: StageContext | None = None
        self._record = record
        self._resolver = resolver
        self._base_dir = base_dir
        self._servers: dict[str, tuple[Any, Endpoint, dict[str, Any]]] = {}
        self._resolved: dict[str, ServedModel | None] = {}
        self._used: set[tuple[str, str, str]] = set()
        self._lock = threading.RLock()

    def resolve(self, model: str, *, field: str | None = None) -> ServedModel | None:
        """What ``model`` names (once per run: a second stage asking gets the same answer), or
        ``None`` when it is no reference (no resolver, a catalogue name, a ``.gguf`` path).

        :raises ConfigError: one sentence naming ``field``: an unknown reference.
        """
        with self._lock:
            if model not in self._resolved:
                try:
                    found = self._resolver.resolve(model, base_dir=self._base_dir) if self._resolver else None
                except UserError as error:
                    raise ConfigError(error.message, field=field or "model") from None
                self._resolved[model] = found
            return self._resolved[model]

    def check(self, models: Iterable[tuple[str, str]]) -> list[ServedModel]:
        """Resolve every ``(field, model)`` before the run's first stage, so an unknown
        ``stable:GOAL`` stops the run at once, not after an hour of training; returns the
        references found."""
        found = [self.resolve(model, field=field) for field, model in models]
        return [f for f in found if f is not None]

    def backend(self, pillar: str, name: str, options: Mapping[str, Any] | None = None, *,
                field: str | None = None) -> Any:
        """Construct a backend as :meth:`Forge.backend` does; a ``server`` key in ``options``
        first starts (or reuses) that server and points the backend at it."""
        return self.forge.backend(pillar, name, self.options(pillar, name, options, field=field), field=field)

    def options(self, pillar: str, name: str, options: Mapping[str, Any] | None = None, *,
                field: str | None = None) -> dict[str, Any]:
        """``options`` as the backend is built with: a ``server`` key is replaced by the started
        server's ``base_url``, served model name, and ``client_defaults`` and the served checkpoint's
        :func:`layout_defaults` for the client's options left unset."""
        own, spec = split_server(options or {})
        own = {k: self._nested(pillar, name, k, v, field) if _serves(v) else v for k, v in own.items()}
        if spec is None:
            return own
        info = self.forge.backend_info(pillar, name, field=field)
        problem = client_problem(info.cls.Options, own)
        if problem:
            raise ConfigError(problem, field=_join(field, SERVER_KEY))
        model = str(own["model"])
        served = self.resolve(model, field=_join(field, "model"))
        endpoint = self.endpoint(spec, model, field=_join(field, SERVER_KEY))
        self._note_use(model, endpoint, pillar=pillar, client=name, field=field)
        fields = attrs.fields_dict(info.cls.Options)
        defaults = {**endpoint.client_defaults, **layout_defaults(served)}
        return {**{k: v for k, v in defaults.items() if k in fields and k not in own},
                **own, "base_url": endpoint.base_url, "model": endpoint.model}

    def _nested(self, pillar: str, name: str, key: str, value: Mapping[str, Any], field: str | None) -> dict[str, Any]:
        """An option that is itself a served model's client (the files generator's ``labeller:
        {model, server}``): its server started (or reused) as for a backend's own ``server:``,
        its use recorded under the backend, and ``base_url``/``model`` (``api_key`` when the
        server wants one; ``mode``/``system_prompt`` from :func:`layout_defaults` where unset) filled in."""
        sub = _join(field, key)
        inner, spec = split_server(value)
        if not inner.get("model"):
            raise ConfigError("a server needs the model option beside it (the model to serve: stable:GOAL, "
                              "a checkpoint id, a catalogue name or a .gguf path)", field=_join(sub, "model"))
        model = str(inner["model"])
        served = self.resolve(model, field=_join(sub, "model"))
        endpoint = self.endpoint(spec, model, field=_join(sub, SERVER_KEY))
        self._note_use(model, endpoint, pillar=pillar, client=name, field=sub)
        out = {**layout_defaults(served), **inner, "base_url": endpoint.base_url, "model": endpoint.model}
        if endpoint.api_key and not inner.get("api_key"):
            out["api_key"] = endpoint.api_key
        return out

    def endpoint(self, spec: Any, model: str, *, field: str | None = None) -> Endpoint:
        """The endpoint serving ``model`` as ``spec`` (``{backend: NAME, option: value}``) says,
        started now unless an earlier stage of the run started the same one."""
        if not isinstance(spec, Mapping) or not isinstance(spec.get("backend"), str):
            raise ConfigError("expected a mapping with a 'backend' key naming the server to start", field=field)
        backend = str(spec["backend"])
        server_options = {k: v for k, v in spec.items() if k != "backend"}
        with self._lock:
            served = self.resolve(model, field=field)  # options() asked first, naming the model's field
            # stable:GOAL and that model's checkpoint id are the same model: one server
            identity = (served.checkpoint_id or served.model) if served is not None else model
            key = content_hash([backend, identity, server_options], length=16)
            if key in self._servers:
                return self._servers[key][1]
            info = self.forge.backend_info("servers", backend, field=_join(field, "backend"))
            built = dict(server_options)
            if served is not None and served.checkpoint_id and "alias" in _fields(info.cls.Options):
                built.setdefault("alias", served.checkpoint_id)  # what it writes names the checkpoint
            server = info.cls(self.forge.build_options(info, built, field=field))
            ctx = self._server_context(f"{backend}-{key}")
            described: dict[str, Any] = {"backend": backend, "model": model, "options": server_options, "key": key}
            started = time.monotonic()
            if served is not None:
                assert self._resolver is not None
                served = self._resolver.prepare(served, ctx)  # the GGUF, exported on demand (cached)
                described.update(_provenance(served))
            try:
                endpoint: Endpoint = server.start(served.model if served is not None else model, ctx)
            except BaseException:  # a failed or interrupted start leaves no process behind
                server.stop()
                raise
            self._servers[key] = (server, endpoint, described)
            self._emit("server.started", key, {**described, "base_url": endpoint.base_url,
                                               "served_model": endpoint.model, "pid": endpoint.pid,
                                               "log": endpoint.log,
                                               "seconds": round(time.monotonic() - started, 3)})
            ctx.log.info("server.started", backend=backend, model=model, base_url=endpoint.base_url)
            return endpoint

    def running(self) -> list[Endpoint]:
        """The endpoints started and not yet stopped, in start order."""
        with self._lock:
            return [endpoint for _, endpoint, _ in self._servers.values()]

    def close(self) -> None:
        """Stop every server, newest first; a server that fails to stop does not keep the others
        running (its error is logged)."""
        with self._lock:
            while self._servers:
                key, (server, endpoint, described) = self._servers.popitem()
                error = ""
                try:
                    server.stop()
                except Exception as exc:  # reported; the other servers still stop
                    error = f"{type(exc).__name__}: {exc}"
                    if self._context is not None:
                        self._context.log.warning("server.stop_failed", key=key, error=error)
                self._emit("server.stopped", key, {**described, "base_url": endpoint.base_url, "error": error})

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _note_use(self, model: str, endpoint: Endpoint, *, pillar: str, client: str, field: str | None) -> None:
        """``server.used`` once per (server, client pillar, client backend) of a recorded model:
        which stages a checkpoint served (generated, judged, attacked, answered) — the registry's
        teacher edge. Models of no recorded checkpoint (a catalogue GGUF) record nothing more."""
        with self._lock:
            served = self._resolved.get(model)
            if served is None or not served.checkpoint_id:
                return
            key, described = next(((k, d) for k, (_, e, d) in self._servers.items() if e is endpoint), ("", {}))
            if (key, pillar, client) in self._used:
                return
            self._used.add((key, pillar, client))
        self._emit("server.used", key, {"key": key, "pillar": pillar, "client": client, "field": field or "",
                                        "served_model": endpoint.model, **_provenance(served),
                                        "file": described.get("file", served.model)})  # the GGUF served

    def _server_context(self, folder: str) -> StageContext:
        if self._context is None:
            self._context = self._context_factory()
        work = self._context.work_dir / folder
        work.mkdir(parents=True, exist_ok=True)
        return attrs.evolve(self._context, work_dir=work)

    def _emit(self, kind: str, key: str, payload: Mapping[str, Any]) -> None:
        if self._record is not None:
            self._record(kind, stage="servers", payload=dict(payload), key=f"{key}:{time.time_ns()}")


def layout_defaults(served: ServedModel | None) -> dict[str, Any]:
    """The prompt layout a served checkpoint was trained with, as client options: ``mode`` —
    ``chat`` where its manifest records ``chat_format: chat`` (the prompt went through the base's
    chat template, so a client must send it as a chat message), ``completion`` where it records
    ``raw`` — and the ``system_prompt`` it was trained with. Empty for a GGUF of unknown origin
    and for a checkpoint that records no layout."""
    manifest = served.checkpoint.manifest if served is not None and served.checkpoint is not None else {}
    layout = manifest.get("chat_format")
    if layout not in ("chat", "raw"):
        return {}
    out: dict[str, Any] = {"mode": "chat" if layout == "chat" else "completion"}
    if layout == "chat" and manifest.get("system_prompt"):
        out["system_prompt"] = str(manifest["system_prompt"])
    return out


def _serves(value: Any) -> bool:
    """Whether an option's value asks for a served model of its own (a mapping with ``server``)."""
    return isinstance(value, Mapping) and value.get(SERVER_KEY) is not None


def _fields(cls: type) -> dict[str, Any]:
    return attrs.fields_dict(cls) if attrs.has(cls) else {}


def _provenance(served: ServedModel) -> dict[str, Any]:
    """What ``server.started`` and ``server.used`` say of a resolved model reference."""
    return {"ref": served.ref, "file": served.model, "checkpoint_id": served.checkpoint_id,
            "checkpoint_run": served.run_id, "goal": served.goal, "version": served.version}


def _join(field: str | None, key: str) -> str:
    return f"{field}.{key}" if field else key
