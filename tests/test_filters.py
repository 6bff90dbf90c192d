"""The kernel's built-in filters: dedupe (exact + MinHash LSH, against the whole history),
decontaminate (against every evaluation case) and rules."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest
from attrs import evolve
from forgemind_hookspecs import (
    ConfigError,
    EvalCase,
    Example,
    Message,
    PromptTemplate,
    Source,
    StageContext,
    TaskPack,
    collect_backends,
    make_plugin_manager,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from forgemind_core.foundry import filters
from forgemind_core.foundry.filters import Decontaminate, Dedupe, Rules, normalise

FORMAT = "Review this Python code for security issues.\n```python\n{input}\n```\nFinding:"
PACK = TaskPack(root=".", name="sec", labels=("B602", "B608", "no issue"), prompt_format=FORMAT)

LONG = (
    "import sqlite3\n\ndef find_user(conn, name):\n    cursor = conn.cursor()\n"
    "    query = \"SELECT id, email FROM users WHERE name = '%s' AND active = 1\" % name\n"
    "    cursor.execute(query)\n    rows = cursor.fetchall()\n    log_lookup(name, len(rows))\n"
    "    return [dict(id=r[0], email=r[1]) for r in rows]\n"
)


class History:
    """A History stand-in: earlier kept examples and the goal's evaluation cases."""

    def __init__(self, kept: Sequence[Example] = (), cases: Sequence[EvalCase] = ()) -> None:
        self.kept = list(kept)
        self.cases = list(cases)

    def kept_examples(self) -> Iterator[Example]:
        return iter(self.kept)

    def eval_cases(self) -> Sequence[EvalCase]:
        return self.cases


def ex(snippet: str, label: str = "B608", **kw: object) -> Example:
    return Example(prompt=FORMAT.replace("{input}", snippet), completion=f" {label}", category=label, **kw)  # type: ignore[arg-type]


def ctx(history: History | None = None, pack: TaskPack | None = PACK) -> StageContext:
    return StageContext(pack=pack, history=history or History())


def test_hook_forgemind_register_filters() -> None:
    found = collect_backends(make_plugin_manager([filters]), "filters")
    assert {k: v.cls for k, v in found.items()} == {"dedupe": Dedupe, "decontaminate": Decontaminate, "rules": Rules}
    assert found["dedupe"].options({"threshold": 0.7}).threshold == 0.7


def test_import_is_light() -> None:
    code = "import sys, forgemind_core.foundry.filters; print(sorted(m for m in ('datasketch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- dedupe -----------------------------------------------------------------------------------


def test_exact_duplicates_after_normalising_case_and_whitespace() -> None:
    a = ex(LONG)
    b = ex(LONG.upper().replace("\n    ", "\n\t  "))
    c = ex("print('hello')", "no issue")
    verdicts = Dedupe().filter([a, b, c], ctx())
    assert [v.example_id for v in verdicts] == [a.id, b.id, c.id]
    assert [v.keep for v in verdicts] == [True, False, True]
    assert verdicts[1].rule == "exact" and verdicts[1].score == 1.0
    assert a.id in verdicts[1].reason and "this batch" in verdicts[1].reason
    assert all(v.filter == "dedupe" for v in verdicts)


def test_exact_duplicate_of_an_earlier_iteration() -> None:
    old = ex(LONG)
    new = ex(LONG + "  ")
    (verdict,) = Dedupe().filter([new], ctx(History(kept=[old])))
    assert not verdict.keep and old.id in verdict.reason and "earlier iterations" in verdict.reason


def test_near_duplicates_within_the_batch_and_against_history() -> None:
    base = ex(LONG)
    one_word = ex(LONG.replace("log_lookup", "audit_lookup"))
    other = ex("import subprocess\nsubprocess.run('ls ' + folder, shell=True)\n", "B602")
    verdicts = Dedupe().filter([base, one_word, other], ctx())
    assert [v.keep for v in verdicts] == [True, False, True]
    near = verdicts[1]
    assert near.rule == "near_duplicate" and near.score is not None and 0.85 <= near.score < 1.0
    assert base.id in near.reason
    # the same near-duplicate arriving in a later iteration is caught against the history
    (later,) = Dedupe().filter([one_word], ctx(History(kept=[base])))
    assert not later.keep and later.rule == "near_duplicate" and "earlier iterations" in later.reason


def test_threshold_and_near_switch_are_options() -> None:
    base = ex(LONG)
    one_word = ex(LONG.replace("log_lookup", "audit_lookup"))
    assert [v.keep for v in Dedupe(Dedupe.Options(threshold=0.99)).filter([base, one_word], ctx())] == [True, True]
    assert [v.keep for v in Dedupe(Dedupe.Options(near=False)).filter([base, one_word], ctx())] == [True, True]


def test_bad_dedupe_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"dedupe\.threshold: must be in \(0, 1\]"):
        Dedupe(Dedupe.Options(threshold=1.5))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["a b c", "A  b c", "x y z w", "x y z w ", "q"]), max_size=8))
