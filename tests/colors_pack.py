"""A tiny two-label task pack for kernel tests (warm or cool colours)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

__all__ = ["COLORS", "write_pack"]

COLORS = {
    "warm": ["red", "orange", "amber", "crimson", "scarlet", "coral", "ruby", "rust"],
    "cool": ["blue", "teal", "azure", "cyan", "navy", "cobalt", "indigo", "sapphire"],
}


def write_pack(root: Path, *, extra_goal: str = "") -> Path:
    """A two-label pack: is the colour in a sentence warm or cool? Basic templates use half the
    colour words; the full suite also uses the other half, which only 'varied' data covers."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pack.yaml").write_text(textwrap.dedent("""\
        name: colors
        task: "Say whether the colour in a sentence is warm or cool"
        prompt_format: "Sentence: {input}\\nTemperature:"
        labels:
          warm: "a warm colour"
          cool: "a cool colour"
        templates: templates.yaml
        slots: slots.yaml
        """))
    (root / "templates.yaml").write_text(textwrap.dedent("""\
        - id: warm-basic
          category: warm
          prompt: "the {thing} is {warm_a}"
        - id: cool-basic
          category: cool
          prompt: "the {thing} is {cool_a}"
        - id: warm-varied
          category: warm
          strategies: [varied]
          prompt: "my {thing} looks {warm_b} today"
        - id: cool-varied
          category: cool
          strategies: [varied]
          prompt: "my {thing} looks {cool_b} today"
        """))
    (root / "slots.yaml").write_text(textwrap.dedent(f"""\
        thing: [car, wall, shirt, door, cup, bike, lamp, hat, boat, kite, sofa, mug]
        warm_a: {COLORS['warm'][:4]}
        warm_b: {COLORS['warm'][4:]}
        cool_a: {COLORS['cool'][:4]}
        cool_b: {COLORS['cool'][4:]}
        """))
    suites = root / "suites"
    suites.mkdir(exist_ok=True)
    canary = [{"input": f"a {c} thing", "expected": label, "category": label}
              for label, words in COLORS.items() for c in words[:2]]
    full = [{"input": f"paint it {c} please", "expected": label, "category": label}
            for label, words in COLORS.items() for c in words]
    (suites / "canary.jsonl").write_text("".join(json.dumps(r) + "\n" for r in canary))
    (suites / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full))
    goal = root / "goal.yaml"
    goal.write_text(textwrap.dedent("""\
        name: colors
        task: "warm or cool"
        pack: .
        seed: 3
        success: {metric: accuracy, threshold: 0.9, tier: full, canary_min: 1.0}
        limits: {base_model: pretrain, method: full, max_iterations: 3}
        generate:
          - backend: template
            share: 1.0
        filter:
          - backend: rules
        train: {backend: memo}
        evaluate: {runner: {backend: memo}, scorers: [{backend: label_match}]}
        planner: {backend: default, initial_examples: 16}
        """) + extra_goal)
    return goal
