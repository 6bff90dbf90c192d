"""Kernel test fixtures: a tiny task pack and a Forge holding the test-only memo backends."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Test files are imported with --import-mode=importlib (several folders have a test_hooks.py);
# the helper modules next to them are found through this folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))

from colors_pack import write_pack

from forgemind_core.base.logs import configure_process_logging

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# As the forge CLI does: plugins' structlog output goes to stderr, never into --json on stdout.
configure_process_logging("warning")

@pytest.fixture
def colors_goal(tmp_path: Path) -> Path:
    return write_pack(tmp_path / "colors")


@pytest.fixture
def forge(forge_home: Path):
    """A kernel with the built-ins, the installed registry and the memo test backends."""
    import kernel_plugins

    from forgemind_core import Forge

    return Forge(home=forge_home, plugins=[kernel_plugins], blocked=["hf", "openai"])
