"""The training estimate corrected from what a run measured (issue 19): the rate of earlier
iterations replaces a calibration made on a busy machine, and the run summary reports each
iteration's estimated against actual training seconds."""

from __future__ import annotations

import json
from pathlib import Path

import kernel_plugins
import pytest
from click.testing import CliRunner
from forgemind_hookspecs import Estimate

from forgemind_core import Forge
from forgemind_core.base.runfolder import RunFolder
from forgemind_core.cli.main import build_cli
from forgemind_core.forge.estimates import MeasuredRate, corrected, estimate_error, measured_rate


def _iteration(folder: RunFolder, n: int, *, method: str, estimated_s: float, tokens: int,
               duration_s: float | None, stage_s: float = 1.0) -> None:
    """Iteration ``n``'s estimate and train stage files as the loop writes them."""
    folder.iter_dir(n).mkdir(parents=True, exist_ok=True)
    manifest = {"tokens": tokens, "duration_s": duration_s} if duration_s is not None else {}
    folder.stage_file(n, "estimate").write_text(json.dumps(
        {"estimate": {"tokens": tokens, "steps": 4, "seconds": estimated_s, "basis": "calibration"}}))
    folder.stage_file(n, "train").write_text(json.dumps(
        {"checkpoint": {"id": f"c{n}", "path": "p", "method": method, "manifest": manifest}, "seconds": stage_s}))


def test_the_rate_of_earlier_iterations_of_the_same_method(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path, "r")
    # iteration 1 calibrated on a busy machine: 972 s estimated, 52 s trained on 10,400 tokens
    _iteration(folder, 1, method="lora", estimated_s=972.0, tokens=10_400, duration_s=52.0)
    _iteration(folder, 2, method="full", estimated_s=10.0, tokens=1_000, duration_s=40.0)
    _iteration(folder, 3, method="lora", estimated_s=30.0, tokens=5_600, duration_s=28.0)
    assert measured_rate(folder, 1, "lora") is None  # the first iteration has nothing measured
    assert measured_rate(folder, 2, "lora") == MeasuredRate(seconds=52.0, tokens=10_400, iterations=(1,))
    both = measured_rate(folder, 4, "lora")
    assert both == MeasuredRate(seconds=80.0, tokens=16_000, iterations=(1, 3))
    assert both.seconds_per_token == pytest.approx(0.005)
    assert measured_rate(folder, 4, "full") == MeasuredRate(seconds=40.0, tokens=1_000, iterations=(2,))
    assert measured_rate(folder, 4, "qlora") is None


def test_without_a_manifest_duration_the_stage_time_and_estimated_tokens_count(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path, "r")
    _iteration(folder, 1, method="full", estimated_s=2.0, tokens=400, duration_s=None, stage_s=4.0)
    assert measured_rate(folder, 2, "full") == MeasuredRate(seconds=4.0, tokens=400, iterations=(1,))


def test_correction_replaces_the_calibrated_seconds_and_scales_an_hourly_cost() -> None:
    calibrated = Estimate(tokens=20_000, steps=10, seconds=1_800.0, cost_usd=0.025, basis="calibration",
                          details={"price_per_hour": 0.05, "tokens_per_s": 11.1})
    rate = MeasuredRate(seconds=52.0, tokens=10_400, iterations=(1,))
    fixed = corrected(calibrated, rate)
    assert fixed.seconds == pytest.approx(100.0) and fixed.basis == "measured"
    assert fixed.cost_usd == pytest.approx(0.025 * 100.0 / 1_800.0)
    assert (fixed.tokens, fixed.steps) == (20_000, 10)
    assert fixed.details["measured_iterations"] == [1]
    assert fixed.details["measured_tokens_per_s"] == pytest.approx(200.0)
    assert fixed.details["calibration_seconds"] == 1_800.0 and fixed.details["calibration_basis"] == "calibration"
    assert fixed.details["tokens_per_s"] == 11.1  # the trainer's own details stay
    # a cost not priced by the hour (per token, say) does not follow the seconds
    per_token = Estimate(tokens=20_000, steps=10, seconds=1_800.0, cost_usd=0.4)
    assert corrected(per_token, rate).cost_usd == 0.4
    assert corrected(calibrated, None) is calibrated


