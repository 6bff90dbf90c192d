"""Goal files: reading, validating and writing back the YAML a user writes to state a goal.

A goal file is the user's main input, so every mistake in it must come back as one sentence
naming the file, the line and the dotted field at fault (``goal.yaml:12: train.learning_rate:
expected a number, got 'fast'``) — never a traceback — and :func:`validate_goal` must report
*all* of them at once, so the user fixes the file in one go.

How a file is read:

1. bytes -> text (UTF-8, a BOM is allowed); YAML with ruamel's round-trip loader, because it
   keeps the line of every key and item; duplicate keys are errors.
2. The YAML tree becomes plain data (dicts, lists, scalars) plus a map ``path -> line``.
3. The backend sections are *flat* in YAML (every key beside ``backend`` is an option), so they are
   reshaped into the records' nested form (``{"backend": ..., "options": {...}}``).
4. cattrs structures the result into :class:`~forgemind_hookspecs.records.Goal` through a copy of
   the shared converter with unknown keys forbidden and strict scalar hooks; its validation errors
   are walked and mapped back to YAML paths and lines.
5. With a catalogue, every backend name is checked against the installed backends of its pillar
   and its options against the backend's ``Options`` class (values are coerced: ``2`` -> ``2.0``
   for a float option, ``"1e-3"`` -> ``0.001``).
6. ``pack`` and ``review.policy`` are resolved against the goal file's folder.

Where each step lives: 1, 2 and the mapping of cattrs errors in :mod:`forgemind_core.base.yamlfile`
(policy files are read the same way), the converter of 4 in :mod:`forgemind_core.base.convert`, 3
and 5 in :mod:`forgemind_core.brain.goalshape`, writing a goal back in
:mod:`forgemind_core.brain.goalyaml`; this module holds the read as a whole and the public API
(every name of ``__all__`` stays importable from here).

ruamel.yaml is imported inside the functions that need it: this module is imported by
``forge --help``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import get_args

import attrs
from cattrs.errors import BaseValidationError
from forgemind_hookspecs.errors import ConfigError, ForgeError, UserError
from forgemind_hookspecs.records import Goal

from forgemind_core.base.convert import describe, goal_converter, is_plain_sequence
from forgemind_core.base.yamlfile import (
    MAX_GOAL_BYTES,
    Fatal,
    Problems,
    YamlPath,
    field_line,
    load_yaml,
    raise_first,
    read_file,
    report_structure_error,
    to_plain,
    unknown_key_message,
)
from forgemind_core.brain.goalshape import (
    Catalogue,
    apply_coerced,
    check_bounds,
    check_sites,
    check_success_metric,
    check_trainer_choices,
    shape,
)
from forgemind_core.brain.goalyaml import goal_dict, goal_to_yaml
from forgemind_core.brain.search import space_key_problem

__all__ = [
    "MAX_GOAL_BYTES",
    "PILLAR_OF_SECTION",
    "REPORT_TO",
    "Catalogue",
    "YamlPath",
    "allowed_values_table",
    "field_line",
    "goal_converter",
    "goal_dict",
    "goal_to_yaml",
    "load_goal",
    "parse_goal",
    "validate_goal",
]

#: Which catalogue pillar a goal section's backends come from (used in messages and docs too).
PILLAR_OF_SECTION: dict[str, str] = {
    "generate": "generators",
    "filter": "filters",
    "train": "trainers",
    "evaluate.runner": "runners",
    "evaluate.scorers": "scorers",
    "planner": "planners",
    "executor": "executors",
    "review": "reviewers",
}

#: Keys users may write at the top level (``source`` is set by the loader, never written).
_TOP_KEYS: tuple[str, ...] = tuple(f.name for f in attrs.fields(Goal) if f.name != "source")


# ------------------------------------------------------------------------------------------
# The whole read.
# ------------------------------------------------------------------------------------------


def _resolve(value: str | None, base_dir: Path) -> str | None:
    """``value`` as an absolute path (relative ones against ``base_dir``); raises ``ValueError``
    with the sentence for text that cannot be a path."""
    if value is None:
        return None
    if "\0" in value:
        raise ValueError("a path cannot hold a NUL character")
    if not value.strip():
        raise ValueError("expected a path, got empty text")
    try:
        path = Path(os.path.expanduser(value))
        return str(path if path.is_absolute() else (base_dir / path).resolve())
    except (OSError, RuntimeError) as error:  # ENAMETOOLONG, a symlink loop
        raise ValueError(f"cannot be used as a path: {getattr(error, 'strerror', None) or error}") from None


def _resolve_at(value: str | None, base_dir: Path, path: YamlPath, problems: Problems) -> str | None:
    try:
        return _resolve(value, base_dir)
    except ValueError as error:
        problems.add(path, str(error))
        return None


def _path_kind(path: str) -> str:
    """``"folder"``, ``"file"``, ``"other"``, ``"missing"``, or why the path cannot be looked at."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as error:  # too long, no access, a symlink loop
        return f"cannot be used as a path: {getattr(error, 'strerror', None) or error}"
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _path_problem(path: str, want: str) -> str | None:
    kind = _path_kind(path)
    if kind == want:
        return None
    if kind.startswith("cannot"):
        return kind
    shown = path if len(path) <= 200 else path[:120] + "..." + path[-60:]
    return f"no such {want}: {shown}"


