"""``chat_template:`` (the base's own, ``chatml``, a Jinja file) and assistant-only loss over every
turn of a multi-turn chat, on a tiny Llama and BPE tokenizer built in the session (conftest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from forgemind_hf import HFRunner, HFTrainer
from forgemind_hf.chat import CHATML, apply_template
from forgemind_hf.finetune import load_tokenizer
from forgemind_hf.options import TrainerOptions
from forgemind_hf.text import chat_prompt, encode_example
from forgemind_hookspecs import ConfigError, Example, Message, StageContext
from forgemind_hookspecs.snapshots import write_snapshot
from hf_testutil import request

CHAT = Example(messages=(
    Message("system", "One word."), Message("user", "the jar is rust"), Message("assistant", "warm"),
    Message("user", "and the fan is indigo?"), Message("assistant", "cool"),
))


def _runs(ids: list[int], labels: list[int], tokenizer) -> tuple[list[str], list[str]]:
    """The decoded runs of learnt tokens and of unlearnt ones, in order."""
    learnt: list[list[int]] = []
    unlearnt: list[list[int]] = []
    previous = None
    for token, label in zip(ids, labels, strict=True):
        now = label != -100
        if now:
            assert label == token  # a label is the token itself (the model shifts)
        target = learnt if now else unlearnt
        if now != previous:
            target.append([])
        target[-1].append(token)
        previous = now
    decode = lambda run: tokenizer.decode(run, skip_special_tokens=False)  # noqa: E731
    return [decode(r) for r in learnt], [decode(r) for r in unlearnt]


@pytest.mark.parametrize("template", ["base", "chatml"])
def test_every_assistant_turn_is_learnt_and_nothing_else(tiny_base: Path, template: str) -> None:
    tokenizer = load_tokenizer(str(tiny_base), TrainerOptions())
    apply_template(tokenizer, template)
    end = "<|im_end|>\n" if template == "chatml" else f"{tokenizer.eos_token}\n"
    ids, labels, cut = encode_example(CHAT, tokenizer, 512, chat_loss="assistant")
    learnt, unlearnt = _runs(ids, labels, tokenizer)
    assert not cut
    assert learnt == [f"warm{end}", f"cool{tokenizer.eos_token}"]
    assert "the jar is rust" in unlearnt[0] and "One word." in unlearnt[0]
    assert "and the fan is indigo?" in unlearnt[1] and not any("warm" in u or "cool" in u for u in unlearnt)
    # the whole sequence is the template's own rendering of the conversation (plus EOS)
    whole = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in CHAT.messages],
                                          tokenize=False)
    assert tokenizer.decode(ids, skip_special_tokens=False).replace(tokenizer.bos_token or "\0", "", 1) \
        .startswith(whole.rsplit(end, 1)[0])
    # chat_loss: last learns the final answer only (the layout the runner prompts with)
    ids, labels, _ = encode_example(CHAT, tokenizer, 512, chat_loss="last")
    assert _runs(ids, labels, tokenizer)[0] == [f"cool{tokenizer.eos_token}"]


def test_a_long_chat_drops_its_oldest_turns_first(tiny_base: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_base), TrainerOptions())
    apply_template(tokenizer, "chatml")
    full, _, _ = encode_example(CHAT, tokenizer, 512, chat_loss="assistant")
    ids, labels, cut = encode_example(CHAT, tokenizer, len(full) - 5, chat_loss="assistant")
    assert cut and len(ids) == len(full) - 5 and ids[0] == full[0] and ids[1:] == full[6:]
    assert _runs(ids, labels, tokenizer)[0][-1] == f"cool{tokenizer.eos_token}"


def test_a_jinja_file_and_its_mistakes(tiny_base: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_base), TrainerOptions())
    good = tmp_path / "turns.jinja"
    good.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                    "{% if add_generation_prompt %}[assistant] {% endif %}", encoding="utf-8")
    apply_template(tokenizer, str(good))
    ids, labels, _ = encode_example(CHAT, tokenizer, 512, chat_loss="assistant")
    assert _runs(ids, labels, tokenizer)[0] == ["warm\n", f"cool{tokenizer.eos_token}"]
    bad = tmp_path / "bad.jinja"
    bad.write_text("line one\n{% for m in messages %}\n{{ m['content'] }\n{% endfor %}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        apply_template(tokenizer, str(bad))
    assert str(caught.value).startswith(f"{bad}:3: train.chat_template: is not a valid Jinja template")
    with pytest.raises(ConfigError, match="neither base, chatml nor an existing Jinja file"):
        apply_template(tokenizer, "chatlm")


def test_training_with_chatml_saves_the_template_with_the_checkpoint(
        tiny_base: Path, stage_context: StageContext, tmp_path: Path) -> None:
    examples = [CHAT, Example(messages=(Message("user", "the cup is teal"), Message("assistant", "cool"))),
                Example(messages=(Message("user", "the car is ruby"), Message("assistant", "warm"),
                                  Message("user", "and the rug is coral?"), Message("assistant", "warm")))]
    dataset = write_snapshot(examples, tmp_path / "data")
    trainer = HFTrainer()
    base = trainer.load_base(str(tiny_base), stage_context)
    ckpt = trainer.train(request(base, dataset, tmp_path / "chatml", method="full", epochs=1, batch_size=3,
                                 chat_template="chatml"), stage_context)
    saved = load_tokenizer(ckpt.path, TrainerOptions())
    assert saved.chat_template == CHATML
    assert ckpt.manifest["chat_template"] == "chatml" and ckpt.manifest["chat_loss"] == "assistant"
    assert ckpt.manifest["steps"] == 1 and ckpt.manifest["loss_curve"][0] > 0
    plain = trainer.train(request(base, dataset, tmp_path / "base", method="full", epochs=1, batch_size=3),
                          stage_context)
    assert plain.id != ckpt.id and load_tokenizer(plain.path, TrainerOptions()).chat_template != CHATML
    # what the runner renders a chat prompt with (text.chat_prompt) is the saved template, and the
    # checkpoint loads and generates
    assert chat_prompt("the tile is azure", saved) == "<|im_start|>user\nthe tile is azure<|im_end|>\n<|im_start|>assistant\n"
    assert len(HFRunner().generate(ckpt, ["the tile is azure"], stage_context, max_new_tokens=2)) == 1
    record = json.loads((Path(ckpt.path) / "manifest.json").read_text())["checkpoint"]
    assert record["manifest"]["chat_template"] == "chatml"


def test_forge_train_on_a_saved_sharegpt_dataset_with_chatml(tiny_base: Path, tmp_path: Path, monkeypatch) -> None:
    """The whole path through the plugin's own command: a ``save_to_disk`` folder of sharegpt
    conversations (list columns) -> the preset reader -> chatml, every assistant turn learnt."""
    import click
    import datasets
    import forgemind_hf
    from click.testing import CliRunner
    from forgemind_hookspecs import make_plugin_manager

    @click.group()
    def cli() -> None:
        """test group"""

    make_plugin_manager([forgemind_hf]).hook.forgemind_register_commands(cli=cli)
    monkeypatch.setenv("FORGEMIND_HOME", str(tmp_path / "home"))
    rows = [{"conversations": [{"from": "human", "value": f"the {t} is {c}"}, {"from": "gpt", "value": w},
                               {"from": "human", "value": "sure?"}, {"from": "gpt", "value": f"yes, {w}"}]}
            for t in ("cup", "jar") for c, w in (("teal", "cool"), ("rust", "warm"))]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    sets = ["--set", "epochs=1", "--set", "bf16=false", "--set", "batch_size=4", "--set", "chat_template=chatml"]
    res = CliRunner().invoke(cli, ["train", "--base", str(tiny_base), "--data", str(tmp_path / "saved"),
                                   "--method", "full", "--out", str(tmp_path / "ckpt"), *sets, "--json"])
    assert res.exit_code == 0, res.output
    ckpt = json.loads(res.stdout)
    assert ckpt["manifest"]["examples"] == 4 and ckpt["manifest"]["steps"] == 1
    assert ckpt["manifest"]["chat_template"] == "chatml" and ckpt["manifest"]["chat_loss"] == "assistant"
    assert load_tokenizer(ckpt["path"], TrainerOptions()).chat_template == CHATML
