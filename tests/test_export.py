"""Export bundles (hf, ollama, gguf) of the stable model of a tiny goal run through the real loop
with the hf trainer, verified by tools no one here wrote: plain transformers in a fresh process,
gguf's reader and, where it is installed, llama.cpp (llama-cpp-python)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from colors_pack import write_pack

pytest.importorskip("forgemind_hf")
pytest.importorskip("gguf")

from forgemind_core import Forge
from forgemind_core.cli.main import build_cli

CORPUS = " ".join(
    f"the {t} is {c}. my {t} looks {c} today. Sentence: paint it {c} please\nTemperature: {w}\n"
    for t in ("car", "wall", "cup", "lamp")
    for w, cs in (("warm", ("red", "orange", "amber", "crimson", "scarlet", "coral", "ruby", "rust")),
                  ("cool", ("blue", "teal", "azure", "cyan", "navy", "cobalt", "indigo", "sapphire")))
    for c in cs
) * 3

GOAL_EXTRA = """\
export: {author: goal-author, license: apache-2.0, tags: [colors]}
"""


@pytest.fixture(scope="module")
def stable(tmp_path_factory):
    """A promoted LoRA checkpoint of the colours goal: tiny base pre-trained here, one iteration."""
    root = tmp_path_factory.mktemp("export")
    (root / "corpus.txt").write_text(CORPUS)
    goal = write_pack(root / "colors", extra_goal=GOAL_EXTRA)
    text = goal.read_text()
    text = text.replace("limits: {base_model: pretrain, method: full, max_iterations: 3}",
                        "limits: {base_model: pretrain, method: lora, max_iterations: 1}\n"
                        f"pretrain: {{corpus: {root / 'corpus.txt'}, preset: tiny, layers: 2, hidden: 64, "
                        "heads: 4, ffn: 128, vocab: 400, context: 128, seq_len: 64, batch_size: 8, steps: 20, "
                        "bf16: false}")
    text = text.replace("success: {metric: accuracy, threshold: 0.9, tier: full, canary_min: 1.0}",
                        "success: {metric: accuracy, threshold: 0.0, tier: full, canary_min: 0.0}")
    text = text.replace("train: {backend: memo}",
                        "train: {backend: hf, epochs: 3, learning_rate: 0.003, bf16: false, batch_size: 8, "
                        "save_every_steps: 0, max_length: 64}")
    text = text.replace("runner: {backend: memo}", "runner: {backend: hf, max_new_tokens: 4, bf16: false}")
    goal.write_text(text)
    forge = Forge(home=root / "home", blocked=["openai"])
    summary = forge.run(goal, run_id="quick")
    assert summary["outcome"] == "promoted", summary["reasons"]
    return forge, summary, root


def _prompts(forge, summary):
    goal = forge.load_goal(Path(summary["run_dir"]) / ".." / ".." / ".." / "colors" / "goal.yaml")
    pack = forge.load_pack(goal)
    from forgemind_core.foundry.packs import load_suites

    canary = load_suites(pack)["canary"]
    return [pack.prompt_format.format(input=c.input) for c in canary]


def _checkpoint(forge, summary):
    from forgemind_hookspecs import Checkpoint, from_dict

    return from_dict(Checkpoint, forge.registry().checkpoint(summary["stable_checkpoint"]["id"])["checkpoint"])


PLAIN = textwrap.dedent("""
    import json, sys
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder, prompts = sys.argv[1], json.loads(sys.argv[2])
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    out = []
    for p in prompts:
        ids = torch.tensor([[tok.bos_token_id] + tok.encode(p, add_special_tokens=False)])
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=4, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        out.append({"text": tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True),
                    "ids": gen[0, ids.shape[1]:].tolist(), "prompt_ids": ids[0].tolist()})
    print(json.dumps(out))
