"""Goal files: every user mistake is one ConfigError naming file, line and field; good files
load into the Goal record, and goal_to_yaml writes them back so that they load equal."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest
from forgemind_hookspecs import (
    BackendChoice,
    BackendInfo,
    ConfigError,
    ForgeError,
    GeneratorChoice,
    Goal,
    UnknownBackend,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgemind_core.brain.goals import field_line, goal_to_yaml, load_goal, parse_goal, validate_goal

# --------------------------------------------------------------------------------------------
# A small catalogue of fake backends, one per pillar a goal names.
# --------------------------------------------------------------------------------------------


@attrs.frozen
class TrainOptions:
    epochs: int = 1
    learning_rate: float = 1e-4
    schedule: Literal["constant", "cosine"] = "cosine"
    target_modules: tuple[str, ...] = ()


@attrs.frozen
class TemplateOptions:
    strategy: str = "basic"


@attrs.frozen
class DedupeOptions:
    threshold: float = 0.9


@attrs.frozen
class RunnerOptions:
    max_new_tokens: int = 64


@attrs.frozen
class NoOptions:
    pass


def _backend(name: str, options: type) -> type:
    return type(name.title(), (), {"name": name, "Options": options, "__doc__": f"fake {name}"})


def _catalogue() -> dict[str, dict[str, BackendInfo]]:
    entries = {
        "generators": [("template", TemplateOptions)],
        "filters": [("dedupe", DedupeOptions), ("rules", NoOptions)],
        "trainers": [("hf", TrainOptions)],
        "runners": [("hf", RunnerOptions)],
        "scorers": [("label_match", NoOptions)],
        "planners": [("default", NoOptions)],
        "executors": [("local", NoOptions)],
        "reviewers": [("cli", NoOptions)],
        "adversaries": [("perturb", NoOptions)],
    }
    return {
        pillar: {
            name: BackendInfo(name=name, pillar=pillar, cls=_backend(name, opts), plugin="test")
            for name, opts in items
        }
        for pillar, items in entries.items()
    }


GOOD = textwrap.dedent(
    """\
    name: py-security
    task: label Python snippets with the security issue they contain
    seed: 7
    pack: pack
    success: {metric: accuracy, threshold: 0.8}
    limits:
      max_iterations: 4
      budget_usd: 2
    pretrain: {corpus: stdlib, preset: tiny, steps: 100}
    generate:
      - {backend: template, share: 1.0, strategy: varied}
    filter:
      - {backend: dedupe, threshold: 0.8}
      - {backend: rules}
    train:
      backend: hf
      epochs: 2
      learning_rate: 1e-3
    evaluate:
      runner: {backend: hf, max_new_tokens: 8}
      scorers: [{backend: label_match}]
      adversarial_per_iteration: 20
    planner: {backend: default}
    executor: {backend: local}
    review: {backend: cli, policy: policy.yaml}
    """
)


def _write(tmp_path: Path, text: str | bytes, name: str = "goal.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "pack.yaml").write_text("name: p\nlabels: [a, b]\n")  # validation reads the pack
    (tmp_path / "policy.yaml").write_text("deny: []\n")  # a valid policy: its content is validated too
    return tmp_path


def _messages(path: Path, catalogue: Any = None) -> list[str]:
    return [str(e) for e in validate_goal(path, catalogue)]


# --------------------------------------------------------------------------------------------
# Good files.
# --------------------------------------------------------------------------------------------


def test_good_goal_loads_with_flat_sections_shaped_into_records(project: Path) -> None:
    path = _write(project, GOOD)
    goal = load_goal(path, _catalogue())

    assert goal.name == "py-security"
    assert goal.seed == 7
    assert goal.source == str(path.resolve())
    assert goal.pack == str((project / "pack").resolve())
    assert goal.review.policy == str((project / "policy.yaml").resolve())
    assert goal.review.backend == "cli"
    assert goal.success.threshold == 0.8 and goal.success.tier == "full"
    assert goal.limits.budget_usd == 2.0 and isinstance(goal.limits.budget_usd, float)
    assert goal.pretrain.corpus == "stdlib" and dict(goal.pretrain.options) == {"steps": 100}
    assert goal.generate == (GeneratorChoice("template", 1.0, {"strategy": "varied"}),)
    assert goal.filter == (BackendChoice("dedupe", {"threshold": 0.8}), BackendChoice("rules", {}))
    # '1e-3' is coerced to a float for a float option.
    assert goal.train == BackendChoice("hf", {"epochs": 2, "learning_rate": 0.001})
    assert goal.evaluate.runner == BackendChoice("hf", {"max_new_tokens": 8})
    assert goal.evaluate.scorers == (BackendChoice("label_match"),)
    assert goal.evaluate.adversarial_per_iteration == 20
    assert validate_goal(path, _catalogue()) == []


def test_minimal_goal_gets_the_record_defaults(tmp_path: Path) -> None:
    goal = load_goal(_write(tmp_path, "name: n\ntask: t\n"))
    assert goal == Goal(name="n", task="t", source=str((tmp_path / "goal.yaml").resolve()))


def test_float_options_accept_ints_and_numeric_strings() -> None:
    goal = parse_goal(
        "name: n\ntask: t\ntrain: {backend: hf, learning_rate: 1, epochs: 3}\n", catalogue=_catalogue()
    )
    assert goal.train.options["learning_rate"] == 1.0
    assert isinstance(goal.train.options["learning_rate"], float)
    goal = parse_goal("name: n\ntask: t\ntrain: {learning_rate: '2e-4'}\n", catalogue=_catalogue())
    assert goal.train == BackendChoice("hf", {"learning_rate": 0.0002})  # backend defaults to the record's


def test_parse_goal_resolves_pack_against_base_dir(tmp_path: Path) -> None:
    goal = parse_goal("name: n\ntask: t\npack: ../p\n", base_dir=tmp_path / "sub", source="inline")
    assert goal.pack == str((tmp_path / "p").resolve())
    assert goal.source == "inline"


# --------------------------------------------------------------------------------------------
# Mistakes: one sentence each, with file, line and field.
# --------------------------------------------------------------------------------------------


def test_wrong_option_type_names_line_and_flat_path(project: Path) -> None:
    text = GOOD.replace("learning_rate: 1e-3", "learning_rate: fast")
    path = _write(project, text)
    line = text.splitlines().index("  learning_rate: fast") + 1
    assert _messages(path, _catalogue()) == [
        f"{path}:{line}: train.learning_rate: expected a number, got 'fast'"
    ]


def test_unknown_backend_lists_installed_ones(project: Path) -> None:
    path = _write(project, GOOD.replace("backend: hf\n  epochs", "backend: hff\n  epochs"))
    errors = validate_goal(path, _catalogue())
    assert len(errors) == 1
    assert isinstance(errors[0], UnknownBackend)
    line = GOOD.splitlines().index("  backend: hf") + 1
    assert str(errors[0]) == f"{path}:{line}: train.backend: no trainer named 'hff'; installed: hf"
    with pytest.raises(UnknownBackend):
        load_goal(path, _catalogue())


def test_unknown_option_lists_valid_options_and_suggests(project: Path) -> None:
    path = _write(project, GOOD.replace("  epochs: 2", "  epoch: 2"))
    (message,) = _messages(path, _catalogue())
    line = GOOD.splitlines().index("  epochs: 2") + 1
    assert message.startswith(f"{path}:{line}: train.epoch: unknown option (did you mean 'epochs'?)")
    assert "allowed options of trainer 'hf': epochs, learning_rate, schedule, target_modules" in message


def test_option_literal_and_list_types_are_checked(project: Path) -> None:
    text = GOOD.replace("  epochs: 2", "  epochs: 2\n  schedule: linear\n  target_modules: q_proj")
    messages = _messages(_write(project, text), _catalogue())
    assert any("train.schedule: expected one of 'constant', 'cosine', got 'linear'" in m for m in messages)
    assert any("train.target_modules: expected a list, got 'q_proj'" in m for m in messages)


def test_every_problem_is_reported_in_line_order(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        name: n
        task: t
        limits:
          max_iteration: 4
          budget_usd: cheap
        generate:
          - {backend: template, share: lots}
          - {share: 0.5}
        seed: x
        colour: blue
        """
    )
    path = _write(tmp_path, text)
    messages = _messages(path)
    assert messages == [
        f"{path}:4: limits.max_iteration: unknown key (did you mean 'max_iterations'?); allowed keys: "
        "base_model, method, max_iterations, budget_usd, wall_clock_s, max_tokens, patience",
        f"{path}:5: limits.budget_usd: expected a number, got 'cheap'",
        f"{path}:7: generate[0].share: expected a number, got 'lots'",
        f"{path}:8: generate[1].backend: required: name the generator to use",
        f"{path}:9: seed: expected an integer, got 'x'",
        f"{path}:10: colour: unknown key; allowed keys: name, task, success, limits, pack, pretrain, "
        "generate, filter, train, evaluate, planner, executor, search, review, seed, export, report_to",
    ]
    with pytest.raises(ConfigError) as raised:
        load_goal(path)
    assert str(raised.value) == messages[0]
    assert raised.value.__notes__ == messages[1:]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\nname: b\ntask: t\n", ":2: invalid YAML: duplicate key 'name'"),
        ("- a\n- b\n", ":1: expected a mapping of goal fields at the top level, got a list"),
        ("name: [unclosed\ntask: t\n", ":2: invalid YAML: expected ',' or ']', but got ':'"),
        ("", ": the file is empty; a goal needs at least 'name' and 'task'"),
        ("# only a comment\n", ": the file holds no YAML data"),
        ("task: t\n", ": name: required, but missing"),
        ("name: 12\ntask: t\n", ":1: name: expected text, got 12"),
        ("name: n\ntask: t\nsource: x\n", ":3: source: unknown key"),
        (
            "name: n\ntask: t\nfilter: dedupe\n",
            ":3: filter: expected a list (write [] for none), got 'dedupe'",
        ),
        ("name: n\ntask: t\ntrain: hf\n", ":3: train: expected a mapping with a 'backend' key, got 'hf'"),
        ("name: n\ntask: t\nseed: !custom 3\n", ":3: custom YAML tags (!name) are not supported"),
        ("name: n\ntask: t\n1: x\n", ":3: keys must be text, got 1"),
    ],
)
def test_malformed_files_give_one_config_error(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    errors = validate_goal(path)
    assert errors, "expected a problem"
    assert all(isinstance(e, ConfigError) for e in errors)
    assert expected in str(errors[0]), [str(e) for e in errors]
    assert str(errors[0]).startswith(str(path))


def test_alias_bomb_is_refused_not_expanded(tmp_path: Path) -> None:
    lines = ["name: n", "task: t", "pretrain:", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 7):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    (error,) = validate_goal(_write(tmp_path, "\n".join(lines) + "\n"))
    assert "the file is too large" in str(error)


def test_escaped_surrogates_are_joined_or_refused(tmp_path: Path) -> None:
    goal = parse_goal('{"name": "\\ud83d\\ude00", "task": "t"}')
    assert goal.name == "\U0001f600"
    (error,) = validate_goal(_write(tmp_path, 'name: n\ntask: "\\ud800"\n'))
    assert str(error).startswith(f"{tmp_path / 'goal.yaml'}:2: task: text holds an unpaired surrogate")


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, b"name: n\ntask: caf\xe9\n")
    (error,) = validate_goal(path)
    assert str(error) == f"{path}:2: not UTF-8 text (byte 0xe9 cannot be decoded)"


