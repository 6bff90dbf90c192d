"""The hook specifications: ForgeMind's whole plugin contract.

Every hook is called with keyword arguments only. Hooks evolve by gaining optional arguments;
an implementation may accept any subset of a hook's arguments (pluggy passes only the ones it
names). Each hook's docstring is its documentation; docs/hooks.md repeats every signature and a
meta-test keeps the two in step.

Registration hooks are broadcast: every plugin's implementation is called and each may register
any number of backends. ``register`` raises :class:`~forgemind_hookspecs.errors.PluginError`
for a class that lacks ``name`` or ``Options`` or repeats a name already taken in that pillar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from .records import Event

if TYPE_CHECKING:  # pragma: no cover - typing only, click is the kernel's dependency
    import click

    from .backends import Registry

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

#: The pluggy project name; also the entry-point group plugins are found through.
PROJECT_NAME = "forgemind"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[type], None]


# --- Foundry: generate ------------------------------------------------------------------------


@hookspec
def forgemind_register_generators(register: Register) -> None:
    """Offer generator backends (:class:`~forgemind_hookspecs.backends.Generator`).

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(GeneratorClass)`` for each generator.
    """


# --- Foundry / Warden: filter -----------------------------------------------------------------


@hookspec
def forgemind_register_filters(register: Register) -> None:
    """Offer filter backends (:class:`~forgemind_hookspecs.backends.Filter`): dedup, rules,
    safety checks, LLM judges, toxicity, moderation.

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(FilterClass)`` for each filter.
    """


# --- Forge: train -----------------------------------------------------------------------------


@hookspec
def forgemind_register_trainers(register: Register) -> None:
    """Offer trainer backends (:class:`~forgemind_hookspecs.backends.Trainer`): pre-training
    from scratch, estimates, full/LoRA/QLoRA fine-tuning.

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(TrainerClass)`` for each trainer.
    """


# --- Trial Grounds: evaluate ------------------------------------------------------------------


@hookspec
def forgemind_register_runners(register: Register) -> None:
    """Offer model runners (:class:`~forgemind_hookspecs.backends.Runner`): inference on a
    checkpoint for evaluation, comparison and the playground.

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(RunnerClass)`` for each runner.
    """


@hookspec
def forgemind_register_scorers(register: Register) -> None:
    """Offer scorers (:class:`~forgemind_hookspecs.backends.Scorer`): exact match, label match,
    regex, JSON schema, AST checks, LLM judges.

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(ScorerClass)`` for each scorer.
    """


@hookspec
def forgemind_register_adversaries(register: Register) -> None:
    """Offer adversarial-case writers (:class:`~forgemind_hookspecs.backends.Adversary`) that
    derive hard evaluation cases from existing ones, offline or with an LLM.

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(AdversaryClass)`` for each adversary.
    """


# --- Warden: review ---------------------------------------------------------------------------


@hookspec
def forgemind_register_reviewers(register: Register) -> None:
    """Offer reviewer backends (:class:`~forgemind_hookspecs.backends.Reviewer`).

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(ReviewerClass)`` for each reviewer.
    """


# --- Brain: plan and execute ------------------------------------------------------------------


@hookspec
def forgemind_register_planners(register: Register) -> None:
    """Offer planners (:class:`~forgemind_hookspecs.backends.Planner`) that read a run's
    history and write its next plan, or stop it.

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(PlannerClass)`` for each planner.
    """


@hookspec
def forgemind_register_executors(register: Register) -> None:
    """Offer executors (:class:`~forgemind_hookspecs.backends.Executor`) that run candidate
    work locally or on a cluster.

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(ExecutorClass)`` for each executor.
    """


# --- Export -----------------------------------------------------------------------------------


@hookspec
def forgemind_register_exporters(register: Register) -> None:
    """Offer exporters (:class:`~forgemind_hookspecs.backends.Exporter`) that write a checkpoint
    as a bundle for Hugging Face, Ollama, GGUF, ...

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(ExporterClass)`` for each exporter.
    """


# --- Servers: models served for other backends ---------------------------------------------


@hookspec
def forgemind_register_servers(register: Register) -> None:
    """Offer model servers (:class:`~forgemind_hookspecs.backends.Server`) that start a local
    OpenAI-compatible server for a model (llama.cpp for a GGUF, ...), so that a goal's ``server:``
    key can hand a client backend (the openai generator, judge, adversary, runner) a ``base_url``.

    Called once when a kernel builds its backend catalogue. Broadcast.

    :param register: call ``register(ServerClass)`` for each server.
    """


# --- Lorekeeper: record -----------------------------------------------------------------------


@hookspec
def forgemind_record(events: Sequence[Event], home: str) -> None:
    """Receive events as they happen. Broadcast: every recorder gets every event.

    The kernel calls this at every stage boundary *before* the next stage starts, and for
    metrics and progress notes in between, batching events that happen together (e.g. all the
    examples of one generation batch). An event may be delivered again after a crash and
    resume; its ``id`` is deterministic, so recorders must treat a repeated id as a no-op.

    :param events: the events, in ``seq`` order within each run.
    :param home: the ForgeMind home folder the run lives in.
    """


@hookspec(firstresult=True)
def forgemind_registry(home: str) -> Registry | None:
    """Return the store that answers queries about runs and lineage in ``home``.

    firstresult: the first plugin returning something other than ``None`` wins (the DuckDB
    registry by default). Called lazily by CLI commands and the embedding API when they query.

    :param home: the ForgeMind home folder.
    :returns: a :class:`~forgemind_hookspecs.backends.Registry`, or ``None`` to let another
        plugin answer.
    """


# --- CLI --------------------------------------------------------------------------------------


@hookspec
def forgemind_register_commands(cli: click.Group) -> None:
    """Add commands to the ``forge`` CLI (``@cli.command()``). Broadcast.

    Called when the ``forge`` command group is built, before arguments are parsed. Keep imports
    of heavy libraries inside the commands so that ``forge --help`` stays fast.

    :param cli: the ``forge`` click group.
    """


ALL_HOOKS: tuple[Callable[..., Any], ...] = (
    forgemind_register_generators,
    forgemind_register_filters,
    forgemind_register_trainers,
    forgemind_register_runners,
    forgemind_register_scorers,
    forgemind_register_adversaries,
    forgemind_register_reviewers,
    forgemind_register_planners,
    forgemind_register_executors,
    forgemind_register_exporters,
    forgemind_register_servers,
    forgemind_record,
    forgemind_registry,
    forgemind_register_commands,
)
