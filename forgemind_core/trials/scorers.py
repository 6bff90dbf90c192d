"""Built-in scorers of the Trial Grounds: judge a model output against an evaluation case.

Every scorer here is offline, deterministic and cheap, so the canary tier can run on every
iteration. Each returns an :class:`~forgemind_hookspecs.EvalResult` whose ``details`` say *why*
the output passed or failed (the planner and ``forge compare`` show them to people).

- ``exact_match``: the output equals ``expected`` after whitespace normalisation.
- ``label_match``: the first label-like token of the output equals the expected label
  (classification-as-generation: ``" B602 because shell=True"`` -> ``B602``).
- ``regex``: ``expected`` is a regular expression the output must match.
- ``json_schema``: the output is JSON and validates against a JSON Schema.
- ``json_match``: the output's JSON object has the expected fields with the expected values
  (structured extraction); the score is the share of fields that match.
- ``python_ast``: the output is Python source that parses, optionally defining or not calling
  given names. The output is parsed, never executed.

A mistake in a suite (an invalid pattern or schema) is the suite author's, not the model's, so it
raises :class:`~forgemind_hookspecs.DataError` instead of failing the case silently.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from attrs import field, frozen
from forgemind_hookspecs import DataError, EvalCase, EvalResult, StageContext, hookimpl

__all__ = [
    "DANGEROUS_CALLS",
    "ExactMatchScorer",
    "JsonMatchScorer",
    "JsonSchemaScorer",
    "LabelMatchScorer",
    "PythonAstScorer",
    "RegexScorer",
    "called_names",
    "extract_json",
    "extract_label",
    "forgemind_register_scorers",
    "normalise_whitespace",
    "strip_code_fence",
]

#: Calls that ``python_ast`` forbids when a case says ``"must_not_call": "dangerous"``:
#: the constructs that run arbitrary code or commands, or deserialise untrusted data.
DANGEROUS_CALLS: tuple[str, ...] = (
    "eval",
    "exec",
    "compile",
    "__import__",
    "os.system",
    "os.popen",
    "subprocess.*",
    "pickle.loads",
    "pickle.load",
    "marshal.loads",
    "yaml.load",
)

_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)


def normalise_whitespace(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends, so that a trailing
    newline or an extra space from a tokenizer does not count as a wrong answer."""
    return " ".join(text.split())


def strip_code_fence(text: str) -> str:
    """Return the body of the first Markdown code fence in ``text`` or ``text`` itself.

    Models often wrap JSON or code in fences (```` ```json ````); the fence is presentation,
    not content, so structural scorers look inside it.
    """
    match = _FENCE.search(text)
    return match.group(1) if match else text.strip()


def _result(
    case: EvalCase, output: str, scorer: str, score: float, passed: bool, details: Mapping[str, Any]
) -> EvalResult:
    return EvalResult(
        case_id=case.id,
        output=output,
        score=float(score),
        passed=bool(passed),
        scorer=scorer,
        tier=case.tier,
        category=case.category,
        expected=case.expected,
        details=dict(details),
    )


def _check_lengths(cases: Sequence[EvalCase], outputs: Sequence[str]) -> None:
    if len(cases) != len(outputs):
        raise ValueError(f"{len(cases)} cases but {len(outputs)} outputs; a scorer needs one output per case")


# --------------------------------------------------------------------------------------------
# exact_match
# --------------------------------------------------------------------------------------------


class ExactMatchScorer:
    """Output equals the expected text after whitespace normalisation (optionally ignoring case)."""

    name: ClassVar[str] = "exact_match"

    @frozen
    class Options:
        """:ivar case_insensitive: compare lower-cased texts."""

        case_insensitive: bool = False

    def __init__(self, options: ExactMatchScorer.Options | None = None) -> None:
        self.options = options or self.Options()

    def _norm(self, text: str) -> str:
        text = normalise_whitespace(text)
        return text.casefold() if self.options.case_insensitive else text

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        """Score each output: 1.0 when the normalised texts are equal, else 0.0."""
        _check_lengths(cases, outputs)
        results = []
        for case, output in zip(cases, outputs, strict=True):
            got, want = self._norm(output), self._norm(case.expected)
            ok = got == want
            why = "equal after whitespace normalisation" if ok else f"expected {want!r}, got {got!r}"
            results.append(_result(case, output, self.name, 1.0 if ok else 0.0, ok, {"reason": why}))
        return results


