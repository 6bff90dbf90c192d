"""Whether llama.cpp's OpenAI-compatible server can run here: one skip marker for the kernel's
tests that start a real ``llama_cpp.server`` (skipped with the import error as the reason)."""

from __future__ import annotations

import pytest

try:
    import llama_cpp.server.app  # noqa: F401 - the server and its [server] extra
except ImportError as error:
    LLAMA_CPP_MISSING: str | None = f"llama-cpp-python[server] cannot be imported: {error}"
else:
    LLAMA_CPP_MISSING = None

needs_llama = pytest.mark.skipif(LLAMA_CPP_MISSING is not None, reason=LLAMA_CPP_MISSING or "")
