"""Pre-training from scratch: tokenizer + Llama + loop, saved as HF safetensors, content-addressed."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
from forgemind_hf import HFTrainer
from forgemind_hf.pretrain import corpus_files, corpus_texts, python_docs_texts
from forgemind_hookspecs import PretrainSpec, StageContext, UserError

SMALL = {"layers": 2, "hidden": 64, "heads": 4, "ffn": 128, "vocab": 512, "seq_len": 64, "batch_size": 4,
         "steps": 12, "learning_rate": 3e-3, "bf16": False}


def test_pretrain_builds_and_reuses_a_base(corpus_dir: Path, stage_context: StageContext, emitted: list) -> None:
    trainer = HFTrainer()
    spec = PretrainSpec(corpus=str(corpus_dir), preset="tiny", options=SMALL)
    ckpt = trainer.pretrain(spec, stage_context)
    folder = Path(ckpt.path)
    assert ckpt.kind == "full" and ckpt.method == "pretrain"
    assert folder.parent.parent == stage_context.cache_dir / "bases"
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 2
    m = ckpt.manifest
    assert m["val_loss_after"] < m["val_loss_before"] - 0.5
    assert m["steps"] == 12 and len(m["loss_curve"]) == 12
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                             tokenize=False)
    assert rendered.endswith("<|assistant|>\n")
    assert tokenizer.decode(tokenizer.encode("def f(x):\n    return x", add_special_tokens=False)) == \
        "def f(x):\n    return x"
    # same corpus + preset + options: reused, not trained again
    n_metrics = len(emitted)
    again = trainer.pretrain(spec, stage_context)
    assert again.id == ckpt.id and again.path == ckpt.path and len(emitted) == n_metrics
    # load_base("pretrain") follows the goal's pretrain section
    other = trainer.pretrain(PretrainSpec(corpus=str(corpus_dir), preset="tiny", options={**SMALL, "seed": 1}),
                             stage_context)
    assert other.id != ckpt.id


def test_corpus_kinds(corpus_dir: Path, tmp_path: Path) -> None:
    stdlib = corpus_files("stdlib")
    root = Path(sysconfig.get_paths()["stdlib"])
    assert len(stdlib) > 200 and all(p.suffix == ".py" for p in stdlib)
    assert not any("site-packages" in p.parts or "test" in p.relative_to(root).parts[:-1] for p in stdlib)
    assert {p.name for p in corpus_files(str(corpus_dir))} == {"a.txt", "b.py"}
    assert [p.name for p in corpus_files(str(corpus_dir / "*.txt"))] == ["a.txt"]
    with pytest.raises(UserError, match="no readable text files"):
        corpus_files(str(tmp_path / "nothing-*.txt"))


def test_python_docs_corpus_is_english_prose_not_code() -> None:
    texts = corpus_texts("python-docs", 300_000)
    joined = "\n".join(texts)
    assert 250_000 <= sum(len(t.encode("utf-8")) for t in texts) <= 303_000  # the cap holds (cut by characters)
    assert "Return " in joined and " the " in joined  # docstrings and reference prose ...
    assert "def " not in joined[:20_000] and "import " not in joined[:2_000]  # ... not source code
    every = python_docs_texts()  # parsed once per process (cached), in a fixed order: a stable cache key
    assert len(every) > 300 and list(every[: len(texts) - 1]) == texts[:-1]


def test_unknown_preset_is_a_config_error(corpus_dir: Path, stage_context: StageContext) -> None:
    with pytest.raises(UserError, match="unknown preset"):
        HFTrainer().pretrain(PretrainSpec(corpus=str(corpus_dir), preset="huge"), stage_context)
    with pytest.raises(UserError, match="unknown pre-training option"):
        HFTrainer().pretrain(PretrainSpec(corpus=str(corpus_dir), preset="tiny", options={"layerz": 2}), stage_context)


QUIET_PROBE = """
import sys, tempfile
from forgemind_hf import engine
if sys.argv[1] == "quiet":
    engine.quiet_transformers()
from transformers import LlamaConfig, LlamaForCausalLM, get_scheduler
config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=2)
LlamaForCausalLM(config).save_pretrained(tempfile.mkdtemp())
"""


def test_quiet_transformers_hides_save_bars_and_the_bitsandbytes_kernels_advice() -> None:
    """The loop prints its own progress; transformers' "Writing model shards" bar and the Hub kernel
    loader's advice (bitsandbytes asks `kernels` for kernels-community's CPU 4-bit kernels when
    transformers imports it: "pip install kernels", and from transformers 5.25 offline "Skipping
    publisher trust check ...") are noise."""
    import subprocess
    import sys

    def stderr(mode: str) -> str:
        proc = subprocess.run([sys.executable, "-c", QUIET_PROBE, mode], capture_output=True, text=True, check=True)
        return proc.stderr

    assert "Writing model shards" in stderr("loud")  # the probe does show the noise when left alone
    quiet = stderr("quiet")
    assert "Writing model shards" not in quiet and "kernels-community" not in quiet and "kernels" not in quiet.lower()


@pytest.mark.parametrize("logger_name", ["kernels", "kernels._internals.hf_hub", "kernels.some_future_module",
                                         "bitsandbytes.backends.cpu.ops"])
def test_quiet_transformers_silences_the_hub_kernel_loggers_by_source_not_by_wording(
    logger_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Any warning from the Hub kernel loader is dropped whatever it says (the next release's new
    wording too); its errors still show, and other libraries' warnings are untouched."""
    import logging

    from forgemind_hf import engine

    engine.quiet_transformers()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger(logger_name).warning("a wording no filter has seen %d", 42)
        logging.getLogger(logger_name).error("a real failure")
        logging.getLogger("another_library").warning("still shown")
    messages = [r.getMessage() for r in caplog.records]
    assert "a wording no filter has seen 42" not in messages
    assert "a real failure" in messages and "still shown" in messages
