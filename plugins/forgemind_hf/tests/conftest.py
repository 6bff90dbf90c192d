"""Offline, tiny, CPU: environment set before transformers is imported anywhere."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="forgemind-hf-home-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

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


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "a.txt").write_text(CORPUS)
    (folder / "b.py").write_text(CORPUS[::-1])
    return folder


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (2 layers, hidden 64) with a BPE tokenizer trained here, saved as HF."""
    from forgemind_hf.options import Preset
    from forgemind_hf.pretrain import build_model, train_tokenizer

    folder = tmp_path_factory.mktemp("tiny-base")
    tokenizer = train_tokenizer([CORPUS], 512)
    p = Preset("test", 2, 64, 4, 128, 256, 512, 64, 4, 1e-3, 1000, 10_000)
    model = build_model(p, tokenizer, seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
