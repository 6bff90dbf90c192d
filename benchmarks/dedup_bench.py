"""Near-duplicate removal (the ``dedupe`` filter) at 10k and 100k examples.

Synthetic code-like examples: a vocabulary-drawn body per example, with 20% of examples being a
one-token edit of an earlier one (near-duplicates) and 5% exact copies (case/space changed).
Half of each size is passed as the run's history and half as the new batch, so the history
index and the batch path are both measured. Target: 10x the data costs at most 12x the time.

    .venv/bin/python benchmarks/dedup_bench.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Iterator, Sequence

from forgemind_hookspecs import EvalCase, Example, StageContext

from forgemind_core.foundry.filters import Dedupe

WORDS = [f"w{i}" for i in range(5000)] + ["(", ")", "=", ":", "return", "def", "if", "for", "in", "."]


class History:
    def __init__(self, kept: Sequence[Example]) -> None:
        self.kept = kept

    def kept_examples(self) -> Iterator[Example]:
        return iter(self.kept)

    def eval_cases(self) -> Sequence[EvalCase]:
        return ()


def corpus(n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        r = rng.random()
        if texts and r < 0.2:
            tokens = rng.choice(texts).split(" ")
            tokens[rng.randrange(len(tokens))] = rng.choice(WORDS)
            texts.append(" ".join(tokens))
        elif texts and r < 0.25:
            texts.append(rng.choice(texts).upper() + "  ")
        else:
            texts.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 60))))
    return [Example(prompt=t, completion=" label") for t in texts]


def measure(n: int) -> dict[str, float]:
    examples = corpus(n)
    half = n // 2
    ctx = StageContext(history=History(examples[:half]))
    start = time.perf_counter()
    verdicts = Dedupe().filter(examples[half:], ctx)
    seconds = time.perf_counter() - start
    dropped = sum(not v.keep for v in verdicts)
    return {"examples": n, "seconds": round(seconds, 2), "dropped": dropped,
            "near": sum(v.rule == "near_duplicate" for v in verdicts),
            "exact": sum(v.rule == "exact" for v in verdicts),
            "us_per_example": round(seconds / n * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    measure(1000)  # warm-up: imports
    rows = [measure(n) for n in args.sizes]
    out: dict[str, object] = {"runs": rows}
    if len(rows) >= 2:
        out["time_growth"] = round(rows[-1]["seconds"] / rows[0]["seconds"], 2)
        out["data_growth"] = rows[-1]["examples"] / rows[0]["examples"]
        out["target_time_growth_at_most"] = 12.0
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
