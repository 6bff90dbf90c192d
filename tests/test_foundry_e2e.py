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
from forgemind_core.cli import build_cli

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



    assert "budget" in generate["note"]
    assert summary["outcome"] == "stopped"
    assert any("budget" in reason for reason in summary["reasons"]), summary["reasons"]
