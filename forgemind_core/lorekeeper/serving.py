"""``forge serve MODEL``: a recorded model served on an OpenAI-compatible API (docs/servers.md,
"Serving a model: forge serve").

MODEL is any model reference (:func:`forgemind_core.lorekeeper.models.resolve_model`). A model
that is not a GGUF file already is exported once through the catalogue's ``gguf`` exporter
(q8_0 by default) into ``<home>/cache/served/<checkpoint id>/model-<dtype>.gguf`` — the cache a
run's server pool uses for the same checkpoint (:mod:`forgemind_core.lorekeeper.served`) — and
served by a :class:`~forgemind_hookspecs.backends.Server` backend (``llamacpp``) through the same
:class:`~forgemind_core.base.servers.ServerPool` a run uses, so it stops and cleans up the same way
(and its process never outlives the one that started it).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from pathlib import Path
from typing import Any

from forgemind_hookspecs import Checkpoint, Endpoint, StageContext, UserError

from forgemind_core.base.protocols import KernelHandle
from forgemind_core.base.servers import ServerPool
from forgemind_core.lorekeeper.models import ModelRef, resolve_model

__all__ = ["DTYPES", "LOOPBACK", "TOKEN_ENV", "ModelServer", "check_bind", "checkpoint_gguf", "is_loopback"]

#: The precisions ``forge serve --dtype`` offers (the ``gguf`` exporter's), the default first.
DTYPES: tuple[str, ...] = ("q8_0", "f16", "f32")
#: The address served by default.
LOOPBACK = "127.0.0.1"
#: The environment variable holding the access token (``--token``).
TOKEN_ENV = "FORGEMIND_SERVE_TOKEN"
#: The shortest token accepted (as the dashboard's).
MIN_TOKEN = 8


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without an access token (the dashboard's rule).

    :raises UserError: one sentence, exit code 2 from the CLI.
    """
    token = (token or "").strip()
    if not is_loopback(host) and not token:
        raise UserError(f"serving on {host} exposes the model beyond this machine; give an access token "
                        f"with --token or {TOKEN_ENV}", field="host")
    if token and len(token) < MIN_TOKEN:
        raise UserError(f"the access token must be at least {MIN_TOKEN} characters long", field="token")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def checkpoint_gguf(forge: KernelHandle, checkpoint: Checkpoint, dtype: str, ctx: StageContext, *,
                    name: str = "") -> Path:
    """``<home>/cache/served/<checkpoint id>/model-<dtype>.gguf``, exported once through the
    catalogue's ``gguf`` exporter (into a temporary folder, then renamed into place: a crash or
    a second process exporting the same file at once never leaves half a file under that name).

    :raises UserError: an unknown dtype, or the exporter cannot take the model (its sentence:
        e.g. an architecture GGUF export does not support).
    """
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}", field="dtype")
    folder = Path(forge.home) / "cache" / "served" / _safe(checkpoint.id)
    target = folder / f"model-{dtype}.gguf"
    if target.is_file():
        return target
    exporter: Any = forge.backend("exporters", "gguf", {"dtype": dtype}, field="model")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".export-{dtype}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        written = Path(exporter.export(checkpoint, tmp, {"name": name or checkpoint.id}, ctx))
        os.replace(written, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class ModelServer:
    """One model served until :meth:`stop` (a context manager).

    :param forge: the kernel (registry, home, catalogue).
    :param ref: a model reference (checkpoint id or prefix, ``stable:GOAL[@VERSION]``, a
        checkpoint folder, an export bundle, a ``.gguf`` file).
    :param dtype: the GGUF precision of an export made for it (``q8_0``, ``f16``, ``f32``); a
        GGUF file is served as it is.
    :param host: the address to bind; anything but loopback needs ``token``.
    :param port: the port; ``None``: one derived from the model file (the same on every start,
        or any free one when it is taken); ``0``: any free port.
    :param token: the access token clients send as their API key (``Authorization: Bearer``).
    :param backend: the Server backend: ``auto`` (``llamacpp`` over the GGUF, or ``transformers``
        over the checkpoint folder where the GGUF export refuses the model, e.g. its
        architecture, and that backend is installed), ``llamacpp``, or ``transformers``.
    :param server_options: further options of that backend (``n_ctx``, ``n_threads``, ...);
        those the chosen backend does not have are left out.

    :ivar model: the resolved :class:`~forgemind_core.lorekeeper.models.ModelRef`.
    :ivar gguf: the GGUF served (``None`` when the transformers backend serves the folder).
    :ivar endpoint: where it answers, once started.
    :ivar chosen: the server backend that serves it, once started.
    :ivar fallback: why ``auto`` chose ``transformers`` (the exporter's sentence), else ``None``.
    """

    def __init__(self, forge: KernelHandle, ref: str, *, dtype: str = "q8_0", host: str = LOOPBACK,
                 port: int | None = None, token: str | None = None, backend: str = "auto",
                 server_options: dict[str, Any] | None = None) -> None:
        check_bind(host, token)
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}", field="dtype")
        self.forge = forge
        self.ref = ref
        self.dtype = dtype
        self.host = host
        self.port = port
        self.token = (token or "").strip() or None
        self.backend = backend
        self.server_options = dict(server_options or {})
        self.model: ModelRef | None = None
        self.gguf: Path | None = None
        self.endpoint: Endpoint | None = None
        self.chosen: str | None = None
        self.fallback: str | None = None
        self._pool: ServerPool | None = None

    @property
    def served_name(self) -> str:
        """The model id clients send: ``GOAL@vN`` for a promoted model, else its checkpoint id
        (or the GGUF file's stem)."""
        assert self.model is not None, "resolve first"
        return self.model.label

    def resolve(self) -> ModelRef:
        """Resolve the reference (cheap: no export)."""
        if self.model is None:
            self.model = resolve_model(self.forge.registry(), Path(self.forge.home), self.ref)
        return self.model

    def start(self) -> Endpoint:
        """Resolve, export (or reuse the cached export) and start the server; returns once it
        answers. A failed or interrupted start leaves no process behind."""
        if self.endpoint is not None:
            return self.endpoint
        model = self.resolve()
        ctx = self._context()
        served, backend = self._what_to_serve(model, ctx)
        self.chosen = backend
        spec: dict[str, Any] = {"backend": backend, **self._own_options(backend), "host": self.host,
                                "alias": self.served_name}
        if self.port is not None:
            spec["port"] = self.port
        if self.token:
            spec["api_key"] = self.token
        self._pool = ServerPool(self.forge, context=lambda: ctx)
        try:
            self.endpoint = self._pool.endpoint(spec, served, field="serve")
        except BaseException:
            self.stop()
            raise
        return self.endpoint

    def _what_to_serve(self, model: ModelRef, ctx: StageContext) -> tuple[str, str]:
        """``(what the server backend is handed, the backend)``."""
        if model.is_gguf:
            if self.backend == "transformers":
                raise UserError(f"model {self.ref!r} is a GGUF file; the transformers backend serves checkpoint "
                                f"folders (use --backend llamacpp or auto)", field="backend")
            self.gguf = Path(model.path)
            return str(self.gguf), "llamacpp" if self.backend == "auto" else self.backend
        assert model.checkpoint is not None, "a checkpoint reference carries its record"
        if self.backend == "transformers":
            return model.checkpoint.path, "transformers"
        try:
            self.gguf = checkpoint_gguf(self.forge, model.checkpoint, self.dtype, ctx,
                                        name=model.goal_name or model.checkpoint.id)
        except UserError as error:
            if self.backend != "auto" or not self._offers("transformers"):
                raise
            self.fallback = str(error)
            ctx.log.info("serve.fallback", backend="transformers", reason=self.fallback)
            return model.checkpoint.path, "transformers"
        return str(self.gguf), "llamacpp" if self.backend == "auto" else self.backend

    def _servers(self) -> dict[str, Any]:
        """The catalogue's server backends (``{}`` for a kernel handle without a catalogue)."""
        catalogue = getattr(self.forge, "catalogue", None)
        found = catalogue() if callable(catalogue) else {}
        return dict(found.get("servers", {})) if isinstance(found, dict) else {}

    def _offers(self, backend: str) -> bool:
        return backend in self._servers()

    def _own_options(self, backend: str) -> dict[str, Any]:
        """The given server options the backend's ``Options`` has (``n_ctx`` is llama.cpp's)."""
        import attrs

        info = self._servers().get(backend)
        if info is None or not attrs.has(info.cls.Options):
            return dict(self.server_options)
        fields = attrs.fields_dict(info.cls.Options)
        return {k: v for k, v in self.server_options.items() if k in fields}

    def stop(self) -> None:
        """Stop the server (safe to call twice)."""
        pool, self._pool, self.endpoint = self._pool, None, None
        if pool is not None:
            pool.close()

    def describe(self) -> dict[str, Any]:
        """What is served, where: ``base_url``, ``model`` (the id to send), ``checkpoint_id``,
        ``run_id``, ``goal``, ``version``, ``gguf``, ``dtype``, ``pid``, ``log``."""
        model, endpoint = self.model, self.endpoint
        return {
            "ref": self.ref,
            "base_url": endpoint.base_url if endpoint else None,
            "model": endpoint.model if endpoint else None,
            "checkpoint_id": model.checkpoint_id if model else None,
            "run_id": model.run_id if model else None,
            "goal": model.goal_name if model else None,
            "version": model.version if model else None,
            "named_by": model.named_by if model else None,
            "gguf": str(self.gguf) if self.gguf else None,
            "dtype": None if model is None or model.is_gguf or self.gguf is None else self.dtype,
            "backend": self.chosen,
            "fallback": self.fallback,
            "host": self.host,
            "auth": self.token is not None,
            "pid": endpoint.pid if endpoint else None,
            "log": endpoint.log if endpoint else None,
        }

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _context(self) -> StageContext:
        context = getattr(self.forge, "context", None)
        if callable(context):
            ctx: StageContext = context(run_id="serve", stage="serve")
        else:  # a minimal kernel handle (a test's): a folder under the home
            ctx = StageContext(work_dir=Path(self.forge.home) / "work" / "serve")
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        return ctx
