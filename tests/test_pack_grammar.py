"""Task packs for any task (issue 20): suite ids and unknown fields, default scoring, linked and
keyed slots, filters, frames matched to templates, and a pack's own generator function."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from forgemind_hookspecs import ConfigError, DataError, GenerationPlan, StageContext

from forgemind_core.foundry.grammar import apply_filter
from forgemind_core.foundry.packs import load_pack, load_suite, load_suites
from forgemind_core.foundry.template import TemplateGenerator


def write_pack(root: Path, pack: str, **files: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pack.yaml").write_text(textwrap.dedent(pack), encoding="utf-8")
    for name, text in files.items():
        path = root / name.replace("__", "/").replace("_jsonl", ".jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def generate(pack, count: int, strategy: str = "basic", seed: int = 3) -> list:  # type: ignore[no-untyped-def]
    plan = GenerationPlan("template", count, strategy=strategy)
    return list(TemplateGenerator().generate(plan, StageContext(pack=pack, seed=seed)))


SUITE = "\n".join(
    json.dumps(row)
    for row in [
        {"id": "q1", "input": "two kilos", "expected": "2 kg", "category": "mass", "source": "hand"},
        {"id": 7, "input": "three metres", "expected": "3 m", "category": "length", "source": "hand"},
    ]
)

BASE = """\
name: units
labels: {mass: a mass, length: a length}
prompt_format: "Text: {input}\\nAnswer:"
"""


def test_suite_ids_kept_and_unknown_fields_by_pack_option(tmp_path: Path) -> None:
    keep = write_pack(tmp_path / "keep", BASE + "suite_fields: keep\nscoring: {default: exact_match}\n",
                      suites__full_jsonl=SUITE)
    cases = load_suites(load_pack(keep))["full"]
    assert [c.id for c in cases] == ["q1", "7"]
    assert cases[0].meta == {"source": "hand"} and cases[0].checker == "exact_match"
    ignore = write_pack(tmp_path / "ignore", BASE + "suite_fields: ignore\nscoring: {default: exact_match}\n",
                        suites__full_jsonl=SUITE)
    assert load_suites(load_pack(ignore))["full"][0].meta == {}
    strict = write_pack(tmp_path / "strict", BASE + "scoring: {default: exact_match}\n", suites__full_jsonl=SUITE)
    with pytest.raises(DataError, match=r"full.jsonl:1: source: unknown field.*suite_fields"):
        load_suites(load_pack(strict))
    duplicate = tmp_path / "dup.jsonl"
    duplicate.write_text('{"id": "a", "input": "x", "expected": "mass"}\n\n{"id": "a", "input": "y", "expected": "mass"}\n')
    with pytest.raises(DataError, match=r"dup.jsonl:3: id: duplicate id 'a' \(also on line 1\)"):
        load_suite(duplicate, "full", labels=("mass",))


def test_default_scoring_per_pack_and_tier(tmp_path: Path) -> None:
    rows = '{"input": "two kilos", "expected": "2 kg", "category": "mass"}\n'
    root = write_pack(tmp_path / "p", BASE + "scoring: {default: exact_match, adversarial: json_match}\n",
                      suites__full_jsonl=rows, suites__adversarial_jsonl=rows,
                      suites__canary_jsonl='{"input": "x", "expected": "mass", "checker": "label_match"}\n')
    suites = load_suites(load_pack(root))
    assert suites["full"][0].checker == "exact_match"
    assert suites["adversarial"][0].checker == "json_match"
    assert suites["canary"][0].checker == "label_match"  # a case's own checker wins
    # without scoring, an answer that is not a label is still refused
    plain = write_pack(tmp_path / "q", BASE, suites__full_jsonl=rows)
    with pytest.raises(DataError, match="'2 kg' is not one of the pack's labels"):
        load_suites(load_pack(plain))
    bad = write_pack(tmp_path / "r", BASE + "scoring: {final: exact_match}\n")
    with pytest.raises(ConfigError, match=r"pack.yaml:4: scoring.final: unknown key"):
        load_pack(bad)


SLOTS = """\
unit:
  - {kind: mass, word: kilograms, symbol: kg}
  - {kind: mass, word: grams, symbol: g}
  - {kind: length, word: metres, symbol: m}
n: ["1", "2", "3", "7", "11", "21", "42"]
adjective:
  by: unit.kind
  table:
    mass: [heavy, weighed]
    length: [long, measured]
"""

TEMPLATES = """\
- id: spelled
  category: mass
  prompt: "{n|words|title} {unit.word}, {adjective}"
  completion: " {n} {unit.symbol|upper}"
- id: ordinal
  category: length
  prompt: "the {n|ordinal_words} value: {n|pad:3} {unit.word} ({n|ordinal})"
  completion: " {n} {unit.symbol}"
  frames: [note]