# --------------------------------------------------------------------------------------------
# label_match
# --------------------------------------------------------------------------------------------

_LABEL_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_LEADING_NOISE = re.compile(r"^[\s\"'`*_>#\[\(]+")
_PREFIX = re.compile(r"^(?:label|answer|category|class|prediction|output)\s*[:=\-]\s*", re.IGNORECASE)


def _norm_label(label: str) -> str:
    return normalise_whitespace(label).casefold()


def extract_label(output: str, labels: Iterable[str] = ()) -> str:
    """The label a free-text output starts with, normalised (lower case, single spaces).

    Known ``labels`` are tried first, longest first, so that a multi-word label such as
    ``no issue`` wins over a shorter label ``no`` and ``"no issue found"`` reads as ``no issue``.
    A known label must end at a word boundary (``B6020`` is not ``B602``). Without a known label
    at the start, the first label-like token is returned (``"B999: ..."`` -> ``b999``), so the
    details can say what the model answered. Leading quotes, markdown and an ``Answer:`` prefix
    are skipped: they are formatting, not the answer.

    :returns: the normalised label, or ``""`` when the output holds no token at all.
    """
    text = _LEADING_NOISE.sub("", output)
    text = _PREFIX.sub("", text)
    text = _LEADING_NOISE.sub("", text)
    flat = _norm_label(text)
    for label in sorted({_norm_label(x) for x in labels if x.strip()}, key=len, reverse=True):
        if flat.startswith(label):
            rest = flat[len(label) :]
            if not rest or not (rest[0].isalnum() or rest[0] == "_"):
                return label
    match = _LABEL_TOKEN.match(text)
    return match.group(0).rstrip(".-").casefold() if match else ""


class LabelMatchScorer:
    """The first label-like token of the output equals the expected label."""

    name: ClassVar[str] = "label_match"

    @frozen
    class Options:
        """:ivar labels: the label set; empty = the task pack's labels, plus every case's
        expected label (so multi-word labels are recognised even without a pack)."""

        labels: tuple[str, ...] = field(default=(), converter=tuple)

    def __init__(self, options: LabelMatchScorer.Options | None = None) -> None:
        self.options = options or self.Options()

    def _labels(self, cases: Sequence[EvalCase], ctx: StageContext | None) -> set[str]:
        labels = set(self.options.labels)
        if not labels and ctx is not None and ctx.pack is not None:
            labels.update(ctx.pack.labels)
        labels.update(case.expected for case in cases if case.expected.strip())
        return {_norm_label(x) for x in labels}

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        """Score each output: 1.0 when its leading label is the expected one, else 0.0."""
        _check_lengths(cases, outputs)
        labels = self._labels(cases, ctx)
        results = []
        for case, output in zip(cases, outputs, strict=True):
            predicted = extract_label(output, labels)
            expected = _norm_label(case.expected)
            ok = bool(expected) and predicted == expected
            if ok:
                why = f"label {predicted!r} matches"
            elif not predicted:
                why = "the output holds no label"
            elif predicted not in labels:
                why = f"answered {predicted!r}, which is not a known label; expected {expected!r}"
            else:
                why = f"answered {predicted!r}, expected {expected!r}"
            results.append(
                _result(
                    case, output, self.name, 1.0 if ok else 0.0, ok, {"predicted": predicted, "reason": why}
                )
            )
        return results


# --------------------------------------------------------------------------------------------
# regex
# --------------------------------------------------------------------------------------------

_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


