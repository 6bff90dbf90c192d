"""``forge new "DESCRIPTION"``: a goal file and a task-pack skeleton drafted from one sentence.

The first step of the product is finding out what the user wants built. From a description and
optionally a few ``INPUT=>ANSWER`` examples, :func:`draft` decides with plain rules whether the
task is a classification (the answers are a few distinct words) or a generative one (a JSON object:
``json_match``; any other text: ``exact_match``), and drafts labels, a system prompt, a prompt
format and templates whose slots are where the examples differ. With a served model
(:func:`draft_with_model`) the model drafts labels, template instructions, a system prompt and a
starter grammar as JSON; each part is validated and a part that is nonsense falls back to the
rules, with a warning. :func:`write_skeleton` writes the folder; the evaluation suites are left
empty for the user to write by hand (never filled from the examples or a model).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attrs import evolve, frozen
from forgemind_hookspecs.errors import ConfigError

__all__ = ["SUITE_TIERS", "Draft", "Example", "draft", "draft_with_model", "pack_problems_of", "parse_example",
           "parse_model_answer", "write_skeleton"]

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\- ]{0,39}$")
_SLOT = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_LISTED = re.compile(r"\b(?:into|as|either|labels?|categories|classes)\s*:?\s+([^.;]+)", re.I)
_CLASSIFY = re.compile(r"\b(classif\w*|categori[sz]\w*|label\w*|route\w*|triage\w*|detect\w*|whether|sentiment)\b",
                       re.I)
_STOP = {"a", "an", "the", "of", "to", "and", "or", "in", "into", "from", "as", "for", "with", "its", "each", "one"}
#: Suites the skeleton leaves for the user: written as ``suites/<tier>.todo.jsonl`` (see write_skeleton).
SUITE_TIERS = ("canary", "full", "adversarial")


@frozen
class Example:
    """One example the user gave: an input and the answer wanted for it."""

    input: str
    answer: str


@frozen
class Draft:
    """What :func:`write_skeleton` writes: the pack's parts and the goal's scorer."""

    name: str
    task: str
    kind: str  # "labels" or "generative"
    labels: dict[str, str]
    system_prompt: str
    prompt_format: str
    answer_format: str
    scorer: str  # label_match, exact_match or json_match
    templates: list[dict[str, Any]]
    slots: dict[str, Any]
    warnings: tuple[str, ...] = ()
    drafted_by: str = "rules"


def parse_example(text: str) -> Example:
    """``INPUT=>ANSWER`` (split at the last ``=>``) into an :class:`Example`.

    :raises ConfigError: no ``=>``, or an empty side.
    """
    left, sep, right = text.rpartition("=>")
    if not sep or not left.strip() or not right.strip():
        raise ConfigError(f"expected INPUT=>ANSWER with both sides non-empty, got {text!r}", field="--example")
    return Example(input=left.strip(), answer=right.strip())


def _slug(text: str) -> str:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP]
    return "-".join(words[:4]) or "new-task"


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _listed_labels(description: str) -> list[str]:
    """Labels a description lists ("classify reviews into positive, negative or neutral")."""
    match = _LISTED.search(description)
    if not match:
        return []
    parts = [p.strip(" '\"") for p in re.split(r",|\bor\b|\band\b|/", match.group(1))]
    labels = [p for p in parts if p and _LABEL.match(p) and len(p.split()) <= 2]
    return labels if len(labels) >= 2 else []


def _kind(description: str, examples: Sequence[Example]) -> tuple[str, list[str]]:
    answers = [e.answer for e in examples]
    distinct = list(dict.fromkeys(answers))
    wordlike = all(_LABEL.match(a) and len(a.split()) <= 3 for a in distinct)
    if examples and wordlike and (len(distinct) < len(answers) or _CLASSIFY.search(description)):
        return "labels", distinct
    if not examples and (listed := _listed_labels(description)):
        return "labels", listed
    return "generative", []


def _align(texts: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The words common to every text, in order, and for each text the runs of its words in the
    gaps around them (``len(common) + 1`` gaps)."""
    tokens = [t.split() for t in texts]
    common = tokens[0]
    for other in tokens[1:]:
        matcher = difflib.SequenceMatcher(a=common, b=other, autojunk=False)
        common = [w for block in matcher.get_matching_blocks() for w in common[block.a:block.a + block.size]]
    gaps: list[list[str]] = []
    for words in tokens:
        matcher = difflib.SequenceMatcher(a=common, b=words, autojunk=False)
        runs, at, used = [], 0, 0
        for block in matcher.get_matching_blocks():
            for i in range(block.size):
                if block.a + i == used:  # the common word matched here: close the gap before it
                    runs.append(" ".join(words[at:block.b + i]))
                    at, used = block.b + i + 1, used + 1
        runs.append(" ".join(words[at:]))
        gaps.append(runs if used == len(common) else [""] * len(common) + [" ".join(words)])
    return common, gaps


