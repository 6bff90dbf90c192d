"""The embedding API: ``from forgemind_core import Forge``.

A :class:`Forge` is one kernel: its own plugin manager, its own home folder, its own loggers.
The ``forge`` CLI and the dashboard are thin shells over it; anything they do, a Python program can
do through this class::

    from forgemind_core import Forge

    forge = Forge(home="/tmp/fm", plugins=[my_plugin])
    summary = forge.run("examples/python-security/goal.yaml")
    print(summary["outcome"], summary["stable_checkpoint"])

``forge --help`` builds this class and nothing more, so the rooms whose import costs time (the
Brain, the Warden, the Foundry's packs, the Lorekeeper and the jobs, which bring the goal loader,
YAML and structured logging) are imported inside the methods that use them; the light ones (the
base layer's option rules, the ad-hoc entry points) at the top.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import pluggy
from cattrs import transform_error
from cattrs.errors import BaseValidationError
from forgemind_hookspecs import (
    PILLARS,
    BackendInfo,
    ConfigError,
    Event,
    ForgeError,
    Goal,
    Registry,
    StageContext,
    TaskPack,
    UnknownBackend,
    UserError,
    collect_backends,
)
from forgemind_hookspecs.policy import Policy

from forgemind_core import adhoc
from forgemind_core.base.options import BACKEND_NOUN, structure_options, unknown_backend_message
from forgemind_core.base.plugins import LoadedPlugins, PluginRecord, load_plugins
from forgemind_core.base.protocols import Reporter

__all__ = ["HOME_ENV", "Forge", "default_home"]

#: Environment variable naming the ForgeMind home folder.
HOME_ENV = "FORGEMIND_HOME"



def default_home() -> Path:
    """``$FORGEMIND_HOME`` or ``./.forgemind``, made absolute."""
    return _absolute(os.environ.get(HOME_ENV) or ".forgemind")


def _absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` as an absolute path (``~`` expanded, symlinks kept), so that no manifest, record or
    state file stores a path that means something else from another working directory."""
    return Path(path).expanduser().absolute()