def test_missing_file_and_missing_pack(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert _messages(missing) == [f"{missing}: the goal file does not exist"]
    path = _write(tmp_path, "name: n\ntask: t\npack: nowhere\n")
    assert _messages(path) == [f"{path}:3: pack: no such folder: {(tmp_path / 'nowhere').resolve()}"]


def test_missing_catalogue_pillar_counts_as_empty() -> None:
    with pytest.raises(
        UnknownBackend, match=r"<string>:3: planner.backend: no planner named 'smart'; installed: none"
    ):
        parse_goal("name: n\ntask: t\nplanner: {backend: smart}\n", catalogue={})


# --------------------------------------------------------------------------------------------
# Writing back.
# --------------------------------------------------------------------------------------------


def test_goal_to_yaml_round_trips_a_full_goal(project: Path) -> None:
    goal = load_goal(_write(project, GOOD), _catalogue())
    text = goal_to_yaml(goal)
    assert "options" not in text  # flat form, as users write it
    assert parse_goal(text, source=str(goal.source), catalogue=_catalogue()) == goal


def test_goal_to_yaml_refuses_unwritable_option_names() -> None:
    goal = Goal(name="n", task="t", train=BackendChoice("hf", {"backend": "x"}))
    with pytest.raises(ValueError, match="'backend'"):
        goal_to_yaml(goal)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=12),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_option_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
    lambda k: k not in ("backend", "share", "policy", "corpus", "preset")
)
_options = st.dictionaries(_option_names, _values, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.text(min_size=1, max_size=20),
    seed=st.integers(min_value=0, max_value=2**31),
    threshold=st.floats(min_value=0, max_value=1),
    train=_options,
    generate=st.lists(st.tuples(st.text(min_size=1, max_size=8), st.floats(0, 1), _options), max_size=2),
    review=_options,
    budget=st.none() | st.floats(min_value=0, max_value=1e6),
)
def test_goal_to_yaml_round_trips_arbitrary_goals(
    name: str,
    seed: int,
    threshold: float,
    train: dict[str, Any],
    generate: list[tuple[str, float, dict[str, Any]]],
    review: dict[str, Any],
    budget: float | None,
) -> None:
    from forgemind_hookspecs import Limits, ReviewSection, SuccessCriterion

    goal = Goal(
        name=name,
        task="t",
        seed=seed,
        success=SuccessCriterion(threshold=threshold),
        limits=Limits(budget_usd=budget),
        train=BackendChoice("hf", train),
        generate=tuple(GeneratorChoice(b, s, o) for b, s, o in generate),
        review=ReviewSection(options=review),
        source="x.yaml",
    )
    assert parse_goal(goal_to_yaml(goal), source="x.yaml") == goal


