"""`forge pack check` (a sample without training: counts, drops and why, verify failures) and
`forge validate` reading the pack, its grammar and every suite (issue 20)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from click.testing import CliRunner

from forgemind_core.cli.main import build_cli


def invoke(forge, *args):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(build_cli(forge), list(args), catch_exceptions=False)


PACK = """\
name: units
labels: {mass: a mass, length: a length}
prompt_format: "Text: {input}\\nAnswer:"
scoring: {default: exact_match}
verify: {regex: '\\d+ (kg|g|m)'}
slots:
  n: ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]
  unit:
    - {word: kilograms, symbol: kg}
    - {word: grams, symbol: g}
templates:
  - {id: good, category: mass, prompt: "{n|words} {unit.word}", completion: " {n} {unit.symbol}"}
  - {id: wrong, category: length, prompt: "{n|words} metres", completion: " {n|words} m"}
  - {id: noisy, category: length, prompt: "\\a\\a\\a\\a {n} m", completion: " {n} m", weight: 0.0001}
"""


def write(root: Path, pack: str = PACK, **suites: str) -> Path:
    (root / "suites").mkdir(parents=True)
    (root / "pack.yaml").write_text(pack, encoding="utf-8")
    for tier, text in suites.items():
        (root / "suites" / f"{tier}.jsonl").write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_pack_check_counts_drops_and_verify_failures(forge, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = write(tmp_path / "units", full='{"id": "a", "input": "two grams", "expected": "2 g"}\n')
    result = invoke(forge, "pack", "check", str(root), "--n", "20", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {row["category"]: row for row in report["categories"]}
    assert rows["mass"]["made"] == 10 and rows["mass"]["verify_failed"] == 0 and rows["mass"]["dropped"] == 0
    assert rows["length"]["made"] == 10
    assert rows["length"]["verify_failed"] == 10  # " two m" is not "\d+ (kg|g|m)"
    assert report["verify_failed"] == 10 and report["made"] == 20
    assert all(answer.strip().split()[1] in ("kg", "g") for _, answer in rows["mass"]["examples"])
    # a pack made to drop: every length example is mostly bell characters
    noisy = write(tmp_path / "noisy", PACK.replace("weight: 0.0001", "weight: 1").replace(
        "{id: wrong,", "{weight: 0, id: wrong,"), full='{"input": "x", "expected": "1 m"}\n')
    rows = {r["category"]: r for r in json.loads(invoke(forge, "pack", "check", str(noisy), "--n", "20",
                                                        "--json").stdout)["categories"]}
    assert rows["length"]["dropped"] == 10
    assert sum(rows["length"]["reasons"].values()) == 10
    assert all(reason.startswith("charset:") and "non-printable" in reason for reason in rows["length"]["reasons"])
    text = invoke(forge, "pack", "check", str(root), "--n", "20").stdout
    assert "verify failed" in text and "made 20" in text and "10 failed" in text


def test_validate_reads_the_pack_grammar_and_every_suite(forge, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = write(
        tmp_path / "units",
        full='{"id": "a", "input": "two grams", "expected": "2 g"}\n{"id": "a", "input": "one gram", "expected": "1 g"}\n',
        adversarial='{"input": "ten kilos", "expected": "10 kg", "note": "hand"}\n',
    )
    goal = tmp_path / "goal.yaml"
    goal.write_text(f"name: g\ntask: normalise units\npack: {root}\n")
    result = invoke(forge, "validate", str(goal), "--json")
    assert result.exit_code == 2
    problems = json.loads(result.stdout)["problems"]
    where = {(Path(p["file"]).name, p["line"], p["field"]) for p in problems}
    assert ("full.jsonl", 2, "id") in where and ("adversarial.jsonl", 1, "note") in where
    # an uninstalled scorer in scoring is named with its pack.yaml line
    (root / "pack.yaml").write_text(PACK.replace("default: exact_match", "default: exact_matc"))
    (root / "suites" / "full.jsonl").write_text('{"input": "two grams", "expected": "2 g"}\n')
    (root / "suites" / "adversarial.jsonl").unlink()
    problems = json.loads(invoke(forge, "validate", str(goal), "--json").stdout)["problems"]
    assert [(Path(p["file"]).name, p["line"], p["field"]) for p in problems] == [("pack.yaml", 4, "scoring.default")]
    assert "no scorer 'exact_matc' is installed" in problems[0]["message"]
    # a keyed slot whose key comes from a nested slot fails at expansion: validate finds it
    keyed = PACK.replace("default: exact_matc", "default: exact_match").replace(
        "templates:", "  kind: ['{k}']\n  k: [solid, liquid]\n  word:\n    by: kind\n    table: {solid: [rock]}\ntemplates:\n"
        "  - {id: k, category: mass, prompt: '{word} {n}'}")
    (root / "pack.yaml").write_text(keyed)
    problems = json.loads(invoke(forge, "validate", str(goal), "--json").stdout)["problems"]
    assert any("has no entry for kind = 'liquid'" in p["message"] for p in problems)
    (root / "pack.yaml").write_text(PACK)
    assert invoke(forge, "validate", str(goal)).exit_code == 0


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_quantities_pack_validates_and_its_answers_pass_verify(forge) -> None:  # type: ignore[no-untyped-def]
    import re

    from forgemind_core.foundry.packcheck import pack_problems
    from forgemind_core.foundry.packs import load_pack, load_suites

    root = EXAMPLES / "quantities"
    assert pack_problems(root, tuple(forge.catalogue()["scorers"])) == []
    # the goal's only problems under this test kernel are its hf backends, blocked here
    problems = json.loads(invoke(forge, "validate", str(root / "goal.yaml"), "--json").stdout)["problems"]
    assert {p["field"] for p in problems} == {"train.backend", "evaluate.runner.backend"}
    pack = load_pack(root)
    suites = load_suites(pack)
    assert {tier: len(cases) for tier, cases in suites.items()} == {"canary": 8, "full": 60, "adversarial": 24}
    pattern = re.compile(pack.verify["regex"])
    for cases in suites.values():
        assert all(c.checker == "exact_match" and pattern.fullmatch(c.expected) for c in cases)
        assert len({c.id for c in cases}) == len(cases) and all(c.id[0] in "cfa" for c in cases)
    report = json.loads(invoke(forge, "pack", "check", str(root), "--n", "300", "--json").stdout)
    assert report["made"] == 300 and report["dropped"] == 0 and report["verify_failed"] == 0
    assert {row["category"] for row in report["categories"]} == set(pack.labels)
    # linked slots: the symbol in every answer belongs to the unit word the prompt used
    examples = {row["category"]: row["examples"] for row in report["categories"]}
    text, answer = examples["digits"][0]
    assert answer.split()[0] in text


def test_forge_eval_with_a_pack_scores_cases_by_its_default_and_keeps_ids(forge, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from forgemind_hookspecs import Checkpoint

    root = write(tmp_path / "units", full=(
        '{"id": "kilo-1", "input": "two kilograms", "expected": "2 kg"}\n'
        '{"id": "len-1", "input": "three metres", "expected": "3 m"}\n'
        '{"id": "len-2", "input": "four metres", "expected": "4 m", "checker": "regex"}\n'))
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"kilograms": {"2 kg": 1}, "metres": {"3 m": 1}}))
    checkpoint = Checkpoint(id="m1", path=str(model), base_model="memo-base", method="full")
    report = forge.evaluate(checkpoint, root / "suites" / "full.jsonl", pack=root, runner="memo")
    got = {r.case_id: (r.scorer, r.passed) for r in report.results}
    assert got == {"kilo-1": ("exact_match", True), "len-1": ("exact_match", True), "len-2": ("regex", False)}


def test_pack_check_verify_with_a_checker(forge, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pack = PACK.replace("verify: {regex: '\\d+ (kg|g|m)'}", "verify: {checker: json_match}").replace(
        'completion: " {n} {unit.symbol}"}', """completion: ' {"n": {n}, "unit": "{unit.symbol}"}'}""")
    root = write(tmp_path / "units", pack, full='{"input": "two grams", "expected": "2 g"}\n')
    report = json.loads(invoke(forge, "pack", "check", str(root), "--n", "20", "--json").stdout)
    rows = {row["category"]: row for row in report["categories"]}
    assert rows["mass"]["verify_failed"] == 0 and rows["length"]["verify_failed"] == 10  # " two m" is no JSON
    assert report["verify"] == {"checker": "json_match"}
    (root / "pack.yaml").write_text(pack.replace("checker: json_match", "checker: jsn_match"))
    result = invoke(forge, "pack", "check", str(root), "--n", "20")
    assert result.exit_code == 2 and "pack.yaml:5: verify.checker: no scorer 'jsn_match' is installed" in result.output
