"""The kernel's built-in backends, each module an ordinary plugin registered by the kernel.

Modules here must import nothing heavy at module level (``forge --help`` imports them).
"""

from __future__ import annotations

__all__ = ["BUILTIN_PLUGINS"]

#: Module paths of the built-in plugins, registered under the name ``forgemind.<module>``.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "forgemind_core.builtins.template",  # template generator (task packs)
    "forgemind_core.builtins.filters",  # dedupe (exact + near), decontaminate, rules
    "forgemind_core.builtins.files",  # real data files (JSONL, CSV, Parquet) via datasets
    "forgemind_core.builtins.scorers",  # exact_match, label_match, regex, json_schema, python_ast
    "forgemind_core.builtins.adversary",  # offline perturbations for the adversarial tier
    "forgemind_core.builtins.brain",  # default planner, local executor
    "forgemind_core.warden.safety",  # the Warden: safety filter (deny, PII, code AST), human reviewer
    "forgemind_core.builtins.replay",  # replays recorded plans (forge show --config, forks, exports)
)
