"""Building a plugin manager and collecting the backends its plugins register.

Both the kernel and plugin authors' tests use these, so a third-party backend can be tested
with ``forgemind_hookspecs`` alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import pluggy
from attrs import frozen

from . import hookspecs
from .backends import PILLARS
from .errors import PluginError

__all__ = ["BackendInfo", "collect_backends", "make_plugin_manager"]


def make_plugin_manager(plugins: Iterable[Any] = (), *, blocked: Iterable[str] = ()) -> pluggy.PluginManager:
    """A fresh plugin manager holding ForgeMind's hook specs and the given plugins.

    Nothing global: every call returns a new, independent manager. Hookimpls without a matching
    spec are rejected (``check_pending``) with a :class:`PluginError`.

    :param plugins: plugin objects (modules or instances) to register, in order.
    :param blocked: plugin names to block (they are never registered).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    for plugin in plugins:
        pm.register(plugin)
    check(pm)
    return pm


def check(pm: pluggy.PluginManager) -> None:
    """Raise :class:`PluginError` if a plugin implements a hook ForgeMind does not define."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        plugin = pm.get_name(error.plugin) if error.plugin is not None else "?"
        raise PluginError(f"plugin {plugin!r} implements a hook ForgeMind does not define: {error}") from None


@frozen
class BackendInfo:
    """A registered backend: its ``name``, ``pillar``, class, and the plugin that offered it."""

    name: str
    pillar: str
    cls: type[Any]
    plugin: str

    @property
    def description(self) -> str:
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def options(self, raw: dict[str, Any] | None = None) -> Any:
        """Build this backend's ``Options`` from a plain dict (no validation of types here:
        the kernel's goal loader validates with line numbers)."""
        return self.cls.Options(**(raw or {}))  # checked to exist by register()


def collect_backends(pm: pluggy.PluginManager, pillar: str) -> dict[str, BackendInfo]:
    """Call ``forgemind_register_<pillar>`` on every plugin and return ``{name: BackendInfo}``.

    :raises PluginError: a registered class lacks ``name``/``Options`` (or ``Options`` is not
        an attrs class), or two plugins register the same name in this pillar.
    """
    if pillar not in PILLARS:
        raise ValueError(f"unknown pillar {pillar!r}; expected one of {', '.join(PILLARS)}")
    found: dict[str, BackendInfo] = {}
    caller = getattr(pm.hook, f"forgemind_register_{pillar}")
    # Call each implementation on its own so that every backend is attributed to its plugin.
    for impl in reversed(caller.get_hookimpls()):
        plugin = impl.plugin_name

        def register(cls: type, _plugin: str = plugin) -> None:
            name = getattr(cls, "name", None)
            options = getattr(cls, "Options", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {_plugin!r} registered {cls!r} among {pillar} without a name")
            if options is None or not attrs.has(options):
                raise PluginError(f"{pillar} backend {name!r} of plugin {_plugin!r} needs an attrs Options class")
            if name in found:
                raise PluginError(
                    f"{pillar} backend {name!r} is registered by both {found[name].plugin!r} and {_plugin!r}"
                )
            found[name] = BackendInfo(name=name, pillar=pillar, cls=cls, plugin=_plugin)

        impl.function(register=register)
    return found
