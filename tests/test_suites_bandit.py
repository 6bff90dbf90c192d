"""Bandit, an independent labeller, must agree with every hand-written suite case.

The python-security suites are written by hand; this test keeps them honest: for each case the
set of *labelled* Bandit test ids that fire must be exactly ``{expected}`` (empty for
``no issue``). Bandit's other findings (B404 import subprocess, B113 no timeout, ...) are not
labels of the pack and are ignored. The same check runs over a sample of generated data, so
the templates cannot drift from what their labels claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from forgemind_hookspecs import GenerationPlan, StageContext

from forgemind_core.foundry.packs import load_pack, load_suites
from forgemind_core.foundry.template import TemplateGenerator

PACK = Path(__file__).resolve().parent.parent / "examples" / "python-security"
NO_ISSUE = "no issue"


def bandit_findings(snippets: Sequence[str], labelled: set[str], tmp: Path) -> list[set[str]]:
    """Run Bandit once over all snippets (one file each) and return the labelled ids per snippet."""
    from bandit.core import config, manager

    paths = []
    for index, snippet in enumerate(snippets):
        path = tmp / f"case_{index:05d}.py"
        path.write_text(snippet + "\n", encoding="utf-8")
        paths.append(str(path))
    bandit = manager.BanditManager(config.BanditConfig(), "file", quiet=True)
    bandit.discover_files(paths)
    bandit.run_tests()
    found: dict[str, set[str]] = {path: set() for path in paths}
    for issue in bandit.get_issue_list():
        if issue.test_id in labelled:
            found[issue.fname].add(issue.test_id)
    assert not bandit.skipped, f"Bandit could not parse: {bandit.skipped}"
    return [found[path] for path in paths]


@pytest.fixture(scope="module")
def pack():  # type: ignore[no-untyped-def]
    return load_pack(PACK)


@pytest.mark.parametrize("tier", ["canary", "full", "adversarial"])
def test_bandit_agrees_with_every_suite_case(pack, tier, tmp_path):  # type: ignore[no-untyped-def]
    cases = load_suites(pack)[tier]
    labelled = set(pack.labels) - {NO_ISSUE}
    found = bandit_findings([case.input for case in cases], labelled, tmp_path)
    disagreements = [
        f"{case.expected!r} but Bandit says {sorted(ids) or 'nothing'}:\n{case.input}"
        for case, ids in zip(cases, found, strict=True)
        if ids != (set() if case.expected == NO_ISSUE else {case.expected})
    ]
    assert not disagreements, "\n\n".join(disagreements)
    assert {case.expected for case in cases} == set(pack.labels), "every label needs a case in every tier"


@pytest.mark.parametrize("strategy", ["basic", "varied"])
def test_bandit_agrees_with_generated_examples(pack, strategy, tmp_path):  # type: ignore[no-untyped-def]
    plan = GenerationPlan("template", 180, strategy=strategy)
    examples = list(TemplateGenerator(TemplateGenerator.Options()).generate(plan, StageContext(pack=pack, seed=11)))
    assert len(examples) >= 150
    labelled = set(pack.labels) - {NO_ISSUE}
    found = bandit_findings([str(e.meta["input"]) for e in examples], labelled, tmp_path)
    wrong = [
        (e.source.prompt_template, e.meta["input"], sorted(ids))
        for e, ids in zip(examples, found, strict=True)
        if ids != (set() if e.category == NO_ISSUE else {e.category})
    ]
    assert not wrong, wrong[:3]
