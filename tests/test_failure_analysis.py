"""The Trial Grounds' failure analysis on recorded reports: label confusions, JSON field diffs,
string segment diffs, mode collapse, the answer counts; recorded with every tier report by the
evaluator, read back from JSON, computed for reports recorded before it existed, and shown by
``forge compare`` (terminal and HTML) and ``forge eval``."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from attrs import evolve, frozen
from forgemind_hookspecs import (
    Checkpoint,
    EvalCase,
    EvalReport,
    EvalResult,
    StageContext,
    TaskPack,
    from_dict,
    to_dict,
)

from forgemind_core.trials.analysis import (
    FailureAnalysis,
    analyse,
    analysis_rows,
    report_analysis,
    segments,
    tier_findings,
)
from forgemind_core.trials.compare import compare_reports, render_html, render_rich
from forgemind_core.trials.scorers import LabelMatchScorer
from forgemind_core.trials.tiers import evaluate_checkpoint

LABELS = ("no issue", "B307", "B105", "B324")


def _recorded(results: list[dict[str, Any]], tier: str = "full", metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """A report as the registry and ``evaluate.json`` hold it (JSON, through the converter)."""
    report = EvalReport(checkpoint_id="ck", tier=tier, results=tuple(from_dict(EvalResult, r) for r in results),
                        metrics=metrics or {"accuracy": 0.0})
    data: dict[str, Any] = json.loads(json.dumps(to_dict(report)))
    return data


def _row(i: int, expected: str, output: str, *, category: str | None = None, scorer: str = "exact_match",
         passed: bool | None = None) -> dict[str, Any]:
    ok = output.strip() == expected if passed is None else passed
    return {"case_id": f"c{i}", "output": output, "score": float(ok), "passed": ok, "scorer": scorer,
            "tier": "full", "category": category or expected, "expected": expected, "input": f"input {i}"}


def _label_report() -> dict[str, Any]:
    rows = []
    i = 0
    for expected, answered, n in [("no issue", "B307", 9), ("no issue", "B105", 3), ("no issue", "no issue", 6),
                                  ("B307", "B307", 6), ("B324", "B307", 2), ("B324", "md5 is weak", 1),
                                  ("B105", "B105 hard-coded password", 4)]:
        for _ in range(n):
            rows.append(_row(i, expected, answered, scorer="label_match",
                             passed=answered.split()[0] == expected.split()[0]))
            i += 1
    return _recorded(rows)


def test_label_confusions_matrix_and_top_pairs_from_a_recorded_report() -> None:
    analysis = report_analysis(_label_report(), labels=LABELS)
    assert analysis is not None and analysis.kind == "label"
    assert analysis.n == 31 and analysis.failures == 15
    assert analysis.confusion == {"B324": {"B307": 2, "md5": 1}, "no issue": {"B105": 3, "B307": 9}}
    assert [(p.expected, p.answered, p.count) for p in analysis.top_confusions] == [
        ("no issue", "B307", 9), ("no issue", "B105", 3), ("B324", "B307", 2), ("B324", "md5", 1)]
    assert analysis.failures_by_expected == {"B324": 3, "no issue": 12}
    assert analysis.outside_labels == 1  # "md5 is weak" starts with no label; "B105 hard-coded..." reads as B105
    collapse = analysis.collapse  # B307 is 17 of 31 answers where 6 of 31 references are B307
    assert collapse is not None and (collapse.answer, collapse.count, collapse.inputs) == ("B307", 17, 17)
    rows = analysis_rows(analysis)
    assert ("confusion", "'no issue' answered 'B307' in 9 of 12 failures") in rows
    assert ("answers", "1 of 31 outside the label set") in rows


def test_json_answers_are_diffed_field_by_field() -> None:
    rows = []
    for i in range(8):
        unit = ["g", "lb", "oz", "ml"][i % 4]
        expected = json.dumps({"qty": i + 1, "unit": unit, "meta": {"approx": i % 2 == 0}})
        answer = json.dumps({"qty": i + 1, "unit": "kg", "meta": {"approx": i % 2 == 0}}) if i < 7 else "twelve"
        rows.append(_row(i, expected, answer, category="weight", scorer="json_match", passed=False))
    rows.append(_row(8, '{"qty": 3, "unit": "kg"}', '```json\n{"qty": 3, "unit": "kg"}\n```', category="weight",
                     scorer="json_match", passed=True))
    analysis = report_analysis(_recorded(rows))
    assert analysis is not None and analysis.kind == "json"
    assert analysis.failures == 8 and analysis.bad_format == 1  # "twelve" is no JSON object; the fenced one is
    by_part = {p.part: p for p in analysis.parts}
    unit = by_part["field unit"]
    assert (unit.wrong, unit.of, unit.top_answer, unit.top_count) == (8, 8, "kg", 7)
    assert unit.by_category == {"weight": 8} and unit.expected_values == 4
    assert by_part["field qty"].wrong == 1 and by_part["field qty"].top_answer == "(missing)"
    assert by_part["field meta.approx"].wrong == 1  # nested fields by path; only the non-JSON answer misses it
    assert analysis.parts[0].part == "field unit"  # the most wrong part first
    assert ("wrong part", "field unit wrong in 8 of 8 failures, the same answer 'kg' in 7") in analysis_rows(analysis)


def test_string_answers_are_diffed_by_aligned_segments() -> None:
    assert segments("12 kg, 2021-03-15") == ["12", "kg", ",", "2021", "-", "03", "-", "15"]
    rows = []
    for i in range(31):
        day = f"{i % 28 + 1:02d}"
        expected = f"{i + 2} kg {2030 + i}-{day}"
        wrong_year = "2016" if i < 29 else f"{1990 + i}"
        rows.append(_row(i, expected, f"{i + 2} kg {wrong_year}-{day}", category=["weight", "mass"][i % 2]))
    rows.append(_row(31, "5 kg 2016-01", "5 kg 2016-01"))  # a pass: no part of it is counted
    rows.append(_row(32, "7 kg 2003-04", "7 kg"))  # a shorter answer: aligned, its missing parts named
    analysis = report_analysis(_recorded(rows))
    assert analysis is not None and analysis.kind == "text"
    top = analysis.parts[0]
    assert top.part == "segment 3 (digits)"
    assert (top.wrong, top.of, top.top_answer, top.top_count) == (32, 32, "2016", 29)
    assert top.by_category == {"mass": 15, "weight": 16, "7 kg 2003-04": 1}
    assert {p.part: p.top_answer for p in analysis.parts}["segment 5 (digits)"] == "(missing)"
    assert analysis.bad_format == 1  # "7 kg": digits, word where the reference has five segments
    assert ("wrong part", "segment 3 (digits) wrong in 32 of 32 failures, the same answer '2016' in 29") in \
        analysis_rows(analysis)


def test_mode_collapse_one_answer_for_many_different_inputs() -> None:
    rows = [_row(i, f"{i} apples", "3 apples") for i in range(10)]
    analysis = analyse([from_dict(EvalResult, r) for r in rows])
    collapse = analysis.collapse
    assert collapse is not None
    assert (collapse.answer, collapse.count, collapse.inputs, collapse.share, collapse.expected_share) == (
        "3 apples", 10, 10, 1.0, 0.1)
    assert analysis_rows(analysis)[0] == (
        "mode collapse", "'3 apples' answered 10 times for 10 different inputs (100% of answers; references 10%)")
    # the same answer where the references really are mostly that answer is no collapse
    honest = [_row(i, "3 apples" if i < 8 else f"{i} apples", "3 apples") for i in range(10)]
    assert analyse([from_dict(EvalResult, r) for r in honest]).collapse is None
    # a label task collapses onto the label, whatever words follow it
    labelled = [_row(i, LABELS[i % 4], f"B307 call number {i}", scorer="label_match", passed=i % 4 == 1)
                for i in range(8)]
    collapse = analyse([from_dict(EvalResult, r) for r in labelled], labels=LABELS).collapse
    assert collapse is not None and (collapse.answer, collapse.count, collapse.expected_share) == ("B307", 8, 0.25)


def test_empty_over_long_and_off_format_answers_are_counted() -> None:
    rows = [_row(0, "B307", ""), _row(1, "B307", "B307 " + "because it is eval " * 5), _row(2, "B105", "B105"),
            _row(3, "no issue", "maybe"), _row(4, "B324", "B324"), _row(5, "anything", "zzz", scorer="regex")]
    analysis = analyse([from_dict(EvalResult, r) for r in rows], labels=LABELS)
    assert (analysis.empty, analysis.over_long, analysis.outside_labels) == (1, 1, 1)
    # the over-long answer starts with the right label but exact_match failed it: B307 -> B307
    assert analysis.confusion == {"B307": {"(empty)": 1, "B307": 1}, "no issue": {"maybe": 1}}
    assert [(p.expected, p.answered) for p in analysis.top_confusions] == [("B307", "(empty)"), ("no issue", "maybe")]
    assert analysis.n == 6 and analysis.failures == 4  # the regex case has no reference: counted, not diffed
    rows_text = [finding for _, finding in analysis_rows(analysis)]
    assert any("1 of 6 empty" in r for r in rows_text) and any("1 of 6 over-long" in r for r in rows_text)


def test_old_reports_without_an_analysis_stay_readable_and_get_one() -> None:
    old = _label_report()
    assert "analysis" not in old["metrics"]
    computed = report_analysis(old)  # no labels known: a few short references make it a label task
    assert computed is not None and computed.kind == "label"
    assert computed.confusion["no issue"] == {"B105": 3, "B307": 9}
    # a recorded analysis is read back, not recomputed, and survives JSON
    recorded = _recorded(old["results"], metrics={"accuracy": 0.5, "analysis": to_dict(computed)})
    assert report_analysis(from_dict(EvalReport, recorded)) == computed
    assert from_dict(FailureAnalysis, json.loads(json.dumps(to_dict(computed)))) == computed
    assert report_analysis(_recorded([])) is None


class _Answers:
    name: ClassVar[str] = "answers"

    @frozen
    class Options:
        pass

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def generate(self, checkpoint: Checkpoint, prompts: Sequence[str], ctx: StageContext, **kw: Any) -> list[str]:
        return [self.answers[p] for p in prompts]


def test_the_evaluator_records_the_analysis_with_every_tier(stage_context: StageContext) -> None:
    cases = {"canary": [EvalCase(input="c1", expected="B307", tier="canary", category="B307")],
             "full": [EvalCase(input=f"f{i}", expected="no issue", tier="full", category="no issue") for i in range(4)]
             + [EvalCase(input="f9", expected="B105", tier="full", category="B105")]}
    answers = {"c1": "B307", **{f"f{i}": "B307" for i in range(3)}, "f3": "no issue", "f9": "B105"}
    ctx = evolve(stage_context, pack=TaskPack(root=".", name="p", labels=LABELS))
    reports = evaluate_checkpoint(Checkpoint(id="ck", path="/x", base_model="b", method="lora"), cases,
                                  runner=_Answers(answers), scorers={"label_match": LabelMatchScorer()},
                                  default_scorer="label_match", prompt_format="{input}", ctx=ctx)
    full = reports["full"].metrics["analysis"]
    assert full["kind"] == "label" and full["confusion"] == {"no issue": {"B307": 3}}
    assert reports["canary"].metrics["analysis"]["failures"] == 0
    # what the run folder and the registry store is JSON: the analysis goes through it unchanged
    stored = json.loads(json.dumps(to_dict(reports["full"])))
    assert report_analysis(stored) == from_dict(FailureAnalysis, full)
    # the rows forge show and the run summary print, from evaluate.json's reports
    evaluate_json = {tier: json.loads(json.dumps(to_dict(r))) for tier, r in reports.items()}
    assert ("full", "confusion", "'no issue' answered 'B307' in 3 of 3 failures") in tier_findings(evaluate_json)
    assert all(tier == "full" for tier, _, _ in tier_findings(evaluate_json))  # a clean canary has no findings


def test_compare_shows_each_checkpoints_failure_analysis() -> None:
    base = from_dict(EvalReport, _label_report())
    fixed = EvalReport(checkpoint_id="ck2", tier="full", results=tuple(
        evolve(r, output=r.expected, passed=True, score=1.0) for r in base.results), metrics={"accuracy": 1.0})
    comparison = compare_reports({"ck": {"full": base}, "ck2": {"full": fixed}})
    analysis = comparison["tiers"]["full"]["analysis"]
    assert analysis["ck"]["top_confusions"][0] == {"expected": "no issue", "answered": "B307", "count": 9}
    assert analysis["ck2"]["failures"] == 0 and analysis["ck2"]["confusion"] == {}
    from rich.console import Console

    buffer = io.StringIO()
    render_rich(comparison, Console(file=buffer, width=200, no_color=True))
    text = buffer.getvalue()
    assert "failure analysis" in text and "'no issue' answered 'B307' in 9 of 12 failures" in text
    page = render_html(comparison)
    assert "What is wrong inside the failures" in page and "&#x27;no issue&#x27; answered &#x27;B307&#x27;" in page


def test_forge_eval_prints_the_failure_analysis(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from test_trials import make_cli, write_model, write_suite

    rows = [{"input": f"x = {i}", "expected": "no issue"} for i in range(4)] + [{"input": "eval(a)", "expected": "B307"}]
    answers = {f"Label: x = {i}": "B307" for i in range(3)} | {"Label: x = 3": "no issue", "Label: eval(a)": "B307"}
    model = write_model(tmp_path / "m", answers)
    suite = write_suite(tmp_path / "suite.jsonl", rows)
    args = ["eval", str(model), "--suite", str(suite), "--runner", "folder", "--prompt-format", "Label: {input}",
            "--scorer", "label_match"]
    cli = make_cli(tmp_path / "home")
    table = CliRunner().invoke(cli, args, terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "what is wrong inside the failures" in table.output
    assert "'no issue' answered 'B307' in 3 of 3 failures" in table.output
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"]).output)
    assert data["report"]["metrics"]["analysis"]["confusion"] == {"no issue": {"B307": 3}}
