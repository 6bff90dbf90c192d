"""The Warden's policy: what its owner forbids, what goes to human review, what needs approval.

A policy is a YAML file referenced from a goal (``review: {policy: policy.yaml}``); the kernel
reads and validates it (every mistake as ``policy.yaml:LINE: field: ...``) and hands the
:class:`Policy` to every backend as ``ctx.policy``. Filter plugins read their per-label
thresholds and the review band from it, so one file governs the built-in checks, Detoxify,
the moderation endpoint and any third-party safety filter alike.

:func:`threshold_verdict` is the one rule every score-based safety filter applies (drop at or
above a label's threshold, send to review inside the grey band below it), so that all of them
judge a score the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from attrs import Factory, frozen

from .records import Example, Verdict

__all__ = [
    "DEFAULT_DANGEROUS_CALLS",
    "CodePolicy",
    "DenyRule",
    "PIIPolicy",
    "Policy",
    "ReviewPolicy",
    "field_texts",
    "policy_text",
    "threshold_for",
    "threshold_verdict",
]

#: Calls an answer meant to be safe must not make. ``name(kw=True)`` means "only when that
#: keyword is passed a true constant" (``subprocess.run(..., shell=True)``).
DEFAULT_DANGEROUS_CALLS: tuple[str, ...] = (
    "eval",
    "exec",
    "os.system",
    "os.popen",
    "pickle.loads",
    "pickle.load",
    "marshal.loads",
    "subprocess.run(shell=True)",
    "subprocess.call(shell=True)",
    "subprocess.check_call(shell=True)",
    "subprocess.check_output(shell=True)",
    "subprocess.Popen(shell=True)",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
)


def _empty() -> dict[str, Any]:
    return {}


@frozen
class DenyRule:
    """A regular expression (Python ``re`` syntax) whose match anywhere drops the example.

    ``name`` is what the verdict's rule and the rejections list show (default: ``deny[i]``).
    """

    pattern: str
    name: str = ""
    reason: str = ""


@frozen
class PIIPolicy:
    """Which kinds of personal data and secrets drop an example.

    ``patterns`` adds named regexes (``{employee_id: "EMP-\\\\d{6}"}``); ``allow`` lists regexes
    whose matches are not PII (``"@example\\\\.(com|org)$"`` for documentation addresses).
    """

    email: bool = True
    phone: bool = True
    api_key: bool = True
    private_key: bool = True
    patterns: Mapping[str, str] = Factory(_empty)
    allow: tuple[str, ...] = ()


@frozen
class CodePolicy:
    """AST checks of code in answers (parsed with :mod:`ast`, never executed).

    :ivar enabled: run the checks at all.
    :ivar fields: where the code is: ``completion`` (the answer; assistant messages of chat
        examples) and/or ``prompt``.
    :ivar extract: ``fenced`` (```python blocks; a field without one holds no code) or
        ``whole`` (the whole field is Python).
    :ivar parse_errors: drop code that does not parse.
    :ivar dangerous_calls: dotted call names (imports and aliases resolved), ``name(kw=True)``
        for a call that is dangerous only with that keyword set.
    :ivar allow_categories: categories whose answers may show dangerous calls (not meant to be
        safe, e.g. a pack that teaches what *not* to do); their code must still parse.
    """

    enabled: bool = True
    fields: tuple[str, ...] = ("completion",)
    extract: Literal["fenced", "whole"] = "fenced"
    parse_errors: bool = True
    dangerous_calls: tuple[str, ...] = DEFAULT_DANGEROUS_CALLS
    allow_categories: tuple[str, ...] = ()


@frozen
class ReviewPolicy:
    """Which examples go to human review and what the loop does with undecided ones.

    :ivar grey_band: a score in ``[threshold - grey_band, threshold)`` is kept but sent to review.
    :ivar sample: a further share (0..1) of the kept examples, drawn at random (seeded), sent too.
    :ivar pending: ``wait`` (the loop waits for every decision), ``skip`` (undecided examples
        are left out of this iteration's data; they stay in the queue) or ``keep`` (trained on
        unless a human rejects them before the dataset is built).
    :ivar wait_timeout_s: with ``wait``, stop the run (resumable) after this long; ``None`` waits.
    :ivar poll_s: how often a waiting loop asks the registry for decisions.
    """

    grey_band: float = 0.0
    sample: float = 0.0
    pending: Literal["wait", "skip", "keep"] = "skip"
    wait_timeout_s: float | None = None
    poll_s: float = 2.0


@frozen
class Policy:
    """A safety policy (see docs/warden.md for the file format).

    :ivar name: shown in reasons and logs.
    :ivar fields: the text deny rules, PII and score-based filters look at (``prompt``,
        ``completion``; chat messages count as their role's field).
    :ivar deny: regexes whose match drops an example.
    :ivar pii: personal data and secrets that drop an example.
    :ivar code: AST checks of code-bearing answers.
    :ivar thresholds: per-label score at or above which an example is dropped (Detoxify labels
        such as ``toxicity``, moderation categories such as ``harassment``); ``default`` applies
        to labels not listed.
    :ivar review: what goes to human review.
    :ivar approval_required: a model that meets its goal stays a candidate until a human runs
        ``forge approve CHECKPOINT``.
    :ivar source: the policy file (set by the loader).
    """

    name: str = "policy"
    fields: tuple[str, ...] = ("prompt", "completion")
    deny: tuple[DenyRule, ...] = ()
    pii: PIIPolicy = PIIPolicy()
    code: CodePolicy = CodePolicy()
    thresholds: Mapping[str, float] = Factory(_empty)
    review: ReviewPolicy = ReviewPolicy()
    approval_required: bool = False
    source: str | None = None


def field_texts(example: Example, fields: tuple[str, ...] | list[str]) -> list[str]:
    """The example's non-empty texts for the policy's ``fields``: ``prompt`` (the prompt, system
    and user messages) and ``completion`` (the completion, assistant messages)."""
    out: list[str] = []
    for name in fields:
        if name == "prompt":
            out.append(example.prompt)
            out.extend(m.content for m in example.messages if m.role in ("system", "user"))
        elif name == "completion":
            out.append(example.completion)
            out.extend(m.content for m in example.messages if m.role == "assistant")
    return [t for t in out if t]


def policy_text(example: Example, policy: Policy | None) -> str:
    """What a score-based safety filter scores: the policy's fields (default: prompt and
    completion) joined by newlines (a single space when empty)."""
    fields = policy.fields if policy is not None else ("prompt", "completion")
    return "\n".join(field_texts(example, fields)) or " "


def threshold_for(label: str, policy: Policy | None, overrides: Mapping[str, float], default: float) -> float:
    """A label's threshold: the filter's own ``overrides``, then the policy's, then its
    ``default`` entry, then ``default``."""
    if label in overrides:
        return float(overrides[label])
    if policy is not None:
        if label in policy.thresholds:
            return float(policy.thresholds[label])
        if "default" in policy.thresholds:
            return float(policy.thresholds["default"])
    return default


def threshold_verdict(
    example_id: str,
    filter_name: str,
    scores: Mapping[str, float],
    *,
    policy: Policy | None,
    overrides: Mapping[str, float] | None = None,
    default: float = 0.5,
    labels: tuple[str, ...] | None = None,
) -> Verdict:
    """Judge one example's per-label scores (0..1).

    Dropped when any label's score reaches its threshold (the highest excess names the rule and
    the reason); kept but marked for review (``Verdict.review``) when the worst score lies in the
    policy's grey band below its threshold; kept otherwise. ``score`` is the deciding label's.

    :param labels: only these labels count (default: every label scored).
    """
    overrides = overrides or {}
    band = policy.review.grey_band if policy is not None else 0.0
    worst: tuple[float, str, float, float] | None = None  # (score - threshold, label, score, threshold)
    for label, raw in scores.items():
        if labels is not None and label not in labels:
            continue
        score = float(raw)
        limit = threshold_for(label, policy, overrides, default)
        margin = score - limit
        if worst is None or margin > worst[0]:
            worst = (margin, label, score, limit)
    if worst is None:
        return Verdict(example_id, filter_name, True, rule="clean", reason="no scores")
    margin, label, score, limit = worst
    if margin >= 0:
        return Verdict(example_id, filter_name, False, rule=label, score=score,
                       reason=f"{label} {score:.3f} >= threshold {limit:g}")
    if band > 0 and margin >= -band:
        return Verdict(example_id, filter_name, True, rule=label, score=score, review=True,
                       reason=f"{label} {score:.3f} within {band:g} of threshold {limit:g}: review")
    return Verdict(example_id, filter_name, True, rule="clean", score=score,
                   reason=f"highest {label} {score:.3f} < {limit:g}")
