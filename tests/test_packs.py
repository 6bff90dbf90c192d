"""Task-pack loading: the example packs round-trip, and every mistake names file, line, field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from forgemind_hookspecs import ConfigError, DataError, TaskPack, from_dict, to_dict

from forgemind_core.foundry.packs import expand, format_prompt, load_pack, load_suite, load_suites, split_head

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PACKS = ["python-security", "support-tickets", "order-extraction", "log-triage"]

MINIMAL = """\
name: tiny
task: "say the label"
labels:
  yes: "affirmative"
  no: "negative"
prompt_format: "Q: {input}\\nA:"
slots:
  word: [alpha, beta]
templates:
  - id: t-yes
    category: "yes"
    prompt: "{word} is fine"
"""


def write_pack(root: Path, pack_yaml: str, suites: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pack.yaml").write_text(pack_yaml, encoding="utf-8")
    for tier, text in (suites or {}).items():
        (root / "suites").mkdir(exist_ok=True)
        (root / "suites" / f"{tier}.jsonl").write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize("name", PACKS)
def test_example_pack_loads_and_round_trips(name: str) -> None:
    pack = load_pack(EXAMPLES / name)
    assert pack.name == name
    assert set(pack.label_descriptions) == set(pack.labels)
    assert {t.category for t in pack.templates} == set(pack.labels)
    assert set(pack.suites) == {"canary", "full", "adversarial"}
    assert pack.frames and pack.system_prompt and "{input}" in pack.prompt_format
    assert from_dict(TaskPack, to_dict(pack)) == pack
    suites = load_suites(pack)
    assert 6 <= len(suites["canary"]) <= 12
    assert len(suites["full"]) >= 70
    assert len(suites["adversarial"]) >= 25
    extraction = any(case.checker == "json_match" for cases in suites.values() for case in cases)
    if not extraction:  # a classification pack has a catch-all label
        assert "no issue" in pack.labels or "other" in pack.labels
    keys: set[tuple[str, ...]] = set()
    for tier, cases in suites.items():
        assert all(case.tier == tier for case in cases)
        assert {case.category for case in cases} == set(pack.labels)
        if extraction:
            # labels are categories; every answer is a JSON object with the same keys, in order
            assert all(case.checker == "json_match" for case in cases)
            keys |= {tuple(json.loads(case.expected)) for case in cases}
        else:
            assert all(case.expected in pack.labels for case in cases)
    assert len(keys) == int(extraction)


def test_format_prompt_replaces_only_input() -> None:
    pack = TaskPack(root=".", name="p", prompt_format="Code:\n```python\n{input}\n```\nFinding:")
    code = 'd = {"a": 1}\nprint(f"{d}")'
    assert format_prompt(pack, code) == f"Code:\n```python\n{code}\n```\nFinding:"


def test_expand_binds_each_slot_once_and_nests() -> None:
    slots = {"name": ("x", "y", "z"), "stmt": ("{name} = 1",)}
    out = expand("{stmt}; print({name}); f'{other}'", slots, lambda values: values[-1])
    assert out == "z = 1; print(z); f'{other}'"


def test_split_head() -> None:
    assert split_head("import os\n---\nos.getcwd()\n") == ("import os", "os.getcwd()")
    assert split_head("print(1)") == ("", "print(1)")


def test_minimal_pack_defaults_and_suites(tmp_path: Path) -> None:
    root = write_pack(
        tmp_path / "tiny",
        MINIMAL,
        {"canary": '{"input": "alpha is fine", "expected": "yes"}\n\n# comment\n'},
    )
    pack = load_pack(root / "pack.yaml")
    assert pack.labels == ("yes", "no")
    assert pack.templates[0].strategies == ()
    assert pack.slots == {"word": ("alpha", "beta")}
    assert pack.suites == {"canary": str(root.resolve() / "suites" / "canary.jsonl")}
    (case,) = load_suite(pack.suites["canary"], "canary", labels=pack.labels)
    assert (case.input, case.expected, case.category, case.tier) == ("alpha is fine", "yes", "yes", "canary")


@pytest.mark.parametrize(
    ("replace", "with_", "line", "field", "words"),
    [
        ("task: ", "tsk: ", 2, "tsk", "unknown field"),
        ('    category: "yes"', '    category: "maybe"', 11, "templates[0].category", "not one of the pack's labels"),
        ('prompt_format: "Q: {input}\\nA:"', 'prompt_format: "Q:"', 6, "prompt_format", "{input}"),
        ("  word: [alpha, beta]", "  word: []", 8, "slots.word", "non-empty list"),
        ('    prompt: "{word} is fine"', '    prompt: "{words} is fine"', 12, "templates[0].prompt", "did you mean {word}"),
        ("  no: \"negative\"", "  no: [\"negative\"", 6, None, "invalid YAML"),
    ],
)
def test_pack_errors_name_file_line_and_field(
    tmp_path: Path, replace: str, with_: str, line: int, field: str | None, words: str
) -> None:
    assert replace in MINIMAL
    root = write_pack(tmp_path / "bad", MINIMAL.replace(replace, with_))
    with pytest.raises(ConfigError) as info:
        load_pack(root)
    error = info.value
    assert error.file == str((root / "pack.yaml").resolve())
    assert error.line == line, str(error)
    assert error.field == field
    assert words in str(error)


def test_missing_pack_file_and_missing_templates_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no pack.yaml"):
        load_pack(tmp_path)
    root = write_pack(tmp_path / "p", MINIMAL.split("slots:")[0] + "templates: templates.yaml\n")
    with pytest.raises(ConfigError, match=r"'templates.yaml' not found") as info:
        load_pack(root)
    assert info.value.line == 7 and info.value.field == "templates"


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ('{"input": "a", "expected": "yes"', None, "not valid JSON"),
        ('{"expected": "yes"}', "input", "is required"),
        ('{"input": "a", "expected": "maybe"}', "expected", "not one of the pack's labels"),
        ('{"input": "a", "expected": "yes", "meta": [1]}', "meta", "JSON object"),
        ('{"input": "a", "expected": "yes", "labl": "x"}', "labl", "unknown field"),
        ('{"input": "ok", "expected": "yes"}', None, "duplicate case"),
    ],
)
def test_suite_errors_name_file_line_and_field(tmp_path: Path, row: str, field: str | None, words: str) -> None:
    path = tmp_path / "full.jsonl"
    path.write_text('{"input": "ok", "expected": "yes"}\n' + row + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_suite(path, "full", labels=("yes", "no"))
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 2, field)
    assert words in str(info.value)
    assert str(info.value).startswith(f"{path}:2: ")


def test_suite_with_custom_checker_may_expect_free_text(tmp_path: Path) -> None:
    path = tmp_path / "full.jsonl"
    path.write_text('{"input": "x", "expected": "^B\\\\d+$", "checker": "regex", "meta": {"k": 1}}\n')
    (case,) = load_suite(path, "full", labels=("yes",))
    assert case.checker == "regex" and case.meta == {"k": 1}
    with pytest.raises(ConfigError, match="unknown tier"):
        load_suite(path, "smoke")


def test_label_weights_are_read_and_checked(tmp_path: Path) -> None:
    root = write_pack(tmp_path / "weighted", MINIMAL + 'label_weights: {"no": 2.5}\n')
    assert load_pack(root).label_weights == {"no": 2.5}
    assert load_pack(write_pack(tmp_path / "plain", MINIMAL)).label_weights == {}
    for bad, words in (('{"maybe": 2}', "not one of the pack's labels"), ('{"no": 0}', "positive number"),
                       ('{"no": "lots"}', "positive number"), ("[no]", "mapping")):
        root = write_pack(tmp_path / f"bad{len(words)}{len(bad)}", MINIMAL + f"label_weights: {bad}\n")
        with pytest.raises(ConfigError) as info:
            load_pack(root)
        assert words in str(info.value) and info.value.line == MINIMAL.count("\n") + 1
        assert (info.value.field or "").startswith("label_weights")


# --------------------------------------------------------------------------------------------
# Issue 22: one rule for every path a pack names, and suites that fail at load, not at evaluation.
# --------------------------------------------------------------------------------------------


def _with_slots_file(root: Path, slots_ref: str) -> Path:
    pack = write_pack(root, MINIMAL.replace('slots:\n  word: [alpha, beta]\n', f"slots: {slots_ref}\n"))
    return pack


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_every_pack_path_is_relative_and_stays_inside_the_pack(tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("word: [alpha, beta]\n")
    pack_root = tmp_path / "pack"
    if where == "absolute":
        pack = _with_slots_file(pack_root, str(outside))
        words = "is absolute; paths in a pack are relative to the pack folder"
    elif where == "dotdot":
        pack = _with_slots_file(pack_root, "../outside.yaml")
        words = "points outside the pack folder"
    else:
        pack = _with_slots_file(pack_root, "slots.yaml")
        (pack / "slots.yaml").symlink_to(outside)  # resolved before the check
        words = "points outside the pack folder"
    with pytest.raises(ConfigError) as raised:
        load_pack(pack)
    error = raised.value
    assert (error.file, error.line, error.field) == (str(pack / "pack.yaml"), 7, "slots")
    assert words in error.message


def test_a_path_inside_the_pack_still_loads(tmp_path: Path) -> None:
    pack = _with_slots_file(tmp_path / "pack", "parts/../slots.yaml")
    (pack / "slots.yaml").write_text("word: [alpha, beta]\n")
    assert load_pack(pack).slots == {"word": ("alpha", "beta")}


def test_a_suite_that_is_a_folder_is_an_error_not_skipped(tmp_path: Path) -> None:
    pack = write_pack(tmp_path / "pack", MINIMAL, {"canary": '{"input": "a", "expected": "yes"}\n'})
    (pack / "suites" / "full.jsonl").mkdir()
    with pytest.raises(ConfigError, match=r"'suites/full\.jsonl' is a folder; expected a file") as raised:
        load_pack(pack)
    assert raised.value.field == "suites.full"
    named = write_pack(tmp_path / "named", MINIMAL + "suites: {canary: suites}\n")
    (named / "suites").mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match="'suites' is a folder"):
        load_pack(named)


def test_unknown_checker_is_refused_at_load_with_its_line(tmp_path: Path) -> None:
    suite = tmp_path / "canary.jsonl"
    suite.write_text('{"input": "a", "expected": "yes"}\n{"input": "b", "expected": "x", "checker": "nosuch"}\n')
    with pytest.raises(DataError) as raised:
        load_suite(suite, "canary", labels=("yes", "no"), checkers=("label_match", "regex"))
    assert str(raised.value) == f"{suite}:2: checker: no scorer named 'nosuch'; installed: label_match, regex"
    assert len(load_suite(suite, "canary", checkers=None)) == 2  # without a catalogue: not checked


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (b'{"input": "a", "expected": "yes"}\n{"input": "\xff"}\n', 2, "is not valid UTF-8"),
        (b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", 1, "nested too deeply"),
        (b'{"input": "a", "meta": {"n": ' + b"9" * 5000 + b"}}\n", 1, "a number longer than"),
        (b'{"input": "\\ud800", "expected": "yes"}\n', 1, "unpaired surrogate"),
    ],
)
def test_unreadable_suite_lines_are_one_data_error(tmp_path: Path, content: bytes, line: int, words: str) -> None:
    suite = tmp_path / "full.jsonl"
    suite.write_bytes(content)
    with pytest.raises(DataError) as raised:
        load_suite(suite, "full")
    assert raised.value.line == line and words in raised.value.message


def test_a_fifo_suite_or_pack_file_is_refused_without_waiting(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "canary.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="expected a regular suite file, got a device, pipe or socket"):
        load_suite(fifo, "canary")
    pack = write_pack(tmp_path / "pack", MINIMAL)
    (pack / "pack.yaml").unlink()
    os.mkfifo(pack / "pack.yaml")
    with pytest.raises(ConfigError):
        load_pack(pack)
