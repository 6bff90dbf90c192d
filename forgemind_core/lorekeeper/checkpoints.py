"""What a checkpoint reference names: a model folder (with or without a record of itself), an id
the registry knows, or what a runner makes of it (``forge eval``, ``compare``, ``generate``,
``export``, ``train`` on a base)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from attrs import evolve
from cattrs import transform_error
from forgemind_hookspecs import Checkpoint, ConfigError, Registry, UserError, content_hash, from_dict

from forgemind_core.base.fsio import read_json

__all__ = ["HasRegistry", "resolve_checkpoint"]


class HasRegistry(Protocol):
    """Anything with a registry: the ``Forge`` kernel, or a test's stand-in."""

    def registry(self) -> Registry:
        """The store that answers queries (``forgemind_registry``)."""
        ...


def resolve_checkpoint(forge: HasRegistry, ref: str, runner: Any = None) -> Checkpoint:
    """The checkpoint ``ref`` names: a folder (with or without a record of itself) or an id in
    the registry of ``forge`` (anything with ``registry()``); failing both, what ``runner``'s
    optional ``checkpoint(ref)`` makes of it (the ``openai`` runner: the endpoint's model ``ref``).

    A folder's record is ``manifest.json`` (``{"checkpoint": {...}, ...}``, as trainers write it)
    or ``checkpoint.json`` (the bare Checkpoint record). A folder with neither (a plain model folder) becomes a ``full`` checkpoint whose
    id is the hash of its absolute path. A ``checkpoint.json`` whose ``path`` no longer exists
    (the folder was moved) is pointed at the folder it was found in.

    :raises UserError: ``ref`` is neither an existing folder nor a recorded checkpoint id.
    :raises ConfigError: ``checkpoint.json`` is not a valid Checkpoint record.
    """
    folder = Path(ref)
    if folder.is_dir():
        folder = folder.resolve()
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            manifest = folder / "checkpoint.json"
        if manifest.is_file():
            try:
                data = read_json(manifest)
            except json.JSONDecodeError as error:
                raise ConfigError(
                    f"not valid JSON ({error.msg})", file=str(manifest), line=error.lineno
                ) from None
            if manifest.name == "manifest.json" and isinstance(data, dict):
                data = data.get("checkpoint", data)
            try:
                checkpoint = from_dict(Checkpoint, data)
            except Exception as error:  # cattrs raises a group of errors; one sentence is enough
                detail = "; ".join(transform_error(error)) if hasattr(error, "exceptions") else str(error)
                raise ConfigError(f"not a Checkpoint record: {detail}", file=str(manifest)) from None
            if not Path(checkpoint.path).exists():
                checkpoint = evolve(checkpoint, path=str(folder))
            return checkpoint
        return Checkpoint(
            id=content_hash(str(folder)), path=str(folder), base_model=str(folder), method="full", kind="full"
        )
    row = forge.registry().checkpoint(ref)
    if row is None and callable(getattr(runner, "checkpoint", None)):
        return runner.checkpoint(ref)  # type: ignore[no-any-return]
    if row is None:
        raise UserError(
            f"{ref!r} is neither a folder nor a checkpoint id known to the registry", field="checkpoint"
        )
    return from_dict(Checkpoint, row["checkpoint"])
