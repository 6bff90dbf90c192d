"""Shared test data and builders of the forgemind-hf tests (a unique module name, so it never
clashes with other packages' test helpers in one pytest session)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from forgemind_hookspecs import Example, TrainRequest
from forgemind_hookspecs.snapshots import write_snapshot

LABELS = {"eval(": "dangerous", "subprocess": "shell", "print(": "benign"}
_NAMES = ["x", "data", "user_input", "cmd", "value", "line", "payload", "text", "arg", "item", "row", "blob"]
_PREFIXES = ["", "result = ", "out = ", "y = ", "return "]


def snippet_examples(n: int, seed: int) -> list[dict[str, str]]:
    """A snippet -> label classification-as-generation task (labels from keywords)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        key = rng.choice(list(LABELS))
        name = rng.choice(_NAMES)
        prefix = rng.choice(_PREFIXES)
        if key == "subprocess":
            code = f"{prefix}subprocess.run({name}, shell=True)"
        else:
            code = f"{prefix}{key}{name})"
        rows.append({"prompt": f"Code: {code}\nLabel:", "completion": f" {LABELS[key]}", "category": LABELS[key]})
    return rows


CORPUS = (
    "def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n"
    "        self.y = y\n\nimport subprocess\nsubprocess.run(cmd, shell=True)\nprint(value)\n"
    "result = eval(user_input)\nfor item in data:\n    print(item)\n"
) * 40 + " dangerous shell benign Label: Code:" * 50


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


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
