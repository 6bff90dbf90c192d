"""The dashboard's tests: a kernel with the hf trainer, the registry and the kernel's memo test
backends (tests/kernel_plugins.py), served on 127.0.0.1 in this process, driven by chromium."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="forgemind-dash-hf-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))  # kernel_plugins, colors_pack
sys.path.insert(0, str(REPO / "plugins" / "forgemind_hf" / "tests"))  # hf_testutil

#: Screenshots of each tab land here (ignored by git); CI keeps them as artefacts.
ARTIFACTS = Path(os.environ.get("FORGEMIND_TEST_ARTIFACTS", REPO / "test-artifacts")) / "dashboard"


@pytest.fixture(scope="session")
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def chromium_path() -> str:
    from browser import find_chromium  # tests/browser.py, shared with the kernel's report test

    return find_chromium()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