def _read(
    text: str | bytes,
    *,
    display: str,
    source: str,
    base_dir: Path | None,
    catalogue: Catalogue | None,
    check_paths: bool,
) -> tuple[Goal | None, list[UserError]]:
    problems = Problems(file=display)
    try:
        goal = _read_into(
            text, problems, source=source, base_dir=base_dir, catalogue=catalogue, check_paths=check_paths
        )
    except Fatal:
        goal = None
    except RecursionError:
        problems.errors.append(ConfigError("the file is nested too deeply", file=display))
        goal = None
    errors = problems.sorted()
    return (goal if not errors else None), errors


def _read_into(
    text: str | bytes,
    problems: Problems,
    *,
    source: str,
    base_dir: Path | None,
    catalogue: Catalogue | None,
    check_paths: bool,
) -> Goal | None:
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = raw.count(b"\n", 0, error.start) + 1
            raise problems.fatal(
                f"not UTF-8 text (byte 0x{raw[error.start]:02x} cannot be decoded)", line
            ) from None
    if not text.strip():
        raise problems.fatal("the file is empty; a goal needs at least 'name' and 'task'")
    node = load_yaml(text, problems)
    data = to_plain(node, problems)
    if data is None:
        raise problems.fatal(
            "the file holds no YAML data (only comments?); a goal needs at least 'name' and 'task'"
        )
    if not isinstance(data, dict):
        raise problems.fatal(
            f"expected a mapping of goal fields at the top level, got {describe(data)}",
            problems.lines.get((), 1),
        )
    if "source" in data:
        problems.add(
            ("source",), unknown_key_message("source", list(_TOP_KEYS)) + " ('source' is set by the loader)"
        )
        data = {k: v for k, v in data.items() if k != "source"}
    shaped, sites = shape(data, problems)
    conv = goal_converter()
    goal: Goal | None = None
    try:
        goal = conv.structure(shaped, Goal)
    except BaseValidationError as error:
        report_structure_error(error, (), Goal, data, problems, noun="key")
        check_bounds(Goal, shaped, (), problems)
    except (TypeError, ValueError, AttributeError, KeyError) as error:  # defensive: never a traceback
        problems.add((), f"cannot build the goal: {error}")
    coerced = check_sites(sites, catalogue, problems) if catalogue is not None else {}
    if catalogue is not None:
        check_trainer_choices(shaped, catalogue, problems)
    if goal is None:
        return None
    _check_search(goal, problems)
    check_success_metric(goal, problems)
    _check_report_to(goal, problems)
    goal = apply_coerced(goal, coerced)
    base = base_dir if base_dir is not None else Path.cwd()
    goal = attrs.evolve(
        goal,
        pack=_resolve_at(goal.pack, base, ("pack",), problems),
        review=attrs.evolve(goal.review, policy=_resolve_at(goal.review.policy, base, ("review", "policy"), problems)),
        source=source,
    )
    if check_paths:
        if goal.pack is not None:
            if problem := _path_problem(goal.pack, "folder"):
                problems.add(("pack",), problem)
            else:  # the pack and its suites, read by the loader `forge run` uses
                problems.errors.extend(_pack_problems(goal.pack, catalogue))
        if goal.review.policy is not None and (problem := _path_problem(goal.review.policy, "file")):
            problems.add(("review", "policy"), problem)
        elif goal.review.policy is not None:  # the policy's own mistakes, each with its file and line
            from forgemind_core.warden.policy import validate_policy

            problems.errors.extend(validate_policy(goal.review.policy))
    return goal


def _pack_problems(folder: str, catalogue: Catalogue | None) -> list[UserError]:
    """The first mistake of the task pack (the pack loader stops at the first), else the first of
    each suite, or none (docs/task-packs.md). With a catalogue, the scorers a suite case's
    ``checker`` or the pack's ``scoring``/``verify`` name must be installed."""
    from forgemind_core.foundry.packcheck import pack_problems

    return pack_problems(folder, tuple(catalogue.get("scorers", {})) if catalogue is not None else None)


def _check_search(goal: Goal, problems: Problems) -> None:
    """The ``search`` section's values (docs/candidates.md); its shape cattrs has checked."""
    search = goal.search
    for key, values in search.space.items():
        problem = space_key_problem(key, values)
        if problem:
            problems.add(("search", "space", key), problem)


REPORT_TO: tuple[str, ...] = ("mlflow", "tensorboard", "wandb")
"""The experiment trackers a goal's ``report_to`` may name (plugins/forgemind_tracking)."""


