"""The slot grammar of task packs: plain, linked (record) and keyed slots, and field filters.

A template's ``{name}`` is replaced by one value of slot ``name`` (values may contain slots: a
small grammar), the same value everywhere within one example. On top of that (issue 20):

- a **record slot** lists mappings; one draw picks one record, and ``{country.name}`` /
  ``{country.iso2}`` are its fields, consistent within the example (prompt, completion, frame);
- a **keyed slot** ``{by: unit.kind, table: {length: [...], mass: [...]}}`` draws from the list
  under the key another slot (or record field) expanded to; the list may hold texts or records;
- **filters** after a bar transform a value: ``{n|pad:3}`` (zero-pad), ``{w|upper}``,
  ``{w|lower}``, ``{w|title}``, ``{n|ordinal}`` (21st), ``{n|words}`` (twenty-one),
  ``{n|ordinal_words}`` (twenty-first); several may follow each other (``{n|words|title}``).

A placeholder that names no slot is left as written (Python f-strings and dict literals in code
survive), and so is ``{a.b}`` where ``a`` is a plain slot, so a pack written before linked slots
expands exactly as it did: same text, same random draws.

Numbers in words come from the ``num2words`` library (imported only when a filter needs it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "FILTERS",
    "PLACEHOLDER",
    "GrammarError",
    "apply_filter",
    "expand_text",
    "placeholders",
]

#: ``{name}``, ``{name.field}``, ``{name|filter}``, ``{name.field|filter:arg|filter}``.
PLACEHOLDER = re.compile(
    r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?((?:\|[a-z_]+(?::[A-Za-z0-9_]+)?)*)\}"
)

#: Filter name -> what it does (for docs and error messages).
FILTERS: Mapping[str, str] = {
    "upper": "UPPER CASE",
    "lower": "lower case",
    "title": "Title Case",
    "pad": "zero-pad a number to N digits (pad:3 -> 007)",
    "ordinal": "a number with its English ordinal suffix (21 -> 21st)",
    "words": "a number in English words (21 -> twenty-one)",
    "ordinal_words": "an ordinal in English words (21 -> twenty-first)",
}


class GrammarError(ValueError):
    """A value a filter cannot take or a keyed slot without an entry for its key (raised while
    expanding; the caller turns it into a ConfigError naming the pack)."""


def placeholders(text: str) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """``(slot, field, filters)`` of every placeholder in ``text``, in order."""
    found = []
    for match in PLACEHOLDER.finditer(text):
        filters = tuple(f for f in match.group(3).split("|") if f)
        found.append((match.group(1), match.group(2), filters))
    return found


def _number(value: str, name: str) -> int:
    text = value.strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise GrammarError(f"filter {name!r} needs a whole number, got {value!r}")
    return int(text)


def apply_filter(value: str, spec: str) -> str:
    """Apply one filter (``name`` or ``name:arg``) to ``value``."""
    name, _, arg = spec.partition(":")
    if name == "upper":
        return value.upper()
    if name == "lower":
        return value.lower()
    if name == "title":
        return value.title()
    if name == "pad":
        if not arg.isdigit():
            raise GrammarError("filter 'pad' needs a width, e.g. pad:3")
        number = _number(value, name)
        return ("-" if number < 0 else "") + str(abs(number)).zfill(int(arg))
    if name == "ordinal":
        number = _number(value, name)
        suffix = "th" if 10 <= abs(number) % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(abs(number) % 10, "th")
        return f"{number}{suffix}"
    if name in ("words", "ordinal_words"):
        from num2words import num2words

        number = _number(value, name)
        return str(num2words(number, to="ordinal" if name == "ordinal_words" else "cardinal"))
    raise GrammarError(f"unknown filter {name!r}; expected one of {', '.join(FILTERS)}")


def expand_text(
    text: str,
    slots: Mapping[str, Sequence[str]],
    linked: Mapping[str, Any],
    choose: Callable[[list[Any]], Any],
    bound: dict[str, Any],
    *,
    depth: int = 6,
) -> str:
    """Fill the placeholders of ``text``; ``bound`` keeps each slot's choice (and each record
    field's expansion) so every use within one example agrees. With no linked slots and no
    filters the random draws are exactly those of :func:`forgemind_core.foundry.prompts.expand`.

    :raises GrammarError: a filter's value is not a number, a keyed slot lacks its key.
    """

    def value_of(name: str, field: str | None) -> str | None:
        if name in slots:
            if field is not None:
                return None
            if name not in bound:
                value = choose(list(slots[name]))
                bound[name] = expand_text(value, slots, linked, choose, bound, depth=depth - 1) if depth > 0 else value
            return str(bound[name])
        spec = linked.get(name)
        if spec is None:
            return None
        if name not in bound:
            bound[name] = _draw(name, spec, slots, linked, choose, bound, depth)
        chosen = bound[name]
        if isinstance(chosen, Mapping):
            if field is None or field not in chosen:
                return None
            key = f"{name}.{field}"
            if key not in bound:
                raw = str(chosen[field])
                bound[key] = expand_text(raw, slots, linked, choose, bound, depth=depth - 1) if depth > 0 else raw
            return str(bound[key])
        return None if field is not None else str(chosen)

    def replace(match: re.Match[str]) -> str:
        name, field, filters = match.group(1), match.group(2), match.group(3)
        if name in slots and field is not None:
            return match.group(0)  # a plain slot has no fields: `{user.name}` in code stays as written
        value = value_of(name, field)
        if value is None:
            return match.group(0)
        for spec in (f for f in filters.split("|") if f):
            value = apply_filter(value, spec)
        return value

    return PLACEHOLDER.sub(replace, text)


def _draw(
    name: str,
    spec: Mapping[str, Any],
    slots: Mapping[str, Sequence[str]],
    linked: Mapping[str, Any],
    choose: Callable[[list[Any]], Any],
    bound: dict[str, Any],
    depth: int,
) -> Any:
    """One draw of a linked slot: a record of a record slot, or a value of a keyed slot's list
    for the key its ``by`` slot expands to."""
    if "values" in spec:
        value = choose(list(spec["values"]))
    else:
        key = expand_text("{" + str(spec["by"]) + "}", slots, linked, choose, bound, depth=depth - 1)
        table = spec["table"]
        if key not in table:
            raise GrammarError(f"slot {name!r} has no entry for {spec['by']} = {key!r}")
        value = choose(list(table[key]))
    if isinstance(value, Mapping):
        return value
    text = str(value)
    return expand_text(text, slots, linked, choose, bound, depth=depth - 1) if depth > 0 else text
