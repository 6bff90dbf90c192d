"""The Warden's built-in, offline safety checks: the ``safety`` filter and the ``human`` reviewer.

A plugin module like the other built-ins (registered as ``forgemind.safety``); the standard
library only, so ``forge --help`` stays fast.

``safety`` applies the goal's policy (``ctx.policy``, or the file named by its ``policy``
option) to every example:

- **deny rules**: a policy regex matching the example's text drops it (rule ``deny:<name>``);
- **PII and secrets**: e-mail addresses, phone numbers, API keys and tokens (AWS, GitHub, OpenAI,
  Slack, Google, Stripe, JWTs, ``api_key = "..."`` style assignments) and private-key blocks
  drop it (rules ``pii:email``, ``pii:phone``, ``pii:api_key``, ``pii:private_key``,
  ``pii:<custom name>``);
- **code**: code in answers is parsed with :mod:`ast` - never executed - and dropped when it
  does not parse (``code:parse_error``) or calls something dangerous (``code:dangerous_call``:
  ``eval``, ``exec``, ``os.system``, ``pickle.loads``, ``subprocess.*`` with ``shell=True``, ...),
  with imports and aliases resolved (``from os import system as run; run(x)`` counts).

Every drop is a :class:`~forgemind_hookspecs.Verdict` naming the rule and what matched (secrets
are shown masked, never whole).

``human`` is the default reviewer: it decides nothing, so every review item waits in the queue
for a person (``forge review``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import ClassVar

from attrs import frozen
from forgemind_hookspecs import hookimpl
from forgemind_hookspecs.backends import StageContext
from forgemind_hookspecs.policy import CodePolicy, Policy, field_texts
from forgemind_hookspecs.records import Example, ReviewDecision, ReviewItem, Verdict

__all__ = [
    "PII_PATTERNS",
    "HumanReviewer",
    "SafetyFilter",
    "code_blocks",
    "dangerous_calls",
    "forgemind_register_filters",
    "forgemind_register_reviewers",
]

#: Built-in PII and secret detectors, by policy switch. Each is a well-known shape; the phone
#: pattern additionally needs 9 to 15 digits (checked in code), so years and versions pass.
PII_PATTERNS: dict[str, tuple[str, ...]] = {
    "email": (r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",),
    "phone": (r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?![\w.])",),
    "api_key": (
        r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
        r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",  # GitHub tokens
        r"\bgithub_pat_[A-Za-z0-9_]{40,}\b",
        r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",  # OpenAI / Anthropic style secret keys
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
        r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
        r"\b[rs]k_live_[0-9A-Za-z]{16,}\b",  # Stripe live keys
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
        r"(?i)\b(?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|bearer)\b[\"']?\s*[:=]\s*[\"'][A-Za-z0-9_\-+/=.]{16,}[\"']",
        r"(?i)\bAuthorization:\s*Bearer\s+[A-Za-z0-9_\-.=]{16,}",
    ),
    "private_key": (r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",),
}

#: For built-in patterns, substrings one of which every match contains (for ``(?i)`` patterns: in
#: lower case, looked for in the lower-cased text). A text holding none is not searched with that
#: pattern: most texts hold none, and ``in`` costs a fraction of a regex search. The verdict is the
#: same either way (tests/test_warden.py checks each needle against the pattern's matches). A
#: pattern not listed (phone, the policy's own) is always searched.
_NEEDLES: dict[str, tuple[str, ...]] = {
    PII_PATTERNS["email"][0]: ("@",),
    PII_PATTERNS["api_key"][0]: ("AKIA",),
    PII_PATTERNS["api_key"][1]: ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    PII_PATTERNS["api_key"][2]: ("github_pat_",),
    PII_PATTERNS["api_key"][3]: ("sk-",),
    PII_PATTERNS["api_key"][4]: ("xox",),
    PII_PATTERNS["api_key"][5]: ("AIza",),
    PII_PATTERNS["api_key"][6]: ("k_live_",),
    PII_PATTERNS["api_key"][7]: ("eyJ",),
    PII_PATTERNS["api_key"][8]: ("key", "token", "bearer"),
    PII_PATTERNS["api_key"][9]: ("authorization",),
    PII_PATTERNS["private_key"][0]: ("-----BEGIN",),
}

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)
_PY_FENCES = {"", "python", "py", "python3", "py3", "pycon"}


def code_blocks(text: str, extract: str) -> list[str]:
    """Python code in ``text``: fenced blocks (```python, ```py or bare ```), or the whole text."""
    if extract == "whole":
        return [text] if text.strip() else []
    return [body for lang, body in _FENCE.findall(text) if lang.lower() in _PY_FENCES]


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


@lru_cache(maxsize=64)
def _call_rules(calls: tuple[str, ...]) -> dict[str, str | None]:
    """``{dotted name: keyword that must be truthy, or None}``."""
    rules: dict[str, str | None] = {}
    for call in calls:
        name, _, rest = call.partition("(")
        rules[name] = rest.split("=", 1)[0] if rest else None
    return rules


def dangerous_calls(tree: ast.AST, calls: tuple[str, ...]) -> Iterator[tuple[str, int]]:
    """``(dotted name, line)`` of every dangerous call in ``tree``, after resolving imports
    (``import subprocess as sp``, ``from os import system``) and ``__builtins__`` access."""
    rules = _call_rules(calls)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        head, _, tail = name.partition(".")
        resolved = aliases.get(head, head) + (f".{tail}" if tail else "")
        for prefix in ("builtins.", "__builtins__."):
            if resolved.startswith(prefix):
                resolved = resolved[len(prefix):]
        if resolved not in rules:
            continue
        keyword = rules[resolved]
        if keyword is not None:
            hit = next((k for k in node.keywords if k.arg == keyword), None)
            if hit is None or (isinstance(hit.value, ast.Constant) and not hit.value.value):
                continue  # shell=False, or not passed: safe
        yield (f"{resolved}({keyword}=True)" if keyword else resolved), node.lineno


def _mask(text: str) -> str:
    text = text.strip()
    if len(text) <= 8:
        return text[:2] + "…"
    return f"{text[:4]}…{text[-2:]} ({len(text)} chars)"


@frozen
class _Compiled:
    deny: tuple[tuple[str, re.Pattern[str], str], ...]
    pii: tuple[tuple[str, re.Pattern[str], tuple[str, ...]], ...]  # (kind, pattern, needles)
    allow: tuple[re.Pattern[str], ...]


_COMPILED: dict[int, tuple[Policy, _Compiled]] = {}


def _compile(policy: Policy) -> _Compiled:
    """The policy's regexes, compiled once per policy object (policies hold dicts: unhashable)."""
    cached = _COMPILED.get(id(policy))
    if cached is not None and cached[0] is policy:
        return cached[1]
    if len(_COMPILED) > 32:
        _COMPILED.clear()
    compiled = _compile_now(policy)
    _COMPILED[id(policy)] = (policy, compiled)
    return compiled


def _compile_now(policy: Policy) -> _Compiled:
    deny = tuple(
        (rule.name or f"deny[{i}]", re.compile(rule.pattern), rule.reason) for i, rule in enumerate(policy.deny)
    )
    pii: list[tuple[str, re.Pattern[str], tuple[str, ...]]] = []
    for kind, patterns in PII_PATTERNS.items():
        if getattr(policy.pii, kind):
            pii.extend((kind, re.compile(p), _NEEDLES.get(p, ())) for p in patterns)
    pii.extend((name, re.compile(p), ()) for name, p in policy.pii.patterns.items())
    return _Compiled(deny, tuple(pii), tuple(re.compile(p) for p in policy.pii.allow))


class SafetyFilter:
    """Drop examples the policy forbids: deny regexes, PII and secrets, unsafe or broken code."""

    name: ClassVar[str] = "safety"

    @frozen
    class Options:
        """:ivar policy: a policy file to use instead of the goal's ``review.policy``.
        :ivar deny, pii, code: switch a family of checks off for this filter."""

        policy: str | None = None
        deny: bool = True
        pii: bool = True
        code: bool = True

    def __init__(self, options: SafetyFilter.Options | None = None) -> None:
        self.options = options or self.Options()

    def policy(self, ctx: StageContext) -> Policy:
        if self.options.policy:
            from forgemind_core.warden.policy import load_policy

            return load_policy(self.options.policy)
        return ctx.policy if ctx.policy is not None else Policy()

    def filter(self, examples: Sequence[Example], ctx: StageContext) -> list[Verdict]:
        policy = self.policy(ctx)
        compiled = _compile(policy)
        return [self.judge(example, policy, compiled) for example in examples]

    def judge(self, example: Example, policy: Policy, compiled: _Compiled | None = None) -> Verdict:
        """The verdict on one example (the first rule that fires names the drop)."""
        compiled = compiled or _compile(policy)
        texts = field_texts(example, policy.fields)
        if self.options.deny:
            for name, pattern, why in compiled.deny:
                for text in texts:
                    match = pattern.search(text)
                    if match:
                        reason = why or f"matches the deny rule {name!r} ({match.group(0)[:40]!r})"
                        return Verdict(example.id, self.name, False, rule=f"deny:{name}", score=1.0, reason=reason)
        if self.options.pii:
            lowered = [text.lower() for text in texts]
            for kind, pattern, needles in compiled.pii:
                haystacks = lowered if pattern.flags & re.IGNORECASE else texts
                for text, hay in zip(texts, haystacks, strict=True):
                    if needles:
                        for needle in needles:
                            if needle in hay:
                                break
                        else:
                            continue
                    for match in pattern.finditer(text):
                        found = match.group(0)
                        if kind == "phone" and not 9 <= sum(c.isdigit() for c in found) <= 15:
                            continue
                        if any(a.search(found) for a in compiled.allow):
                            continue
                        return Verdict(example.id, self.name, False, rule=f"pii:{kind}", score=1.0,
                                       reason=f"contains {kind.replace('_', ' ')} {_mask(found)}")
        if self.options.code and policy.code.enabled:
            verdict = self._code(example, policy.code)
            if verdict is not None:
                return verdict
        return Verdict(example.id, self.name, True, rule="ok")

    def _code(self, example: Example, code: CodePolicy) -> Verdict | None:
        check_calls = (example.category or "") not in code.allow_categories
        for text in field_texts(example, code.fields):
            for block in code_blocks(text, code.extract):
                try:
                    tree = ast.parse(block)
                except (SyntaxError, ValueError) as error:  # ValueError: null bytes
                    if code.parse_errors:
                        line = getattr(error, "lineno", None)  # SyntaxError has it, ValueError not
                        where = f" (line {line})" if line else ""
                        return Verdict(example.id, self.name, False, rule="code:parse_error", score=1.0,
                                       reason=f"code does not parse{where}: {getattr(error, 'msg', error)}")
                    continue
                if check_calls:
                    for name, line in dangerous_calls(tree, code.dangerous_calls):
                        return Verdict(example.id, self.name, False, rule="code:dangerous_call", score=1.0,
                                       reason=f"code meant to be safe calls {name} (line {line})")
        return None


class HumanReviewer:
    """Leave every review item to a person (``forge review``); decides nothing itself."""

    name: ClassVar[str] = "human"

    @frozen
    class Options:
        pass

    def __init__(self, options: HumanReviewer.Options | None = None) -> None:
        self.options = options or self.Options()

    def review(self, items: Sequence[ReviewItem], ctx: StageContext) -> list[ReviewDecision]:
        return []


@hookimpl
def forgemind_register_filters(register: Callable[[type], None]) -> None:
    register(SafetyFilter)


@hookimpl
def forgemind_register_reviewers(register: Callable[[type], None]) -> None:
    register(HumanReviewer)