""")


def _plain_transformers(folder: Path, prompts: list[str]) -> list[dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PLAIN, str(folder), json.dumps(prompts)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _front_matter(readme: str) -> dict:
    from ruamel.yaml import YAML

    assert readme.startswith("---\n")
    return YAML(typ="safe", pure=True).load(readme.split("---\n")[1])


def test_hf_bundle_loads_in_plain_transformers_with_the_same_greedy_outputs(stable, tmp_path):
    forge, summary, _ = stable
    ckpt_id = summary["stable_checkpoint"]["id"]
    result = CliRunner().invoke(build_cli(forge), [
        "export", ckpt_id, "--target", "hf", "--out", str(tmp_path / "hf"), "--version", "1.2.3",
        "--tag", "cli-tag", "--json"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "hf"
    files = set(json.loads(result.output)["files"])
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "forge.yaml",
            "adapter/adapter_model.safetensors", "adapter/adapter_config.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)

    prompts = _prompts(forge, summary)
    plain = _plain_transformers(out, prompts)
    ours = forge.backend("runners", "hf", {"bf16": False}).generate(
        _checkpoint(forge, summary), prompts, forge.context(), max_new_tokens=4, temperature=0.0)
    assert [p["text"] for p in plain] == ours
    assert all(p["ids"] for p in plain)  # something was generated for every prompt

    # The model card: HF front matter and a body from the registry.
    readme = (out / "README.md").read_text()
    front = _front_matter(readme)
    assert front["license"] == "apache-2.0" and front["library_name"] == "transformers"
    assert front["pipeline_tag"] == "text-generation" and front["base_model"] == "pretrain:tiny"
    assert {"forgemind", "colors", "cli-tag"} <= set(front["tags"])
    dataset_id = summary["iterations"][0]["data"]["dataset_id"]
    assert f"forgemind/{dataset_id}" in front["datasets"]
    results = {r["dataset"]["split"]: r["metrics"][0]["value"] for r in front["model-index"][0]["results"]}
    assert results == pytest.approx(summary["iterations"][0]["scores"], abs=1e-4)
    for needle in ("## Intended use", "## Data sources", "## Lineage", "goal-author", "1.2.3", "template `warm-basic`"):
        assert needle in readme, needle

    # forge.yaml: the goal with the plan pinned; it loads as a goal file.
    goal = forge.load_goal(out / "forge.yaml")
    assert goal.planner.backend == "replay" and goal.limits.max_iterations == 1
    assert goal.export["author"] == "goal-author"


def test_gguf_file_reads_back_and_matches_the_hf_model(stable, tmp_path):
    import gguf

    forge, summary, _ = stable
    result = forge.export(summary["stable_checkpoint"]["id"], "gguf", tmp_path / "gguf")
    path = Path(result["path"])
    assert path.name == "model.gguf" and path.is_file()
    reader = gguf.GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items()
              if not name.startswith("tokenizer.ggml.tokens") and not name.startswith("tokenizer.ggml.merges")}
    assert fields["general.architecture"] == "llama"
    assert fields["llama.block_count"] == 2 and fields["llama.embedding_length"] == 64
    assert fields["llama.attention.head_count"] == 4 and fields["llama.feed_forward_length"] == 128
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert "<|assistant|>" in fields["tokenizer.chat_template"]

    from forgemind_hf.export_impl import load_merged

    model, tokenizer = load_merged(_checkpoint(forge, summary))
    assert reader.fields["tokenizer.ggml.tokens"].contents()[:len(tokenizer)] == [
        tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))]
    assert fields["tokenizer.ggml.bos_token_id"] == tokenizer.bos_token_id
    assert fields["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    names = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    per_block = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "attn_norm", "ffn_norm"}
    expected = {"token_embd.weight", "output_norm.weight"} | {f"blk.{i}.{n}.weight" for i in range(2) for n in per_block}
    assert set(names) == expected
    assert names["token_embd.weight"] == (64, len(tokenizer))  # GGUF lists dimensions innermost first

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it builds from source)")
    import torch

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, verbose=False, seed=0)
    for prompt in _prompts(forge, summary):
        ids = [tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]
        assert llm.tokenize(prompt.encode(), add_bos=True, special=False) == ids  # the same tokenizer
        with torch.no_grad():
            hf = model.generate(input_ids=torch.tensor([ids]), do_sample=False, max_new_tokens=4,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        hf_new = hf[0, len(ids):].tolist()
        llm.reset()
        ours = []
        for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            ours.append(token)
            if token == tokenizer.eos_token_id or len(ours) == len(hf_new):
                break
        assert ours == hf_new, prompt
    llm.close()  # freed now, not by a destructor at interpreter exit


def test_ollama_bundles(stable, tmp_path):
    forge, summary, _ = stable
    ckpt = summary["stable_checkpoint"]["id"]
    result = forge.export(ckpt, "ollama", tmp_path / "ollama", metadata={"author": "someone"})
    modelfile = Path(result["path"]).read_text()
    assert Path(result["path"]).name == "Modelfile"
    assert "FROM ./model.gguf" in modelfile and (tmp_path / "ollama" / "model.gguf").is_file()
    assert 'TEMPLATE """{{- range .Messages }}<|{{ .Role }}|>' in modelfile
    assert "PARAMETER temperature 0" in modelfile and "PARAMETER num_predict 4" in modelfile
    assert 'PARAMETER stop "</s>"' in modelfile
    assert "someone" in (tmp_path / "ollama" / "README.md").read_text()

    result = forge.export(ckpt, "ollama", tmp_path / "ollama-adapter", options={"source": "adapter"})
    modelfile = Path(result["path"]).read_text()
    assert "FROM ./base" in modelfile and "ADAPTER ./adapter" in modelfile
    assert (tmp_path / "ollama-adapter" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "ollama-adapter" / "base" / "model.safetensors").is_file()


def test_export_refuses_a_used_folder_and_unknown_metadata(stable, tmp_path):
    forge, summary, _ = stable
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    runner = CliRunner()
    result = runner.invoke(build_cli(forge), ["export", summary["stable_checkpoint"]["id"], "--target", "hf",
                                              "--out", str(used)])
    assert result.exit_code == 2 and "not an empty folder" in result.output
    assert (used / "keep.txt").read_text() == "mine"
    result = runner.invoke(build_cli(forge), ["export", "nope", "--target", "hf", "--out", str(tmp_path / "n")])
    assert result.exit_code == 2 and "no checkpoint" in result.output
    with pytest.raises(Exception, match="unknown key 'colour'"):
        forge.export(summary["stable_checkpoint"]["id"], "hf", tmp_path / "m", metadata={"colour": "red"})
    assert not (tmp_path / "m").exists()
