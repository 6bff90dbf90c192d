"""Every existing example pack gives the same data for the same seed: a pin of the first 200
generated examples of each pack and strategy, computed from the generator before linked slots,
filters, frame kinds and generator functions were added (issue 20)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from forgemind_hookspecs import GenerationPlan, StageContext

from forgemind_core.foundry.packs import load_pack
from forgemind_core.foundry.template import TemplateGenerator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

PINS = {
    "log-triage/basic": (200, "7d70cd6b9dbc4d51"),
    "log-triage/varied": (200, "0c41c6f6ffb53aa9"),
    "log-triage/mixed": (200, "39a5d0bf58e218e9"),
    "order-extraction/basic": (200, "1faf702b9ab74274"),
    "order-extraction/varied": (200, "50597021df8cd05b"),
    "order-extraction/mixed": (200, "dc65304d5a25ca65"),
    "python-security/basic": (200, "950fd30d1dc07a1e"),
    "python-security/varied": (200, "134b470f2ef8d9ec"),
    "python-security/mixed": (200, "5667ae61ee77bc71"),
    "support-tickets/basic": (200, "d3f7bada1a0b0031"),
    "support-tickets/varied": (200, "0b089489385ce869"),
    "support-tickets/mixed": (200, "a51b52a159fd545e"),
}


def digest(pack_name: str, strategy: str) -> tuple[int, str]:
    pack = load_pack(EXAMPLES / pack_name)
    plan = GenerationPlan("template", 200, strategy=strategy)
    examples = list(TemplateGenerator().generate(plan, StageContext(pack=pack, seed=7)))
    rows = [[e.prompt, e.completion, e.category, e.source.prompt_template, e.meta.get("frame")] for e in examples]
    return len(examples), hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()[:16]


@pytest.mark.parametrize("key", sorted(PINS))
def test_existing_packs_generate_the_same_data_for_the_same_seed(key: str) -> None:
    pack_name, strategy = key.split("/")
    assert digest(pack_name, strategy) == PINS[key]
