"""The built-in scorers and the perturb adversary: pass and fail cases, registration, determinism."""

from __future__ import annotations

import ast

import pytest
from forgemind_hookspecs import (
    DataError,
    EvalCase,
    StageContext,
    TaskPack,
    collect_backends,
    make_plugin_manager,
)

from forgemind_core.trials import adversary, scorers
from forgemind_core.trials.adversary import PerturbAdversary, find_code
from forgemind_core.trials.scorers import (
    ExactMatchScorer,
    JsonMatchScorer,
    JsonSchemaScorer,
    LabelMatchScorer,
    PythonAstScorer,
    RegexScorer,
    called_names,
    extract_json,
    extract_label,
)

CTX = StageContext()


def _one(scorer, expected: str, output: str, **case_fields):
    case = EvalCase(input="x", expected=expected, **case_fields)
    [result] = scorer.score([case], [output], CTX)
    assert result.case_id == case.id and result.output == output and result.scorer == scorer.name
    return result


def test_hook_forgemind_register_scorers() -> None:
    found = collect_backends(make_plugin_manager([scorers]), "scorers")
    assert set(found) == {"exact_match", "label_match", "regex", "json_schema", "json_match", "python_ast"}
    assert all(info.plugin for info in found.values())
    assert found["label_match"].description.startswith("The first label-like token")


def test_hook_forgemind_register_adversaries() -> None:
    found = collect_backends(make_plugin_manager([adversary]), "adversaries")
    assert list(found) == ["perturb"]
    assert found["perturb"].cls is PerturbAdversary


# --- exact_match -------------------------------------------------------------------------------


def test_exact_match_normalises_whitespace() -> None:
    result = _one(ExactMatchScorer(), "return  a + b", "return a +  b\n")
    assert result.passed and result.score == 1.0


def test_exact_match_fails_on_case_unless_insensitive() -> None:
    assert not _one(ExactMatchScorer(), "Yes", "yes").passed
    assert _one(ExactMatchScorer(ExactMatchScorer.Options(case_insensitive=True)), "Yes", "yes").passed
    failed = _one(ExactMatchScorer(), "a", "b")
    assert failed.score == 0.0 and "expected 'a'" in failed.details["reason"]


# --- label_match -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "label"),
    [
        (" B602", "b602"),
        ("B602 subprocess call with shell=True", "b602"),
        ("B602.", "b602"),
        ("no issue found in this code", "no issue"),
        ("Answer: `B303`", "b303"),
        ("B6020", "b6020"),
        ("", ""),
    ],
)
def test_extract_label(output: str, label: str) -> None:
    assert extract_label(output, ["B602", "B303", "no issue", "no"]) == label


def test_label_match_pass_and_fail() -> None:
    scorer = LabelMatchScorer()
    assert _one(scorer, "B602", " B602 because shell=True").passed
    assert _one(scorer, "no issue", "no issue here").passed
    wrong = _one(scorer, "B602", "B303 md5")
    assert not wrong.passed and wrong.details["predicted"] == "b303"
    assert not _one(scorer, "B602", "B6020").passed  # a label must end at a word boundary


def test_label_match_uses_the_pack_labels() -> None:
    pack = TaskPack(root=".", name="p", labels=("no issue", "no"))
    ctx = StageContext(pack=pack)
    case = EvalCase(input="x", expected="no")
    [result] = LabelMatchScorer().score([case], ["no issue at all"], ctx)
    # With the pack's labels the longer label wins, so the answer is "no issue", not "no".
    assert not result.passed and result.details["predicted"] == "no issue"


# --- regex ---------------------------------------------------------------------------------------


def test_regex_pass_fail_and_modes() -> None:
    assert _one(RegexScorer(), r"B60[0-9]", "the answer is B602").passed
    assert not _one(
        RegexScorer(RegexScorer.Options(mode="fullmatch")), r"B60[0-9]", "the answer is B602"
    ).passed
    assert _one(RegexScorer(RegexScorer.Options(flags="i")), r"^yes$", "YES").passed


def test_regex_invalid_pattern_is_a_data_error() -> None:
    with pytest.raises(DataError, match="not a valid regular expression"):
        _one(RegexScorer(), "([", "x")
    with pytest.raises(DataError, match="flags"):
        RegexScorer(RegexScorer.Options(flags="q"))


# --- json_schema -----------------------------------------------------------------------------------

SCHEMA = {"type": "object", "required": ["label"], "properties": {"label": {"type": "string"}}}


