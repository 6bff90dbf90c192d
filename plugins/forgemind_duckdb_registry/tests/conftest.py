"""Shared fixtures: a home with one fully recorded run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import forgemind_duckdb_registry as plugin
from _registry_events import full_run


@pytest.fixture
def recorded(forge_home: Path) -> dict[str, Any]:
    """``forge_home`` holding run ``run-a`` recorded batch by batch through the hook."""
    run = full_run(forge_home)
    for batch in run["batches"]:
        plugin.forgemind_record(batch, str(forge_home))
    return run
