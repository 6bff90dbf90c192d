"""The Brain's judgement of a try, written once: the success test and the ranking of tries.

- :func:`meets_success` is *the* success test: the goal's ``success.metric`` on ``success.tier``
  reaches ``success.threshold``, with the canary tier at least ``canary_min`` and the adversarial
  tier at least ``adversarial_min`` (a tier that was not evaluated counts as passing its floor).
  The decide stage promotes on it; the candidates stage ranks by it.
- :func:`rank` is *the* ranking of tries (the iterations of one run, or the candidates of one
  iteration): a key for ``max`` — a try that meets the goal first, then the higher score on the
  goal's tier, then the higher canary, then the cheaper, then ``order`` (the caller's tie-break:
  the iteration for best tries, so the later wins; ``-candidate`` for candidates, so the first wins).
- :func:`best_try` is the best of a run's iterations by :func:`rank`, among those that trained a
  checkpoint, have a score on the goal's tier and a green canary: a stopped run still names its
  best model, since a later try can score lower than an earlier one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from forgemind_hookspecs import SuccessCriterion

__all__ = ["best_try", "meets_success", "rank"]


def meets_success(success: SuccessCriterion, scores: Mapping[str, float]) -> bool:
    """Whether ``scores`` (per tier, in ``success.metric``) meet the goal's success criterion."""
    target = scores.get(success.tier)
    return (target is not None and target >= success.threshold
            and scores.get("canary", 1.0) >= success.canary_min
            and scores.get("adversarial", 1.0) >= success.adversarial_min)


def rank(success: SuccessCriterion, scores: Mapping[str, float], *, cost_usd: float = 0.0,
         order: int = 0) -> tuple[bool, float, float, float, int]:
    """The sort key of a try (higher is better): met, tier score, canary, cheaper, ``order``."""
    target = scores.get(success.tier)
    return (meets_success(success, scores), target if target is not None else -1.0,
            float(scores.get("canary", 0.0)), -float(cost_usd or 0.0), order)


def best_try(iterations: Sequence[Mapping[str, Any]], success: SuccessCriterion) -> dict[str, Any] | None:
    """The best of ``iterations`` (rows with ``iteration``, ``checkpoint``, ``scores`` and
    optionally ``cost_usd``) as ``{"id", "iteration", "tier", "score"}``, or ``None``."""
    tier = success.tier
    eligible = [item for item in iterations
                if item.get("checkpoint") and tier in item["scores"]
                and item["scores"].get("canary", 1.0) >= success.canary_min]
    if not eligible:
        return None
    best = max(eligible, key=lambda item: rank(success, item["scores"], cost_usd=float(item.get("cost_usd") or 0.0),
                                               order=int(item["iteration"])))
    return {"id": best["checkpoint"], "iteration": best["iteration"], "tier": tier, "score": best["scores"][tier]}
