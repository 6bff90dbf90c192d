"""The Python-source scorer of the Trial Grounds, ``python_ast`` (see :mod:`forgemind_core.trials.scorers`):
the output is Python source that parses, optionally defining or not calling given names. The
output is parsed, never executed.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Sequence
from typing import Any, ClassVar

from attrs import field, frozen
from forgemind_hookspecs import EvalCase, EvalResult, StageContext

from forgemind_core.trials.scoring import check_lengths, scored, strip_code_fence

__all__ = ["DANGEROUS_CALLS", "PythonAstScorer", "called_names"]

#: Calls that ``python_ast`` forbids when a case says ``"must_not_call": "dangerous"``:
#: the constructs that run arbitrary code or commands, or deserialise untrusted data.
DANGEROUS_CALLS: tuple[str, ...] = (
    "eval",
    "exec",
    "compile",
    "__import__",
    "os.system",
    "os.popen",
    "subprocess.*",
    "pickle.loads",
    "pickle.load",
    "marshal.loads",
    "yaml.load",
)


# --------------------------------------------------------------------------------------------
# python_ast
# --------------------------------------------------------------------------------------------


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def called_names(tree: ast.AST) -> set[str]:
    """Every call target in ``tree`` as a dotted name, with import aliases resolved.

    ``import os as o; o.system(...)`` gives ``os.system``; ``from pickle import loads; loads(b)``
    gives ``pickle.loads``; ``getattr(subprocess, "run")(...)`` gives ``subprocess.run`` — an
    obfuscated spelling is still the same call.
    """
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def resolve(name: str) -> str:
        head, _, rest = name.partition(".")
        head = aliases.get(head, head)
        return f"{head}.{rest}" if rest else head

    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            isinstance(func, ast.Call)
            and _dotted(func.func) == "getattr"
            and len(func.args) >= 2
            and isinstance(func.args[1], ast.Constant)
            and isinstance(func.args[1].value, str)
        ):
            base = _dotted(func.args[0])
            if base:
                names.add(resolve(f"{base}.{func.args[1].value}"))
            continue
        dotted = _dotted(func)
        if dotted:
            names.add(resolve(dotted))
    return names


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return DANGEROUS_CALLS if value == "dangerous" else (value,)
    return tuple(str(v) for v in value)


class PythonAstScorer:
    """The output parses as Python; optional checks: must define / must call / must not call names."""

    name: ClassVar[str] = "python_ast"

    @frozen
    class Options:
        """Checks applied to every case (a case adds its own in ``meta``: ``must_define``,
        ``must_call``, ``must_not_call``; ``"dangerous"`` stands for :data:`DANGEROUS_CALLS`;
        ``*`` wildcards match, e.g. ``subprocess.*``).

        Score = share of checks passed (parsing is the first check), so a parseable answer that
        misses one requirement still ranks above garbage; ``passed`` needs every check.
        """

        must_define: tuple[str, ...] = field(default=(), converter=_names)
        must_call: tuple[str, ...] = field(default=(), converter=_names)
        must_not_call: tuple[str, ...] = field(default=(), converter=_names)

    def __init__(self, options: PythonAstScorer.Options | None = None) -> None:
        self.options = options or self.Options()

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        """Parse each output (never execute it) and apply the checks."""
        check_lengths(cases, outputs)
        results = []
        for case, output in zip(cases, outputs, strict=True):
            source = strip_code_fence(output)
            must_define = self.options.must_define + _names(case.meta.get("must_define"))
            must_call = self.options.must_call + _names(case.meta.get("must_call"))
            must_not_call = self.options.must_not_call + _names(case.meta.get("must_not_call"))
            # The forbidden calls are one check however many names they list ("dangerous" is 11).
            total = 1 + len(must_define) + len(must_call) + (1 if must_not_call else 0)
            try:
                tree = ast.parse(source)
            except (SyntaxError, ValueError) as error:
                line = getattr(error, "lineno", None)
                why = f"does not parse as Python: {getattr(error, 'msg', error)}" + (
                    f" (line {line})" if line else ""
                )
                results.append(scored(case, output, self.name, 0.0, False, {"reason": why, "checks": total}))
                continue
            defined = {
                node.name
                for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            }
            calls = called_names(tree)
            failures: list[str] = []
            failures += [f"does not define {n!r}" for n in must_define if n not in defined]
            failures += [
                f"does not call {n!r}" for n in must_call if not any(fnmatch.fnmatchcase(c, n) for c in calls)
            ]
            hits = sorted(c for c in calls if any(fnmatch.fnmatchcase(c, p) for p in must_not_call))
            if hits:
                failures.append(f"calls forbidden {', '.join(hits)}")
            passed_checks = total - len(failures)
            details = {
                "reason": "; ".join(failures) if failures else f"parses; {total - 1} checks passed",
                "checks": total,
                "failed": failures,
            }
            results.append(scored(case, output, self.name, passed_checks / total, not failures, details))
        return results