"""


def test_linked_slots_filters_and_keyed_tables(tmp_path: Path) -> None:
    root = write_pack(tmp_path / "p", BASE + "slots: slots.yaml\ntemplates: templates.yaml\n")
    (root / "slots.yaml").write_text(SLOTS)
    (root / "templates.yaml").write_text(TEMPLATES.replace("  frames: [note]\n", ""))
    pack = load_pack(root)
    examples = generate(pack, 14)
    assert len(examples) == 14 and Counter(e.category for e in examples) == {"mass": 7, "length": 7}
    by_word = {"kilograms": "KG", "grams": "G", "metres": "M"}
    adjectives = {"kilograms": {"heavy", "weighed"}, "grams": {"heavy", "weighed"}, "metres": {"long", "measured"}}
    for example in examples:
        text = example.meta["input"]
        if example.source.prompt_template == "spelled":
            words, rest = text.split(" ", 1)[0], text.split(" ", 1)[1]
            unit, adjective = rest.split(", ")
            number = example.completion.split()[0]
            assert apply_filter(number, "words").title().split()[0] == words.split()[0]
            assert example.completion == f" {number} {by_word[unit]}"
            assert adjective in adjectives[unit]  # drawn from the table row of the same record
        else:
            number = example.completion.split()[0]
            assert f"{int(number):03d}" in text and apply_filter(number, "ordinal") in text
    assert [e.id for e in examples] == [e.id for e in generate(pack, 14)]  # deterministic per seed
    assert apply_filter("21", "words") == "twenty-one" and apply_filter("21", "ordinal_words") == "twenty-first"
    assert [apply_filter(n, "ordinal") for n in ("1", "2", "3", "11", "12", "13", "22", "101")] == [
        "1st", "2nd", "3rd", "11th", "12th", "13th", "22nd", "101st"]


@pytest.mark.parametrize(
    ("slots", "template", "message"),
    [
        (SLOTS, "{unit}", r"templates.yaml:3: templates\[0\].prompt: \{unit\} is a record slot: name one of its fields"),
        (SLOTS, "{unit.colour}", "record slot: name one of its fields"),
        (SLOTS, "{n|shout}", "unknown filter 'shout'"),
        (SLOTS, "{n|pad}", "filter 'pad' needs a width"),
        (SLOTS.replace("    length: [long, measured]\n", ""), "{n}", r"slots.adjective.by: the table has no entry for unit.kind = 'length'"),
        (SLOTS + "odd:\n  - {a: x}\n  - {b: y}\n", "{n}", r"slots.yaml:\d+: slots.odd\[1\]: every record needs the same fields"),
    ],
)
def test_grammar_mistakes_name_file_line_and_field(tmp_path: Path, slots: str, template: str, message: str) -> None:
    root = write_pack(tmp_path / "p", BASE + "slots: slots.yaml\ntemplates: templates.yaml\n")
    (root / "slots.yaml").write_text(slots)
    (root / "templates.yaml").write_text(f"- id: t\n  category: mass\n  prompt: '{template}'\n")
    with pytest.raises(ConfigError, match=message):
        load_pack(root)


def test_frames_matched_to_the_kinds_a_template_names(tmp_path: Path) -> None:
    root = write_pack(tmp_path / "p", BASE + "slots: slots.yaml\ntemplates: templates.yaml\nframes: frames.yaml\n")
    (root / "slots.yaml").write_text(SLOTS)
    (root / "templates.yaml").write_text(TEMPLATES)
    (root / "frames.yaml").write_text(
        "- {kind: note, text: 'NOTE {body} END'}\n- {kind: mail, text: 'Dear team, {body}'}\n- 'plain {body}'\n"
    )
    pack = load_pack(root)
    assert pack.frame_kinds == ("note", "mail", "")
    frames = Counter((e.source.prompt_template, e.meta["frame"]) for e in generate(pack, 120, "varied"))
    assert {f for (t, f) in frames if t == "ordinal"} <= {0, None}
    assert {f for (t, f) in frames if t == "spelled"} >= {0, 1, 2}
    (root / "templates.yaml").write_text(TEMPLATES.replace("[note]", "[fax]"))
    with pytest.raises(ConfigError, match=r"templates.yaml:\d+: templates\[1\].frames: no frame has kind 'fax'"):
        load_pack(root)


GEN = '''\
def examples(rng, n, strategy):
    rows = []
    for _ in range(n):
        value = rng.randrange(1, 10_000)
        rows.append({"input": f"{value:,} grams ({strategy})", "completion": f" {value} g"})
    return rows
'''


def test_a_packs_generator_function(tmp_path: Path) -> None:
    root = write_pack(tmp_path / "p", BASE + "templates:\n  - {python: gen.py, category: mass}\n"
                      "  - {id: t, category: length, prompt: 'one metre', completion: ' 1 m'}\n")
    (root / "gen.py").write_text(GEN)
    pack = load_pack(root)
    template = pack.templates[0]
    assert template.id.startswith("gen.py:examples@") and len(template.id) == len("gen.py:examples@") + 12
    examples = [e for e in generate(pack, 40) if e.category == "mass"]
    assert len(examples) == 20 and all(e.source.prompt_template == template.id for e in examples)
    for example in examples:
        value = int(example.completion.split()[0])
        assert example.meta["input"] == f"{value:,} grams (basic)"
    assert [e.id for e in examples] == [e.id for e in generate(pack, 40) if e.category == "mass"]
    (root / "gen.py").write_text(GEN + "# changed\n")
    assert load_pack(root).templates[0].id != template.id  # lineage follows the code
    (root / "gen.py").write_text("def other(rng, n, strategy):\n    return []\n")
    with pytest.raises(ConfigError, match=r"templates\[0\].python: gen.py defines no top-level function 'examples'"):
        load_pack(root)
    outside = write_pack(tmp_path / "q", BASE + "templates:\n  - {python: ../p/gen.py, category: mass}\n")
    with pytest.raises(ConfigError, match="points outside the pack folder"):
        load_pack(outside)
    (root / "gen.py").write_text("def examples(rng, n, strategy):\n    return [{'input': 3}]\n")
    with pytest.raises(DataError, match=r"row 0: input must be non-empty text"):
        generate(load_pack(root), 4)