# --------------------------------------------------------------------------------------------
# Fuzz: a Goal or a ForgeError, never anything else.
# --------------------------------------------------------------------------------------------


def _goal_or_forge_error(text: str | bytes) -> None:
    try:
        result = parse_goal(text, catalogue=_catalogue())
    except ForgeError as error:
        assert str(error)  # one printable sentence
    else:
        assert isinstance(result, Goal)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80) | st.binary(max_size=40))
def test_fuzz_arbitrary_text(text: str | bytes) -> None:
    _goal_or_forge_error(text)


_yaml_keys = st.sampled_from(
    [
        "name",
        "task",
        "seed",
        "limits",
        "train",
        "generate",
        "filter",
        "evaluate",
        "review",
        "pretrain",
        "pack",
        "backend",
        "share",
        "runner",
        "scorers",
        "max_iterations",
        "epochs",
        "learning_rate",
        "threshold",
        "x",
    ]
)
_structures = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_yaml_keys, inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_yaml_keys, _structures, max_size=6) | _structures)
def test_fuzz_yaml_structures(data: Any) -> None:
    _goal_or_forge_error(json.dumps(data))  # JSON is YAML: every structure can be written


# --------------------------------------------------------------------------------------------
# forge validate
# --------------------------------------------------------------------------------------------


