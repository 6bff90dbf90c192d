"""The JSON scorers of the Trial Grounds (see :mod:`forgemind_core.trials.scorers`).

- ``json_schema``: the output is JSON and validates against a JSON Schema.
- ``json_match``: the output's JSON object has the expected fields with the expected values
  (structured extraction); the score is the share of fields that match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from attrs import frozen
from forgemind_hookspecs import DataError, EvalCase, EvalResult, StageContext

from forgemind_core.trials.scoring import check_lengths, normalise_whitespace, scored, strip_code_fence

__all__ = ["JsonMatchScorer", "JsonSchemaScorer", "extract_json"]


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

        check_lengths(cases, outputs)
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
                results.append(scored(case, output, self.name, 0.0, False, {"reason": why}))
                continue
            if schema is None:
                results.append(
                    scored(case, output, self.name, 1.0, True, {"reason": "valid JSON (no schema)"})
                )
                continue
            errors = sorted(validator_cls(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
            if errors:
                first = errors[0]
                where = "/".join(str(p) for p in first.absolute_path) or "(root)"
                details = {"reason": f"{where}: {first.message}", "errors": len(errors)}
                results.append(scored(case, output, self.name, 0.0, False, details))
            else:
                results.append(
                    scored(case, output, self.name, 1.0, True, {"reason": "valid against the schema"})
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
        check_lengths(cases, outputs)
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
                results.append(scored(case, output, self.name, 0.0, False, {"reason": str(error)}))
                continue
            if not isinstance(want, dict):
                ok = self._norm(got) == self._norm(want)
                why = "equal" if ok else f"expected {want!r}, got {got!r}"
                results.append(scored(case, output, self.name, 1.0 if ok else 0.0, ok, {"reason": why}))
                continue
            if not isinstance(got, dict):
                why = f"expected a JSON object, got {type(got).__name__}"
                results.append(scored(case, output, self.name, 0.0, False, {"reason": why}))
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
            results.append(scored(case, output, self.name, score, ok, details))
        return results
