"""Structured logging for one kernel: pretty to the console, JSON lines to a file, secrets never.

Nothing here touches structlog's global configuration: :func:`make_logger` builds each logger
with :func:`structlog.wrap_logger` and its own processor chain, so two :class:`Forge` kernels in
one process (or a kernel inside a test) never see each other's settings or files.

Every event first goes through a :class:`Redactor`, which replaces secrets in any string
anywhere in the event (nested dicts, lists, tuples, exception text) by ``[REDACTED]``:

- the values of environment variables whose *name* contains ``KEY``, ``TOKEN``, ``SECRET`` or
  ``PASSWORD`` (read when the redactor is made; :meth:`Redactor.refresh` reads them again);
- anything shaped like a credential: OpenAI-style ``sk-...`` keys, Hugging Face ``hf_...``
  tokens, GitHub ``ghp_...`` tokens, AWS access key ids (``AKIA...``), ``Bearer ...`` headers;
- the value of a mapping key that names a credential (``api_key``, ``token``, ``password``,
  ``authorization``, ...);
- the userinfo of a URL: ``https://user:pass@host/v1`` becomes ``https://[REDACTED]@host/v1``.

:func:`redact` applies the same rules to any object, so the kernel can scrub records and exports;
:func:`restore` puts back, from values the process still holds, what a record read back lost.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import IO, Any

__all__ = ["LEVELS", "REDACTED", "Redactor", "configure_process_logging", "make_logger", "redact", "restore"]

#: What a secret is replaced with.
REDACTED = "[REDACTED]"
#: Level names :func:`make_logger` accepts, lowest first.
LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")

_LEVEL_NUMBERS = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "warn": 30,
    "error": 40,
    "critical": 50,
    "fatal": 50,
}

#: Environment variable names containing one of these hold secrets.
_SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
#: Shorter values are not treated as secrets: redacting "1" or "true" everywhere would wreck logs.
_MIN_SECRET_LENGTH = 8

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "Bearer <token>" keeps the scheme word so the log still says what it was.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{6,}=*"), r"\1 " + REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"), REDACTED),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    # The userinfo of a URL (``https://user:pass@host``): everything between ``://`` and the
    # last ``@`` before the path, so a password holding an ``@`` or ``#`` goes whole.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/\"'<>]+@"), r"\1" + REDACTED + "@"),
)

#: Mapping keys whose values are credentials, matched on whole words of the key
#: (``api_key``, ``hfToken``, ``Authorization``) so that ``max_tokens`` or ``tokenizer`` pass.
_SECRET_KEY_WORDS = frozenset(
    {"key", "apikey", "token", "secret", "password", "passwd", "authorization", "credentials"}
)
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _is_secret_key(key: str) -> bool:
    words = [w.lower() for w in _WORDS.findall(key)]
    return any(w in _SECRET_KEY_WORDS for w in words)


class Redactor:
    """Replaces secrets in strings, recursively through containers (see the module docstring).

    Usable as a structlog processor: ``Redactor()(logger, method_name, event_dict)``.

    :param environ: where to read secret-named variables from (default ``os.environ``); read now
        and again on :meth:`refresh`.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._values: re.Pattern[str] | None = None
        self.refresh()

    def refresh(self) -> None:
        """Read the secret-named environment variables again (e.g. after a key was set)."""
        environ = os.environ if self._environ is None else self._environ
        values = {
            value
            for name, value in environ.items()
            if any(part in name.upper() for part in _SECRET_NAME_PARTS) and len(value) >= _MIN_SECRET_LENGTH
        }
        # Longest first, so a secret containing another is replaced whole.
        ordered = sorted(values, key=len, reverse=True)
        self._values = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def text(self, value: str) -> str:
        """``value`` with every secret replaced."""
        if self._values is not None:
            value = self._values.sub(REDACTED, value)
        for pattern, replacement in _PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        # A traceback is text that may quote a secret: format it here, before redaction, so the
        # renderers downstream only ever see the scrubbed string.
        exc_info = event_dict.pop("exc_info", None)
        if exc_info:
            event_dict["exception"] = _format_exception(exc_info)
        return {str(k): self.redact(v, key=str(k)) for k, v in event_dict.items()}

    def redact(self, obj: Any, *, key: str | None = None) -> Any:
        """A copy of ``obj`` with secrets replaced.

        Strings are scrubbed; dicts, lists, tuples, sets are copied with their contents
        scrubbed; a string under a credential-named key is replaced whole. Any other object
        whose ``str()`` contains a secret is replaced by its scrubbed ``str()`` (safety over
        shape); everything else is returned unchanged.
        """
        return self._redact(obj, key, 0)

    def _redact(self, obj: Any, key: str | None, depth: int) -> Any:
        if depth > 50:
            return REDACTED  # a cycle or absurd nesting: refuse to print it rather than leak
        if isinstance(obj, str):
            if key is not None and _is_secret_key(key) and obj:
                return REDACTED
            return self.text(obj)
        if obj is None or isinstance(obj, (bool, int, float)):
            return obj
        if isinstance(obj, Mapping):
            return {k: self._redact(v, k if isinstance(k, str) else None, depth + 1) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self._redact(v, key, depth + 1) for v in obj]
        if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
            return tuple(self._redact(v, key, depth + 1) for v in obj)
        if isinstance(obj, (set, frozenset)):
            return type(obj)(self._redact(v, key, depth + 1) for v in obj)
        try:
            shown = str(obj)
        except Exception:  # an object that cannot print itself cannot leak through printing
            return obj
        scrubbed = self.text(shown)
        return scrubbed if scrubbed != shown else obj