class RegexScorer:
    """The output matches the regular expression given as the case's expected text."""

    name: ClassVar[str] = "regex"

    @frozen
    class Options:
        """:ivar mode: ``search`` (anywhere), ``match`` (at the start) or ``fullmatch``.
        :ivar flags: letters among ``imsx`` (ignore case, multi-line, dot-all, verbose)."""

        mode: str = "search"
        flags: str = ""

    def __init__(self, options: RegexScorer.Options | None = None) -> None:
        self.options = options or self.Options()
        if self.options.mode not in ("search", "match", "fullmatch"):
            raise DataError(
                f"mode must be search, match or fullmatch, not {self.options.mode!r}", field="mode"
            )
        unknown = set(self.options.flags) - set(_FLAGS)
        if unknown:
            raise DataError(
                f"unknown regex flags {''.join(sorted(unknown))!r}; use letters of 'imsx'", field="flags"
            )

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        """Score each output: 1.0 when the pattern matches (per ``mode``), else 0.0."""
        _check_lengths(cases, outputs)
        flags = 0
        for letter in self.options.flags:
            flags |= _FLAGS[letter]
        results = []
        for case, output in zip(cases, outputs, strict=True):
            try:
                pattern = re.compile(case.expected, flags)
            except re.error as error:
                raise DataError(
                    f"case {case.id}: expected is not a valid regular expression ({error})", field="expected"
                ) from None
            found = getattr(pattern, self.options.mode)(output.strip())
            ok = found is not None
            why = f"matched {found.group(0)!r}" if found else f"no {self.options.mode} of {case.expected!r}"
            results.append(_result(case, output, self.name, 1.0 if ok else 0.0, ok, {"reason": why}))
        return results


# --------------------------------------------------------------------------------------------
# json_schema
# --------------------------------------------------------------------------------------------


