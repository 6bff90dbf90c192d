"""Checking a task pack before paying for training: what ``forge validate`` and ``forge pack check``
say about a pack.

:func:`pack_problems` is the validation: the pack (pack.yaml, templates, slots, frames), the
scorers its ``scoring`` and ``verify`` name, a dry expansion of every template (a keyed slot whose
key comes from a nested slot is only known then), and every suite, each suite's first mistake
reported with its file and line. It never runs a pack's ``python:`` code.

:func:`check_pack` is the sample: generate ``n`` examples offline with the ``template``
generator (this *does* run a pack's generator function), run the ``rules`` filter over them, and
count per category what was made, what was dropped and why, and how many answers fail the
pack's ``verify`` regex or checker.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from attrs import frozen
from forgemind_hookspecs.errors import ConfigError, UserError
from forgemind_hookspecs.records import EvalCase, GenerationPlan, TaskPack

from forgemind_core.foundry.grammar import GrammarError, expand_text
from forgemind_core.foundry.packyaml import Where, read_yaml
from forgemind_core.foundry.suites import default_checker, load_suite

__all__ = ["CategoryCheck", "PackCheck", "check_pack", "pack_problems"]


def pack_problems(folder: str | Path, scorers: Collection[str] | None = None) -> list[UserError]:
    """The pack's first mistake (the loader stops at it), else each suite's first mistake, the
    scorers it names that are not installed (when ``scorers`` is given) and template expansions
    that fail. An empty list: the pack is fine."""
    from forgemind_core.foundry.packs import PACK_FILE, load_pack

    try:
        pack = load_pack(folder)
    except UserError as error:
        return [error]
    problems: list[UserError] = []
    if scorers is not None:
        problems.extend(_scorer_problems(Path(pack.root) / PACK_FILE, pack, scorers))
    problems.extend(_expansion_problems(pack))
    known = None if scorers is None else {*scorers, *pack.scoring.values()}  # a bad `scoring` is said once
    for tier, path in pack.suites.items():
        try:
            load_suite(path, tier, labels=pack.labels, checkers=known, default=default_checker(pack, tier),
                       unknown_fields=pack.suite_fields)
        except UserError as error:
            problems.append(error)
    return problems


def _scorer_problems(pack_file: Path, pack: TaskPack, scorers: Collection[str]) -> list[UserError]:
    doc = read_yaml(pack_file)
    where = Where(pack_file)
    named = [("scoring", key, name) for key, name in pack.scoring.items()]
    if "checker" in pack.verify:
        named.append(("verify", "checker", pack.verify["checker"]))
    problems: list[UserError] = []
    for section, key, name in named:
        if name not in scorers:
            known = ", ".join(sorted(scorers)) or "none"
            problems.append(where.error(f"no scorer {name!r} is installed; installed: {known}",
                                        doc[section], key, f"{section}.{key}"))
    return problems


def _expansion_problems(pack: TaskPack, tries: int = 20) -> list[UserError]:
    """Expand every slot template a few times with a fixed seed; a draw that cannot be made is
    the template's problem."""
    rng = random.Random(0)
    for template in pack.templates:
        if template.python:
            continue
        for _ in range(tries):
            bound: dict[str, Any] = {}
            try:
                for text in (template.prompt, template.completion, *pack.frames):
                    expand_text(text, pack.slots, pack.linked, rng.choice, bound)
            except GrammarError as error:
                return [ConfigError(f"template {template.id!r}: {error}", file=pack.root, field="slots")]
    return []


@frozen
class CategoryCheck:
    """One category of a ``forge pack check`` sample."""

    category: str
    made: int
    dropped: int
    reasons: Mapping[str, int]
    verify_failed: int
    examples: tuple[tuple[str, str], ...]
    verify_examples: tuple[tuple[str, str], ...] = ()


@frozen
class PackCheck:
    """What ``forge pack check`` found: per category counts, and the totals."""

    pack: str
    wanted: int
    strategy: str
    categories: tuple[CategoryCheck, ...]
    verify: Mapping[str, str]

    @property
    def made(self) -> int:
        return sum(c.made for c in self.categories)

    @property
    def dropped(self) -> int:
        return sum(c.dropped for c in self.categories)

    @property
    def verify_failed(self) -> int:
        return sum(c.verify_failed for c in self.categories)


def check_pack(pack: TaskPack, *, n: int = 1000, strategy: str = "mixed", seed: int = 0, shown: int = 2,
               checker: Any = None, ctx: Any = None) -> PackCheck:
    """Generate ``n`` examples of ``pack`` (template generator, ``strategy``, ``seed``), filter them
    with ``rules`` and verify their answers; ``checker`` is the scorer instance ``verify.checker``
    names (the caller builds it), given a case ``expected`` = ``output`` = the stripped answer."""
    from forgemind_hookspecs.backends import StageContext

    from forgemind_core.foundry.filters import Rules
    from forgemind_core.foundry.template import TemplateGenerator

    if ctx is None:
        ctx = StageContext(pack=pack, seed=seed)
    examples = list(TemplateGenerator().generate(GenerationPlan("template", n, strategy=strategy), ctx))
    verdicts = {v.example_id: v for v in Rules().filter(examples, ctx)}
    failed = set(_verify_failures(pack, examples, checker, ctx))
    rows: list[CategoryCheck] = []
    for category in pack.labels:
        mine = [e for e in examples if e.category == category]
        if not mine:
            continue
        drops = [verdicts[e.id] for e in mine if not verdicts[e.id].keep]
        bad = [e for e in mine if e.id in failed]
        rows.append(CategoryCheck(
            category=category,
            made=len(mine),
            dropped=len(drops),
            reasons=dict(Counter(f"{v.rule}: {v.reason}" if v.reason else v.rule for v in drops).most_common()),
            verify_failed=len(bad),
            examples=tuple((str(e.meta.get("input", e.prompt)), e.completion) for e in mine[:shown]),
            verify_examples=tuple((str(e.meta.get("input", e.prompt)), e.completion) for e in bad[:shown]),
        ))
    return PackCheck(pack=pack.name, wanted=n, strategy=strategy, categories=tuple(rows), verify=pack.verify)


def _verify_failures(pack: TaskPack, examples: list[Any], checker: Any, ctx: Any) -> list[str]:
    """Ids of the examples whose answer fails the pack's ``verify``."""
    failed: list[str] = []
    if "regex" in pack.verify:
        pattern = re.compile(pack.verify["regex"])
        failed.extend(e.id for e in examples if not pattern.fullmatch(e.completion.strip()))
    if checker is not None and examples:
        answers = [e.completion.strip() for e in examples]
        cases = [EvalCase(input=str(e.meta.get("input", e.prompt)), expected=a, category=e.category)
                 for e, a in zip(examples, answers, strict=True)]
        try:
            passed = [r.passed for r in checker.score(cases, answers, ctx)]
        except UserError:  # the checker refuses some answer as a case (json_match on non-JSON): one by one
            passed = [_passes(checker, case, answer, ctx) for case, answer in zip(cases, answers, strict=True)]
        failed.extend(e.id for e, ok in zip(examples, passed, strict=True) if not ok)
    return failed


def _passes(checker: Any, case: EvalCase, answer: str, ctx: Any) -> bool:
    """One answer through the verify checker; an answer it cannot even take fails."""
    try:
        return bool(checker.score([case], [answer], ctx)[0].passed)
    except UserError:
        return False

