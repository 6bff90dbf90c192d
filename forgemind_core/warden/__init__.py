"""The Warden: safety policy, built-in safety checks, human review and approval gates.

- :mod:`.policy`: policy files (YAML, validated like goal files, referenced from a goal's
  ``review.policy``) -> :class:`forgemind_hookspecs.Policy`, handed to backends as ``ctx.policy``.
- :mod:`.safety`: the built-in ``safety`` filter (deny regexes, PII and secrets, AST checks of
  code in answers - parsed, never executed) and the ``human`` reviewer.
- :mod:`.review`: the loop's review stage, the review queue, decisions, approvals, JSONL
  export/import. ``forge review`` and ``forge approve`` (:mod:`forgemind_core.cli.commands.review`)
  and :class:`forgemind_core.Forge` call it.

Toxicity (``forgemind-detoxify``) and moderation (``forgemind-openai``) are plugins; they read
their thresholds from the same policy. See docs/warden.md.
"""

from __future__ import annotations

__all__ = ["policy", "review", "safety"]