def _check_report_to(goal: Goal, problems: Problems) -> None:
    """Every ``report_to`` entry names a known tracker, once (docs/tracking.md)."""
    seen: set[str] = set()
    for index, name in enumerate(goal.report_to):
        if name not in REPORT_TO:
            problems.add(
                ("report_to", index),
                f"unknown tracker {name!r}; report_to takes {', '.join(REPORT_TO)}",
            )
        elif name in seen:
            problems.add(("report_to", index), f"tracker {name!r} is named twice")
        seen.add(name)


def validate_goal(path: str | os.PathLike[str], catalogue: Catalogue | None = None) -> list[UserError]:
    """Every problem of a goal file, in line order (an empty list means the file is fine).

    :param path: the goal file.
    :param catalogue: ``{pillar: {name: BackendInfo}}``; when given, backend names and their
        options are checked too. A pillar missing from it counts as having no backends.
    """
    raw, error = read_file(path)
    if error is not None or raw is None:
        return [error] if error is not None else []
    file = Path(path)
    _, errors = _read(
        raw,
        display=os.fspath(path),
        source=str(file.resolve()),
        base_dir=file.resolve().parent,
        catalogue=catalogue,
        check_paths=True,
    )
    return errors


def load_goal(path: str | os.PathLike[str], catalogue: Catalogue | None = None) -> Goal:
    """Read a goal file into a :class:`Goal` (``pack`` resolved, ``source`` = the file's path).

    :raises ConfigError: the first problem (in line order); every further problem is attached
        with :meth:`BaseException.add_note`, so a caller can show them all (``__notes__``).
    :raises UnknownBackend: (a ConfigError) when the first problem is an unknown backend.
    """
    raw, error = read_file(path)
    if error is not None or raw is None:
        raise error if error is not None else ConfigError("cannot read the goal file", file=os.fspath(path))
    file = Path(path)
    goal, errors = _read(
        raw,
        display=os.fspath(path),
        source=str(file.resolve()),
        base_dir=file.resolve().parent,
        catalogue=catalogue,
        check_paths=True,
    )
    return _goal_or_raise(goal, errors)


def parse_goal(
    text: str | bytes,
    *,
    source: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    catalogue: Catalogue | None = None,
) -> Goal:
    """Read a goal from YAML text (for embedding: goals built by programs, tests, the dashboard).

    :param source: the name used in error messages, stored as ``Goal.source``.
    :param base_dir: the folder ``pack`` and ``review.policy`` are resolved against (default:
        the current folder). Unlike :func:`load_goal`, their existence is not checked.
    :param catalogue: as for :func:`validate_goal`.
    :raises ConfigError: as :func:`load_goal`.
    """
    base = Path(base_dir).resolve() if base_dir is not None else None
    goal, errors = _read(
        text, display=source, source=source, base_dir=base, catalogue=catalogue, check_paths=False
    )
    return _goal_or_raise(goal, errors)


def _goal_or_raise(goal: Goal | None, errors: list[UserError]) -> Goal:
    if errors:
        raise_first(errors)
    if goal is None:  # pragma: no cover - _read returns errors whenever it returns no goal
        raise ForgeError("the goal could not be read")
    return goal


# ------------------------------------------------------------------------------------------
# The allowed values, for the docs.
# ------------------------------------------------------------------------------------------


def allowed_values_table(catalogue: Catalogue | None = None) -> str:
    """The Markdown table of every goal field with declared allowed values, written from the
    records' own validators (:mod:`forgemind_hookspecs.bounds`) and, with a catalogue, from the
    trainers' declared ``methods`` and ``presets``, so docs/goal-files.md cannot drift from what
    validation checks (a test compares them)."""
    from forgemind_hookspecs.bounds import describe

    rows: list[tuple[str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        for f in attrs.fields(attrs.resolve_types(cls)):
            tp = f.type
            args = get_args(tp)
            if isinstance(tp, type) and attrs.has(tp):
                walk(tp, f"{prefix}{f.name}.")
            elif is_plain_sequence(tp) and args and attrs.has(args[0]):
                walk(args[0], f"{prefix}{f.name}[].")
            elif (text := describe(f)) is not None:
                rows.append((f"{prefix}{f.name}", text))

    walk(Goal, "")
    trainers = (catalogue or {}).get("trainers", {})
    for field, attribute in (("limits.method", "methods"), ("pretrain.preset", "presets")):
        declared = [
            f"`{name}`: " + ", ".join(f"`{c}`" for c in getattr(info.cls, attribute))
            for name, info in sorted(trainers.items())
            if getattr(info.cls, attribute, None)
        ]
        rows.append((field, f"one of the trainer's `{attribute}`" + (f" ({'; '.join(declared)})" if declared else "")))
    lines = ["| field | allowed |", "|---|---|"]
    lines += [f"| `{name}` | {text} |" for name, text in sorted(rows)]
    return "\n".join(lines) + "\n"
