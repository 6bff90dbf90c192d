"""``forge serve``: a tiny checkpoint exported to q8_0 GGUF and served by llama.cpp answers the real
``openai`` client (chat and completion) with the hf runner's greedy text; SIGTERM stops it and its
llama.cpp process; a SIGKILL of ``forge serve`` leaves no orphan; a token guards the API; binding
beyond loopback without a token is one sentence and exit code 2."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forgemind_core import Forge

pytest.importorskip("forgemind_hf")
pytest.importorskip("gguf")

from llama_server import needs_llama

CORPUS = ("def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n"
          "        self.y = y\n\nimport os\nimport sys\nprint(os.getcwd())\n") * 20
PROMPTS = ["def add(a, b):\n", "class Point:\n    def", "import os\nimport"]
TOKEN = "serve-test-token"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FORGEMIND_SERVE_TOKEN"}
    return {**env, "FORGEMIND_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "FORGEMIND_LOG_LEVEL": "error"}


def _gone(pid: int, within_s: float = 15.0) -> bool:
    """The process ended (a zombie waiting for its reaper counts as ended), by PID."""
    import psutil

    deadline = time.monotonic() + within_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny random Llama (2 layers, hidden 64) with a BPE tokenizer and chat template: a model
    folder, which forge serve takes as a checkpoint."""
    from forgemind_hf.options import Preset
    from forgemind_hf.pretrain import build_model, train_tokenizer

    folder = tmp_path_factory.mktemp("tiny-model")
    tokenizer = train_tokenizer([CORPUS], 512)
    model = build_model(Preset("test", 2, 64, 4, 128, 256, 512, 64, 4, 1e-3, 1000, 10_000), tokenizer, seed=0)
    _fit(model, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _fit(model, tokenizer, steps: int = 80) -> None:
    """A few steps on the code and on chat turns answering it, so that greedy text is real text
    (a random model's is whitespace), in both layouts the test compares."""
    import torch

    bos = tokenizer.bos_token_id
    code = tokenizer.encode(CORPUS, add_special_tokens=False)
    rows = [[bos, *code[start:start + 63]] for start in (0, 20, 40)]
    for prompt in PROMPTS:
        turn = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             tokenize=False)
        rows.append([bos, *tokenizer.encode(turn + "return a + b", add_special_tokens=False)])
    torch.manual_seed(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        ids = torch.tensor([rows[step % len(rows)][:64]])
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-home")


class Served:
    def __init__(self, home: Path, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "forgemind_core", "serve", *args, "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(home), text=True)
        self.info = self._first_line(timeout_s=420)

    def _first_line(self, timeout_s: float) -> dict:
        selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            self.proc.kill()
            raise AssertionError(f"forge serve printed nothing in {timeout_s} s: {self.proc.stderr.read()[-2000:]}")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(30)
            raise AssertionError(f"forge serve exited {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        pid = self.info.get("pid") if hasattr(self, "info") else None
        if pid:
            _gone(int(pid))


@pytest.fixture(scope="module")
def served(tiny: Path, home: Path):
    server = Served(home, str(tiny), "--port", "0")
    yield server
    server.kill()


@needs_llama
def test_serve_answers_the_openai_client_with_the_hf_runners_greedy_text(served: Served, tiny: Path,
                                                                        home: Path) -> None:
    import openai

    info = served.info
    assert info["base_url"].startswith("http://127.0.0.1:") and info["base_url"].endswith("/v1")
    assert info["dtype"] == "q8_0" and info["named_by"] == "folder" and info["auth"] is False
    gguf = Path(info["gguf"])
    assert gguf.is_file() and gguf.name == "model-q8_0.gguf"
    assert gguf.parent.parent == home / "cache" / "served"  # cached under the home, by checkpoint id
    assert gguf.parent.name == info["checkpoint_id"]

    client = openai.OpenAI(base_url=info["base_url"], api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == [info["model"]]
    forge = Forge(home=home)
    hf_raw = forge.generate(str(tiny), PROMPTS, max_new_tokens=4, temperature=0.0,
                            runner_options={"chat_format": "raw", "bf16": False})
    hf_chat = forge.generate(str(tiny), PROMPTS, max_new_tokens=4, temperature=0.0,
                             runner_options={"chat_format": "chat", "bf16": False})
    seen: list[tuple[str, str]] = []
    for prompt, raw, chat in zip(PROMPTS, hf_raw, hf_chat, strict=True):
        done = client.completions.create(model=info["model"], prompt=prompt, max_tokens=4, temperature=0.0)
        assert done.choices[0].text == raw, prompt
        said = client.chat.completions.create(model=info["model"], messages=[{"role": "user", "content": prompt}],
                                              max_tokens=4, temperature=0.0)
        assert said.choices[0].message.content == chat, prompt
        seen.append((raw, chat))
    # real text, not a random model's whitespace or an at-once end of text
    assert any(raw.strip() for raw, _ in seen) and all(chat.strip() for _, chat in seen), seen
    assert hf_raw != hf_chat  # the chat template was applied on both sides


@needs_llama
def test_sigterm_stops_serve_and_its_llama_cpp_process(served: Served) -> None:
    pid = int(served.info["pid"])
    assert not _gone(pid, within_s=0)
    served.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    served.proc.send_signal(signal.SIGTERM)  # a second one while it stops (timeout(1) sends two) changes nothing
    assert served.proc.wait(60) == 0, served.proc.stderr.read()[-2000:]
    assert _gone(pid), f"llama.cpp process {pid} outlived forge serve's SIGTERM"


@needs_llama
def test_a_token_guards_the_api_and_sigkill_leaves_no_orphan(tiny: Path, home: Path) -> None:
    import openai

    server = Served(home, str(tiny), "--port", "0", "--token", TOKEN)
    try:
        info = server.info
        assert info["auth"] is True and TOKEN not in " ".join(_cmdline(int(info["pid"])))  # not on its command line
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=info["base_url"], api_key="wrong-key", max_retries=0).models.list()
        assert [m.id for m in openai.OpenAI(base_url=info["base_url"], api_key=TOKEN).models.list().data] == [
            info["model"]]
        pid = int(info["pid"])
        server.proc.send_signal(signal.SIGKILL)  # no clean-up runs in forge serve
        assert server.proc.wait(30) == -signal.SIGKILL
        assert _gone(pid), f"llama.cpp process {pid} outlived a SIGKILL of forge serve"
    finally:
        server.kill()


def _cmdline(pid: int) -> list[str]:
    import psutil

    return psutil.Process(pid).cmdline()


def test_serving_beyond_loopback_needs_a_token(tiny: Path, home: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "forgemind_core", "serve", str(tiny), "--host", "0.0.0.0"],
                          capture_output=True, text=True, env=_env(home), timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "0.0.0.0" in lines[0] and "--token" in lines[0] and "FORGEMIND_SERVE_TOKEN" in lines[0]


def test_an_unknown_model_is_one_sentence(home: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "forgemind_core", "serve", "stable:nothing-here"],
                          capture_output=True, text=True, env=_env(home), timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "stable:nothing-here" in done.stderr and len(done.stderr.strip().splitlines()) == 1


GOAL_CORPUS = " ".join(
    f"the {t} is {c}. my {t} looks {c} today. Sentence: paint it {c} please\nTemperature: {w}\n"
    for t in ("car", "wall", "cup", "lamp")
    for w, cs in (("warm", ("red", "orange", "amber", "crimson")), ("cool", ("blue", "teal", "azure", "cyan")))
    for c in cs
) * 3


@pytest.fixture(scope="module")
def promoted(tmp_path_factory):
    """A promoted LoRA checkpoint of the colours goal (a tiny base pre-trained here, one
    iteration), as tests/test_export.py makes it: what stable:colors names."""
    from colors_pack import write_pack

    root = tmp_path_factory.mktemp("promoted")
    (root / "corpus.txt").write_text(GOAL_CORPUS)
    goal = write_pack(root / "colors")
    text = goal.read_text()
    for old, new in (
        ("limits: {base_model: pretrain, method: full, max_iterations: 3}",
         "limits: {base_model: pretrain, method: lora, max_iterations: 1}\n"
         f"pretrain: {{corpus: {root / 'corpus.txt'}, preset: tiny, layers: 2, hidden: 64, heads: 4, ffn: 128, "
         "vocab: 400, context: 128, seq_len: 64, batch_size: 8, steps: 20, bf16: false}"),
        ("success: {metric: accuracy, threshold: 0.9, tier: full, canary_min: 1.0}",
         "success: {metric: accuracy, threshold: 0.0, tier: full, canary_min: 0.0}"),
        ("train: {backend: memo}", "train: {backend: hf, epochs: 3, learning_rate: 0.003, bf16: false, "
         "batch_size: 8, save_every_steps: 0, max_length: 64}"),
        ("runner: {backend: memo}", "runner: {backend: hf, max_new_tokens: 4, bf16: false}"),
    ):
        assert old in text
        text = text.replace(old, new)
    goal.write_text(text)
    forge = Forge(home=root / "home", blocked=["openai"])
    summary = forge.run(goal, run_id="gen-1")
    assert summary["outcome"] == "promoted", summary["reasons"]
    return forge, summary["stable_checkpoint"]["id"]


@needs_llama
def test_serve_stable_goal_serves_the_promoted_lora_checkpoint(promoted) -> None:
    import openai

    forge, checkpoint_id = promoted
    prompts = ["Sentence: paint it red please\nTemperature:", "Sentence: paint it teal please\nTemperature:"]
    server = Served(forge.home, "stable:colors", "--port", "0")
    try:
        info = server.info
        assert (info["named_by"], info["goal"], info["version"], info["run_id"], info["checkpoint_id"]) == (
            "channel", "colors", 1, "gen-1", checkpoint_id)
        assert info["model"] == "colors@v1"
        client = openai.OpenAI(base_url=info["base_url"], api_key="unused", max_retries=0, timeout=120)
        hf = forge.generate(checkpoint_id, prompts, max_new_tokens=4, temperature=0.0,
                            runner_options={"bf16": False})
        served_text = [client.completions.create(model=info["model"], prompt=p, max_tokens=4,
                                                 temperature=0.0).choices[0].text for p in prompts]
        assert served_text == hf and any(t.strip() for t in hf), (served_text, hf)
        gguf = info["gguf"]
    finally:
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(60) == 0
        server.kill()
    again = Served(forge.home, checkpoint_id[:8], "--port", "0")  # a prefix: the same cached export
    try:
        assert (again.info["named_by"], again.info["gguf"], again.info["model"]) == ("checkpoint", gguf, "colors@v1")
    finally:
        again.kill()


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A tiny GPT-2 (an architecture the GGUF export refuses) with the same kind of tokenizer."""
    from forgemind_hf.pretrain import train_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = train_tokenizer([CORPUS], 512)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=2, n_head=4,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    import torch

    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    _fit(model, tokenizer, steps=60)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_serve_falls_back_to_transformers_where_gguf_cannot_take_the_model(tiny_gpt2: Path, home: Path) -> None:
    import openai

    server = Served(home, str(tiny_gpt2), "--port", "0")
    try:
        info = server.info
        assert info["backend"] == "transformers" and info["gguf"] is None
        assert "Llama-architecture" in info["fallback"] and "gpt2" in info["fallback"]
        client = openai.OpenAI(base_url=info["base_url"], api_key="unused", max_retries=0, timeout=120)
        assert [m.id for m in client.models.list().data] == [info["model"]]
        forge = Forge(home=home)
        hf_raw = forge.generate(str(tiny_gpt2), PROMPTS, max_new_tokens=4, temperature=0.0,
                                runner_options={"chat_format": "raw", "bf16": False})
        hf_chat = forge.generate(str(tiny_gpt2), PROMPTS, max_new_tokens=4, temperature=0.0,
                                 runner_options={"chat_format": "chat", "bf16": False})
        for prompt, raw, chat in zip(PROMPTS, hf_raw, hf_chat, strict=True):
            done = client.completions.create(model=info["model"], prompt=prompt, max_tokens=4, temperature=0.0)
            assert done.choices[0].text == raw, prompt
            said = client.chat.completions.create(model=info["model"], max_tokens=4, temperature=0.0,
                                                  messages=[{"role": "user", "content": prompt}])
            assert said.choices[0].message.content == chat, prompt
        assert any(t.strip() for t in hf_raw + hf_chat), (hf_raw, hf_chat)
        pid = int(info["pid"])
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(60) == 0
        assert _gone(pid), f"transformers server {pid} outlived forge serve's SIGTERM"
    finally:
        server.kill()
    again = Served(home, str(tiny_gpt2), "--port", "0", "--backend", "transformers", "--token", TOKEN)
    try:
        pid = int(again.info["pid"])
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=again.info["base_url"], api_key="wrong-key", max_retries=0).models.list()
        again.proc.send_signal(signal.SIGKILL)
        assert again.proc.wait(30) == -signal.SIGKILL
        assert _gone(pid), f"transformers server {pid} outlived a SIGKILL of forge serve"
    finally:
        again.kill()
