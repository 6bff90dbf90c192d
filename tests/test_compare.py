"""Comparisons: regressions first, score deltas, word diffs, escaped HTML, and ``forge compare``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from forgemind_hookspecs import EvalReport, EvalResult, UserError, to_dict
from rich.console import Console
from test_trials import SUITE_ROWS, make_cli, write_model, write_suite

from forgemind_core.trials.compare import (
    compare_reports,
    load_recorded_reports,
    render_html,
    render_rich,
    word_diff,
)


def _result(case: str, output: str, passed: bool, category: str = "c", tier: str = "full") -> EvalResult:
    return EvalResult(
        case_id=case,
        output=output,
        score=float(passed),
        passed=passed,
        scorer="label_match",
        tier=tier,
        category=category,
        expected="B602",
        input=f"input of {case}",
    )


def _report(ckpt: str, results: list[EvalResult], tier: str = "full") -> EvalReport:
    acc = sum(r.score for r in results) / len(results)
    return EvalReport(checkpoint_id=ckpt, tier=tier, results=tuple(results), metrics={"accuracy": acc})


def _reports() -> dict[str, dict[str, EvalReport]]:
    a = [
        _result("k1", "B602", True),
        _result("k2", "B303", False, "d"),
        _result("k3", "B602 yes", True, "d"),
        _result("k4", "<b>B602</b>", True),
    ]
    b = [
        _result("k1", "B602", True),
        _result("k2", "B602", True, "d"),
        _result("k3", "B303 no", False, "d"),
        _result("k4", "<script>alert(1)</script>", False),
    ]
    return {"A": {"full": _report("A", a)}, "B": {"full": _report("B", b)}}


def test_regressions_come_first_with_deltas() -> None:
    comparison = compare_reports(_reports())
    statuses = [row["status"] for row in comparison["cases"]]
    assert statuses == ["regression", "regression", "improvement", "same"]
    assert [row["case_id"] for row in comparison["cases"][:2]] == ["k3", "k4"]
    assert comparison["regressions"] == [
        {"checkpoint": "B", "tier": "full", "case_id": "k3"},
        {"checkpoint": "B", "tier": "full", "case_id": "k4"},
    ]
    assert comparison["improvements"] == [{"checkpoint": "B", "tier": "full", "case_id": "k2"}]
    tier = comparison["tiers"]["full"]
    assert tier["accuracy"] == {"A": 0.75, "B": 0.5} and tier["delta"] == {"B": -0.25}
    assert tier["per_category"] == {"c": {"A": 1.0, "B": 0.5}, "d": {"A": 0.5, "B": 0.5}}
    assert tier["category_delta"] == {"c": {"B": -0.5}, "d": {"B": 0.0}}
    row = comparison["cases"][0]
    assert row["input"] == "input of k3" and row["outputs"]["B"]["diff"] == [
        ["-", "B602"],
        ["+", "B303"],
        ["=", " "],
        ["-", "yes"],
        ["+", "no"],
    ]
    json.dumps(comparison)  # JSON-compatible as it is


def test_missing_cases_and_tiers_and_single_checkpoint() -> None:
    reports = _reports()
    reports["C"] = {"canary": _report("C", [_result("k9", "x", True, tier="canary")], tier="canary")}
    comparison = compare_reports(reports)
    assert list(comparison["tiers"]) == ["canary", "full"]
    assert comparison["tiers"]["full"]["delta"]["C"] is None
    canary_row = next(r for r in comparison["cases"] if r["case_id"] == "k9")
    assert canary_row["status"] == "missing" and canary_row["outputs"]["A"] is None
    with pytest.raises(UserError, match="at least two"):
        compare_reports({"A": reports["A"]})


def test_word_diff() -> None:
    assert word_diff("B602 shell", "B602 shell") == [("=", "B602 shell")]
    assert word_diff("a b c", "a x c") == [("=", "a "), ("-", "b"), ("+", "x"), ("=", " c")]


def test_terminal_marks_changed_words_with_and_without_colour() -> None:
    plain = io.StringIO()
    render_rich(compare_reports(_reports()), Console(file=plain, no_color=True, width=200))
    text = plain.getvalue()
    assert "[-B602-]{+B303+} yes" not in text  # the diff is word by word, not the whole output
    assert "[-B602-]{+B303+}" in text and "[-B303-]{+B602+}" in text  # k3 regressed, k2 improved
    coloured = io.StringIO()
    console = Console(file=coloured, force_terminal=True, color_system="truecolor", no_color=False, width=200)
    render_rich(compare_reports(_reports()), console)
    assert "{+" not in coloured.getvalue() and "\x1b[9;31mB602" in coloured.getvalue()  # red strike-through


def test_html_is_self_contained_and_escaped() -> None:
    page = render_html(compare_reports(_reports()), title="<A & B>")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;B602&lt;/b&gt;" in page and "&lt;A &amp; B&gt;" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    assert page.index("k3") < page.index("k2")  # regression rows before improvements
    assert 'class="regression"' in page and "<del>" in page and "<ins>" in page


class FakeRegistry:
    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = rows

    def eval_reports(self, checkpoint_id: str) -> list[dict[str, Any]]:
        return self.rows.get(checkpoint_id, [])


def test_load_recorded_reports_keeps_the_latest_per_tier() -> None:
    old = _report("A", [_result("k1", "old", False)])
    new = _report("A", [_result("k1", "B602", True)])
    registry = FakeRegistry({"A": [to_dict(old), to_dict(new)]})
    assert load_recorded_reports(registry, "A")["full"].results[0].output == "B602"
    with pytest.raises(UserError, match="--suite"):
        load_recorded_reports(registry, "B")


def test_forge_compare_with_suite_json_and_html(tmp_path: Path) -> None:
    from click.testing import CliRunner

    good = {"a = eval(x)": "B307", "subprocess.run(c, shell=True)": "B602", "x = 1": "<i>no issue</i>"}
    worse = {**good, "a = eval(x)": "B602 <oops>"}
    model_a = write_model(tmp_path / "a", good)
    model_b = write_model(tmp_path / "b", worse)
    suite = write_suite(tmp_path / "suite.jsonl", SUITE_ROWS)
    html_path = tmp_path / "out" / "compare.html"
    html_path.parent.mkdir()
    cli = make_cli(tmp_path / "home")
    base = [
        "compare",
        str(model_a),
        str(model_b),
        "--suite",
        str(suite),
        "--runner",
        "folder",
        "--scorer",
        "label_match",
    ]
    result = CliRunner().invoke(cli, [*base, "--json", "--html", str(html_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["cases"][0]["status"] == "regression" and data["cases"][0]["input"] == "a = eval(x)"
    assert len(data["regressions"]) == 1 and data["tiers"]["full"]["delta"][data["checkpoints"][1]] < 0
    page = html_path.read_text()
    assert "B602 &lt;oops&gt;" in page and "<oops>" not in page
    table = CliRunner().invoke(cli, base)
    assert table.exit_code == 0, table.output
    assert "1 regressions" in table.output and table.output.index("regression") < table.output.index("same")
    same = CliRunner().invoke(
        cli, ["compare", str(model_a), str(model_a), "--suite", str(suite), "--runner", "folder"]
    )
    assert same.exit_code == 2 and "same checkpoint" in same.output