def test_estimate_error_is_estimated_over_actual() -> None:
    est = {"estimate": {"tokens": 10_400, "steps": 4, "seconds": 972.0, "basis": "calibration"}}
    train = {"checkpoint": {"method": "lora", "manifest": {"duration_s": 52.0}}, "seconds": 60.0}
    assert estimate_error(est, train) == {"estimated_s": 972.0, "actual_s": 52.0, "ratio": 18.692,
                                          "basis": "calibration"}
    assert estimate_error(est, None) is None  # not trained (yet, or not affordable)


def test_a_run_corrects_iteration_two_and_its_summary_carries_the_error(tmp_path: Path) -> None:
    from colors_pack import write_pack

    goal = write_pack(tmp_path / "colors")
    goal.write_text(goal.read_text().replace("train: {backend: memo}", "train: {backend: memo, sleep_s: 0.2}"))
    forge = Forge(home=tmp_path / "home", plugins=[kernel_plugins], blocked=["hf", "openai"])
    summary = forge.run(goal, run_id="est")
    first, second = summary["iterations"][:2]
    folder = RunFolder(Path(summary["home"]), "est")
    for item in (first, second):
        train = json.loads(folder.stage_file(item["iteration"], "train").read_text())
        error = item["estimate_error"]
        assert error["actual_s"] == round(train["seconds"], 2) and error["actual_s"] >= 0.2
        assert error["estimated_s"] == round(item["estimate"]["seconds"], 2)
        assert error["ratio"] == round(item["estimate"]["seconds"] / train["seconds"], 3)
    # iteration 1: the trainer's own estimate (memo: 0.01 s per example); iteration 2: iteration 1's rate
    assert first["estimate"]["seconds"] == pytest.approx(0.01 * first["data"]["kept"])
    assert "measured_iterations" not in first["estimate"]["details"]
    train1 = json.loads(folder.stage_file(1, "train").read_text())
    assert second["estimate"]["basis"] == "measured"
    assert second["estimate"]["details"]["measured_iterations"] == [1]
    assert second["estimate"]["seconds"] == pytest.approx(
        second["estimate"]["tokens"] * train1["seconds"] / first["estimate"]["tokens"])
    assert second["estimate"]["details"]["calibration_seconds"] == pytest.approx(
        0.01 * second["estimate"]["tokens"] / 10)
    # forge show prints the line, from the summary it reads (the run's folder)
    result = CliRunner().invoke(build_cli(forge), ["show", "est"], catch_exceptions=False, terminal_width=200)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("estimate vs training:"))
    for item in (first, second):
        e = item["estimate_error"]
        assert (f"it {item['iteration']} ~{e['estimated_s']:.1f}s / {e['actual_s']:.1f}s = {e['ratio']:.2f}x "
                f"({e['basis']})") in line
    shown = forge.summary("est")
    assert [it["estimate_error"] for it in shown["iterations"]] == [it["estimate_error"] for it in summary["iterations"]]


def test_the_loop_line_says_when_the_seconds_were_measured() -> None:
    from forgemind_hookspecs import to_dict

    from forgemind_core.brain.summary import stage_line

    calibrated = Estimate(tokens=20_000, steps=10, seconds=1_800.0, cost_usd=0.025, details={"price_per_hour": 0.05})
    assert stage_line("estimate", {"estimate": to_dict(calibrated)}) == (
        "  estimate: 20,000 tokens, 10 steps, ~1800 s, $0.0250")
    fixed = corrected(calibrated, MeasuredRate(seconds=80.0, tokens=16_000, iterations=(1, 3)))
    assert stage_line("estimate", {"estimate": to_dict(fixed)}) == (
        "  estimate: 20,000 tokens, 10 steps, ~100 s (measured in iterations 1, 3), $0.0014")
