"""ForgeMind's kernel: plugin manager, goal loading, the loop (the Brain), the CLI.

Embed it with ``from forgemind_core import Forge``. Importing this package loads no heavy
library (no torch, transformers, duckdb or pyarrow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forgemind_core.base import VERSION as __version__

__all__ = ["Forge", "__version__"]

if TYPE_CHECKING:
    from forgemind_core.api import Forge


def __getattr__(name: str) -> Any:
    if name == "Forge":
        from forgemind_core.api import Forge

        return Forge
    raise AttributeError(name)
