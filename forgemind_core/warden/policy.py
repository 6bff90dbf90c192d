"""Policy files: read and validated like goal files, every mistake one sentence with its line.

A policy file is YAML (see docs/warden.md). It is read with the goal loader's machinery
(:mod:`forgemind_core.base.yamlfile`: ruamel's round-trip loader keeps the line of every key;
the strict converter of :mod:`forgemind_core.base.convert` structures it into
:class:`~forgemind_hookspecs.policy.Policy` with unknown keys forbidden), and then checked for
what types cannot say: every regex compiles, scores and shares lie in 0..1, call names are
dotted names. :func:`validate_policy` returns *all* problems at once.

``deny`` entries may be plain strings (the pattern) or mappings (``pattern``, ``name``,
``reason``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from cattrs.errors import BaseValidationError
from forgemind_hookspecs.errors import ConfigError, UserError
from forgemind_hookspecs.policy import Policy

from forgemind_core.base.convert import describe, goal_converter
from forgemind_core.base.yamlfile import (
    Fatal,
    Problems,
    load_yaml,
    raise_first,
    read_file,
    report_structure_error,
    to_plain,
)

__all__ = ["load_policy", "parse_policy", "validate_policy"]

_CALL = re.compile(r"^[A-Za-z_][\w.]*(\([A-Za-z_]\w*=True\))?$")


def _shape(data: dict[str, Any]) -> dict[str, Any]:
    """Plain strings in ``deny`` become ``{pattern: ...}``."""
    deny = data.get("deny")
    if isinstance(deny, list):
        data = {**data, "deny": [{"pattern": d} if isinstance(d, str) else d for d in deny]}
    return data


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # the converter reports the type


def _check(data: Mapping[str, Any], problems: Problems) -> None:
    """What types cannot say, checked on the plain data so that it is reported together with
    type errors: regexes compile, scores and shares lie in 0..1, call names are dotted names."""

    def section(key: str) -> Mapping[str, Any]:
        value = data.get(key)
        return value if isinstance(value, Mapping) else {}

    def regex(path: tuple[str | int, ...], pattern: Any) -> None:
        if isinstance(pattern, str):
            try:
                re.compile(pattern)
            except re.error as error:
                problems.add(path, f"not a valid regular expression ({error})")

    for i, rule in enumerate(data.get("deny") or () if isinstance(data.get("deny"), list) else ()):
        if isinstance(rule, Mapping):
            regex(("deny", i, "pattern"), rule.get("pattern"))
        else:
            regex(("deny", i), rule)
    pii = section("pii")
    for name, pattern in (pii.get("patterns") or {}).items() if isinstance(pii.get("patterns"), Mapping) else ():
        regex(("pii", "patterns", name), pattern)
    for i, pattern in enumerate(pii.get("allow") or () if isinstance(pii.get("allow"), list) else ()):
        regex(("pii", "allow", i), pattern)
    for label, value in section("thresholds").items():
        number = _num(value)
        if number is not None and not 0.0 <= number <= 1.0:
            problems.add(("thresholds", label), f"expected a score between 0 and 1, got {number:g}")
    review = section("review")
    for key in ("grey_band", "sample"):
        number = _num(review.get(key))
        if number is not None and not 0.0 <= number <= 1.0:
            problems.add(("review", key), f"expected a number between 0 and 1, got {number:g}")
    poll = _num(review.get("poll_s"))
    if poll is not None and poll <= 0:
        problems.add(("review", "poll_s"), f"expected a positive number of seconds, got {poll:g}")
    wait = _num(review.get("wait_timeout_s"))
    if wait is not None and wait < 0:
        problems.add(("review", "wait_timeout_s"), f"expected a number of seconds >= 0, got {wait:g}")
    code = section("code")
    calls = code.get("dangerous_calls")
    for i, call in enumerate(calls if isinstance(calls, list) else ()):
        if isinstance(call, str) and not _CALL.match(call):
            problems.add(("code", "dangerous_calls", i),
                         f"expected a dotted call name such as 'os.system' or 'subprocess.run(shell=True)', got {call!r}")
    for path, names in ((("fields",), data.get("fields")), (("code", "fields"), code.get("fields"))):
        for i, name in enumerate(names if isinstance(names, list) else ()):
            if isinstance(name, str) and name not in ("prompt", "completion"):
                problems.add((*path, i), f"expected 'prompt' or 'completion', got {name!r}")


def _read(raw: bytes | str, display: str, source: str | None) -> tuple[Policy | None, list[UserError]]:
    problems = Problems(file=display)
    policy: Policy | None = None
    try:
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8-sig")
            except UnicodeDecodeError as error:
                raise problems.fatal(f"not UTF-8 text (byte at offset {error.start} cannot be decoded)") from None
        data = to_plain(load_yaml(raw, problems), problems) if raw.strip() else {}
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise problems.fatal(f"expected a mapping of policy fields at the top level, got {describe(data)}", 1)
        if "source" in data:
            problems.add(("source",), "unknown key 'source' (it is set by the loader)")
            data = {k: v for k, v in data.items() if k != "source"}
        _check(data, problems)
        try:
            policy = goal_converter().structure(_shape(data), Policy)
        except BaseValidationError as error:
            report_structure_error(error, (), Policy, data, problems, noun="key")
        except (TypeError, ValueError, AttributeError, KeyError) as error:  # never a traceback
            problems.add((), f"cannot read the policy: {error}")
        if policy is not None:
            policy = attrs.evolve(policy, source=source)
    except Fatal:
        policy = None
    errors = problems.sorted()
    return (policy if not errors else None), errors


def validate_policy(path: str | os.PathLike[str]) -> list[UserError]:
    """Every problem of a policy file, in line order (empty: the file is fine)."""
    raw, error = read_file(path, what="policy file")
    if error is not None or raw is None:
        return [ConfigError(str(error.message), file=os.fspath(path))] if error else []
    return _read(raw, os.fspath(path), str(Path(path).resolve()))[1]


_CACHE: dict[tuple[str, int, int], Policy] = {}


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read a policy file (cached by path, size and modification time).

    :raises ConfigError: the first problem; the others are attached as notes (``__notes__``).
    """
    resolved = Path(path).resolve()
    try:
        st = resolved.stat()
        key = (str(resolved), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    raw, error = read_file(path, what="policy file")
    if error is not None or raw is None:
        raise ConfigError(str(error.message if error else "cannot read"), file=os.fspath(path))
    policy, errors = _read(raw, os.fspath(path), str(resolved))
    if errors or policy is None:
        raise_first(errors or [ConfigError("the policy could not be read", file=os.fspath(path))])
    if key is not None:
        _CACHE[key] = policy
    return policy


def parse_policy(text: str | Mapping[str, Any], *, source: str = "<policy>") -> Policy:
    """A policy from YAML text or a plain mapping (for embedding and tests)."""
    if isinstance(text, Mapping):
        import json

        text = json.dumps(dict(text))  # JSON is YAML: one reading path for both
    policy, errors = _read(text, source, None)
    if errors or policy is None:
        raise_first(errors or [ConfigError("the policy could not be read", file=source)])
    return policy
