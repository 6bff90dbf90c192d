"""``forge new "DESCRIPTION"``: draft a goal file and a task-pack skeleton from one sentence.

Offline the skeleton comes from plain rules over the description and the ``--example`` pairs;
with ``--model`` (served with ``--server``, or at ``--base-url``) a model drafts labels,
instructions, a system prompt and a starter grammar, each part validated and replaced by the
rules' on a nonsense answer (a warning). The suites are left for the user to write. The work is
:mod:`forgemind_core.brain.drafting`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from forgemind_core.cli.tools import echo_json, json_option, pass_forge

if TYPE_CHECKING:  # forge --help must not import the API
    from forgemind_core.api import Forge

__all__ = ["new_command"]


def _server_spec(text: str) -> dict[str, Any]:
    """``--server llamacpp`` or ``--server '{backend: llamacpp, n_ctx: 2048}'`` as a mapping."""
    from forgemind_hookspecs.errors import ConfigError
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        value = YAML(typ="safe").load(text) if text.lstrip().startswith("{") else {"backend": text.strip()}
    except YAMLError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("backend"), str):
        raise ConfigError("expected a server backend name or a mapping with a 'backend' key", field="--server")
    return dict(value)


@click.command("new")
@click.argument("description")
@click.option("--example", "examples", multiple=True, metavar="INPUT=>ANSWER",
              help="An example input and the answer wanted for it (repeatable).")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Folder to write (must not exist or be empty). Default: ./<name from the description>.")
@click.option("--model", default=None, help="A model that drafts the parts: a served model reference "
              "(with --server) or a model name at --base-url.")
@click.option("--server", "server", default=None, help="Serve --model locally: a server backend name "
              "(llamacpp) or a mapping, e.g. '{backend: llamacpp, n_ctx: 2048}'.")
@click.option("--base-url", default=None, help="An OpenAI-compatible endpoint serving --model "
              "(API key from $OPENAI_API_KEY).")
@json_option
@pass_forge
def new_command(forge: Forge, description: str, examples: tuple[str, ...], out: Path | None, model: str | None,
                server: str | None, base_url: str | None, as_json: bool) -> None:
    """Draft a goal and a task-pack skeleton from DESCRIPTION (suites left to write by hand).

    \b
    forge new "Classify a review as positive or negative" \\
        --example "Loved it=>positive" --example "Broke in a day=>negative"
    """
    from forgemind_hookspecs.errors import ConfigError

    from forgemind_core.brain.drafting import draft, parse_example, write_skeleton

    pairs = [parse_example(text) for text in examples]
    if (server or base_url) and not model:
        raise ConfigError("--server and --base-url need --model (the model that drafts)", field="--model")
    if model and not (server or base_url):
        raise ConfigError("--model needs --server (serve it here) or --base-url (where it is served)",
                          field="--server")
    if model:
        result = _drafted_by_model(forge, description, pairs, model, server, base_url)
    else:
        result = draft(description, pairs)
    folder = out if out is not None else Path(result.name)
    written = write_skeleton(result, folder)
    if as_json:
        echo_json({"folder": str(folder), "files": [str(p) for p in written], "kind": result.kind,
                   "labels": list(result.labels), "scorer": result.scorer, "drafted_by": result.drafted_by,
                   "warnings": list(result.warnings)})
        return
    click.echo(f"Wrote {folder}/ ({result.kind}, {len(result.labels)} label(s), scorer {result.scorer}, "
               f"drafted by {result.drafted_by}):")
    for path in written:
        click.echo(f"  {path}")
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Next: write the suites by hand ({folder}/suites/README.md), then "
               f"forge validate {folder}/goal.yaml")


def _drafted_by_model(forge: Forge, description: str, pairs: list[Any], model: str, server: str | None,
                      base_url: str | None) -> Any:
    from forgemind_hookspecs import StageContext

    from forgemind_core.base.servers import ServerPool
    from forgemind_core.brain.drafting import draft_with_model
    from forgemind_core.foundry.labeller import Labeller

    def asker(url: str, served: str, key: str | None) -> Any:
        labeller = Labeller(model=served, base_url=url, api_key=key, mode="chat", max_tokens=600, stop=(),
                            timeout_s=600.0)
        return lambda prompt: labeller.ask(prompt).text

    if base_url:
        return draft_with_model(description, pairs, asker(base_url, model, os.environ.get("OPENAI_API_KEY")))
    work = Path(forge.home) / "new-servers"
    pool = ServerPool(forge, context=lambda: StageContext(work_dir=work, home=Path(forge.home),
                                                                 cache_dir=Path(forge.home) / "cache"))
    with pool:
        endpoint = pool.endpoint(_server_spec(server or ""), model, field="--server")
        return draft_with_model(description, pairs, asker(endpoint.base_url, endpoint.model, endpoint.api_key))