class _FakeForge:
    """What the command needs from the kernel: its catalogue."""

    def catalogue(self) -> dict[str, dict[str, BackendInfo]]:
        return _catalogue()


def _invoke(*args: str) -> Any:
    import click
    from click.testing import CliRunner

    from forgemind_core.cli.commands.validate import validate

    @click.group()
    def group() -> None:
        pass

    group.add_command(validate)
    return CliRunner().invoke(group, ["validate", *args], obj=_FakeForge())


def test_validate_command_ok_and_problems(project: Path) -> None:
    good = _write(project, GOOD)
    result = _invoke(str(good))
    assert (result.exit_code, result.stdout) == (0, "ok\n")

    bad = _write(
        project,
        GOOD.replace("learning_rate: 1e-3", "learning_rate: fast").replace("seed: 7", "seed: x"),
        "bad.yaml",
    )
    result = _invoke(str(bad))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}:3: seed: expected an integer, got 'x'",
        f"{bad}:18: train.learning_rate: expected a number, got 'fast'",
    ]


def test_validate_command_json(project: Path) -> None:
    bad = _write(project, GOOD.replace("backend: hf\n  epochs", "backend: hff\n  epochs"))
    result = _invoke("--json", str(bad))
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    line = GOOD.splitlines().index("  backend: hf") + 1
    assert report == {
        "ok": False,
        "problems": [
            {
                "file": str(bad),
                "line": line,
                "field": "train.backend",
                "message": "no trainer named 'hff'; installed: hf",
            }
        ],
    }
    result = _invoke("--json", str(_write(project, GOOD, "good.yaml")))
    assert (result.exit_code, json.loads(result.stdout)) == (0, {"ok": True, "problems": []})


