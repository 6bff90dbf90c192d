"""Writing a goal back as a goal file, in the flat form users write (``forge show --config``).

The reverse of :mod:`forgemind_core.brain.goals`: backend sections are written flat (every option
beside ``backend``), every field is written, and the text loads back equal.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

from forgemind_hookspecs import converter as base_converter
from forgemind_hookspecs.records import BackendChoice, GeneratorChoice, Goal, PretrainSpec, ReviewSection

__all__ = ["goal_dict", "goal_to_yaml"]


def _plain_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return value


def _flat(
    choice: BackendChoice | GeneratorChoice | ReviewSection | PretrainSpec,
    reserved: tuple[str, ...],
    head: dict[str, Any],
) -> dict[str, Any]:
    out = dict(head)
    for key, value in choice.options.items():
        if key in reserved:
            raise ValueError(
                f"option {key!r} cannot be written in a flat goal section (it is a reserved key)"
            )
        out[str(key)] = _plain_value(value)
    return out


def goal_dict(goal: Goal) -> dict[str, Any]:
    """``goal`` as the plain mapping of a goal file in the flat form users write (every field,
    defaults included; ``source`` left out): what :func:`goal_to_yaml` writes, and what
    ``forge fork`` compares to find the fields a fork changed."""
    conv = base_converter
    pretrain: PretrainSpec = goal.pretrain
    data: dict[str, Any] = {
        "name": goal.name,
        "task": goal.task,
        "seed": goal.seed,
        "success": conv.unstructure(goal.success),
        "limits": conv.unstructure(goal.limits),
    }
    if goal.pack is not None:
        data["pack"] = goal.pack
    data["pretrain"] = _flat(
        pretrain, ("corpus", "preset"), {"corpus": pretrain.corpus, "preset": pretrain.preset}
    )
    data["generate"] = [
        _flat(g, ("backend", "share"), {"backend": g.backend, "share": g.share}) for g in goal.generate
    ]
    data["filter"] = [_flat(f, ("backend",), {"backend": f.backend}) for f in goal.filter]
    data["train"] = _flat(goal.train, ("backend",), {"backend": goal.train.backend})
    data["evaluate"] = {
        "runner": _flat(goal.evaluate.runner, ("backend",), {"backend": goal.evaluate.runner.backend}),
        "scorers": [_flat(s, ("backend",), {"backend": s.backend}) for s in goal.evaluate.scorers],
        "adversarial_per_iteration": goal.evaluate.adversarial_per_iteration,
        "adversary": _flat(goal.evaluate.adversary, ("backend",), {"backend": goal.evaluate.adversary.backend}),
    }
    data["planner"] = _flat(goal.planner, ("backend",), {"backend": goal.planner.backend})
    data["executor"] = _flat(goal.executor, ("backend",), {"backend": goal.executor.backend})
    if goal.search != type(goal.search)():
        data["search"] = _plain_value(base_converter.unstructure(goal.search))
    review_head: dict[str, Any] = {}
    if goal.review.backend is not None:
        review_head["backend"] = goal.review.backend
    if goal.review.policy is not None:
        review_head["policy"] = goal.review.policy
    data["review"] = _flat(goal.review, ("backend", "policy"), review_head)
    if goal.export:
        data["export"] = _plain_value(goal.export)
    if goal.report_to:
        data["report_to"] = list(goal.report_to)
    return data


def _quote_odd(value: Any, quoted: Callable[[str], str]) -> Any:
    """Double-quote strings with non-printable or line-break characters (NEL, U+2028, ...):
    ruamel writes them plain and reads them back changed."""
    if isinstance(value, str):
        return quoted(value) if not value.isprintable() else value
    if isinstance(value, dict):
        return {_quote_odd(k, quoted): _quote_odd(v, quoted) for k, v in value.items()}
    if isinstance(value, list):
        return [_quote_odd(v, quoted) for v in value]
    return value


def goal_to_yaml(goal: Goal) -> str:
    """Write ``goal`` as a goal file in the flat form users write; it loads back equal.

    Every field is written (defaults included), so the output shows the effective settings;
    ``source`` is not written (the loader sets it). Used by ``forge show --config``.

    :raises ValueError: an option is named like a section's own key (``backend``, ``share``,
        ``policy``, ``corpus``, ``preset``), which the flat form cannot express.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    yaml = YAML(typ="rt", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    stream = io.StringIO()
    stream.write("# ForgeMind goal file (see docs/goal-files.md)\n")
    yaml.dump(_quote_odd(goal_dict(goal), DoubleQuotedScalarString), stream)
    return stream.getvalue()
