"""Prompt formatting and slot expansion: how a task pack's text becomes the prompts a model sees.

Used by the template generator (it expands templates and frames with slot values), the files
generator and the evaluator (training examples and evaluation cases share one prompt format).
The pack itself is read by :mod:`forgemind_core.foundry.packs`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from forgemind_hookspecs.records import TaskPack

__all__ = ["HEAD_SEPARATOR", "SLOT_PATTERN", "expand", "format_prompt", "slot_names", "split_head"]

#: ``{name}`` placeholders. Only names that are slots (or ``input``/``head``/``body`` where
#: documented) are replaced; any other ``{word}`` is left alone so Python f-strings and dict
#: literals inside templates survive.
SLOT_PATTERN = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: A line holding only this separates a template's head (e.g. imports) from its body.
HEAD_SEPARATOR = "---"


def format_prompt(pack: TaskPack, input: str) -> str:
    """Turn a task input (a snippet, a ticket) into the exact prompt the model sees.

    Training examples and evaluation cases both go through this function, so what the model is
    trained on and what it is scored on share one format. Only the literal ``{input}`` in
    ``pack.prompt_format`` is replaced (``str.format`` would choke on braces in code).
    """
    return pack.prompt_format.replace("{input}", input)


def slot_names(text: str) -> list[str]:
    """The ``{name}`` placeholders in ``text``, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in SLOT_PATTERN.finditer(text):
        seen.setdefault(match.group(1), None)
    return list(seen)


def expand(
    text: str,
    slots: Mapping[str, Sequence[str]],
    choose: Callable[[list[str]], str],
    bound: dict[str, str] | None = None,
    *,
    depth: int = 6,
) -> str:
    """Fill ``{slot}`` placeholders in ``text`` with slot values, recursively.

    A slot value may itself contain placeholders (a small grammar). Every occurrence of one slot
    name within one expansion gets the *same* value (``bound`` remembers the choices), so a name
    introduced in one line can be used again further down.

    :param choose: ``choose(values) -> value``, e.g. ``random.Random(seed).choice``.
    :param bound: choices already made; updated in place.
    :param depth: how deep slot values may nest before expansion stops.
    """
    if bound is None:
        bound = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in slots:
            return match.group(0)
        if name not in bound:
            value = choose(list(slots[name]))
            bound[name] = expand(value, slots, choose, bound, depth=depth - 1) if depth > 0 else value
        return bound[name]

    return SLOT_PATTERN.sub(replace, text)


def split_head(text: str) -> tuple[str, str]:
    """Split an expanded template into ``(head, body)`` at a line holding only ``---``.

    The head (imports, a ticket's subject) goes where a frame says ``{head}``; the body where it
    says ``{body}``. Without a separator the head is empty.
    """
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.strip() == HEAD_SEPARATOR:
            return "\n".join(lines[:index]).strip("\n"), "\n".join(lines[index + 1 :]).strip("\n")
    return "", text.strip("\n")
