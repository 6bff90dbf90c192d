"""The Foundry's "done when", end to end through the real loop.

Two ``openai`` generators (two models on a real OpenAI-compatible HTTP server on 127.0.0.1, each
with its own share and price), then ``dedupe``, ``decontaminate`` and ``rules``, on a variant of
the colours pack; the memo trainer/runner (tests/kernel_plugins.py) trains in milliseconds. The
server's answers hold exact duplicates (case and spacing apart), a near-duplicate, a copy of an
evaluation case and a row of control characters, so every filter has something to drop.
"""

from __future__ import annotations

import json
import re
import textwrap
import threading
from collections import Counter
from pathlib import Path

import kernel_plugins
import pytest
from click.testing import CliRunner
from colors_pack import write_pack
from forgemind_hookspecs.snapshots import read_snapshot

from forgemind_core import Forge
from forgemind_core.cli.main import build_cli

pytest.importorskip("forgemind_openai")
from forgemind_openai.testing import FakeOpenAIServer

# -- the pack: colours, with suite inputs long enough for 5-gram decontamination ---------------

WARM = ["red", "orange", "amber", "crimson", "scarlet", "coral", "ruby", "rust"]
COOL = ["blue", "teal", "azure", "cyan", "navy", "cobalt", "indigo", "sapphire"]
LEAKED = "paint the tall garden gate navy this spring please"  # a full-suite case, copied by teacher-a
LONG = "at the end of the long summer day the old wooden boat on the quiet lake glowed a deep scarlet"

# Per model and category, the inputs the server hands out in order (examples_per_call 3, 2 calls).
ANSWERS: dict[tuple[str, str], list[str]] = {
    ("teacher-a", "warm"): [
        "the car is red",
        "The Car is   RED",            # exact duplicate of the first once case and spaces are normalised
        "the lamp is crimson",
        LONG,
        LONG + " too",                 # near-duplicate of LONG
        "the sofa is coral",
    ],
    ("teacher-a", "cool"): [
        "the kite is blue",
        "the cup is teal",
        LEAKED,                        # an evaluation case's input
        "the hat is \x07\x07\x07\x07\x07 indigo \x1b\x1b\x1b\x1b",  # control characters: rules drops it
        "the mug is cobalt",
        "the door is indigo",
    ],
    ("teacher-b", "warm"): [
        "the car is red",              # byte-identical to teacher-a's: the same example id
        "the shirt is orange",
        "the bike is amber",
        "the hat is rust",
        "the kite is ruby",
        "the boat is scarlet",
    ],
    ("teacher-b", "cool"): [
        "the wall is azure",
        "the sofa is cyan",
        "the car is navy",
        "the lamp is sapphire",
        "THE KITE IS BLUE",            # exact duplicate (normalised) across the two models
        "the mug is teal now",
    ],
}


