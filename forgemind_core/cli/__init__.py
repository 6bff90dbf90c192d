"""The ``forge`` command line: a thin shell over :class:`forgemind_core.Forge`.

- :mod:`.main`: the ``forge`` group and its lazily loaded commands.
- :mod:`.tools`, :mod:`.display`: helpers every command shares; live terminal output of runs.
- :mod:`.commands`: the commands, one module per area.
"""

from __future__ import annotations

from typing import Any

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    # ``forgemind_core.cli:main`` was the console script's target before the CLI became a package:
    # scripts installed then keep working without importing click for ``forgemind_core.cli.tools``
    if name == "main":
        from forgemind_core.cli.main import main

        return main
    raise AttributeError(name)
