"""Offline, tiny, CPU: environment set before transformers is imported anywhere."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="forgemind-hf-home-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # hf_testutil, whatever pytest's import mode

from hf_testutil import CORPUS


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