class Script:
    """The server's answers: for each (model, category) the next ``n`` inputs of its list."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.offset: Counter[tuple[str, str]] = Counter()
        self.served: list[tuple[str, str, str]] = []

    def __call__(self, body: dict) -> str:
        user = body["messages"][-1]["content"]
        n = int(re.search(r"(?i)write (\d+)", user).group(1))
        category = re.search(r'category "([^"]+)"', user).group(1)
        key = (body["model"], category)
        with self.lock:
            start = self.offset[key]
            self.offset[key] += n
            pool = ANSWERS[key]
            items = [pool[(start + i) % len(pool)] for i in range(n)]
            self.served.extend((body["model"], category, text) for text in items)
        return json.dumps({"examples": [{"input": text} for text in items]})


def _write_pack(root: Path, *, limits: str, train_options: str = "") -> Path:
    goal = write_pack(root)
    suites = root / "suites"
    canary = [{"input": f"she painted the big fence {c} last week", "expected": label}
              for label, words in (("warm", WARM), ("cool", COOL)) for c in words[:2]]
    full = [{"input": f"paint the tall garden gate {c} this spring please", "expected": label}
            for label, words in (("warm", WARM), ("cool", COOL)) for c in words]
    assert any(case["input"] == LEAKED for case in full)
    (suites / "canary.jsonl").write_text("".join(json.dumps(r) + "\n" for r in canary))
    (suites / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full))
    goal.write_text(textwrap.dedent(f"""\
        name: colors-foundry
        task: "warm or cool"
        pack: .
        seed: 5
        success: {{metric: accuracy, threshold: 0.9, tier: full, canary_min: 1.0}}
        limits: {limits}
        generate:
          - backend: openai
            share: 0.5
            model: teacher-a
            base_url: "{{base_url}}"
            examples_per_call: 3
            concurrency: 1
            max_tokens: 96
            prices: {{teacher-a: {{input: 2.0, output: 8.0}}}}
          - backend: openai
            share: 0.5
            model: teacher-b
            base_url: "{{base_url}}"
            examples_per_call: 3
            concurrency: 1
            max_tokens: 96
            prices: {{teacher-b: {{input: 0.5, output: 1.5}}}}
        filter:
          - backend: dedupe
          - backend: decontaminate
          - backend: rules
        train: {{backend: memo{train_options}}}
        evaluate: {{runner: {{backend: memo}}, scorers: [{{backend: label_match}}]}}
        planner: {{backend: default, initial_examples: 24}}
        """))
    return goal


def _goal(tmp_path: Path, base_url: str, **kwargs: str) -> Path:
    goal = _write_pack(tmp_path / "colors", **kwargs)
    goal.write_text(goal.read_text().replace("{base_url}", base_url))
    return goal


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    return "sk-test-not-a-real-key"


def _forge(tmp_path: Path) -> Forge:
    return Forge(home=tmp_path / "home", plugins=[kernel_plugins], blocked=["hf"])



def test_two_teachers_three_filters_end_to_end(tmp_path: Path, key: str) -> None:
    script = Script()
    with FakeOpenAIServer(script) as server:
        goal = _goal(tmp_path, server.base_url, limits="{base_model: pretrain, method: full, max_iterations: 1}")
        forge = _forge(tmp_path)
        summary = forge.run(str(goal), run_id="e2e")
    assert server.total_requests == 8, "2 models x 2 categories x 2 calls of 3 examples"
    assert {m for m, _, _ in script.served} == {"teacher-a", "teacher-b"}

    run = Path(forge.home) / "runs" / "e2e" / "iter-1"
    generated = [json.loads(line) for line in (run / "examples.jsonl").read_text().splitlines()]
    by_id = {e["id"]: e for e in generated}
    # the byte-identical answer of the two models is one example (same content, same id)
    assert len(generated) == len(script.served) - 1 == 23

    # -- every kept example names its generator, model, prompt template and cost --------------
    dataset = json.loads((run / "dataset.json").read_text())["dataset"]
    kept = list(read_snapshot(dataset["path"]))
    assert kept and len(kept) == summary["iterations"][0]["data"]["kept"]
    assert {e.source.model for e in kept} == {"teacher-a", "teacher-b"}
    for example in kept:
        assert example.source.generator == "openai"
        assert example.source.model in ("teacher-a", "teacher-b")
        assert example.source.prompt_template in ("warm-basic", "cool-basic", "warm-varied", "cool-varied")
        assert example.source.cost_usd > 0, example
        assert example.source.tokens > 0
    # cheaper teacher, cheaper examples
    cost = {m: max(e.source.cost_usd for e in kept if e.source.model == m) for m in ("teacher-a", "teacher-b")}
    assert cost["teacher-b"] < cost["teacher-a"]

    # -- every dropped example is in `forge show RUN --rejections --json` ----------------------
    result = CliRunner().invoke(build_cli(forge), ["show", "e2e", "--rejections", "--json"])
    assert result.exit_code == 0, result.output
    rejections = json.loads(result.output)
    kept_ids = {e.id for e in kept}
    dropped_ids = set(by_id) - kept_ids
    assert {r["example_id"] for r in rejections} == dropped_ids
    for row in rejections:
        assert row["filter"] and row["rule"] and row["reason"], row
        assert row["source"]["generator"] == "openai" and row["source"]["model"] in ("teacher-a", "teacher-b")
    rules = {(r["filter"], r["rule"]) for r in rejections}
    assert ("dedupe", "exact") in rules
    assert ("dedupe", "near_duplicate") in rules
    assert ("decontaminate", "exact_eval_match") in rules
    assert ("rules", "charset") in rules
    assert {r["filter"] for r in rejections} == {"dedupe", "decontaminate", "rules"}

    def dropped_for(text: str) -> dict:
        rows = [r for r in rejections if by_id[r["example_id"]]["meta"]["input"] == text]
        assert len(rows) == 1, (text, rows)
        return rows[0]

    assert dropped_for("The Car is   RED")["rule"] == "exact"
    assert dropped_for("THE KITE IS BLUE")["rule"] == "exact"
    assert dropped_for(LONG + " too")["rule"] == "near_duplicate"
    assert dropped_for(LEAKED)["filter"] == "decontaminate"
    assert dropped_for(LEAKED)["source"]["model"] == "teacher-a"

    # -- no kept example repeats another or an evaluation case --------------------------------
    normalised = [" ".join(e.meta["input"].lower().split()) for e in kept]
    assert len(set(normalised)) == len(normalised)
    cases = [json.loads(line)["input"] for tier in ("canary", "full")
             for line in (tmp_path / "colors" / "suites" / f"{tier}.jsonl").read_text().splitlines()]
    for example in kept:
        assert all(case not in example.prompt for case in cases), example.prompt
    assert LEAKED not in {e.meta["input"] for e in kept}


def test_generation_stops_at_the_budget(tmp_path: Path, key: str) -> None:
    script = Script()
    budget = 0.0016
    with FakeOpenAIServer(script) as server:
        goal = _goal(tmp_path, server.base_url,
                     limits=f"{{base_model: pretrain, method: full, max_iterations: 3, budget_usd: {budget}}}",
                     train_options=", cost_per_example: 0.0001")
        forge = _forge(tmp_path)
        summary = forge.run(str(goal), run_id="broke")
    # stopped short: fewer calls than the 8 a full iteration makes
    assert 0 < server.total_requests < 8
    examples = [json.loads(line) for line in
                (Path(forge.home) / "runs" / "broke" / "iter-1" / "examples.jsonl").read_text().splitlines()]
    assert 0 < len(examples) < 24
    recorded = sum(e["source"]["cost_usd"] for e in examples)
    assert 0 < recorded <= budget + 1e-12
    assert summary["cost_usd"] <= budget + 1e-12
    generate = json.loads((Path(forge.home) / "runs" / "broke" / "iter-1" / "generate.json").read_text())
    assert "budget" in generate["note"]
    assert summary["outcome"] == "stopped"
    assert any("budget" in reason for reason in summary["reasons"]), summary["reasons"]