def _templates(category: str, examples: Sequence[Example], scorer: str, slots: dict[str, Any],
               instruction: str) -> list[dict[str, Any]]:
    """Templates of one category from its examples: a slot where the examples differ; an answer
    that copies a differing part uses the same slot, others come from one record per example."""
    key = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_") or "c"
    if len(examples) == 1:
        common, gaps = examples[0].input.split(), [[""] * (len(examples[0].input.split()) + 1)]
    else:
        common, gaps = _align([e.input for e in examples])
    parts: list[str] = []
    names: list[str | None] = []
    for index in range(len(common) + 1):
        values = [g[index] for g in gaps]
        name = f"{key}_{index}" if any(values) else None
        if name is not None:
            parts.append("{" + name + "}")
        names.append(name)
        if index < len(common):
            parts.append(common[index])
    prompt = " ".join(parts)
    values_of = {n: [g[i] for g in gaps] for i, n in enumerate(names) if n}
    if scorer == "label_match":
        slots.update({n: list(dict.fromkeys(v for v in vs if v)) for n, vs in values_of.items()})
        completion = None
    else:
        copied = {n: vs for n, vs in values_of.items()
                  if all(v and v in e.answer for v, e in zip(vs, examples, strict=True))}
        answers = []
        for index, e in enumerate(examples):
            answer = e.answer
            for name, vs in copied.items():
                answer = answer.replace(vs[index], "{" + name + "}")
            answers.append(answer)
        slots.update({n: list(dict.fromkeys(vs)) for n, vs in copied.items()})
        free = [n for n in values_of if n not in copied]
        if not free and len(set(answers)) == 1:
            completion = " " + answers[0]
        else:  # the answer depends on the other parts: one record per example keeps them together
            record = f"{key}_case"
            slots[record] = [{**{f"p_{n}": values_of[n][i] for n in free}, "answer": answers[i]}
                             for i in range(len(examples))]
            for n in free:
                prompt = prompt.replace("{" + n + "}", "{" + f"{record}.p_{n}" + "}")
            completion = " {" + record + ".answer}"
    template: dict[str, Any] = {"id": f"{key}-from-examples", "category": category, "prompt": prompt,
                                "instruction": instruction, "strategies": ["basic", "varied"]}
    if completion is not None:
        template["completion"] = completion
    return [template]


