"""How good a training estimate is, and how a run makes the next one better.

A trainer's estimate comes from a short calibration on this machine; when the machine was busy
while it calibrated, that estimate can be many times too long. Iteration ``n`` > 1 of a run has
something better: the training of earlier iterations, measured. :func:`measured_rate` reads it
from the run folder (seconds per token of earlier iterations trained with the same method),
:func:`corrected` puts it in place of the calibration's rate (``basis: "measured"``), and
:func:`estimate_error` says, per iteration, how far the estimate was from the training's actual
seconds (the run summary's ``estimate_error``).

What a training took is the checkpoint manifest's ``duration_s`` (the training loop, as a trainer
records it) or else the train stage's wall time; the tokens it trained are the manifest's
``tokens`` or else the iteration's estimated tokens (counted exactly by the trainers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from attrs import frozen
from forgemind_hookspecs import Estimate

from forgemind_core.base.fsio import read_json
from forgemind_core.base.runfolder import RunFolder

__all__ = ["MeasuredRate", "corrected", "estimate_error", "measured_rate", "trained_seconds", "trained_tokens"]


@frozen
class MeasuredRate:
    """Seconds per token measured in the training of earlier ``iterations`` of a run
    (``seconds`` over ``tokens``, summed over them)."""

    seconds: float
    tokens: int
    iterations: tuple[int, ...]

    @property
    def seconds_per_token(self) -> float:
        return self.seconds / max(self.tokens, 1)


def _manifest(train: Mapping[str, Any]) -> Mapping[str, Any]:
    return (train.get("checkpoint") or {}).get("manifest") or {}


def trained_seconds(train: Mapping[str, Any]) -> float | None:
    """The seconds a training took, from its train stage file (``train.json``): the manifest's
    ``duration_s``, else the stage's wall time; ``None`` when neither is recorded."""
    for value in (_manifest(train).get("duration_s"), train.get("seconds")):
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return None


def trained_tokens(train: Mapping[str, Any], estimate: Mapping[str, Any] | None) -> int | None:
    """The tokens a training processed: the manifest's ``tokens``, else the estimate's."""
    value = _manifest(train).get("tokens")
    if not isinstance(value, int) or value <= 0:
        value = ((estimate or {}).get("estimate") or {}).get("tokens")
    return int(value) if isinstance(value, int) and value > 0 else None


def measured_rate(folder: RunFolder, n: int, method: str) -> MeasuredRate | None:
    """The rate measured in iterations ``1 .. n-1`` of the run that trained with ``method``
    (another method trains at another speed), or ``None`` when none did."""
    seconds, tokens, used = 0.0, 0, []
    for m in range(1, n):
        train = read_json(folder.stage_file(m, "train"))
        if not train or (train.get("checkpoint") or {}).get("method") != method:
            continue
        took = trained_seconds(train)
        count = trained_tokens(train, read_json(folder.stage_file(m, "estimate")))
        if took is None or count is None:
            continue
        seconds, tokens = seconds + took, tokens + count
        used.append(m)
    return MeasuredRate(seconds=seconds, tokens=tokens, iterations=tuple(used)) if used else None


def corrected(result: Estimate, rate: MeasuredRate | None) -> Estimate:
    """``result`` with its seconds from ``rate`` (``basis: "measured"``); the trainer's own
    seconds and basis stay in ``details`` (``calibration_seconds``, ``calibration_basis``) next to
    the iterations measured. A cost priced by the hour (the estimate's details carry
    ``price_per_hour``) scales with the seconds; any other cost (per token, say) is kept."""
    if rate is None or rate.seconds <= 0 or result.tokens <= 0:
        return result
    seconds = result.tokens * rate.seconds_per_token
    cost = result.cost_usd
    if "price_per_hour" in result.details and result.seconds > 0:
        cost = cost * seconds / result.seconds
    details = {
        **dict(result.details),
        "calibration_seconds": result.seconds,
        "calibration_basis": result.basis,
        "measured_iterations": list(rate.iterations),
        "measured_tokens_per_s": rate.tokens / rate.seconds,
    }
    return attrs.evolve(result, seconds=seconds, cost_usd=cost, basis="measured", details=details)


def estimate_error(estimate: Mapping[str, Any] | None, train: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{"estimated_s", "actual_s", "ratio", "basis"}`` of one iteration from its estimate and
    train stage files: ``ratio`` is estimated / actual seconds (2.0: twice too long, 0.5: half);
    ``None`` before the iteration trained."""
    est = (estimate or {}).get("estimate") or {}
    actual = trained_seconds(train) if train else None
    if actual is None or "seconds" not in est:
        return None
    estimated = float(est["seconds"])
    return {"estimated_s": round(estimated, 2), "actual_s": round(actual, 2),
            "ratio": round(estimated / actual, 3), "basis": str(est.get("basis", ""))}