class JsonSchemaScorer:
    """The output parses as JSON and validates against a JSON Schema (case.meta["schema"] or Options)."""

    name: ClassVar[str] = "json_schema"

    @frozen
    class Options:
        """:ivar schema: the JSON Schema used when a case carries none in ``meta["schema"]``;
        with no schema anywhere, an output only has to parse."""

        schema: Mapping[str, Any] | None = None

    def __init__(self, options: JsonSchemaScorer.Options | None = None) -> None:
        self.options = options or self.Options()

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        """Score each output: 1.0 when it parses and validates, else 0.0 with the first error."""
        import jsonschema  # lazily: forge --help must not pay for it

        _check_lengths(cases, outputs)
        results = []
        for case, output in zip(cases, outputs, strict=True):
            schema = case.meta.get("schema", self.options.schema)
            if isinstance(schema, str):
                try:
                    schema = json.loads(schema)
                except json.JSONDecodeError as error:
                    raise DataError(
                        f"case {case.id}: meta.schema is not JSON ({error.msg})", field="meta.schema"
                    ) from None
            if schema is not None:
                try:
                    validator_cls = jsonschema.validators.validator_for(schema)
                    validator_cls.check_schema(schema)
                except jsonschema.SchemaError as error:
                    raise DataError(
                        f"case {case.id}: the JSON schema is invalid ({error.message})", field="meta.schema"
                    ) from None
            body = strip_code_fence(output)
            try:
                value = json.loads(body)
            except json.JSONDecodeError as error:
                why = f"not JSON: {error.msg} at line {error.lineno} column {error.colno}"
                results.append(_result(case, output, self.name, 0.0, False, {"reason": why}))
                continue
            if schema is None:
                results.append(
                    _result(case, output, self.name, 1.0, True, {"reason": "valid JSON (no schema)"})
                )
                continue
            errors = sorted(validator_cls(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
            if errors:
                first = errors[0]
                where = "/".join(str(p) for p in first.absolute_path) or "(root)"
                details = {"reason": f"{where}: {first.message}", "errors": len(errors)}
                results.append(_result(case, output, self.name, 0.0, False, details))
            else:
                results.append(
                    _result(case, output, self.name, 1.0, True, {"reason": "valid against the schema"})
                )
        return results


# --------------------------------------------------------------------------------------------
# json_match
# --------------------------------------------------------------------------------------------

_MISSING = object()


def extract_json(text: str) -> Any:
    """The first JSON value in ``text``: the whole text (or its first code fence) when it parses,
    else the first object or array that starts somewhere in it, ignoring what follows.

    Generation often runs on after the answer (``{"order": "1"} Thanks!``) or puts words before
    it (``Here it is: {...}``); the JSON value is the answer, the rest is not.

    :raises ValueError: no JSON object or array in the text.
    """
    body = strip_code_fence(text)
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", body):
        try:
            value, _ = decoder.raw_decode(body, match.start())
        except json.JSONDecodeError:
            continue
        return value
    raise ValueError("no JSON object or array in the output")


class JsonMatchScorer:
    """The output's JSON has the expected fields with the expected values (structured extraction).

    ``expected`` is JSON text. For an object, each expected key is a field: it matches when the
    output has the key with an equal value (strings after whitespace normalisation, optionally
    ignoring case; ``1`` equals ``1.0``; nested values compared the same way). The score is the
    share of fields that match, so a model that gets two of three fields right scores 0.67; the
    case passes only when all match and the output has no extra keys (unless ``allow_extra``).
    Any other expected value (a list, a string) must be equal as a whole.
    """

    name: ClassVar[str] = "json_match"

    @frozen
    class Options:
        """:ivar case_insensitive: compare strings lower-cased.
        :ivar allow_extra: keys the expected object lacks do not fail the case."""

        case_insensitive: bool = False
        allow_extra: bool = False

    def __init__(self, options: JsonMatchScorer.Options | None = None) -> None:
        self.options = options or self.Options()

    def _norm(self, value: Any) -> Any:
        if isinstance(value, str):
            text = normalise_whitespace(value)
            return text.casefold() if self.options.case_insensitive else text
        if isinstance(value, bool):
            return ("bool", value)  # True must not equal 1
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, list):
            return [self._norm(v) for v in value]
        if isinstance(value, dict):
            return {k: self._norm(v) for k, v in value.items()}
        return value

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        """Score each output: the share of expected fields it gets right; passes when all do."""
        _check_lengths(cases, outputs)
        results = []
        for case, output in zip(cases, outputs, strict=True):
            try:
                want = json.loads(case.expected)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"case {case.id}: expected is not JSON ({error.msg} at column {error.colno})",
                    field="expected",
                ) from None
            try:
                got = extract_json(output)
            except ValueError as error:
                results.append(_result(case, output, self.name, 0.0, False, {"reason": str(error)}))
                continue
            if not isinstance(want, dict):
                ok = self._norm(got) == self._norm(want)
                why = "equal" if ok else f"expected {want!r}, got {got!r}"
                results.append(_result(case, output, self.name, 1.0 if ok else 0.0, ok, {"reason": why}))
                continue
            if not isinstance(got, dict):
                why = f"expected a JSON object, got {type(got).__name__}"
                results.append(_result(case, output, self.name, 0.0, False, {"reason": why}))
                continue
            wrong = {
                key: {"expected": value, "got": got.get(key, "<missing>")}
                for key, value in want.items()
                if self._norm(got.get(key, _MISSING)) != self._norm(value)
            }
            extra = sorted(set(got) - set(want))
            matched = len(want) - len(wrong)
            score = matched / len(want) if want else float(not extra or self.options.allow_extra)
            ok = not wrong and (not extra or self.options.allow_extra)
            problems = [f"{key}: expected {v['expected']!r}, got {v['got']!r}" for key, v in wrong.items()]
            if extra and not self.options.allow_extra:
                problems.append(f"unexpected keys {', '.join(extra)}")
            details = {
                "reason": "; ".join(problems) if problems else f"all {len(want)} fields match",
                "fields": len(want),
                "matched": matched,
                "wrong": wrong,
                "extra": extra,
            }
            results.append(_result(case, output, self.name, score, ok, details))
        return results


