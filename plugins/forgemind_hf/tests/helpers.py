"""Shared builders for the tests (datasets as snapshots, requests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgemind_hookspecs import Example, StageContext, TrainRequest
from forgemind_hookspecs.snapshots import write_snapshot

from conftest import snippet_examples


def snippet_dataset(folder: Path, n: int, seed: int) -> Any:
    rows = snippet_examples(n, seed)
    examples = [Example(prompt=r["prompt"], completion=r["completion"], category=r["category"]) for r in rows]
    return write_snapshot(examples, folder)


def request(base: Any, dataset: Any, out: Path, method: str = "lora", **hyper: Any) -> TrainRequest:
    defaults: dict[str, Any] = {"bf16": False, "batch_size": 16, "save_every_steps": 0}
    return TrainRequest(base=base, dataset=dataset, method=method, output_dir=str(out),
                        hyperparameters={**defaults, **hyper})


def accuracy(outputs: list[str], rows: list[dict[str, str]]) -> float:
    return sum(o.strip() == r["completion"].strip() for o, r in zip(outputs, rows, strict=True)) / len(rows)


__all__ = ["StageContext", "accuracy", "request", "snippet_dataset"]