def draft(description: str, examples: Sequence[Example] = ()) -> Draft:
    """The skeleton's parts from ``description`` and ``examples`` by plain rules (offline)."""
    description = " ".join(description.split())
    if not description:
        raise ConfigError("the description is empty: say in one sentence what the model should do",
                          field="DESCRIPTION")
    kind, labels = _kind(description, examples)
    first = examples[0].answer if examples else ""
    if kind == "labels":
        scorer, answer_format = "label_match", "exactly one of: " + ", ".join(labels)
        label_map = {label: f"the answer is {label!r}" + "".join(
            f"; e.g. {e.input[:80]!r}" for e in examples if e.answer == label)[:300] for label in labels}
    elif (obj := _json_object(first)) is not None:
        scorer = "json_match"
        answer_format = "one JSON object with the keys " + ", ".join(json.dumps(k) for k in obj) + ", in that order"
        label_map = {"answer": description}
    else:
        scorer, answer_format = "exact_match", "one line of text, as in the examples" if examples else "one line of text"
        label_map = {"answer": description}
    system_prompt = f"{description.rstrip('.')}. Answer with {answer_format}."
    prompt_format = f"{description.rstrip('.')}.\nInput: {{input}}\nAnswer:"
    slots: dict[str, Any] = {}
    templates: list[dict[str, Any]] = []
    for category in label_map:
        group = [e for e in examples if kind != "labels" or e.answer == category]
        instruction = (f"Write one realistic input for this task: {description.rstrip('.')}." +
                       (f" Its answer must be {category!r}." if kind == "labels" else ""))
        if group:
            templates.extend(_templates(category, group, scorer, slots, instruction))
    warnings: list[str] = []
    if not templates:
        warnings.append("no examples were given: the templates are placeholders; write templates.yaml "
                        "(or use an LLM generator) before running")
        for category in label_map:
            key = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_") or "c"
            slots[f"{key}_input"] = [f"an input whose answer is {category}" if kind == "labels" else "an input"]
            template = {"id": f"{key}-placeholder", "category": category, "prompt": "{" + key + "_input}",
                        "instruction": f"Write one realistic input for this task: {description}"}
            if kind != "labels":
                template["completion"] = " an answer"
            templates.append(template)
    return Draft(name=_slug(description), task=description, kind=kind, labels=label_map,
                 system_prompt=system_prompt, prompt_format=prompt_format, answer_format=answer_format,
                 scorer=scorer, templates=templates, slots=slots, warnings=tuple(warnings))


_ASK = """You help set up a dataset for training a small model. The task: {task}
{examples}Answer with ONE JSON object and nothing else, with these keys:
"labels": an object mapping each answer category (a short word) to a one-sentence description{fixed};
"system_prompt": one or two sentences telling the model what to answer;
"instructions": an object mapping each category to one sentence telling a writer what input to write;
"slots": an object mapping slot names (lower_case) to lists of 3 to 10 short example values;
"templates": a list of objects {{"category": ..., "prompt": "text using {{slot_name}} placeholders"}}.
JSON:"""


def parse_model_answer(text: str, base: Draft) -> tuple[Draft, list[str]]:
    """Merge a model's JSON draft into ``base`` part by part; a part that is missing or invalid
    keeps ``base``'s and adds a warning. Returns the draft and the warnings."""
    warnings: list[str] = []
    start = text.find("{")
    try:
        doc, _ = json.JSONDecoder().raw_decode(text[start:]) if start >= 0 else (None, 0)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return evolve(base, warnings=(*base.warnings, "the model's answer was not a JSON object: "
                                      "the whole skeleton comes from the offline rules")), ["not JSON"]
    labels = base.labels
    raw = doc.get("labels")
    if isinstance(raw, dict) and raw and all(isinstance(k, str) and _LABEL.match(k) and isinstance(v, str) and v.strip()
                                             for k, v in raw.items()) and len(raw) <= 50:
        if base.kind == "labels" and set(raw) != set(base.labels):
            warnings.append("the model's labels differ from the examples' answers: kept the examples' labels")
        elif base.kind == "labels":
            labels = {k: " ".join(str(raw[k]).split())[:300] for k in base.labels}
    else:
        warnings.append("the model gave no valid labels: kept the rules' labels")
    system = doc.get("system_prompt")
    if isinstance(system, str) and 10 <= len(system.strip()) <= 1000:
        system_prompt = " ".join(system.split())
    else:
        system_prompt = base.system_prompt
        warnings.append("the model gave no valid system_prompt: kept the rules' one")
    instructions = doc.get("instructions")
    templates = [dict(t) for t in base.templates]
    if isinstance(instructions, dict) and all(isinstance(v, str) and v.strip() for v in instructions.values()):
        for template in templates:
            said = instructions.get(template["category"])
            if isinstance(said, str) and said.strip():
                template["instruction"] = " ".join(said.split())[:500]
    else:
        warnings.append("the model gave no valid instructions: kept the rules' ones")
    slots = dict(base.slots)
    grammar_slots, grammar = doc.get("slots"), doc.get("templates")
    if (isinstance(grammar_slots, dict) and grammar_slots and isinstance(grammar, list) and grammar
            and all(isinstance(k, str) and _SLOT.match(k) and isinstance(v, list) and v
                    and all(isinstance(x, str) and x.strip() for x in v) for k, v in grammar_slots.items())
            and all(isinstance(t, dict) and t.get("category") in labels and isinstance(t.get("prompt"), str)
                    and t["prompt"].strip() for t in grammar)
            and (base.kind == "labels")):
        names = {f"llm_{k}": list(dict.fromkeys(v))[:20] for k, v in grammar_slots.items()}
        for index, t in enumerate(grammar[:20]):
            prompt = re.sub(r"\{([a-z][a-z0-9_]*)(\|[^{}]*)?\}", lambda m: "{llm_" + m.group(1) + (m.group(2) or "")
                            + "}" if f"llm_{m.group(1)}" in names else m.group(0), str(t["prompt"]))
            unknown = [n for n in re.findall(r"\{([a-z][a-z0-9_]*)(?:\|[^{}]*)?\}", prompt) if n not in names]
            if unknown:  # a placeholder naming no slot would be copied into the data as written
                warnings.append(f"the model's template {t['prompt']!r} names no slot {unknown[0]!r}: left out")
                continue
            templates.append({"id": f"llm-{index}", "category": t["category"], "prompt": prompt,
                              "strategies": ["varied"],
                              "instruction": next((x.get("instruction", "") for x in templates
                                                   if x["category"] == t["category"]), "")})
        slots.update(names)
    else:
        warnings.append("the model gave no usable starter grammar (slots and templates; only labelled tasks "
                        "take one): kept the rules' templates")
    drafted = evolve(base, labels=labels, system_prompt=system_prompt, templates=templates, slots=slots,
                     warnings=(*base.warnings, *warnings), drafted_by="model")
    return drafted, warnings