def test_kept_examples_never_share_normalised_text(texts: list[str]) -> None:
    examples = [Example(prompt=t, completion=f" {i}") for i, t in enumerate(texts)]
    examples = [evolve(e, completion="") for e in examples]
    verdicts = Dedupe(Dedupe.Options(near=False)).filter(examples, ctx(pack=None))
    kept = [normalise(e.prompt) for e, v in zip(examples, verdicts, strict=True) if v.keep]
    assert len(kept) == len(set(kept)) == len({normalise(t) for t in texts})


# -- decontaminate ----------------------------------------------------------------------------


def test_decontaminate_drops_examples_embedding_an_eval_case() -> None:
    case = EvalCase(input=LONG, expected="B608", tier="full", category="B608")
    canary = EvalCase(input="import yaml\ndata = yaml.load(open(path))\nprint(data)", expected="B506", tier="canary")
    leaked = ex(LONG)  # the prompt embeds the snippet through the pack's prompt_format
    edited = ex(LONG.replace("log_lookup(name, len(rows))", "print(len(rows))"))
    leaked_canary = ex("import yaml\ndata = yaml.load(open(path))\nprint(data)", "B506")
    clean = ex("import os\nprint(os.getcwd())\n", "no issue")
    verdicts = Decontaminate().filter([leaked, edited, leaked_canary, clean], ctx(History(cases=[case, canary])))
    assert [v.keep for v in verdicts] == [False, False, False, True]
    assert verdicts[0].rule == "exact_eval_match" and case.id in verdicts[0].reason and "tier full" in verdicts[0].reason
    assert verdicts[1].rule == "eval_overlap" and verdicts[1].score is not None and 0.8 <= verdicts[1].score < 1.0
    assert verdicts[2].rule == "exact_eval_match" and "tier canary" in verdicts[2].reason
    assert verdicts[3].rule == "clean" and verdicts[3].filter == "decontaminate"


def test_decontaminate_keeps_everything_without_cases() -> None:
    verdicts = Decontaminate().filter([ex(LONG), ex("x = 1", "no issue")], ctx())
    assert [v.keep for v in verdicts] == [True, True]


# -- rules ------------------------------------------------------------------------------------


def test_rules_each_rule_drops_with_its_reason() -> None:
    good = ex("x = 1", "no issue")
    cases = {
        "required_field": Example(prompt="x = 1", completion="   ", category="no issue"),
        "too_short": Example(prompt="x", completion=" B602"[:0] + "y"),
        "too_long": ex("x" * 30_000, "no issue"),
        "charset": ex("x = 1\x00\x00\x01\x02" + "y" * 50, "no issue"),
        "label": ex("x = 1", "B999"),
    }
    rules = Rules(Rules.Options(min_chars=3))
    verdicts = rules.filter([good, *cases.values()], ctx())
    assert verdicts[0].keep and verdicts[0].rule == "ok"
    for (rule, example), verdict in zip(cases.items(), verdicts[1:], strict=True):
        assert not verdict.keep, rule
        assert verdict.rule == rule and verdict.reason and verdict.example_id == example.id
    assert "'B999'" in verdicts[5].reason


def test_rules_label_checks_completion_and_category_separately() -> None:
    wrong_completion = Example(prompt="x = 1", completion=" maybe", category="no issue")
    wrong_category = Example(prompt="x = 1", completion=" no issue", category="other")
    v1, v2 = Rules().filter([wrong_completion, wrong_category], ctx())
    assert (v1.keep, v1.rule) == (False, "label") and "completion 'maybe'" in v1.reason
    assert (v2.keep, v2.rule) == (False, "label") and "category 'other'" in v2.reason
    # without pack labels, any answer is fine
    assert all(v.keep for v in Rules().filter([wrong_completion, wrong_category], ctx(pack=None)))


def test_rules_accept_answers_a_template_writes_itself() -> None:
    """Structured extraction: the template's own completion is the answer and the label only the
    category, so the completion is not checked against the labels (the category still is)."""
    pack = evolve(PACK, templates=(
        PromptTemplate(id="extract", category="B608", prompt="{x}", completion=' {"sql": "{x}"}'),
        PromptTemplate(id="classify", category="B608", prompt="{x}"),
    ))
    json_answer = Example(prompt="q", completion=' {"sql": "q"}', category="B608",
                          source=Source("template", prompt_template="extract"))
    same_from_label_template = evolve(json_answer, source=Source("template", prompt_template="classify"))
    bad_category = evolve(json_answer, category="nope")
    v1, v2, v3 = Rules().filter([json_answer, same_from_label_template, bad_category], ctx(pack=pack))
    assert v1.keep
    assert (v2.keep, v2.rule) == (False, "label") and "is not one of the pack's labels" in v2.reason
    assert (v3.keep, v3.rule) == (False, "label") and "category 'nope'" in v3.reason


def test_rules_accept_chat_examples() -> None:
    chat = Example(messages=(Message("user", "What is 2+2?"), Message("assistant", "4")))
    no_answer = Example(messages=(Message("user", "What is 2+2?"),))
    v1, v2 = Rules().filter([chat, no_answer], ctx(pack=None))
    assert v1.keep and not v2.keep and v2.rule == "required_field" and "'completion'" in v2.reason
