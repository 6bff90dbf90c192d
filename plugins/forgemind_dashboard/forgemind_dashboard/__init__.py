"""forgemind-dashboard: ``forge dashboard``, a web interface (Gradio) over the ``Forge`` API.

This module is what the ``forgemind`` entry point ``dashboard`` loads. It imports click and the
contract only: gradio loads when the command runs, so ``forge --help`` stays fast. The dashboard
never imports the kernel: the ``forge`` group hands its :class:`~forgemind_core.Forge` to the
command through click's context object, and every action of every tab is a call on that object
(see docs/dashboard.md and docs/decisions/0005-dashboard-reaches-the-kernel-through-the-cli.md).
"""

from __future__ import annotations

from typing import Any

import click
from forgemind_hookspecs import hookimpl

__all__ = ["TOKEN_ENV", "forgemind_register_commands"]

#: Environment variable holding the access token (instead of ``--token``).
TOKEN_ENV = "FORGEMIND_DASHBOARD_TOKEN"


@hookimpl
def forgemind_register_commands(cli: Any) -> None:
    """Add ``forge dashboard``."""

    @cli.command("dashboard")
    @click.option("--host", default="127.0.0.1", show_default=True,
                  help="Address to bind. Anything but loopback needs --token.")
    @click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True)
    @click.option("--token", envvar=TOKEN_ENV, default=None,
                  help=f"Access token (or ${TOKEN_ENV}); required to bind beyond loopback.")
    @click.option("--max-upload-mb", type=click.IntRange(1), default=200, show_default=True,
                  help="Largest file a user may upload.")
    @click.option("--learn", is_flag=True, help="Open with learn mode on (explainers, tips, definitions).")
    @click.option("--allow", "allow", multiple=True, metavar="FOLDER",
                  type=click.Path(exists=True, file_okay=False, resolve_path=True),
                  help="A folder the dashboard may read and write besides the ForgeMind home (repeatable; "
                       "default: the current folder).")
    @click.pass_context
    def dashboard(ctx: click.Context, host: str, port: int, token: str | None, max_upload_mb: int,
                  learn: bool, allow: tuple[str, ...]) -> None:
        """Open the ForgeMind web dashboard (training, fine-tuning, evaluation, runs, review, export).

        Binds 127.0.0.1 by default; binding another address needs --token (or the environment
        variable), and then every visitor logs in with that token as the password. Paths typed
        into the page must lie in the ForgeMind home or an --allow folder (default: the current
        folder); anything else is refused with one sentence (docs/security.md).
        """
        from .security import Confinement, check_bind

        check_bind(host, token)
        forge = ctx.find_root().obj
        if forge is None:  # run outside the forge group (a test): the caller passes one in
            raise click.UsageError("forge dashboard must run inside the forge command group")
        Confinement(forge.home, allow)  # a root folder in --allow: one sentence, before gradio loads
        from .app import launch

        launch(forge, host=host, port=port, token=token, max_upload_bytes=max_upload_mb * 1024 * 1024,
               learn=learn, block=True, allow=allow)
