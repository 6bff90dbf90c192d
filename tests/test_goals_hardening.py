"""Issue 22, points 2 and 3: `forge validate` (the real CLI, with the installed backends) refuses
every goal the docs call invalid, one sentence with file, line and field and exit 2, and never
shows a traceback or hangs on a hostile goal file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgemind_core.cli.main import build_cli

PACK = Path(__file__).resolve().parent.parent / "examples" / "support-tickets"
HEAD = f"name: x\ntask: t\npack: {PACK}\n"


def _validate(tmp_path: Path, *args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(build_cli(), ["--home", str(tmp_path / "home"), "validate", *args])
    error = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.stderr + result.stdout, error


def _goal(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "goal.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_the_example_goal_passes(tmp_path: Path) -> None:
    assert _validate(tmp_path, str(PACK / "goal.yaml"))[:2] == (0, "ok\n")


INVALID = [
    ("limits: {method: magic}", "limits.method: expected one of 'full', 'lora', 'qlora', got 'magic'"),
    ("success: {tier: nope}", "success.tier: expected one of 'canary', 'full', 'adversarial', got 'nope'"),
    ("pretrain: {preset: gigantic}", "pretrain.preset: expected one of 'tiny', 'small', 'base', got 'gigantic'"),
    ("generate: [{backend: template, strategy: weird}]", "generate[0].strategy: expected one of 'basic'"),
    ("planner: {backend: default, strategies: [nope]}", "planner.strategies: expected one of 'basic'"),
    ("limits: {budget_usd: -1}", "limits.budget_usd: expected a number ≥ 0, got -1.0"),
    ("limits: {budget_usd: .nan}", "limits.budget_usd: expected a number ≥ 0, got nan"),
    ("limits: {budget_usd: .inf}", "limits.budget_usd: expected a number ≥ 0, got inf"),
    ("limits: {max_iterations: 0}", "limits.max_iterations: expected an integer ≥ 1, got 0"),
    ("limits: {max_iterations: -1}", "limits.max_iterations: expected an integer ≥ 1, got -1"),
    ("train: {backend: hf, epochs: 0}", "train.epochs: expected a number > 0, got 0.0"),
    ("train: {backend: hf, epochs: -3}", "train.epochs: expected a number > 0, got -3.0"),
    ("train: {backend: hf, batch_size: 0}", "train.batch_size: expected an integer ≥ 1, got 0"),
    ("train: {backend: hf, learning_rate: -1}", "train.learning_rate: expected a number > 0, got -1.0"),
    ("generate: [{backend: template, share: -1}]", "generate[0].share: expected a number ≥ 0, got -1.0"),
    ("planner: {backend: default, initial_examples: -10}", "planner.initial_examples: expected an integer ≥ 1, got -10"),
    ("search: {candidates: 100000000000}", "search.candidates: expected an integer from 1 to 1024, got 100000000000"),
    ("success: {threshold: 1.5}", "success.threshold: expected a number from 0 to 1, got 1.5"),
    ("seed: -1", "seed: expected an integer from 0 to 4294967295, got -1"),
]


@pytest.mark.parametrize(("snippet", "message"), INVALID, ids=[s for s, _ in INVALID])
def test_documented_enums_and_ranges_are_checked_at_validation(tmp_path: Path, snippet: str, message: str) -> None:
    goal = _goal(tmp_path, HEAD + snippet + "\n")
    code, out, error = _validate(tmp_path, str(goal))
    assert (code, error) == (2, None)
    assert out.startswith(f"{goal}:4: {message}"), out


def test_every_broken_bound_is_reported_at_once(tmp_path: Path) -> None:
    goal = _goal(tmp_path, HEAD + "limits: {max_iterations: 0, budget_usd: -1}\nsuccess: {tier: nope}\n"
                 "train: {backend: hf, epochs: 0, batch_size: 0}\n")
    code, out, _ = _validate(tmp_path, str(goal))
    fields = [line.split(": ")[1] for line in out.splitlines()]
    assert code == 2
    assert fields == ["limits.max_iterations", "limits.budget_usd", "success.tier", "train.epochs", "train.batch_size"]


def test_a_pack_folder_without_pack_yaml_fails_validation(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, out, _ = _validate(tmp_path, str(_goal(tmp_path, "name: x\ntask: t\npack: empty\n")))
    assert code == 2 and out == f"{tmp_path / 'empty'}: not a task pack: no pack.yaml in this folder\n"


def test_a_bad_suite_fails_validation_not_the_evaluation(tmp_path: Path) -> None:
    import shutil

    pack = tmp_path / "pack"
    shutil.copytree(PACK, pack, ignore=shutil.ignore_patterns("goal.yaml"))
    (pack / "suites" / "canary.jsonl").write_text('{"input": "a", "expected": "billing", "checker": "nosuch"}\n')
    code, out, _ = _validate(tmp_path, str(_goal(tmp_path, "name: x\ntask: t\npack: pack\n")))
    assert code == 2
    assert out.startswith(f"{pack / 'suites' / 'canary.jsonl'}:1: checker: no scorer named 'nosuch'; installed: ")


HOSTILE = [
    ("seed: !foo [1]\n", "goal.yaml:3: YAML tags (!foo) are not supported"),
    ("seed: !!python/object/apply:os.system [echo hi]\n", "goal.yaml:3: YAML tags (!!python/object/apply:os.system)"),
    ('pack: "\\0"\n', "goal.yaml:3: pack: a path cannot hold a NUL character"),
    ("pack: " + "a" * 5000 + "\n", "goal.yaml:3: pack: cannot be used as a path: File name too long"),
    ("seed: " + "9" * 5000 + "\n", "goal.yaml: invalid YAML: a number longer than 4300 digits"),
]


@pytest.mark.parametrize(("snippet", "message"), HOSTILE, ids=["tag", "python-tag", "nul", "long-pack", "digits"])
def test_hostile_goal_values_are_one_sentence_not_a_traceback(tmp_path: Path, snippet: str, message: str) -> None:
    code, out, error = _validate(tmp_path, str(_goal(tmp_path, "name: x\ntask: t\n" + snippet)))
    assert (code, error) == (2, None)
    assert message in out and len(out.splitlines()) == 1 and "Traceback" not in out


def _finishes(fn, seconds: float = 30.0):  # type: ignore[no-untyped-def]
    """Run ``fn`` in a thread; a hang shows as a failure instead of a stuck test run."""
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(result=fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the command hung"
    return box["result"]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "too-large"])
def test_a_goal_file_that_is_not_a_small_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    goal = tmp_path / "goal.yaml"
    if kind == "fifo":
        os.mkfifo(goal)
        words = "expected a regular goal file, got a device, pipe or socket"
    elif kind == "dev-zero":
        goal.symlink_to("/dev/zero")
        words = "expected a regular goal file, got a device, pipe or socket"
    else:
        goal.write_bytes(b"# " + b"x" * (5 * 2**20) + b"\nname: x\n")
        words = "the goal file is larger than 4 MiB"
    code, out, error = _finishes(lambda: _validate(tmp_path, str(goal)))
    assert (code, error, out) == (2, None, f"{goal}: {words}\n")


@pytest.mark.parametrize(
    ("name", "content", "line", "words"),
    [
        ("deep.jsonl", b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b', "completion": "c"}\n', 1, "nested too deeply"),
        ("big.jsonl", b'{"prompt": "p", "completion": "c", "meta": {"n": ' + b"9" * 5000 + b"}}\n", 1, "4300 digits"),
        ("bad.csv", b"prompt,completion\nok,fine\n\xff\xfe,c\n", 3, "is not valid UTF-8"),
        ("bad.jsonl", b'{"prompt": "p", "completion": "c"}\n{"prompt": "\xff", "completion": "c"}\n', 2, "is not valid UTF-8"),
        ("lone.jsonl", b'{"prompt": "\\udc00", "completion": "c"}\n', 1, "unpaired surrogate"),
    ],
)
def test_hostile_data_files_are_one_sentence_with_the_line(
    tmp_path: Path, name: str, content: bytes, line: int, words: str
) -> None:
    data = tmp_path / name
    data.write_bytes(content)
    code, out, error = _validate(tmp_path, "--data", str(data))
    assert (code, error) == (2, None)
    assert out.startswith(f"{data}:{line}: ") and words in out, out


def test_a_fifo_data_file_is_refused_without_waiting(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    os.mkfifo(data)
    code, out, _ = _finishes(lambda: _validate(tmp_path, "--data", str(data)))
    assert (code, out) == (2, f"{data}: expected a regular data file, got a device, pipe or socket\n")


def test_the_docs_table_of_allowed_values_is_the_declared_one(tmp_path: Path) -> None:
    from forgemind_core.api import Forge
    from forgemind_core.brain.goals import allowed_values_table

    table = allowed_values_table(Forge(home=tmp_path / "home").catalogue())
    docs = (Path(__file__).resolve().parent.parent / "docs" / "goal-files.md").read_text(encoding="utf-8")
    assert table in docs, "docs/goal-files.md: regenerate the allowed-values table:\n" + table
