"""forgemind-detoxify: the ``detoxify`` filter (the Warden's toxicity check).

Each example's text (the policy's ``fields``) is scored by a Detoxify model in batches of
``batch_size`` and judged by :func:`forgemind_hookspecs.threshold_verdict` against the policy's
per-label thresholds (then the filter's ``thresholds``/``threshold``): dropped at or above a
threshold, sent to human review inside the policy's grey band, kept otherwise.

Models: ``original``, ``unbiased``, ``multilingual`` (and the ``-small`` variants) are
downloaded once into torch's hub cache (needs a network); ``checkpoint`` + ``config_dir`` load a
local checkpoint fully offline. Either way the checkpoint's bytes are first loaded with
``torch.load(weights_only=True)``; only bytes that pass are handed to Detoxify's own loader, so
no code in a checkpoint ever runs. The model is loaded once per process (:func:`load_model`).

torch, transformers and detoxify are imported only when a model is loaded.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from attrs import Factory, frozen
from forgemind_hookspecs import (
    ConfigError,
    Example,
    StageContext,
    Verdict,
    hookimpl,
    policy_text,
    threshold_verdict,
)

__all__ = ["DetoxifyFilter", "forgemind_register_filters", "load_model", "score_texts"]

_MODELS: dict[tuple[str, str | None, str | None, str], Any] = {}
_LOCK = threading.Lock()


def _thresholds() -> dict[str, float]:
    return {}


def _checkpoint_bytes(model: str, checkpoint: str | None) -> tuple[bytes, str]:
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ConfigError(f"no such checkpoint file: {path}", field="checkpoint")
        return path.read_bytes(), str(path)
    import torch
    from detoxify.detoxify import MODEL_URLS

    url = MODEL_URLS[model]
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
    return target.read_bytes(), str(target)


def load_model(model: str = "original", checkpoint: str | None = None, config_dir: str | None = None,
               device: str = "cpu") -> Any:
    """The Detoxify model for these settings, loaded once per process.

    :raises ConfigError: the checkpoint is missing, holds more than tensors and plain data, or
        Detoxify cannot build a model from it.
    """
    key = (model, checkpoint, config_dir, device)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        import pickle

        import torch
        from detoxify import Detoxify

        data, where = _checkpoint_bytes(model, checkpoint)
        try:  # weights_only semantics: refuse any pickle that could run code
            torch.load(io.BytesIO(data), map_location=device, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"{where}: refused: not a weights-only torch checkpoint ({first})",
                              field="checkpoint") from None
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the loop shows progress; no per-load bars in the log
        try:
            # The same bytes, now known to hold only tensors and plain data, through Detoxify's loader.
            loaded = Detoxify(model_type=model, checkpoint=io.BytesIO(data), device=device,
                              huggingface_config_path=config_dir)
        except (KeyError, ValueError, OSError, TypeError) as error:
            raise ConfigError(f"{where}: Detoxify cannot load it: {error}", field="checkpoint") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        _MODELS[key] = loaded
        return loaded


def score_texts(model: Any, texts: Sequence[str], batch_size: int) -> list[dict[str, float]]:
    """Per-text ``{label: score}``, scoring ``batch_size`` texts per forward pass."""
    out: list[dict[str, float]] = []
    size = max(1, batch_size)
    for start in range(0, len(texts), size):
        batch = list(texts[start:start + size])
        results = model.predict(batch)
        for i in range(len(batch)):
            out.append({label: float(v[i] if isinstance(v, list) else v) for label, v in results.items()})
    return out


class DetoxifyFilter:
    """Drop examples Detoxify scores at or above the policy's per-label thresholds."""

    name: ClassVar[str] = "detoxify"

    @frozen
    class Options:
        """:ivar model: ``original``, ``unbiased``, ``multilingual`` (downloaded once) or a
        ``-small`` variant. :ivar checkpoint: a local checkpoint file instead (offline).
        :ivar config_dir: the local folder with the Hugging Face config and tokenizer files the
        checkpoint needs offline. :ivar device: torch device. :ivar batch_size: texts per
        forward pass. :ivar thresholds: per-label overrides of the policy's. :ivar threshold:
        for labels neither names. :ivar labels: only these labels count (empty: all)."""

        model: Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"] = "original"
        checkpoint: str | None = None
        config_dir: str | None = None
        device: str = "cpu"
        batch_size: int = 32
        thresholds: Mapping[str, float] = Factory(_thresholds)
        threshold: float = 0.5
        labels: tuple[str, ...] = ()

    def __init__(self, options: DetoxifyFilter.Options | None = None) -> None:
        self.options = options or self.Options()

    def model(self) -> Any:
        o = self.options
        return load_model(o.model, o.checkpoint, o.config_dir, o.device)

    def filter(self, examples: Sequence[Example], ctx: StageContext) -> list[Verdict]:
        policy = ctx.policy
        scores = score_texts(self.model(), [policy_text(e, policy) for e in examples], self.options.batch_size)
        labels = self.options.labels or None
        return [
            threshold_verdict(e.id, self.name, s, policy=policy, overrides=self.options.thresholds,
                              default=self.options.threshold, labels=labels)
            for e, s in zip(examples, scores, strict=True)
        ]


@hookimpl
def forgemind_register_filters(register: Callable[[type], None]) -> None:
    register(DetoxifyFilter)