def test_json_schema_from_case_meta() -> None:
    ok = _one(JsonSchemaScorer(), "", '```json\n{"label": "B602"}\n```', meta={"schema": SCHEMA})
    assert ok.passed and ok.score == 1.0
    bad = _one(JsonSchemaScorer(), "", '{"label": 3}', meta={"schema": SCHEMA})
    assert not bad.passed and "label" in bad.details["reason"]
    garbage = _one(JsonSchemaScorer(), "", "label: B602", meta={"schema": SCHEMA})
    assert not garbage.passed and garbage.details["reason"].startswith("not JSON")


def test_json_schema_from_options_and_invalid_schema() -> None:
    scorer = JsonSchemaScorer(JsonSchemaScorer.Options(schema=SCHEMA))
    assert not _one(scorer, "", "{}").passed
    with pytest.raises(DataError, match="schema is invalid"):
        _one(JsonSchemaScorer(), "", "{}", meta={"schema": {"type": 12}})


# --- json_match -------------------------------------------------------------------------------------

ORDER = '{"order": "48213", "email": "anna.k@example.com", "amount": null}'


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        (' {"a": "x"} Thanks, and {"b": 2}', {"a": "x"}),
        ('Here it is: {"a": [1, 2]}', {"a": [1, 2]}),
        ('{broken {"a": null}', {"a": None}),
        ("[1, 2] then text", [1, 2]),
    ],
)
def test_extract_json_finds_the_first_value(text: str, value: object) -> None:
    assert extract_json(text) == value


def test_extract_json_without_json_raises() -> None:
    with pytest.raises(ValueError, match="no JSON"):
        extract_json("order 48213, no json here")


def test_json_match_all_fields_and_trailing_text() -> None:
    result = _one(
        JsonMatchScorer(), ORDER, ' {"order": "48213", "email": "anna.k@example.com", "amount": null}</s>x'
    )
    assert result.passed and result.score == 1.0
    assert result.details["matched"] == 3 and result.details["wrong"] == {}


def test_json_match_scores_the_share_of_right_fields() -> None:
    result = _one(JsonMatchScorer(), ORDER, '{"order": "48213", "email": "anna@example.com", "amount": null}')
    assert not result.passed and result.score == pytest.approx(2 / 3)
    assert result.details["wrong"] == {"email": {"expected": "anna.k@example.com", "got": "anna@example.com"}}
    assert "email: expected 'anna.k@example.com'" in result.details["reason"]
    missing = _one(JsonMatchScorer(), ORDER, '{"order": "48213"}')
    assert missing.score == pytest.approx(1 / 3) and missing.details["wrong"]["amount"]["got"] == "<missing>"


def test_json_match_normalises_whitespace_numbers_and_optionally_case() -> None:
    assert _one(JsonMatchScorer(), '{"n": 2, "s": "a  b"}', '{"n": 2.0, "s": " a b "}').passed
    assert not _one(JsonMatchScorer(), '{"s": "Anna"}', '{"s": "anna"}').passed
    assert _one(
        JsonMatchScorer(JsonMatchScorer.Options(case_insensitive=True)), '{"s": "Anna"}', '{"s": "anna"}'
    ).passed
    assert not _one(JsonMatchScorer(), '{"flag": true}', '{"flag": 1}').passed


def test_json_match_extra_keys_fail_unless_allowed() -> None:
    extra = _one(JsonMatchScorer(), '{"a": 1}', '{"a": 1, "b": 2}')
    assert not extra.passed and extra.score == 1.0 and extra.details["extra"] == ["b"]
    assert "unexpected keys b" in extra.details["reason"]
    assert _one(
        JsonMatchScorer(JsonMatchScorer.Options(allow_extra=True)), '{"a": 1}', '{"a": 1, "b": 2}'
    ).passed


def test_json_match_non_json_non_object_and_bad_expected() -> None:
    garbage = _one(JsonMatchScorer(), ORDER, "order 48213")
    assert not garbage.passed and garbage.score == 0.0 and "no JSON" in garbage.details["reason"]
    listed = _one(JsonMatchScorer(), ORDER, '["48213"]')
    assert not listed.passed and "expected a JSON object" in listed.details["reason"]
    assert _one(JsonMatchScorer(), '["a", "b"]', '["a", "b"]').passed
    assert not _one(JsonMatchScorer(), '["a", "b"]', '["b", "a"]').passed
    with pytest.raises(DataError, match="expected is not JSON"):
        _one(JsonMatchScorer(), "order 1", "{}")


# --- python_ast -------------------------------------------------------------------------------------


