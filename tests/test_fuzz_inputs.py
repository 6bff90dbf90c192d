"""Fuzzing every input a user hands ForgeMind (issue 22): goal files, task packs, suites and every
data format. Each input either loads or is refused with one UserError sentence (exit 2 through the
CLI) — never another exception, never a hang. Bounded: a few hundred examples, well under a minute.

The values are drawn from what hostile or careless users write: wrong types, out-of-range and
non-finite numbers, huge integers, YAML tags, NUL and lone surrogates, absolute and ``..`` paths,
deep nesting, invalid UTF-8.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from forgemind_hookspecs.dataformats import FORMATS, read_examples, validate_file
from forgemind_hookspecs.errors import UserError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgemind_core.brain.goals import parse_goal, validate_goal
from forgemind_core.foundry.packs import load_pack, load_suite, load_suites

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@cache
def _catalogue() -> Any:
    from forgemind_core.api import Forge

    return Forge(home=tempfile.mkdtemp(prefix="fuzz-home-")).catalogue()


def _ok_or_one_sentence(fn: Callable[[], Any]) -> None:
    """``fn()`` succeeds or raises a UserError that prints as a sentence; anything else fails."""
    try:
        fn()
    except UserError as error:
        text = str(error)
        assert text and "Traceback" not in text


# ------------------------------------------------------------------------------------------
# Values users write.
# ------------------------------------------------------------------------------------------

_numbers = st.sampled_from(["0", "-1", "-3", "1e11", ".nan", ".inf", "-.inf", "1.5", "0.5", "3", "9" * 5000, "1e-3"])
_texts = st.sampled_from([
    "x", "''", '"\\0"', '"\\ud800"', "a" * 5000, "/etc/hostname", "../outside", "nope", "magic", "lora",
    "full", "canary", "basic", "varied", "[]", "{}", "null", "yes", "!foo [1]", "!!python/object/apply:os.system [id]",
    "!!binary aGk=", "&a [*a]", "2024-01-01", "'" + "[" * 200 + "'",
])
_leaf = _numbers | _texts
_keys = st.sampled_from([
    "limits.method", "limits.max_iterations", "limits.budget_usd", "limits.wall_clock_s", "limits.max_tokens",
    "limits.patience", "success.tier", "success.threshold", "success.canary_min", "seed", "pack",
    "pretrain.preset", "pretrain.corpus", "search.candidates", "evaluate.adversarial_per_iteration",
    "train.epochs", "train.batch_size", "train.learning_rate", "train.warmup_ratio", "train.backend",
    "planner.strategies", "planner.initial_examples", "planner.backend", "review.policy", "export.x",
])


def _goal_text(pairs: list[tuple[str, str]], pack: str, generate: tuple[str, str] = ("1", "basic")) -> str:
    sections: dict[str, dict[str, str]] = {}
    top: dict[str, str] = {"name": "fuzz", "task": "t", "pack": pack}
    for key, value in pairs:
        head, _, tail = key.partition(".")
        if tail:
            sections.setdefault(head, {})[tail] = value
        else:
            top[head] = value
    lines = [f"{k}: {v}" for k, v in top.items()]
    for head, body in sections.items():
        lines.append(f"{head}:")
        lines += [f"  {k}: {v}" for k, v in body.items()]
    lines.append(f"generate: [{{backend: template, share: {generate[0]}, strategy: {generate[1]}}}]")
    return "\n".join(lines) + "\n"


@SETTINGS
@given(st.lists(st.tuples(_keys, _leaf), max_size=6), st.tuples(_leaf, _leaf))
def test_fuzz_goal_files_validate_or_one_sentence(
    tmp_path_factory: Any, pairs: list[tuple[str, str]], generate: tuple[str, str]
) -> None:
    folder = tmp_path_factory.mktemp("goal")
    goal = folder / "goal.yaml"
    goal.write_text(_goal_text(pairs, str(EXAMPLES / "support-tickets"), generate), encoding="utf-8")
    problems = validate_goal(goal, _catalogue())
    assert all(isinstance(p, UserError) and str(p) for p in problems)
    _ok_or_one_sentence(lambda: parse_goal(goal.read_bytes(), catalogue=_catalogue()))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(_keys, _leaf), min_size=1, max_size=4))
def test_fuzz_goal_files_through_the_cli_exit_0_or_2(tmp_path_factory: Any, pairs: list[tuple[str, str]]) -> None:
    from forgemind_core.cli.main import build_cli

    folder = tmp_path_factory.mktemp("cli")
    goal = folder / "goal.yaml"
    goal.write_text(_goal_text(pairs, str(EXAMPLES / "support-tickets")), encoding="utf-8")
    result = CliRunner().invoke(build_cli(), ["--home", str(folder / "home"), "validate", str(goal)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2)
    assert "Traceback" not in result.output


@SETTINGS
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_fuzz_goal_bytes(tmp_path_factory: Any, raw: bytes) -> None:
    goal = tmp_path_factory.mktemp("raw") / "goal.yaml"
    goal.write_bytes(raw)
    assert all(isinstance(p, UserError) for p in validate_goal(goal, _catalogue()))


# ------------------------------------------------------------------------------------------
# Task packs and suites.
# ------------------------------------------------------------------------------------------

_pack_paths = st.sampled_from([
    "slots.yaml", "/etc/hostname", "../outside.yaml", "suites", "missing.yaml", "a" * 5000, "sub/../slots.yaml",
    "link.yaml", "*.yaml", "/tmp/*", "../*", "[", "\0",
])
_pack_keys = st.sampled_from(["slots", "templates", "frames", "data", "suites", "labels", "label_weights",
                              "prompt_format", "name", "colour"])
_pack_values = _pack_paths | _leaf | st.sampled_from([
    "{canary: suites/canary.jsonl}", "{canary: ../x.jsonl}", "{bogus: a.jsonl}", "[a, b]", "{a: .nan}",
    "{a: -1}", "[{id: t, category: a, prompt: p, weight: .nan}]", "'{input}'", "[x.jsonl, ../y.csv]",
])
_suite_lines = st.sampled_from([
    '{"input": "a", "expected": "a"}', '{"input": "b", "expected": "zz"}', '{"input": "c", "checker": "nosuch"}',
    '{"input": ' + "[" * 5000 + "]" * 5000 + "}", '{"input": "d", "meta": {"n": ' + "9" * 5000 + "}}",
    '{"input": "\\ud800"}', "not json", "[1]", '{"input": ""}', '{"input": "e", "extra": 1}', "# comment", "",
]).map(str.encode) | st.binary(max_size=20)


def _pack_folder(root: Path, pairs: list[tuple[str, str]], suite: list[bytes]) -> Path:
    pack = root / "pack"
    (pack / "suites").mkdir(parents=True)
    (root / "outside.yaml").write_text("a: [x]\n")
    (pack / "slots.yaml").write_text("word: [alpha, beta]\n")
    (pack / "link.yaml").symlink_to(root / "outside.yaml")
    (pack / "suites" / "canary.jsonl").write_bytes(b"\n".join(suite) + b"\n")
    fields = {"name": "p", "labels": "[a, b]", **dict(pairs)}
    (pack / "pack.yaml").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()), encoding="utf-8",
                                    errors="surrogatepass")
    return pack


@SETTINGS
@given(st.lists(st.tuples(_pack_keys, _pack_values), max_size=4), st.lists(_suite_lines, max_size=4))
def test_fuzz_packs_load_or_one_sentence(tmp_path_factory: Any, pairs: list[tuple[str, str]], suite: list[bytes]) -> None:
    pack = _pack_folder(tmp_path_factory.mktemp("pack"), pairs, suite)

    def load() -> None:
        loaded = load_pack(pack)
        for path in (*loaded.suites.values(), *loaded.data_files):  # whatever it accepted lies inside
            assert Path(path).resolve().is_relative_to(pack.resolve())
        load_suites(loaded, checkers=("label_match", "regex"))

    _ok_or_one_sentence(load)


@SETTINGS
@given(st.lists(_suite_lines, max_size=6))
def test_fuzz_suites_load_or_one_sentence(tmp_path_factory: Any, lines: list[bytes]) -> None:
    suite = tmp_path_factory.mktemp("suite") / "full.jsonl"
    suite.write_bytes(b"\n".join(lines))
    _ok_or_one_sentence(lambda: load_suite(suite, "full", labels=("a", "b"), checkers=("label_match",)))


# ------------------------------------------------------------------------------------------
# Every data format.
# ------------------------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["prompt", "completion", "messages", "role", "content", "text", "category", "meta"]), inner, max_size=4),
    max_leaves=8,
)
_rows = st.one_of(
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([
        b'{"prompt": "p", "completion": "c"}', b'{"messages": [{"role": "user", "content": "hi"}, '
        b'{"role": "assistant", "content": "yo"}]}', b'{"text": "hello"}', b'{"prompt": "\\udc00", "completion": "c"}',
        b'{"prompt": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", b'{"n": ' + b"9" * 5000 + b"}",
        b"\xff\xfe\x00", b"prompt,completion", b"a,b,c", b'"unterminated', b"\x00,\x00",
    ]),
    st.binary(max_size=30),
)
_suffixes = st.sampled_from([".jsonl", ".csv", ".txt", ".json", ".md"])
_formats = st.sampled_from([None, *FORMATS, "jsonl", "pc", "nope"])


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_rows, max_size=5), _suffixes, _formats)
def test_fuzz_data_files_every_format(tmp_path_factory: Any, rows: list[bytes], suffix: str, fmt: str | None) -> None:
    data = tmp_path_factory.mktemp("data") / f"rows{suffix}"
    data.write_bytes(b"\n".join(rows) + b"\n")
    problems = validate_file(data, format=fmt)
    assert all(isinstance(p, UserError) and p.file == str(data) for p in problems)
    _ok_or_one_sentence(lambda: list(read_examples(data, format=fmt)))


@SETTINGS
@given(st.lists(_rows, max_size=5), st.sampled_from(["jsonl", "csv"]))
def test_fuzz_files_generator_rows(tmp_path_factory: Any, rows: list[bytes], fmt: str) -> None:
    from forgemind_core.foundry.files import _line_numbers

    data = tmp_path_factory.mktemp("gen") / f"rows.{fmt}"
    data.write_bytes(b"\n".join(rows) + b"\n")
    _ok_or_one_sentence(lambda: _line_numbers(data, fmt))