def test_validate_command_needs_something_to_check() -> None:
    result = _invoke()
    assert result.exit_code == 2
    assert "give a goal file, --data FILE, or both" in result.stderr
    result = _invoke("--column", "prompt", "--data", "x.csv")
    assert result.exit_code == 2 and "expected FIELD=HEADER" in result.stderr


def test_validate_data_files_row_by_row(tmp_path: Path) -> None:
    dataformats = pytest.importorskip(
        "forgemind_hookspecs.dataformats",
        reason="forgemind_hookspecs.dataformats (another engineer's module) is missing",
    )
    from forgemind_core.cli.commands.validate import DATA_FORMATS

    assert DATA_FORMATS == dataformats.FORMATS
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "p", "completion": "c"}\n', encoding="utf-8")
    result = _invoke("--data", str(good), "--format", "prompt_completion")
    assert (result.exit_code, result.stdout) == (0, "ok\n")

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "p", "completion": "c"}\nnot json\n{"prompt": "p", "completion": "c"}\n[1]\n',
        encoding="utf-8",
    )
    result = _invoke("--data", str(bad), "--format", "prompt_completion")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert [line.split(":")[1] for line in lines] == ["2", "4"]
    assert all(line.startswith(str(bad)) for line in lines)

    rows = tmp_path / "rows.csv"
    rows.write_text("question,answer\nq1,a1\nq2,a2\n", encoding="utf-8")
    result = _invoke("--data", str(rows), "--column", "prompt=question", "--column", "completion=answer")
    assert (result.exit_code, result.stdout) == (0, "ok\n")
    result = _invoke("--data", str(rows), "--format", "csv")
    assert result.exit_code == 2 and "no column 'prompt'" in result.stderr


# --------------------------------------------------------------------------------------------
# Every Goal field survives goal_to_yaml: a value other than its default is made for each field
# from its type, so a field added to Goal (or to a section) is covered without editing this
# test, and a type it cannot make a value for fails here instead of being skipped.
# --------------------------------------------------------------------------------------------