# --------------------------------------------------------------------------------------------
# python_ast
# --------------------------------------------------------------------------------------------


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def called_names(tree: ast.AST) -> set[str]:
    """Every call target in ``tree`` as a dotted name, with import aliases resolved.

    ``import os as o; o.system(...)`` gives ``os.system``; ``from pickle import loads; loads(b)``
    gives ``pickle.loads``; ``getattr(subprocess, "run")(...)`` gives ``subprocess.run`` — an
    obfuscated spelling is still the same call.
    """
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def resolve(name: str) -> str:
        head, _, rest = name.partition(".")
        head = aliases.get(head, head)
        return f"{head}.{rest}" if rest else head

    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            isinstance(func, ast.Call)
            and _dotted(func.func) == "getattr"
            and len(func.args) >= 2
            and isinstance(func.args[1], ast.Constant)
            and isinstance(func.args[1].value, str)
        ):
            base = _dotted(func.args[0])
            if base:
                names.add(resolve(f"{base}.{func.args[1].value}"))
            continue
        dotted = _dotted(func)
        if dotted:
            names.add(resolve(dotted))
    return names


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return DANGEROUS_CALLS if value == "dangerous" else (value,)
    return tuple(str(v) for v in value)


class PythonAstScorer:
    """The output parses as Python; optional checks: must define / must call / must not call names."""

    name: ClassVar[str] = "python_ast"

    @frozen
    class Options:
        """Checks applied to every case (a case adds its own in ``meta``: ``must_define``,
        ``must_call``, ``must_not_call``; ``"dangerous"`` stands for :data:`DANGEROUS_CALLS`;
        ``*`` wildcards match, e.g. ``subprocess.*``).

        Score = share of checks passed (parsing is the first check), so a parseable answer that
        misses one requirement still ranks above garbage; ``passed`` needs every check.
        """

        must_define: tuple[str, ...] = field(default=(), converter=_names)
        must_call: tuple[str, ...] = field(default=(), converter=_names)
        must_not_call: tuple[str, ...] = field(default=(), converter=_names)

    def __init__(self, options: PythonAstScorer.Options | None = None) -> None:
        self.options = options or self.Options()

    def score(self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext) -> list[EvalResult]:
        """Parse each output (never execute it) and apply the checks."""
        _check_lengths(cases, outputs)
        results = []
        for case, output in zip(cases, outputs, strict=True):
            source = strip_code_fence(output)
            must_define = self.options.must_define + _names(case.meta.get("must_define"))
            must_call = self.options.must_call + _names(case.meta.get("must_call"))
            must_not_call = self.options.must_not_call + _names(case.meta.get("must_not_call"))
            # The forbidden calls are one check however many names they list ("dangerous" is 11).
            total = 1 + len(must_define) + len(must_call) + (1 if must_not_call else 0)
            try:
                tree = ast.parse(source)
            except (SyntaxError, ValueError) as error:
                line = getattr(error, "lineno", None)
                why = f"does not parse as Python: {getattr(error, 'msg', error)}" + (
                    f" (line {line})" if line else ""
                )
                results.append(_result(case, output, self.name, 0.0, False, {"reason": why, "checks": total}))
                continue
            defined = {
                node.name
                for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            }
            calls = called_names(tree)
            failures: list[str] = []
            failures += [f"does not define {n!r}" for n in must_define if n not in defined]
            failures += [
                f"does not call {n!r}" for n in must_call if not any(fnmatch.fnmatchcase(c, n) for c in calls)
            ]
            hits = sorted(c for c in calls if any(fnmatch.fnmatchcase(c, p) for p in must_not_call))
            if hits:
                failures.append(f"calls forbidden {', '.join(hits)}")
            passed_checks = total - len(failures)
            details = {
                "reason": "; ".join(failures) if failures else f"parses; {total - 1} checks passed",
                "checks": total,
                "failed": failures,
            }
            results.append(_result(case, output, self.name, passed_checks / total, not failures, details))
        return results


@hookimpl
def forgemind_register_scorers(register: Any) -> None:
    """Offer the built-in offline scorers."""
    for cls in (
        ExactMatchScorer,
        LabelMatchScorer,
        RegexScorer,
        JsonSchemaScorer,
        JsonMatchScorer,
        PythonAstScorer,
    ):
        register(cls)
