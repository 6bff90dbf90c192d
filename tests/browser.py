"""Finding the headless browser of the browser tests: Debian's chromium, driven by Playwright
(which cannot download its own here). Without it a test skips — or fails under CI or
``FORGEMIND_REQUIRE_BROWSER`` (``.ci/run`` installs it)."""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["find_chromium"]


def find_chromium() -> str:
    """The chromium executable; skips (or fails where a browser is required) when there is none."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") or os.environ.get("FORGEMIND_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium); the browser tests need it")
    return path
