"""Finding and loading plugins: built-ins, entry points, in-process plugins, and the block-list.

Every :class:`~forgemind_core.api.Forge` builds its own plugin manager here; nothing is global, so
two kernels in one process can hold different plugin sets.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import Any

import pluggy
from attrs import Factory, frozen
from forgemind_hookspecs import PROJECT_NAME, check, hookspecs

__all__ = ["BUILTIN_PLUGINS", "DISABLE_ENV", "LoadedPlugins", "PluginRecord", "blocked_from_env", "load_plugins"]

#: The kernel's built-in backends, each an ordinary plugin living in its pillar's room: plugin name
#: (what ``forge plugins`` shows and ``FORGEMIND_DISABLE_PLUGINS`` blocks) -> module. Imported by
#: name when a Forge loads its plugins, so this list is the only place that names them.
BUILTIN_PLUGINS: dict[str, str] = {
    "forgemind.template": "forgemind_core.foundry.template",  # template generator (task packs)
    "forgemind.filters": "forgemind_core.foundry.filters",  # dedupe (exact + near), decontaminate, rules
    "forgemind.files": "forgemind_core.foundry.files",  # real data files (JSONL, CSV, Parquet) via datasets
    "forgemind.scorers": "forgemind_core.trials.scorers",  # exact_match, label_match, regex, json_schema, ...
    "forgemind.adversary": "forgemind_core.trials.adversary",  # offline perturbations, adversarial tier
    "forgemind.brain": "forgemind_core.brain.planners",  # default and fixed planners, local executor
    "forgemind.safety": "forgemind_core.warden.safety",  # safety filter (deny, PII, code AST), human reviewer
    "forgemind.replay": "forgemind_core.brain.replay",  # replays recorded plans (show --config, forks, exports)
}

#: Environment variable holding a comma-separated block-list of plugin names.
DISABLE_ENV = "FORGEMIND_DISABLE_PLUGINS"


@frozen
class PluginRecord:
    """What ``forge plugins`` shows about one plugin."""

    name: str
    module: str
    version: str | None = None
    distribution: str | None = None
    builtin: bool = False
    error: str | None = None


@frozen
class LoadedPlugins:
    """A plugin manager together with what was loaded into it and what failed."""

    pm: pluggy.PluginManager
    records: tuple[PluginRecord, ...] = ()
    blocked: frozenset[str] = Factory(frozenset)

    @property
    def failures(self) -> tuple[PluginRecord, ...]:
        return tuple(r for r in self.records if r.error is not None)


def blocked_from_env(environ: Any = None) -> frozenset[str]:
    """Plugin names listed in ``FORGEMIND_DISABLE_PLUGINS`` (comma-separated, spaces ignored)."""
    raw = (environ if environ is not None else os.environ).get(DISABLE_ENV, "")
    return frozenset(name.strip() for name in raw.split(",") if name.strip())



def load_plugins(
    *,
    plugins: Sequence[Any] = (),
    entry_points: bool = True,
    builtins: bool = True,
    blocked: Iterable[str] | None = None,
) -> LoadedPlugins:
    """Build a fresh plugin manager.

    :param plugins: in-process plugins, registered last: plugin objects (modules, classes or
        instances, named by pluggy's canonical name) or ``(name, plugin)`` pairs.
    :param entry_points: load installed plugins from the ``forgemind`` entry-point group.
    :param builtins: register the kernel's built-in backends (each an ordinary plugin).
    :param blocked: plugin names to block; defaults to ``FORGEMIND_DISABLE_PLUGINS``.
    :returns: the manager and a record per plugin; a plugin that fails to import is recorded with
        its error instead of breaking the kernel.
    """
    block = frozenset(blocked) if blocked is not None else blocked_from_env()
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in block:
        pm.set_blocked(name)
    records: list[PluginRecord] = []

    if builtins:
        for name, module_name in BUILTIN_PLUGINS.items():
            if name in block:
                continue
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name == module_name:  # a built-in not shipped in this build
                    continue
                records.append(PluginRecord(name, module_name, builtin=True, error=_describe(error)))
                continue
            except Exception as error:  # a broken built-in must not break the CLI
                records.append(PluginRecord(name, module_name, builtin=True, error=_describe(error)))
                continue
            pm.register(module, name=name)
            records.append(PluginRecord(name, module_name, builtin=True))

    if entry_points:
        for ep in sorted(metadata.entry_points(group=PROJECT_NAME), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in block or pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as error:  # reported by name, never fatal
                records.append(PluginRecord(ep.name, ep.value, version, dist, error=_describe(error)))
                continue
            pm.register(plugin, name=ep.name)
            records.append(PluginRecord(ep.name, ep.value, version, dist))

    for entry in plugins:
        given, plugin = entry if isinstance(entry, tuple) else (None, entry)
        registered = pm.register(plugin, name=given)
        if registered is None:  # blocked by name
            continue
        where = str(getattr(plugin, "__name__", None) or type(plugin).__module__)
        records.append(PluginRecord(registered, where))

    check(pm)
    return LoadedPlugins(pm=pm, records=tuple(records), blocked=block)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