def _format_exception(exc_info: Any) -> str:
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or exc_info[0] is None:
        return ""
    return "".join(traceback.format_exception(*exc_info)).rstrip()


def redact(obj: Any) -> Any:
    """Scrub ``obj`` with a :class:`Redactor` reading the current environment.

    For records: ``redact(to_dict(record))``. Build one :class:`Redactor` and reuse it when
    scrubbing many objects.
    """
    return Redactor().redact(obj)


def restore(obj: Any, originals: Any) -> Any:
    """``obj`` with every string that is the redacted form of a string found in ``originals``
    put back as that original (containers copied). The inverse of :func:`redact` for the values
    a process still holds: a record read back from disk (a plan's generator options) regains the
    credential of the goal it came from; a string the process never held stays redacted."""
    redactor = Redactor()
    table: dict[str, str] = {}

    def collect(value: Any) -> None:
        if isinstance(value, str):
            if (shown := redactor.text(value)) != value:
                table[shown] = value
        elif isinstance(value, Mapping):
            for item in value.values():
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    def put_back(value: Any) -> Any:
        if isinstance(value, str):
            return table.get(value, value)
        if isinstance(value, Mapping):
            return {k: put_back(v) for k, v in value.items()}
        if isinstance(value, list):
            return [put_back(v) for v in value]
        return value

    collect(originals)
    return put_back(obj) if table else obj


class _Sink:
    """The object structlog wraps: writes each (already redacted) event to the console stream
    and/or appends it as one JSON line to a file."""

    def __init__(
        self, console: bool, stream: IO[str] | None, json_path: Path | None, colors: bool | None
    ) -> None:
        self._console = console
        self._stream = stream
        self._json_path = json_path
        self._colors = colors
        self._renderer: Callable[..., Any] | None = None

    def _write(self, event: MutableMapping[str, Any]) -> None:
        if self._json_path is not None:
            line = json.dumps(event, ensure_ascii=False, default=str, sort_keys=False)
            # Open per event: no handle to leak or close, and O_APPEND keeps lines whole when a
            # resumed run or a second process appends to the same file.
            with open(self._json_path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        if self._console:
            stream = self._stream if self._stream is not None else sys.stderr
            if self._renderer is None:
                import structlog

                colors = (
                    self._colors
                    if self._colors is not None
                    else bool(getattr(stream, "isatty", lambda: False)())
                )
                self._renderer = structlog.dev.ConsoleRenderer(colors=colors)
            rendered = self._renderer(None, str(event.get("level", "info")), dict(event))
            stream.write(str(rendered) + "\n")
            stream.flush()

    msg = debug = info = warning = warn = error = critical = fatal = exception = log = _write


def _as_sink_call(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    # structlog passes a (args, kwargs) tuple from the last processor to the wrapped logger.
    return (event_dict,), {}


def make_logger(
    *,
    console: bool = True,
    level: str | int = "info",
    json_path: str | os.PathLike[str] | None = None,
    stream: IO[str] | None = None,
    colors: bool | None = None,
    redactor: Redactor | None = None,
    **bind: Any,
) -> Any:
    """A structlog logger of its own (no global configuration is read or changed).

    :param console: render events for humans on ``stream`` (default: ``sys.stderr`` at the time
        of each write).
    :param level: the lowest level logged: one of :data:`LEVELS` or a :mod:`logging` number.
    :param json_path: append every event as one JSON line (``timestamp`` ISO 8601 UTC,
        ``level``, ``event``, then the bound and event keys) to this file; its folder is created.
    :param colors: colour the console output (default: when ``stream`` is a terminal).
    :param redactor: the :class:`Redactor` to use (default: a new one reading ``os.environ``).
    :param bind: key/values bound to every event (``run_id=...``, ``stage=...``).
    :returns: a structlog filtering bound logger (``.info(event, **kw)``, ``.bind(**kw)``, ...).
    :raises ValueError: an unknown level name.
    """
    import structlog

    if isinstance(level, str):
        if level.lower() not in _LEVEL_NUMBERS:
            raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
        number = _LEVEL_NUMBERS[level.lower()]
    else:
        number = int(level)
    path = Path(json_path) if json_path is not None else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    processors: list[Any] = [
        redactor if redactor is not None else Redactor(),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _order_keys,
        _as_sink_call,
    ]
    return structlog.wrap_logger(
        _Sink(console, stream, path, colors),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(number),
        context_class=dict,
        cache_logger_on_first_use=False,
        **bind,
    )


def _order_keys(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """timestamp, level, event first: JSON lines read well with ``jq`` and ``head``."""
    head = {k: event_dict[k] for k in ("timestamp", "level", "event") if k in event_dict}
    return {**head, **{k: v for k, v in event_dict.items() if k not in head}}


def configure_process_logging(level: str = "warning", *, stream: IO[str] | None = None) -> None:
    """Configure structlog for the whole process: redacted, human-readable, on stderr.

    For applications' entry points only (the ``forge`` CLI's ``main``, a test session): a library
    never calls it. Plugins that log through ``structlog.get_logger`` then write to stderr at
    ``level`` and above, never to stdout, where ``--json`` output goes; without it structlog's
    default prints every level to stdout.
    """
    import structlog

    if level.lower() not in _LEVEL_NUMBERS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    structlog.configure(
        processors=[
            Redactor(),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _order_keys,
            _as_sink_call,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVEL_NUMBERS[level.lower()]),
        logger_factory=lambda *args: _Sink(True, stream, None, None),
        context_class=dict,
        cache_logger_on_first_use=False,
    )
