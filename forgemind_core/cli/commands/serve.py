"""``forge serve MODEL``: serve a model on an OpenAI-compatible API until SIGINT or SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from forgemind_core.cli.tools import pass_forge

__all__ = ["serve"]

#: ``forge serve``'s token variable (forgemind_core.lorekeeper.serving.TOKEN_ENV; not imported
#: here so that ``forge --help`` stays light).
_TOKEN_ENV = "FORGEMIND_SERVE_TOKEN"


class _Stop(BaseException):
    """SIGTERM (or SIGHUP): stop as Ctrl-C does."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):  # the first one stops; later ones are ignored
        signal.signal(sig, signal.SIG_IGN)
    raise _Stop(signum)


def _alive(pid: int | None) -> bool:
    """The server process still runs (a zombie counts as ended); ``True`` where /proc cannot tell."""
    if pid is None:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


@click.command("serve")
@click.argument("model")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default: one derived from the model, the same on every start; 0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs --token.")
@click.option("--dtype", type=click.Choice(["q8_0", "f16", "f32"]), default="q8_0", show_default=True,
              help="Precision of the GGUF made for a checkpoint (a .gguf MODEL is served as it is).")
@click.option("--token", envvar=_TOKEN_ENV, default=None,
              help=f"Access token clients send as their API key (or ${_TOKEN_ENV}); required beyond loopback.")
@click.option("--n-ctx", type=click.IntRange(16), default=2048, show_default=True,
              help="Context window in tokens (prompt and answer together).")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: every core).")
@click.option("--backend", type=click.Choice(["auto", "llamacpp", "transformers"]), default="auto", show_default=True,
              help="auto: llama.cpp over the GGUF, transformers where the GGUF export cannot take the model.")
@click.option("--json", "as_json", is_flag=True, help="Print what is served as one JSON line.")
@pass_forge
def serve(forge: Any, model: str, port: int | None, host: str, dtype: str, token: str | None, n_ctx: int,
          threads: int | None, backend: str, as_json: bool) -> None:
    """Serve MODEL on an OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions)
    until Ctrl-C or SIGTERM.

    MODEL is a checkpoint id (or a unique prefix), stable:GOAL (the newest promoted model of a
    goal), stable:GOAL@VERSION, a checkpoint folder, an export bundle or a .gguf file. A checkpoint
    is exported to GGUF once (cached under the home) and served by llama.cpp, or by transformers
    where the export cannot take it (--backend auto). Prints the base_url and the model id to send.
    """
    options: dict[str, Any] = {"n_ctx": n_ctx}
    if threads:
        options["n_threads"] = threads
    server = forge.serve(model, dtype=dtype, host=host, port=port, token=token, backend=backend,
                         server_options=options)
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    signalled = False
    try:
        endpoint = server.start()
        info = server.describe()
        if as_json:
            click.echo(json.dumps(info))
        else:
            named = ", ".join(f"{k} {info[k]}" for k in ("checkpoint_id", "goal", "version", "run_id") if info[k])
            source = info["gguf"] or f"its folder with transformers ({info['fallback'] or 'as asked'})"
            click.echo(f"serving {model}" + (f" ({named})" if named else "") + f" from {source}")
            click.echo(f"base_url: {endpoint.base_url}")
            click.echo(f"model: {endpoint.model}")
            if info["auth"]:
                click.echo("api key: the --token given")
            click.echo("Ctrl-C or SIGTERM stops it.")
        sys.stdout.flush()
        while _alive(endpoint.pid):
            time.sleep(0.5)
        from forgemind_hookspecs import ForgeError

        raise ForgeError(f"the model server exited on its own; see its log: {endpoint.log}")
    except (KeyboardInterrupt, _Stop):
        signalled = True
    finally:
        # a second signal while stopping (a supervisor signalling the process and its group,
        # a second Ctrl-C) must not cut the stop short: the stop is bounded (stop_timeout_s, then
        # the server's process group is killed)
        for sig in (*previous, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        try:
            server.stop()
        finally:
            if not signalled:  # stopped by a signal: the process ends now, later ones stay ignored
                signal.signal(signal.SIGINT, signal.default_int_handler)
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    if not as_json:
        click.echo("stopped")
