"""Small helpers shared by every ``forge`` command (the kernel's and plugins' alike).

- :func:`pass_forge` hands the command the :class:`~forgemind_core.api.Forge` built by the group.
- :data:`json_option` adds ``--json``; :func:`echo_json` prints machine output.
- :func:`console` is the rich console for human output (stdout); :func:`err_console` for stderr.
- :func:`key_values` reads repeated ``KEY=VALUE`` options.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

__all__ = ["console", "echo_json", "err_console", "json_option", "key_values", "pass_forge"]

F = TypeVar("F", bound=Callable[..., Any])


def pass_forge(fn: F) -> F:
    """Decorator: call the command with the group's ``Forge`` as its first argument."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        forge = ctx.find_root().obj
        if forge is None:  # the command runs outside the forge group (e.g. in a plugin's test)
            from forgemind_core.api import Forge

            forge = Forge()
        return fn(forge, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of tables.")


def key_values(pairs: Sequence[str], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs of the repeated option ``--<option>``; a VALUE that parses as JSON is
    used as JSON (numbers, lists, true), any other VALUE as text. A pair without ``=`` or a key
    is a :class:`~forgemind_hookspecs.UserError` naming the option."""
    from forgemind_hookspecs import UserError

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--{option} {pair!r} must look like KEY=VALUE", field=option)
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False))


def console() -> Any:
    """A rich console on stdout (imported lazily)."""
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def err_console() -> Any:
    """A rich console on stderr, for progress and live iteration output."""
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False, soft_wrap=True)
