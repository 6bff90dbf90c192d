"""The estimate's calibration (issue 19): several short bursts, the fastest taken, so one burst
slowed by a busy machine does not multiply the estimate. Synthetic steps and a synthetic clock,
then one real estimate on a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from forgemind_hf.calibration import Calibration, best_burst, calibrate, probe_indices
from forgemind_hookspecs import StageContext
from hf_testutil import request, snippet_dataset


def test_the_fastest_burst_is_taken_by_its_mean() -> None:
    # burst 0 ran while another process was busy (18x slower), bursts 1 and 2 on an idle machine
    got = best_burst([[0.018, 0.019, 0.017], [0.0011, 0.0010, 0.0009], [0.0012, 0.0010, 0.0011]])
    assert got.best == 1 and got.seconds_per_token == pytest.approx(0.001)
    assert got.bursts[0] == pytest.approx(0.018)
    assert best_burst([[0.002]]) == Calibration(bursts=(0.002,), best=0)
    with pytest.raises(ValueError):
        best_burst([[], []])


def test_probes_spread_over_the_epoch_once_each() -> None:
    assert probe_indices(12, 3) == [0, 4, 8]
    assert probe_indices(2, 3) == [0, 1]  # fewer batches than probes: each once
    assert probe_indices(5, 0) == [0]


class Clock:
    """A clock that only the synthetic steps move."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_calibrate_warms_each_shape_then_times_every_burst_and_keeps_the_fastest() -> None:
    clock = Clock()
    ran: list[str] = []
    cost = {"a": 0.5, "b": 1.0}  # seconds of a step on each batch, idle
    load = [1.0, 5.0, 1.2, 1.0]  # warm-up pass, then bursts 0, 1, 2: burst 0 is on a busy machine

    def step(batch: str) -> None:
        clock.now += cost[batch] * load[len(ran) // 2]
        ran.append(batch)

    result = calibrate(step, ["a", "b"], lambda b: 100, bursts=3, clock=clock)
    assert ran == ["a", "b"] * 4  # 2 warm-up steps (untimed) + 3 bursts x 2 batches
    assert result.bursts == pytest.approx((0.0375, 0.009, 0.0075))
    assert result.best == 2 and result.seconds_per_token == pytest.approx(0.0075)


def test_the_trainers_estimate_records_every_burst_and_uses_the_fastest(tiny_base: Path, stage_context: StageContext,
                                                                        tmp_path: Path) -> None:
    from forgemind_hf import HFTrainer

    dataset = snippet_dataset(tmp_path / "ds", 16, seed=4)
    trainer = HFTrainer()
    base = trainer.load_base(str(tiny_base), stage_context)
    est = trainer.estimate(request(base, dataset, tmp_path / "o", epochs=1, batch_size=4, calibration_steps=2,
                                   calibration_bursts=4), stage_context)
    bursts = est.details["calibration_tokens_per_s"]
    assert len(bursts) == 4 and est.details["calibration_steps"] == 2 and est.basis == "calibration"
    assert bursts[est.details["calibration_best_burst"]] == max(bursts)
    assert est.details["tokens_per_s"] == pytest.approx(max(bursts), abs=0.06)
    assert est.seconds == pytest.approx(est.tokens / est.details["tokens_per_s"])
