"""Model references beside ``server:`` in a goal: the Lorekeeper's side of the run's ServerPool.

A goal may name a recorded model where it names a model to serve (docs/servers.md, "Model
references")::

    generate:
      - backend: openai
        model: stable:support-tickets        # or stable:support-tickets@2, a checkpoint id, ...
        server: {backend: llamacpp}

:class:`RegistryModels` is the :class:`~forgemind_core.base.protocols.ModelResolver` the Loop and
the API hand the :class:`~forgemind_core.base.servers.ServerPool`: it resolves the reference with
:func:`forgemind_core.lorekeeper.models.resolve_model` (the one resolver) and has the checkpoint's
GGUF made once, q8_0, in the cache ``forge serve`` uses
(:func:`forgemind_core.lorekeeper.serving.checkpoint_gguf`). The pool serves it under the
checkpoint's id (a server backend with an ``alias`` option), so every example the served model
writes records that id as its ``source.model`` — the registry's teacher edge.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
from forgemind_hookspecs import StageContext, UserError
from forgemind_hookspecs.models import shipped_model

from forgemind_core.base.protocols import KernelHandle, ServedModel
from forgemind_core.lorekeeper.models import resolve_model
from forgemind_core.lorekeeper.serving import checkpoint_gguf

__all__ = ["RegistryModels"]

#: ``CHANNEL:GOAL[@VERSION]``: a reference that must resolve (any other unknown name may be the
#: server backend's own, e.g. another server's model name).
CHANNEL_REF = re.compile(r"^[A-Za-z][\w-]*:[^@:]+(@\d+)?$")

#: The precision of the GGUF a run's server is started on (``forge serve``'s default: the same
#: cached file, ``<home>/cache/served/<checkpoint id>/model-q8_0.gguf``).
DTYPE = "q8_0"


class RegistryModels:
    """Resolves ``model:`` references against ``forge``'s registry and home."""

    def __init__(self, forge: KernelHandle) -> None:
        self.forge = forge

    def resolve(self, model: str, *, base_dir: Path | None = None) -> ServedModel | None:
        text = str(model).strip()
        if shipped_model(text) is not None:
            return None  # a catalogue name: the server backend takes it as written
        path = Path(text).expanduser()
        if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
            text = str(base_dir / path)  # a checkpoint folder, export bundle or GGUF beside the goal
        if text.lower().endswith(".gguf"):
            if not Path(text).is_file():
                return None  # the server backend's sentence: no such GGUF file
            found = resolve_model(self.forge.registry(), Path(self.forge.home), text)
            if found.checkpoint_id is None:
                return None  # a GGUF of no recorded checkpoint: served as written, nothing to record
        try:
            ref = resolve_model(self.forge.registry(), Path(self.forge.home), text)
        except UserError:
            if CHANNEL_REF.match(text) or Path(text).exists():
                raise  # a reference that names nothing: one sentence, exit 2
            return None  # no checkpoint of that id: a name for the server backend (another server's model)
        return ServedModel(ref=str(model), model=ref.path, kind=ref.kind, checkpoint_id=ref.checkpoint_id,
                           run_id=ref.run_id, goal=ref.goal_name, version=ref.version,
                           checkpoint=ref.checkpoint)

    def prepare(self, served: ServedModel, ctx: StageContext) -> ServedModel:
        if served.kind == "gguf":
            return served  # a GGUF file (of an export bundle, say): served as it is
        assert served.checkpoint is not None, "a recorded checkpoint carries its record"
        gguf = checkpoint_gguf(self.forge, served.checkpoint, DTYPE, ctx, name=served.goal or "")
        return attrs.evolve(served, model=str(gguf), kind="gguf")
