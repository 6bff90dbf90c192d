"""The estimate's calibration: seconds per token from a few short bursts of real optimiser steps.

One burst times one step on each probe batch (batches spread over the epoch). The first burst
runs each probe batch once untimed before timing it: the first run of a new tensor shape pays
one-off kernel selection (oneDNN bf16 on CPU, cuBLAS heuristics on GPU) that a long run amortises.
A burst is only a few hundred milliseconds, so another process busy at the same moment can make
it many times slower than the training will be; of ``bursts`` bursts the fastest is taken (a
machine is never faster than it can be, only slower), and every burst's rate is kept in the
estimate's details, so a spread between them shows that the machine was busy.

Pure Python (no torch): the trainer passes the step to run and, in tests, a clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from attrs import frozen

__all__ = ["Calibration", "best_burst", "calibrate", "probe_indices"]

B = TypeVar("B")


@frozen
class Calibration:
    """Seconds per token of each burst (the mean over its probe steps) and the one chosen."""

    bursts: tuple[float, ...]
    best: int

    @property
    def seconds_per_token(self) -> float:
        return self.bursts[self.best]


def probe_indices(per_epoch: int, k: int) -> list[int]:
    """``k`` batch indices spread evenly over an epoch of ``per_epoch`` batches (each once)."""
    k = max(1, min(k, per_epoch))
    return sorted({(i * per_epoch) // k for i in range(k)})


def best_burst(bursts: Sequence[Sequence[float]]) -> Calibration:
    """The fastest of ``bursts`` (each a list of seconds per token of its steps) by its mean.

    :raises ValueError: no burst has a measurement.
    """
    means = tuple(sum(b) / len(b) for b in bursts if b)
    if not means:
        raise ValueError("calibration measured no step")
    return Calibration(bursts=means, best=min(range(len(means)), key=means.__getitem__))


def calibrate(step: Callable[[B], None], batches: Sequence[B], tokens: Callable[[B], int], *, bursts: int,
              clock: Callable[[], float] = time.perf_counter) -> Calibration:
    """Run ``bursts`` bursts of ``step`` over ``batches`` (the first warmed up, see the module)
    and return the fastest; ``tokens(batch)`` is what a step on it processes."""
    for batch in batches:  # the warm-up of every shape, untimed
        step(batch)
    measured: list[list[float]] = []
    for _ in range(max(1, bursts)):
        burst = []
        for batch in batches:
            began = clock()
            step(batch)
            burst.append((clock() - began) / max(tokens(batch), 1))
        measured.append(burst)
    return best_burst(measured)
