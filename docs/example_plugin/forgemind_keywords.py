"""forgemind-keywords: an example ForgeMind plugin (docs/plugins.md walks through it).

It offers two backends:

- a filter ``keywords`` that drops training examples containing any banned word;
- a scorer ``contains_all`` that passes a model output containing every expected keyword.

Goal files use them by name::

    filter:
      - backend: keywords
        banned: [lorem, ipsum]
    evaluate:
      scorers: [{backend: contains_all}]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import ClassVar

from attrs import frozen
from forgemind_hookspecs import EvalCase, EvalResult, Example, StageContext, Verdict, hookimpl

__all__ = ["ContainsAll", "KeywordFilter"]


class KeywordFilter:
    """Drops examples whose prompt or completion contains a banned word."""

    name: ClassVar[str] = "keywords"

    @frozen
    class Options:
        banned: tuple[str, ...] = ()
        case_sensitive: bool = False

    def __init__(self, options: KeywordFilter.Options) -> None:
        self.options = options
        flags = 0 if options.case_sensitive else re.IGNORECASE
        words = "|".join(re.escape(w) for w in options.banned)
        self._pattern = re.compile(rf"\b({words})\b", flags) if words else None

    def filter(self, examples: Sequence[Example], ctx: StageContext) -> list[Verdict]:
        verdicts = []
        for example in examples:
            text = f"{example.prompt}\n{example.completion}"
            hit = self._pattern.search(text) if self._pattern else None
            verdicts.append(
                Verdict(example_id=example.id, filter=self.name, keep=hit is None, rule="banned" if hit else "",
                        reason=f"contains banned word {hit.group(0)!r}" if hit else "")
            )
        return verdicts


class ContainsAll:
    """Passes an output that contains every comma-separated keyword of the expected answer."""

    name: ClassVar[str] = "contains_all"

    @frozen
    class Options:
        case_sensitive: bool = False

    def __init__(self, options: ContainsAll.Options) -> None:
        self.options = options

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        results = []
        for case, output in zip(cases, outputs, strict=True):
            wanted = [w.strip() for w in case.expected.split(",") if w.strip()]
            text = output if self.options.case_sensitive else output.lower()
            found = [w for w in wanted if (w if self.options.case_sensitive else w.lower()) in text]
            score = len(found) / len(wanted) if wanted else 1.0
            results.append(EvalResult(case_id=case.id, output=output, score=score, passed=score == 1.0,
                                      scorer=self.name, tier=case.tier, category=case.category,
                                      expected=case.expected, details={"missing": sorted(set(wanted) - set(found))}))
        return results


@hookimpl
def forgemind_register_filters(register: Callable[[type], None]) -> None:
    register(KeywordFilter)


@hookimpl
def forgemind_register_scorers(register: Callable[[type], None]) -> None:
    register(ContainsAll)
