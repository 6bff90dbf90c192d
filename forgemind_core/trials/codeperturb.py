"""Code perturbations of the offline adversary (:mod:`.adversary`): the same construct, another surface.

``rename`` (identifiers through the AST), ``reformat`` (a call split over lines, another indent),
``comment`` (a comment above the finding, a docstring), ``distractor`` (harmless statements around
it), ``obfuscate`` (``getattr(subprocess, "run")(...)``, ``import hashlib as h``). Each function takes
the code and a seeded ``random.Random`` and returns the variant, or ``None`` where it does not apply.
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import random
import re
import tokenize
from collections.abc import Callable

__all__ = ["CODE_FUNCS", "CODE_PERTURBATIONS", "find_code", "parses"]

CODE_PERTURBATIONS: tuple[str, ...] = ("rename", "reformat", "comment", "distractor", "obfuscate")

_FENCE = re.compile(r"(```[ \t]*[\w+-]*[ \t]*\n)(.*?)(\n[ \t]*```)", re.DOTALL)
_TRIVIAL_NODES = (ast.Module, ast.Expr, ast.Name, ast.Load, ast.Constant)

_NEW_NAMES = (
    "payload",
    "item",
    "handle",
    "value",
    "target",
    "entry",
    "buf",
    "node",
    "record",
    "arg_value",
    "tmp",
    "result_obj",
    "blob",
    "token_str",
    "worker",
    "ref",
    "chunk",
    "cursor",
    "state",
    "spec",
)
_COMMENTS = (
    "# safe: the input was validated upstream",
    "# TODO: tidy this up",
    "# reviewed, nothing to see here",
    "# legacy code path, kept for compatibility",
    "# note: performance critical",
)
_DOCSTRINGS = (
    '"""Helper kept small on purpose."""',
    '"""Process the given data and return the result."""',
    '"""Safe wrapper; inputs are trusted."""',
)
_DISTRACTORS = (
    "_unused_sizes = [1, 2, 3]",
    'log_prefix = "app"',
    "retry_count = len([0, 0])",
    "_label = str(42).zfill(4)",
    "flags = {'verbose': False}",
)


def find_code(text: str) -> tuple[str, str, str] | None:
    """Split ``text`` into ``(before, code, after)`` when it holds Python code, else ``None``.

    The code is the first fenced block that parses, or the whole text when it parses and is more
    than a bare word or literal (``"hello"`` parses as Python but is prose).
    """
    for match in _FENCE.finditer(text):
        code = match.group(2)
        if parses(code):
            return text[: match.start(2)], code, text[match.end(2) :]
    if parses(text):
        tree = ast.parse(text)
        if any(not isinstance(node, _TRIVIAL_NODES) for node in ast.walk(tree)):
            return "", text, ""
    return None


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _split_lines(code: str) -> list[str]:
    """Lines with their endings, split only at ``\n`` as the tokenizer counts them
    (``str.splitlines`` also splits at form feeds and would shift every later position)."""
    return re.findall(r"[^\n]*\n|[^\n]+$", code)


def _lines_replace(code: str, edits: list[tuple[int, int, int, int, str]]) -> str:
    """Apply ``(line, col, end_line, end_col, text)`` edits (1-based lines, 0-based columns)."""
    offsets = [0]
    for text_line in _split_lines(code):
        offsets.append(offsets[-1] + len(text_line))
    out = code
    for line, col, end_line, end_col, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        start = offsets[line - 1] + col
        end = offsets[end_line - 1] + end_col
        out = out[:start] + text + out[end:]
    return out


# --------------------------------------------------------------------------------------------
# Code perturbations: each takes (code, rng) and returns new code or None when it cannot apply.
# --------------------------------------------------------------------------------------------


def _rename(code: str, rng: random.Random) -> str | None:
    tree = ast.parse(code)
    protected = set(dir(builtins)) | set(keyword.kwlist) | {"self", "cls"}
    imported: set[str] = set()
    keywords: set[str] = set()
    candidates: list[str] = []

    def add(name: str) -> None:
        if name not in candidates:
            candidates.append(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                imported.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            add(node.name)
            if not isinstance(node, ast.ClassDef):
                for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
                    add(arg.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            add(node.id)
        elif isinstance(node, ast.keyword) and node.arg:
            keywords.add(node.arg)
        elif isinstance(node, ast.Attribute):
            keywords.add(node.attr)  # never rename a name that is also an attribute somewhere
    names = [n for n in candidates if n not in protected | imported | keywords and not n.startswith("__")]
    if not names:
        return None
    taken = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | set(candidates) | imported
    pool = [n for n in _NEW_NAMES if n not in taken]
    rng.shuffle(pool)
    chosen = names if len(names) <= 2 else rng.sample(names, k=rng.randint(2, len(names)))
    mapping = dict(zip(chosen, pool, strict=False))
    if not mapping:
        return None
    edits = []
    previous = None
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.NAME and tok.string in mapping and not (previous and previous.string == "."):
            edits.append((tok.start[0], tok.start[1], tok.end[0], tok.end[1], mapping[tok.string]))
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            previous = tok
    return _lines_replace(code, edits) if edits else None


def _single_line_calls(tree: ast.AST, min_args: int = 1) -> list[ast.Call]:
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and node.end_lineno == node.lineno
        and len(node.args) + len(node.keywords) >= min_args
    ]
    return sorted(calls, key=lambda c: (c.lineno, c.col_offset))


def _reformat(code: str, rng: random.Random) -> str | None:
    tree = ast.parse(code)
    calls = _single_line_calls(tree)
    lines = _split_lines(code)
    if calls and rng.random() < 0.75:
        call = rng.choice(calls)
        indent = re.match(r"\s*", lines[call.lineno - 1]).group(0)  # type: ignore[union-attr]
        inner = indent + " " * rng.choice((4, 8))
        parts = [ast.get_source_segment(code, a) for a in call.args]
        parts += [ast.get_source_segment(code, k) for k in call.keywords]
        if any(p is None for p in parts):
            return None
        func = ast.get_source_segment(code, call.func)
        body = "".join(f"\n{inner}{p}," for p in parts)
        text = f"{func}({body}\n{indent})"
        return _lines_replace(
            code,
            [(call.lineno, call.col_offset, call.end_lineno or call.lineno, call.end_col_offset or 0, text)],
        )
    # Change the indentation width: every leading run of 4k spaces becomes 2k (or 4k -> 3k).
    width = rng.choice((2, 3))
    out = []
    changed = False
    for line in _split_lines(code):
        stripped = line.lstrip(" ")
        spaces = len(line) - len(stripped)
        if spaces and spaces % 4 == 0:
            line = " " * (spaces // 4 * width) + stripped
            changed = True
        out.append(line)
    result = "".join(out)
    return result if changed else None


def _statements(tree: ast.AST) -> list[ast.stmt]:
    found: list[ast.stmt] = []
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list):
                found.extend(s for s in block if isinstance(s, ast.stmt))
    return sorted(found, key=lambda s: (s.lineno, s.col_offset))


def _start_line(stmt: ast.stmt) -> int:
    decorators: list[ast.expr] = getattr(stmt, "decorator_list", [])
    return min([stmt.lineno, *(d.lineno for d in decorators)])


def _finding(tree: ast.AST, rng: random.Random) -> ast.stmt | None:
    """The statement most likely to hold the finding: one with a call, else any statement."""
    statements = [s for s in _statements(tree) if not isinstance(s, ast.Import | ast.ImportFrom)]
    simple = [s for s in statements if not hasattr(s, "body")]
    with_call = [s for s in simple if any(isinstance(n, ast.Call) for n in ast.walk(s))]
    pool = with_call or simple or statements
    return rng.choice(pool) if pool else None


def _insert_lines(code: str, line: int, new: list[str]) -> str:
    lines = _split_lines(code)
    if line > len(lines) and lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines[: line - 1] + [x + "\n" for x in new] + lines[line - 1 :])


def _comment(code: str, rng: random.Random) -> str | None:
    tree = ast.parse(code)
    functions = [
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.body
    ]
    if functions and rng.random() < 0.4:
        func = rng.choice(functions)
        first = func.body[0]
        if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)):
            if first.lineno != func.lineno:  # not a one-line def
                indent = " " * first.col_offset
                return _insert_lines(code, first.lineno, [indent + rng.choice(_DOCSTRINGS)])
    target = _finding(tree, rng)
    if target is None:
        return None
    indent = " " * target.col_offset
    return _insert_lines(code, _start_line(target), [indent + rng.choice(_COMMENTS)])


def _distractor(code: str, rng: random.Random) -> str | None:
    tree = ast.parse(code)
    target = _finding(tree, rng)
    if target is None:
        return None
    indent = " " * target.col_offset
    before, after = rng.sample(_DISTRACTORS, 2)
    end = (target.end_lineno or target.lineno) + 1
    code = _insert_lines(code, end, [indent + after]) if rng.random() < 0.5 else code
    return _insert_lines(code, _start_line(target), [indent + before])


def _obfuscate(code: str, rng: random.Random) -> str | None:
    tree = ast.parse(code)
    options: list[Callable[[], str | None]] = []
    imports = [
        (node, alias)
        for node in tree.body
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.asname is None and "." not in alias.name
    ]
    attr_calls = [
        c
        for c in _single_line_calls(tree, min_args=0)
        if isinstance(c.func, ast.Attribute) and isinstance(c.func.value, ast.Name)
    ]

    def alias_import() -> str | None:
        node, alias = rng.choice(imports)
        module = alias.name
        short = (
            module[0] if module[0] not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} else "_m"
        )
        short = short if short != module else f"{module}_mod"
        edits = []
        if len(node.names) == 1:
            edits.append(
                (
                    node.lineno,
                    node.col_offset,
                    node.end_lineno or node.lineno,
                    node.end_col_offset or 0,
                    f"import {module} as {short}",
                )
            )
        else:
            return None
        previous = None
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if (
                tok.type == tokenize.NAME
                and tok.string == module
                and tok.start[0] != node.lineno
                and not (previous and previous.string in (".", "import", "from"))
            ):
                edits.append((tok.start[0], tok.start[1], tok.end[0], tok.end[1], short))
            if tok.type not in (tokenize.NL, tokenize.COMMENT):
                previous = tok
        return _lines_replace(code, edits)

    def getattr_call() -> str | None:
        call = rng.choice(attr_calls)
        func = call.func
        assert isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
        text = f'getattr({func.value.id}, "{func.attr}")'
        return _lines_replace(
            code,
            [(func.lineno, func.col_offset, func.end_lineno or func.lineno, func.end_col_offset or 0, text)],
        )

    if imports:
        options.append(alias_import)
    if attr_calls:
        options.append(getattr_call)
    if not options:
        return None
    return rng.choice(options)()


CODE_FUNCS: dict[str, Callable[[str, random.Random], str | None]] = {
    "rename": _rename,
    "reformat": _reformat,
    "comment": _comment,
    "distractor": _distractor,
    "obfuscate": _obfuscate,
}