def test_python_ast_checks_without_executing() -> None:
    code = "import os as o\n\ndef clean(p):\n    o.system('rm ' + p)\n"
    result = _one(PythonAstScorer(), "", code, meta={"must_define": "clean", "must_not_call": "dangerous"})
    assert not result.passed
    assert result.score == pytest.approx(2 / 3)  # parses, defines clean, but calls os.system
    assert "os.system" in result.details["reason"]
    good = _one(
        PythonAstScorer(), "", "def clean(p):\n    return p.strip()\n", meta={"must_define": ["clean"]}
    )
    assert good.passed and good.score == 1.0


def test_python_ast_syntax_error_and_obfuscated_calls() -> None:
    broken = _one(PythonAstScorer(), "", "def f(:\n  pass")
    assert not broken.passed and broken.score == 0.0 and "does not parse" in broken.details["reason"]
    tree = ast.parse(
        'import subprocess\nfrom pickle import loads\ngetattr(subprocess, "run")("ls")\nloads(b"")\n'
    )
    assert {"subprocess.run", "pickle.loads", "getattr"} <= called_names(tree)
    scorer = PythonAstScorer(PythonAstScorer.Options(must_not_call=("subprocess.*",)))
    assert not _one(scorer, "", 'import subprocess\ngetattr(subprocess, "run")("ls")').passed


# --- perturb adversary -------------------------------------------------------------------------------

CODE = """import subprocess
import hashlib

def run_cmd(cmd, user):
    digest = hashlib.md5(user.encode()).hexdigest()
    subprocess.run(cmd, shell=True, check=False)
    return digest
"""


def _cases() -> list[EvalCase]:
    return [
        EvalCase(
            input=f"Review this code:\n```python\n{CODE}```\nLabel:",
            expected="B602",
            category="B602",
            checker="label_match",
            meta={"source": "hand"},
        ),
        EvalCase(
            input="password = input()\nhashlib.md5(password.encode())", expected="B303", category="B303"
        ),
        EvalCase(input="I really loved this wonderful movie.", expected="positive", category="sentiment"),
    ]


def test_perturb_is_deterministic_distinct_and_keeps_labels() -> None:
    adv = PerturbAdversary(PerturbAdversary.Options(seed=7))
    first = adv.perturb(_cases(), 15, CTX)
    second = adv.perturb(_cases(), 15, CTX)
    assert [c.input for c in first] == [c.input for c in second]
    assert len(first) == 15
    sources = {c.id: c for c in _cases()}
    assert len({c.input for c in first}) == len(first)
    assert not {c.input for c in first} & {c.input for c in sources.values()}
    for case in first:
        source = sources[case.meta["derived_from"]]
        assert case.tier == "adversarial"
        assert (case.expected, case.category, case.checker) == (
            source.expected,
            source.category,
            source.checker,
        )
        code = find_code(case.input)
        if find_code(source.input) is not None:
            assert code is not None, case.input  # code stays valid Python
            ast.parse(code[1])
        else:
            assert case.meta["perturbation"] in adversary.TEXT_PERTURBATIONS
    assert first[0].meta["source"] == "hand" or any(c.meta.get("source") == "hand" for c in first)
    other_seed = PerturbAdversary(PerturbAdversary.Options(seed=8)).perturb(_cases(), 15, CTX)
    assert [c.input for c in other_seed] != [c.input for c in first]


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("obfuscate", None),
        ("reformat", None),
        ("rename", "run_cmd"),
        ("comment", None),
        ("distractor", None),
    ],
)
def test_each_code_perturbation_applies(kind: str, needle: str | None) -> None:
    adv = PerturbAdversary(PerturbAdversary.Options(kinds=(kind,), seed=1))
    [case] = adv.perturb(_cases()[:1], 1, CTX)
    code = find_code(case.input)
    assert code is not None and code[1] != CODE.rstrip("\n")
    ast.parse(code[1])
    assert case.meta["perturbation"] == kind
    if kind == "obfuscate":
        assert 'getattr(subprocess, "run")' in code[1] or "import hashlib as" in code[1]
    if needle is not None:  # some of the identifiers the original defines are gone, imports kept
        tree = ast.parse(code[1])
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        names |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
        assert not {"run_cmd", "cmd", "user", "digest"} <= names
        assert {"subprocess", "hashlib"} <= names
    assert case.input.startswith("Review this code:\n```python\n") and case.input.endswith("```\nLabel:")


def test_text_perturbations_do_not_touch_code_and_unknown_kind_is_rejected() -> None:
    adv = PerturbAdversary(PerturbAdversary.Options(kinds=("typo", "casing", "sentence"), seed=3))
    out = adv.perturb(_cases(), 10, CTX)
    assert out and all(c.category == "sentiment" for c in out)
    from forgemind_hookspecs import ConfigError

    with pytest.raises(ConfigError, match="unknown perturbations"):
        PerturbAdversary.Options(kinds=("shuffle",))