def draft_with_model(description: str, examples: Sequence[Example], ask: Callable[[str], str]) -> Draft:
    """:func:`draft`, then the parts a model drafts (``ask(prompt) -> text``) where they are valid,
    and then checked as a whole by :func:`pack_problems_of`: a grammar that does not validate falls back to
    the rules' templates."""
    base = draft(description, examples)
    shown = "".join(f"Example: {e.input!r} -> {e.answer!r}\n" for e in examples[:8])
    fixed = f' (use exactly these categories: {", ".join(base.labels)})' if base.kind == "labels" else ""
    drafted, _ = parse_model_answer(ask(_ASK.format(task=base.task, examples=shown, fixed=fixed)), base)
    if drafted.drafted_by == "model" and (problems := pack_problems_of(drafted)):
        own = [t for t in drafted.templates if not str(t["id"]).startswith("llm-")]  # instructions kept
        drafted = evolve(drafted, templates=own, slots=base.slots, warnings=(
            *drafted.warnings, f"the model's grammar does not validate ({problems[0]}): kept the rules' templates"))
    return drafted


def pack_problems_of(d: Draft) -> list[str]:
    """What ``forge validate`` would say of the pack :func:`write_skeleton` writes for ``d``
    (written to a temporary folder, loaded and expanded there): one sentence per problem."""
    import tempfile

    from forgemind_core.foundry.packcheck import pack_problems

    with tempfile.TemporaryDirectory() as folder:
        write_skeleton(d, Path(folder) / "pack")
        return [getattr(p, "message", str(p)) for p in pack_problems(Path(folder) / "pack")]


def _q(value: Any) -> str:
    """A YAML flow value: JSON is valid YAML."""
    return json.dumps(value, ensure_ascii=False)


def _pack_yaml(d: Draft) -> str:
    lines = [f"# Task pack drafted by `forge new` ({d.drafted_by}). Edit it: docs/task-packs.md.",
             f"name: {_q(d.name)}", f"task: {_q(d.task)}", f"system_prompt: {_q(d.system_prompt)}",
             f"prompt_format: {_q(d.prompt_format)}", f"rubric: {_q('The answer is ' + d.answer_format + '.')}",
             "labels:" if d.kind == "labels" else "labels:   # categories of inputs; the answer is generated",
             *(f"  {_q(k)}: {_q(v)}" for k, v in d.labels.items()),
             "templates: templates.yaml", "slots: slots.yaml"]
    if d.kind != "labels":
        lines.append(f"scoring: {{default: {d.scorer}}}")
    if d.scorer == "json_match":
        lines.append("verify: {checker: json_match}")
    return "\n".join(lines) + "\n"


