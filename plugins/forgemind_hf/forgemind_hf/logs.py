"""Structured logging through whatever logger the StageContext carries.

The kernel hands a structlog logger (key-value pairs welcome); the contract's default is a plain
``logging.Logger``, which refuses keyword arguments. :func:`log` serves both, so a backend used
from a bare ``StageContext()`` (tests, embedding) never crashes on a log line.
"""

from __future__ import annotations

import logging
from typing import Any

from forgemind_hookspecs.backends import StageContext

__all__ = ["log"]


def log(ctx: StageContext, level: str, event: str, **fields: Any) -> None:
    """Log ``event`` with ``fields`` at ``level`` (``info``, ``warning``, ...) on ``ctx.log``."""
    logger = ctx.log
    if isinstance(logger, logging.Logger | logging.LoggerAdapter):
        detail = " ".join(f"{k}={v}" for k, v in fields.items())
        getattr(logger, level)(f"{event} {detail}".strip())
    else:
        getattr(logger, level)(event, **fields)
