"""What every built-in scorer shares: normalising text, unwrapping code fences, building results.

The scorers themselves live by family: text (:mod:`forgemind_core.trials.scorers`: exact, label,
regex), JSON (:mod:`forgemind_core.trials.jsonscorers`) and Python source
(:mod:`forgemind_core.trials.astscorer`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from forgemind_hookspecs import EvalCase, EvalResult

__all__ = ["check_lengths", "normalise_whitespace", "scored", "strip_code_fence"]

_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)


def normalise_whitespace(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends, so that a trailing
    newline or an extra space from a tokenizer does not count as a wrong answer."""
    return " ".join(text.split())


def strip_code_fence(text: str) -> str:
    """Return the body of the first Markdown code fence in ``text`` or ``text`` itself.

    Models often wrap JSON or code in fences (```` ```json ````); the fence is presentation,
    not content, so structural scorers look inside it.
    """
    match = _FENCE.search(text)
    return match.group(1) if match else text.strip()


def scored(
    case: EvalCase, output: str, scorer: str, score: float, passed: bool, details: Mapping[str, Any]
) -> EvalResult:
    """The :class:`EvalResult` of ``output`` for ``case``, with the case's tier, category and
    expected text and the scorer's ``details`` (why it passed or failed)."""
    return EvalResult(
        case_id=case.id,
        output=output,
        score=float(score),
        passed=bool(passed),
        scorer=scorer,
        tier=case.tier,
        category=case.category,
        expected=case.expected,
        details=dict(details),
    )


def check_lengths(cases: Sequence[EvalCase], outputs: Sequence[str]) -> None:
    """Raise ``ValueError`` unless there is one output per case."""
    if len(cases) != len(outputs):
        raise ValueError(f"{len(cases)} cases but {len(outputs)} outputs; a scorer needs one output per case")
