"""The ``forge`` command line: a thin shell over :class:`forgemind_core.api.Forge`.

Exit codes: 0 success, 1 failure (a run that stopped without meeting its goal, a broken
plugin), 2 usage or input error. A :class:`~forgemind_hookspecs.errors.ForgeError` is printed as
one sentence, never as a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click
from forgemind_hookspecs import ForgeError, UserError

from forgemind_core.api import HOME_ENV, Forge
from forgemind_core.base import VERSION as __version__

__all__ = ["ForgeGroup", "build_cli", "main"]

#: Kernel command modules and the click commands each exports, added to the ``forge`` group.
KERNEL_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("forgemind_core.cli.commands.runs", ("run", "resume", "status", "runs", "show", "lineage", "plugins")),
    ("forgemind_core.cli.commands.validate", ("validate",)),
    ("forgemind_core.cli.commands.trials", ("eval_command", "compare_command")),
    ("forgemind_core.cli.commands.review", ("review", "approve_command")),
    ("forgemind_core.cli.commands.iterate",
     ("fork", "diff_command", "sql_command", "export_data_command", "export_command")),
    ("forgemind_core.cli.commands.jobs", ("jobs", "checkpoints")),
    ("forgemind_core.cli.commands.serve", ("serve",)),
    ("forgemind_core.cli.commands.packs", ("pack_group",)),
    ("forgemind_core.cli.commands.report", ("report",)),
    ("forgemind_core.cli.commands.new", ("new_command",)),
)


class ForgeGroup(click.Group):
    """A click group that turns ForgeError into one sentence and the right exit code.

    While a command runs, ``$FORGEMIND_HOME`` names the kernel's (absolute) home, so plugin
    commands that read it and child processes agree with ``--home``; it is restored after.
    """

    def invoke(self, ctx: click.Context) -> Any:
        before = os.environ.get(HOME_ENV)
        try:
            return super().invoke(ctx)
        except ForgeError as error:
            click.echo(f"Error: {error}", err=True)
            for note in getattr(error, "__notes__", ()):  # further problems of the same file
                click.echo(f"Error: {note}", err=True)
            ctx.exit(2 if isinstance(error, UserError) else 1)
        finally:
            if before is None:
                os.environ.pop(HOME_ENV, None)
            else:
                os.environ[HOME_ENV] = before


_HOME_HELP = "ForgeMind home folder (runs, registry, caches). Default: $FORGEMIND_HOME or ./.forgemind"


def _use_home(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """``--home`` given before or after the subcommand: the kernel's home for this command."""
    forge = ctx.find_root().obj
    if value is None or not isinstance(forge, Forge):
        return
    forge.home = value
    os.environ[HOME_ENV] = str(forge.home)


def _home_option(**kwargs: Any) -> click.Option:
    return click.Option(["--home"], type=click.Path(file_okay=False, path_type=Path), callback=_use_home,
                        expose_value=False, help=_HOME_HELP, **kwargs)


def _add_home_option(command: click.Command) -> None:
    """Give ``command`` (and every subcommand of a group) its own ``--home``, so that
    ``forge <command> --home X`` works like ``forge --home X <command>``."""
    if not any(isinstance(p, click.Option) and "--home" in p.opts for p in command.params):
        command.params.append(_home_option())
    for sub in getattr(command, "commands", {}).values():
        _add_home_option(sub)


def build_cli(forge: Forge | None = None, *, configure_logging: bool = False) -> click.Group:
    """Build the ``forge`` group: kernel commands plus those plugins add.

    :param forge: the kernel whose plugins may add commands (default: a new :class:`Forge`).
    :param configure_logging: when a command runs, send the process's structlog output to stderr
        at ``$FORGEMIND_LOG_LEVEL`` (default warning). The ``forge`` executable does; an
        application embedding the group keeps its own logging.
    """
    forge = forge if forge is not None else Forge()

    @click.group(cls=ForgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="forge")
    @click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar=HOME_ENV, help=_HOME_HELP)
    @click.pass_context
    def cli(ctx: click.Context, home: Path | None) -> None:
        """ForgeMind: state a goal; ForgeMind makes data, trains, tests and promotes a model.

        The pillars: the Brain (run, resume, status), the Foundry (data), the Forge (training),
        the Trial Grounds (eval, compare), the Lorekeeper (runs, show, lineage) and the Warden
        (review). Start with `forge run examples/python-security/goal.yaml`.
        """
        ctx.obj = forge
        if home is not None:
            forge.home = home
            os.environ[HOME_ENV] = str(forge.home)
        if configure_logging:  # here, not at start-up: `forge --help` need not import structlog
            from forgemind_core.base.logs import configure_process_logging

            configure_process_logging(os.environ.get("FORGEMIND_LOG_LEVEL", "warning"))

    for module_name, names in KERNEL_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue
            raise
        for name in names:
            cli.add_command(getattr(module, name))

    try:
        forge.hook.forgemind_register_commands(cli=cli)
    except ForgeError as error:  # a plugin broke the contract: say so, keep the CLI usable
        click.echo(f"Warning: {error}", err=True)
    for command in cli.commands.values():
        _add_home_option(command)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``forge``)."""
    try:
        cli = build_cli(configure_logging=True)
    except ForgeError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2 if isinstance(error, UserError) else 1)
    cli.main(args=argv, prog_name="forge")
