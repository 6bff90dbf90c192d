"""The perturb adversary on structured-extraction cases: values the expected JSON copies from the
input survive every text perturbation, so a derived case's answer stays right."""

from __future__ import annotations

import json

from forgemind_hookspecs import EvalCase, StageContext

from forgemind_core.trials.adversary import TEXT_PERTURBATIONS, PerturbAdversary

CASES = [
    EvalCase(
        input=f"Hello, order {order} never arrived. Please write to {email} - thanks, Anna",
        expected=json.dumps({"order": order, "email": email}),
        tier="full",
        category="both",
        checker="json_match",
    )
    for order, email in [
        ("ORD-48213", "Anna.Kowalski@Example.com"),
        ("77120", "tom.brandt@mailbox.org"),
        ("Ab-1093x", "priya.nair@outlook.com"),
        ("5521", "zoe.ward@gmail.com"),
    ]
]


def test_text_perturbations_leave_copied_values_as_written() -> None:
    derived = PerturbAdversary(PerturbAdversary.Options(kinds=TEXT_PERTURBATIONS, seed=3, rounds=6)).perturb(
        CASES, 40, StageContext(seed=3)
    )
    kinds = {case.meta["perturbation"] for case in derived}
    assert kinds == set(TEXT_PERTURBATIONS)
    for case in derived:
        source = next(c for c in CASES if c.id == case.meta["derived_from"])
        assert case.input != source.input and "\x00" not in case.input
        for value in json.loads(case.expected).values():
            assert value in case.input  # exactly as written: no swapped letters, no case change


def test_label_cases_are_perturbed_as_before() -> None:
    """A label (not JSON) protects only its own words, as documented; casing still changes everything."""
    case = EvalCase(input="Please refund my order, the blender broke", expected="refund", tier="full")
    derived = PerturbAdversary(PerturbAdversary.Options(kinds=("casing",), seed=1)).perturb([case], 1, StageContext(seed=1))
    assert derived and derived[0].input != case.input
    assert derived[0].input.casefold() == case.input.casefold()