class Forge:
    """One ForgeMind kernel.

    :param home: the home folder (runs, registry, caches); default ``$FORGEMIND_HOME`` or
        ``./.forgemind``, made absolute against the current directory. Created on first write,
        not on construction.
    :param plugins: in-process plugins (objects or ``(name, object)`` pairs) added to the
        installed ones.
    :param entry_points: load installed plugins (entry-point group ``forgemind``).
    :param builtins: register the kernel's built-in backends.
    :param blocked: plugin names to block; default from ``FORGEMIND_DISABLE_PLUGINS``.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        plugins: Sequence[Any] = (),
        entry_points: bool = True,
        builtins: bool = True,
        blocked: Iterable[str] | None = None,
    ) -> None:
        self.home = home if home is not None else default_home()
        self._plugin_args = {
            "plugins": tuple(plugins),
            "entry_points": entry_points,
            "builtins": builtins,
            "blocked": None if blocked is None else tuple(blocked),
        }
        self._catalogue: dict[str, dict[str, BackendInfo]] | None = None

    @property
    def home(self) -> Path:
        """The home folder, always absolute: set it to a relative path and it is resolved against
        the working directory at that moment, once."""
        return self._home

    @home.setter
    def home(self, value: str | os.PathLike[str]) -> None:
        self._home = _absolute(value)

    @property
    def plugin_args(self) -> Mapping[str, Any]:
        """What this kernel was built with (``plugins``, ``entry_points``, ``builtins``,
        ``blocked``): a worker process (a candidate's, forgemind_core/brain/candidates.py) builds
        the same kernel from it."""
        return dict(self._plugin_args)

    # --- plugins ---------------------------------------------------------------------------

    @cached_property
    def loaded(self) -> LoadedPlugins:
        """The plugin manager and the record of what was loaded (built on first use)."""
        return load_plugins(**self._plugin_args)  # type: ignore[arg-type]

    @property
    def pm(self) -> pluggy.PluginManager:
        return self.loaded.pm

    @property
    def hook(self) -> Any:
        """``forge.hook.forgemind_<name>(...)``: call a hook on this kernel's plugins."""
        return self.loaded.pm.hook

    def catalogue(self) -> dict[str, dict[str, BackendInfo]]:
        """Every backend offered by the loaded plugins: ``{pillar: {name: BackendInfo}}``."""
        if self._catalogue is None:
            self._catalogue = {pillar: collect_backends(self.pm, pillar) for pillar in PILLARS}
        return self._catalogue

    def plugins(self, *, include_builtins: bool = False) -> list[dict[str, Any]]:
        """One dict per plugin: name, version, module, builtin, error, hooks, backends per pillar."""
        catalogue = self.catalogue()
        rows = []
        for record in self.loaded.records:
            if record.builtin and not include_builtins:
                continue
            rows.append(self._plugin_row(record, catalogue))
        return rows

    def _plugin_row(self, record: PluginRecord, catalogue: Mapping[str, Mapping[str, BackendInfo]]) -> dict[str, Any]:
        plugin = self.pm.get_plugin(record.name)
        hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()) if plugin is not None else []
        backends = {
            pillar: sorted(name for name, info in by_name.items() if info.plugin == record.name)
            for pillar, by_name in catalogue.items()
        }
        return {
            "name": record.name,
            "version": record.version,
            "distribution": record.distribution,
            "module": record.module,
            "builtin": record.builtin,
            "error": record.error,
            "hooks": hooks,
            "backends": {pillar: names for pillar, names in backends.items() if names},
        }

    def backend(self, pillar: str, name: str, options: Mapping[str, Any] | None = None, *, field: str | None = None) -> Any:
        """Construct the backend ``name`` of ``pillar`` with ``options`` (a plain dict).

        :raises UnknownBackend: no loaded plugin offers it (the message lists those that exist).
        :raises ConfigError: the options do not fit the backend's ``Options`` class.
        """
        info = self.backend_info(pillar, name, field=field)
        return info.cls(self.build_options(info, options or {}, field=field))

    def backend_info(self, pillar: str, name: str, *, field: str | None = None) -> BackendInfo:
        """The catalogue entry of backend ``name`` of ``pillar``.

        :raises UnknownBackend: no loaded plugin offers it (the message lists those that exist).
        """
        available = self.catalogue().get(pillar, {})
        if name not in available:
            raise UnknownBackend(unknown_backend_message(pillar, name, available), field=field)
        return available[name]

    @staticmethod
    def build_options(info: BackendInfo, options: Mapping[str, Any], *, field: str | None = None) -> Any:
        """Structure a plain dict into ``info.cls.Options`` (unknown keys are errors)."""
        try:
            return structure_options(info.cls.Options, options)
        except BaseValidationError as error:
            detail = "; ".join(transform_error(error, path="options"))
            raise ConfigError(f"bad options for {BACKEND_NOUN[info.pillar]} {info.name!r}: {detail}", field=field) from None
        except (TypeError, ValueError) as error:
            raise ConfigError(f"bad options for {BACKEND_NOUN[info.pillar]} {info.name!r}: {error}", field=field) from None

    # --- goals, packs ----------------------------------------------------------------------

    def load_goal(self, path: str | os.PathLike[str]) -> Goal:
        """Read and validate a goal file against this kernel's backends."""
        from forgemind_core.brain.goals import load_goal

        return load_goal(path, self.catalogue())

    def validate_goal(self, path: str | os.PathLike[str]) -> list[UserError]:
        """Every problem of a goal file, each naming file, line and field (empty = ok)."""
        from forgemind_core.brain.goals import validate_goal

        return validate_goal(path, self.catalogue())

    def load_pack(self, goal: Goal) -> TaskPack | None:
        """The goal's task pack, if it names one."""
        if goal.pack is None:
            return None
        from forgemind_core.foundry.packs import load_pack

        return load_pack(goal.pack)

    # --- records ---------------------------------------------------------------------------

    def record(self, events: Sequence[Event]) -> None:
        """Broadcast events to every recorder (``forgemind_record``)."""
        if events:
            self.hook.forgemind_record(events=list(events), home=str(self.home))

    def registry(self) -> Registry:
        """The store that answers queries (``forgemind_registry``, firstresult)."""
        registry = self.hook.forgemind_registry(home=str(self.home))
        if registry is None:
            raise ForgeError("no registry plugin is installed (install forgemind-duckdb-registry)")
        return registry  # type: ignore[no-any-return]

    def resolve_model(self, ref: str) -> Any:
        """The model a reference names (a checkpoint id or prefix, ``stable:GOAL[@VERSION]``, a
        checkpoint folder, an export bundle, a ``.gguf`` file): a
        :class:`~forgemind_core.lorekeeper.models.ModelRef` (docs/servers.md, "Model references")."""
        from forgemind_core.lorekeeper.models import resolve_model

        return resolve_model(self.registry(), self.home, ref)

    def serve(self, ref: str, *, dtype: str = "q8_0", host: str = "127.0.0.1", port: int | None = None,
              token: str | None = None, backend: str = "auto",
              server_options: Mapping[str, Any] | None = None) -> Any:
        """A :class:`~forgemind_core.lorekeeper.serving.ModelServer` for the model ``ref`` names
        (``forge serve``), not started yet: use it as a context manager, or ``start()`` (resolves,
        exports the GGUF once, cached, and starts the server) and ``stop()``. ``host`` beyond
        loopback needs ``token`` (a one-sentence UserError here, before anything starts)."""
        from forgemind_core.lorekeeper.serving import ModelServer

        return ModelServer(self, ref, dtype=dtype, host=host, port=port, token=token, backend=backend,
                           server_options=dict(server_options or {}))

    def context(self, **fields: Any) -> StageContext:
        """A :class:`StageContext` rooted in this kernel's home (for work outside a run)."""
        from forgemind_core.base.logs import make_logger

        fields.setdefault("home", self.home)
        fields.setdefault("work_dir", self.home / "work" / str(fields.get("run_id", "adhoc")))
        fields.setdefault("cache_dir", self.home / "cache")
        fields.setdefault("log", make_logger(console=False))
        return StageContext(**fields)

    # --- outside a run, and in the background (forgemind_core.adhoc, forgemind_core.brain.jobs) -------

    def pretrain(self, corpus: str | os.PathLike[str], *, preset: str = "tiny", options: Mapping[str, Any] | None = None,
                 trainer: str = "hf", on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
                 progress: Any = None) -> Any:
        """Pre-train a base from scratch on a corpus (``forge pretrain``); returns its Checkpoint.

        ``options`` override the preset (``steps``, ``tokens``, ``batch_size``, ``learning_rate``, ...);
        ``on_event(kind, payload)`` receives the trainer's metrics (``train.loss`` per step).
        """
        return adhoc.pretrain(self, str(corpus), preset=preset, options=options, trainer=trainer,
                        on_event=on_event, progress=progress)

    def train(self, base: str, data: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Fine-tune ``base`` (a folder, a checkpoint id, a hub id) on a data file (``forge train``).

        Keyword arguments: ``format``, ``columns`` (CSV mapping), ``method`` (full, lora, qlora),
        ``hyperparameters``, ``out``, ``seed``, ``trainer``, ``on_event``, ``progress``. The same
        request again resumes from its last checkpoint. Returns the Checkpoint.
        """
        return adhoc.train(self, base, data, **kwargs)

    def estimate(self, base: str, data: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Tokens, steps, seconds and cost of :meth:`train` with the same arguments (``forge estimate``)."""
        return adhoc.estimate(self, base, data, **kwargs)

    def generate(self, checkpoint: Any, prompts: Sequence[str], **kwargs: Any) -> list[str]:
        """Completions from a checkpoint (``forge generate``): ``runner``, ``max_new_tokens``, ``temperature``."""
        return adhoc.generate(self, checkpoint, prompts, **kwargs)

    def validate_data(self, path: str | os.PathLike[str], *, format: str | None = None,
                      columns: Mapping[str, str] | None = None) -> list[Any]:
        """Every bad row of a data file as a DataError (``forge validate --data``); empty = valid."""
        return adhoc.validate_data(path, format=format, columns=columns)

    def preview_data(self, path: str | os.PathLike[str], *, format: str | None = None,
                     columns: Mapping[str, str] | None = None, limit: int = 50) -> dict[str, Any]:
        """A data file's problems (one per bad row) and its first ``limit`` rows as read."""
        return adhoc.preview_data(path, format=format, columns=columns, limit=limit)

    def evaluate(self, checkpoint: Any, suite: Any, **kwargs: Any) -> Any:
        """Score a checkpoint on a suite file or typed cases (``forge eval``); returns an EvalReport."""
        return adhoc.evaluate(self, checkpoint, suite, **kwargs)

    def compare(self, checkpoints: Sequence[str], **kwargs: Any) -> dict[str, Any]:
        """Checkpoints side by side, regressions first (``forge compare``); ``suite=`` evaluates now."""
        return adhoc.compare(self, checkpoints, **kwargs)

    def checkpoints(self) -> list[dict[str, Any]]:
        """Every checkpoint of this home: recorded by runs, fine-tuned or pre-trained outside one."""
        return adhoc.list_checkpoints(self)

    def submit(self, kind: str, params: Mapping[str, Any] | None = None, *, detach: bool = False) -> str:
        """Start a background job (``run``, ``resume``, ``pretrain``, ``train``, ...: the method of
        that name with ``params``) and return its id at once; follow it with :meth:`job`.
        ``detach=True`` runs it in its own process (``forge jobs submit``), else in a thread."""
        from forgemind_core.brain.jobs import submit

        return submit(self, kind, params, detach=detach)

    def jobs(self) -> list[dict[str, Any]]:
        """Every background job of this home, newest first (``forge jobs``)."""
        from forgemind_core.brain.jobs import list_jobs

        return list_jobs(self.home)

    def job(self, job_id: str, *, events: bool = True) -> dict[str, Any]:
        """A job's state, progress, events and log, read from its folder (``forge jobs show``)."""
        from forgemind_core.brain.jobs import read_job

        return read_job(self.home, job_id, events=events)

    # --- runs ------------------------------------------------------------------------------

    def run(
        self,
        goal: Goal | str | os.PathLike[str],
        *,
        run_id: str | None = None,
        reporter: Reporter | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> dict[str, Any]:
        """Run a goal to the end (promote or stop) and return the run's summary.

        :param goal: a :class:`Goal` or the path of a goal file.
        :param run_id: choose the run id (default: goal name + time + random suffix).
        :param reporter: receives live progress (default: silent); the CLI passes a rich one.
        :param on_event: called with every event recorded, after the recorders.
        """
        from forgemind_core.brain.loop import Loop

        if not isinstance(goal, Goal):
            goal = self.load_goal(goal)
        return Loop.start(self, goal, run_id=run_id, reporter=reporter, on_event=on_event).run()

    def resume(self, run_id: str, *, reporter: Reporter | None = None, on_event: Callable[[Event], None] | None = None) -> dict[str, Any]:
        """Resume a run from its last finished stage; finished work is not redone or paid again."""
        from forgemind_core.brain.loop import Loop

        return Loop.resume(self, run_id, reporter=reporter, on_event=on_event).run()

    def status(self, run_id: str) -> dict[str, Any]:
        """A run's state from its own folder (works while the run is writing), with ``running``:
        the running stage's step, loss and ETA from its metric events."""
        from forgemind_core.brain.loop import read_status

        return read_status(self.home, run_id, metrics=lambda: self.registry().metrics(run_id))

    def summary(self, run_id: str) -> dict[str, Any]:
        """A run's summary from its folder, with each iteration's loss curve (``forge show RUN``)."""
        from forgemind_core.brain.summary import folder_summary

        return folder_summary(self.home, run_id)

    def runs(self) -> list[dict[str, Any]]:
        return self.registry().runs()

    def show(self, run_id: str) -> dict[str, Any] | None:
        return self.registry().run(run_id)

    def lineage(self, node_id: str) -> dict[str, Any]:
        return self.registry().lineage(node_id)

    # --- the Warden: policy, review queue, approvals (forgemind_core/warden/) ----------------

    def load_policy(self, path: str | os.PathLike[str]) -> Policy:
        """Read and validate a policy file (:class:`forgemind_hookspecs.Policy`); ConfigError
        naming file, line and field on a mistake."""
        from forgemind_core.warden.policy import load_policy

        return load_policy(path)

    def review_queue(self, run_id: str | None = None, *, status: str | None = "pending",
                     subject_kind: str | None = None) -> list[dict[str, Any]]:
        """Review items, oldest first (``status``: ``pending``, ``decided`` or ``None`` for all;
        ``subject_kind``: ``example`` or ``promotion``), each with scores, reasons and decision."""
        from forgemind_core.warden.review import queue

        return queue(self, run_id, status=status, subject_kind=subject_kind)

    def review(self, item_id: str, decision: str, reason: str | None = None, reviewer: str | None = None,
               edit: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Decide a review item: ``approve``, ``reject``, ``edit`` (``edit={"completion": ...}``) or
        ``skip``; recorded with the reviewer (default ``$USER``) and the time."""
        from forgemind_core.warden.review import decide

        return decide(self, item_id, decision, reason=reason, reviewer=reviewer, edit=edit)

    def approve(self, checkpoint: str, reviewer: str | None = None, reason: str = "") -> dict[str, Any]:
        """Approve a candidate checkpoint's promotion (policy ``approval_required``): records the
        approval (reviewer, time), then promotes it to the stable channel."""
        from forgemind_core.warden.review import approve

        return approve(self, checkpoint, reviewer=reviewer, reason=reason)

    def export_reviews(self, path: str | os.PathLike[str], run_id: str | None = None) -> int:
        """Write the pending review items as JSONL for review in other tools; returns how many."""
        from forgemind_core.warden.review import export_queue

        return export_queue(self, path, run_id)

    def import_reviews(self, path: str | os.PathLike[str], reviewer: str | None = None) -> list[dict[str, Any]]:
        """Record the decisions of a JSONL file (as written by :meth:`export_reviews`, each line's
        ``decision`` filled in); every line is checked before any is recorded."""
        from forgemind_core.warden.review import import_decisions

        return import_decisions(self, path, reviewer=reviewer)

    # --- iteration tools: load, fork, branches, diff, SQL (forgemind_core/brain/forks.py, lorekeeper/) --

    def config(self, run_id: str, iteration: int | None = None) -> str:
        """The goal file (YAML) that produced a run, or one iteration of it (its recorded plans
        pinned with the ``replay`` planner); it runs again as is with ``forge run``."""
        from forgemind_core.brain.forks import config_yaml

        return config_yaml(self.home, run_id, iteration)

    def fork(
        self,
        run_id: str,
        iteration: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        branch: str | None = None,
        *,
        new_run_id: str | None = None,
        run: bool = True,
        reporter: Reporter | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> dict[str, Any]:
        """Start a run that reuses ``run_id``'s work up to ``iteration`` (default: its last) and
        changes only ``overrides`` (dotted goal keys: ``{"train.epochs": 3}``); only the stages
        those settings affect run again. Returns the fork's summary (``run=False``: create the
        fork without running it; ``resume`` runs it later)."""
        from forgemind_core.brain.forks import fork_run

        loop = fork_run(self, run_id, iteration=iteration, overrides=overrides, branch=branch,
                        new_run_id=new_run_id, reporter=reporter, on_event=on_event)
        return loop.run() if run else loop.summary()

    def runs_tree(self) -> list[dict[str, Any]]:
        """Runs as a tree of branches: roots with their forks as ``children``, each named."""
        from forgemind_core.lorekeeper.tree import run_tree

        return run_tree(self.registry())

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """Config and result differences of two runs (see :func:`forgemind_core.brain.forks.diff_runs`)."""
        from forgemind_core.brain.forks import diff_runs

        return diff_runs(self, a, b)

    def sql(self, query: str, *, timeout_s: float | None = None, max_rows: int | None = None,
            memory_limit: str | None = None) -> list[dict[str, Any]]:
        """Read-only SQL over the registry; any write is refused (UserError). The registry bounds
        the query (docs/registry.md: 10 s, 10,000 rows, 1GB by default); a limit given here
        replaces its default (0 lifts the time or row limit)."""
        limits: dict[str, Any] = {"timeout_s": timeout_s, "max_rows": max_rows, "memory_limit": memory_limit}
        return self.registry().sql(query, **{k: v for k, v in limits.items() if v is not None})

    # --- exports (forgemind_core/lorekeeper/exports.py) ------------------------------------------------------

    def export_data(self, node_id: str, out: str | os.PathLike[str], *, format: str = "parquet") -> dict[str, Any]:
        """Write a dataset, a checkpoint's evaluation results or a run's history as Parquet or
        JSON Lines files under ``out``; returns the files written with their row counts."""
        from forgemind_core.lorekeeper.exports import export_data

        return export_data(self, node_id, out, format=format)

    def export(
        self,
        checkpoint: str,
        target: str,
        out: str | os.PathLike[str],
        metadata: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        push: str | None = None,
        private: bool = False,
    ) -> dict[str, Any]:
        """Export a checkpoint as a bundle for ``target`` (``hf``, ``ollama``, ``gguf``: the
        exporter backends installed) into ``out``: the model, ``forge.yaml`` and a model card.
        ``metadata`` (author, license, version, tags, ...) overrides the goal's ``export``
        section; ``options`` are the exporter's; ``push`` a Hub repo id to upload the bundle to
        (``HF_TOKEN``). Returns the bundle's main path and files (and ``pushed``)."""
        from forgemind_core.lorekeeper.exports import export_bundle

        return export_bundle(self, checkpoint, target, out, metadata=metadata or {}, options=options or {},
                             push=push, private=private)