def _goal_yaml(d: Draft) -> str:
    tokens = 8 if d.kind == "labels" else 64
    return (f"# Goal drafted by `forge new`. Write the suites first (suites/README.md), then:\n"
            f"#   forge validate goal.yaml && forge pack check . && forge run goal.yaml\n"
            f"name: {_q(d.name)}\ntask: {_q(d.task)}\npack: .\nseed: 7\n"
            "success: {metric: accuracy, threshold: 0.9, tier: full, canary_min: 1.0}\n"
            "limits: {base_model: pretrain, method: full, max_iterations: 3, budget_usd: 1.0}\n"
            "pretrain: {corpus: python-docs, preset: tiny}\n"
            "generate:\n  - backend: template\n    share: 1.0\n    strategy: basic\n"
            "filter:\n  - backend: dedupe\n  - backend: decontaminate\n  - backend: rules\n"
            "train: {backend: hf, epochs: 2, learning_rate: 0.001, batch_size: 8}\n"
            f"evaluate: {{runner: {{backend: hf, max_new_tokens: {tokens}}}, scorers: [{{backend: {d.scorer}}}]}}\n"
            "planner: {backend: default, initial_examples: 1500, strategies: [basic, varied]}\n")


def _suite_readme(d: Draft) -> str:
    label = next(iter(d.labels))
    expected = label if d.kind == "labels" else "THE ANSWER"
    row = {"id": "c01", "input": "AN INPUT YOU WROTE", "expected": expected, "category": label}
    return (f"# Evaluation suites of {d.name}: write them by hand\n\n"
            "`forge new` never fills these files: not from your examples and not from a model. A suite\n"
            "measures the model only if its cases differ from the training templates (other wording,\n"
            "names, contexts). Write one JSON object per line:\n\n"
            f"    {json.dumps(row)}\n\n"
            "- `canary.todo.jsonl`: 5-20 easy cases the model must always get right;\n"
            "- `full.todo.jsonl`: 50+ cases covering every category;\n"
            "- `adversarial.todo.jsonl`: hard cases (look-alikes, noise, unusual phrasing).\n\n"
            "When a file holds cases, rename it without `.todo` (`full.jsonl`): the pack reads\n"
            "`suites/<tier>.jsonl`, and a suite without cases is an error. The goal's `success` needs the\n"
            "`full` and `canary` suites. Format: docs/task-packs.md, \"Suites (JSONL)\".\n")


def write_skeleton(d: Draft, out: Path) -> list[Path]:
    """Write the goal, pack and suite skeleton of ``d`` into ``out`` (created); returns the files.

    :raises ConfigError: ``out`` exists and is not an empty folder (nothing is overwritten).
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("already exists and is not empty; forge new never overwrites: choose another --out",
                          file=str(out))
    (out / "suites").mkdir(parents=True, exist_ok=True)
    row = {"input": "...", "expected": next(iter(d.labels)) if d.kind == "labels" else "...",
           "category": next(iter(d.labels))}
    files = {
        "pack.yaml": _pack_yaml(d),
        "goal.yaml": _goal_yaml(d),
        "templates.yaml": "# Templates drafted from your examples: {slot} is a value of slots.yaml.\n"
                          + "".join(f"- {_q(t)}\n" for t in d.templates),
        "slots.yaml": "# Slot values: add many more, different from your suites.\n"
                      + "".join(f"{k}: {_q(v)}\n" for k, v in d.slots.items()) if d.slots else "{}\n",
        "README.md": (f"# {d.name}\n\n{d.task}\n\nDrafted by `forge new` ({d.drafted_by}).\n\n"
                      "1. Write the evaluation suites by hand: suites/README.md.\n"
                      "2. Read and extend templates.yaml and slots.yaml (docs/task-packs.md).\n"
                      "3. `forge validate goal.yaml`, `forge pack check .`, then `forge run goal.yaml`.\n"
                      + ("\nWarnings:\n" + "".join(f"- {w}\n" for w in d.warnings) if d.warnings else "")),
        "suites/README.md": _suite_readme(d),
    }
    for tier in SUITE_TIERS:
        files[f"suites/{tier}.todo.jsonl"] = (f"# {tier} suite: one case per line, written by hand, e.g.\n"
                                              f"# {json.dumps(row)}\n")
    written = []
    for rel, text in files.items():
        path = out / rel
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written