def _other_value(tp: Any, default: Any, where: str, root: Path, validator: Any = None) -> Any:
    """A value of type ``tp`` that differs from ``default``, valid in a goal file (and for the
    field's declared choices, ``validator``)."""
    import typing
    from collections.abc import Mapping as MappingABC

    from forgemind_hookspecs.bounds import OneOf

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(validator, OneOf):
        return next(c for c in validator.choices if c != default)
    if where == "source":
        return str(root / "goal.yaml")
    if where == "report_to":  # the trackers the goal reader knows (docs/tracking.md)
        return ("tensorboard", "wandb")
    if where == "pack":
        (root / "pack").mkdir(exist_ok=True)
        return str((root / "pack").resolve())
    if where == "review.policy":
        (root / "policy.yaml").write_text("name: p\n")
        return str((root / "policy.yaml").resolve())
    if where == "success.metric":  # a metric the tiers report (checked: docs/readouts.md)
        return "pass_rate"
    if where == "search.space":  # keys the search section accepts (docs/candidates.md)
        return {"train.learning_rate": (0.001, 0.003), "strategy": ("varied",)}
    if isinstance(tp, type) and attrs.has(tp):
        attrs.resolve_types(tp)  # field types may still be strings (postponed annotations)
        return tp(**{
            f.name: _other_value(f.type, f.default, f"{where}.{f.name}" if where else f.name, root, f.validator)
            for f in attrs.fields(tp)
            if not f.name.startswith("_")
        })
    if origin is Literal:
        return next(a for a in args if a != default)
    if origin in (typing.Union, __import__("types").UnionType):
        inner = [a for a in args if a is not type(None)]
        assert len(inner) == 1, f"{where}: cannot make a value for {tp}; teach _other_value this type"
        return _other_value(inner[0], default, where, root)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return tuple(_other_value(args[0], None, f"{where}.{i}", root) for i in range(2))
    if origin in (MappingABC, dict) or tp in (dict,):
        return {"k": [1, "two"], "nested": {"flag": True, "x": 0.5}}
    if tp is bool:
        return not default
    if tp is int:
        return (default or 0) + 3
    if tp is float:
        return 0.25 if default != 0.25 else 0.5
    if tp is str:
        return f"{where.replace('.', '-')}-x"
    raise AssertionError(f"{where}: cannot make a value for {tp}; teach _other_value this type")


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for f in attrs.fields(attrs.resolve_types(cls)):
        path = f"{prefix}{f.name}"
        if isinstance(f.type, type) and attrs.has(f.type) and f.type.__name__ in (
            "SuccessCriterion", "Limits", "EvaluateSection", "ReviewSection", "PretrainSpec"
        ):
            out += _leaves(f.type, path + ".")
        else:
            out.append((path, f))
    return out


def _with(goal: Goal, path: str, value: Any) -> Goal:
    head, _, rest = path.partition(".")
    if not rest:
        return attrs.evolve(goal, **{head: value})
    return attrs.evolve(goal, **{head: _with(getattr(goal, head), rest, value)})


def test_goal_to_yaml_round_trips_every_field(tmp_path: Path) -> None:
    base = Goal(name="n", task="t", source=str(tmp_path / "goal.yaml"))
    full = _other_value(Goal, None, "", tmp_path)  # every field and section field changed at once
    full = attrs.evolve(full, source=base.source)
    leaves = _leaves(Goal)
    assert {"evaluate.adversary", "evaluate.adversarial_per_iteration", "export", "review.policy"} <= {p for p, _ in leaves}
    for path, _ in leaves:
        if path == "source":  # set by the loader from where the file is, never written
            continue
        f = attrs.fields_dict(type(_lookup_attr(base, path, parent=True)))[path.rsplit(".", 1)[-1]]
        value = _other_value(f.type, _lookup_attr(base, path), path, tmp_path, f.validator)
        one = _with(base, path, value)
        assert one != base, f"{path}: the made value equals the default"
        back = parse_goal(goal_to_yaml(one), source=base.source)
        assert back == one, f"{path} does not survive goal_to_yaml"
    assert parse_goal(goal_to_yaml(full), source=base.source) == full


def _lookup_attr(goal: Any, path: str, *, parent: bool = False) -> Any:
    parts = path.split(".")
    for part in parts[:-1] if parent else parts:
        goal = getattr(goal, part)
    return goal


def test_field_line_reads_lines_as_goal_errors_do(tmp_path: Path) -> None:
    """For errors raised after loading: block and flow style alike, None when absent or unreadable."""
    block = tmp_path / "block.yaml"
    block.write_text("name: x\ntask: y\n# filters follow\nfilter:\n  - backend: rules\ntrain: {backend: hf, epochs: 2}\n")
    assert (field_line(block, "filter"), field_line(block, "train", "epochs")) == (4, 6)
    flow = tmp_path / "flow.yaml"
    flow.write_text('{"name": "x",\n "filter": []}\n')
    assert field_line(flow, "filter") == 2
    assert field_line(block, "generate") is None
    assert field_line(tmp_path / "missing.yaml", "filter") is None
    broken = tmp_path / "broken.yaml"
    broken.write_text("filter: [\n")
    assert field_line(broken, "filter") is None
