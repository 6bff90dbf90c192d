"""A pytest plugin for ForgeMind plugin authors (entry point ``pytest11``: ``forgemind``).

Fixtures:

- ``forge_home``: an isolated ForgeMind home folder (``FORGEMIND_HOME`` points at it).
- ``make_pm``: ``make_pm(plugin, ...)`` returns a fresh plugin manager holding only those plugins.
- ``stage_context``: a :class:`~forgemind_hookspecs.backends.StageContext` whose folders live
  in ``forge_home``; its ``emit(kind, payload)`` calls land in the ``emitted`` fixture's list.
- ``emitted``: the ``(kind, payload)`` pairs emitted through ``stage_context``.
- ``captured_logs``: the structured log entries emitted during the test (a list of dicts).

Importing this module imports nothing heavy; structlog is imported only by ``captured_logs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .backends import StageContext
from .catalogue import make_plugin_manager

__all__ = ["captured_logs", "emitted", "forge_home", "make_pm", "stage_context"]


@pytest.fixture
def forge_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ForgeMind home for this test; ``FORGEMIND_HOME`` is set to it."""
    home = tmp_path / "forgemind-home"
    home.mkdir()
    monkeypatch.setenv("FORGEMIND_HOME", str(home))
    return home


@pytest.fixture
def make_pm() -> Any:
    """A factory: ``make_pm(*plugins, blocked=())`` -> a fresh pluggy PluginManager."""
    return make_plugin_manager_factory


def make_plugin_manager_factory(*plugins: Any, blocked: tuple[str, ...] = ()) -> Any:
    return make_plugin_manager(plugins, blocked=blocked)


@pytest.fixture
def emitted() -> list[tuple[str, dict[str, Any]]]:
    """The ``(kind, payload)`` pairs emitted through ``stage_context``."""
    return []


@pytest.fixture
def stage_context(forge_home: Path, emitted: list[tuple[str, dict[str, Any]]]) -> StageContext:
    """A StageContext in ``forge_home``; every ``emit(kind, payload)`` lands in ``emitted``."""
    ctx = StageContext(
        run_id="test-run",
        iteration=1,
        stage="test",
        home=forge_home,
        work_dir=forge_home / "work",
        cache_dir=forge_home / "cache",
        emit=lambda kind, payload: emitted.append((kind, dict(payload))),
    )
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    ctx.cache_dir.mkdir(parents=True, exist_ok=True)
    return ctx


@pytest.fixture
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Structured log entries emitted through structlog during the test."""
    structlog_testing = pytest.importorskip("structlog.testing")
    with structlog_testing.capture_logs() as logs:
        yield logs
