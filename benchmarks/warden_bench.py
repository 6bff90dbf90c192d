"""The Warden's throughput: Detoxify batched vs one at a time, and the rule checks on 100k examples.

1. **Detoxify**: the same model (a randomly initialised BERT of a realistic small size, built
   locally by ``forgemind_detoxify.testing.build_checkpoint`` and loaded through Detoxify's own
   loader - no download) scores the same texts one at a time (``batch_size: 1``) and in batches
   (``batch_size: 32``); the ratio is the batching speed-up.
2. **Rule checks**: the built-in ``safety`` filter (deny regexes, PII and secrets, AST checks of
   fenced code) on 100k synthetic examples (10% with code, 3% with PII or secrets, 1% denied),
   beside the kernel's cheapest filter (``rules``: lengths and characters) on the same data as
   the baseline.

    .venv/bin/python benchmarks/warden_bench.py [--texts 256] [--examples 100000] [--hidden 256 --layers 4]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from forgemind_hookspecs import Example, StageContext

from forgemind_core.foundry.filters import Rules
from forgemind_core.warden.policy import parse_policy
from forgemind_core.warden.safety import SafetyFilter

WORDS = ("the service returns a value when the input is valid and logs an error otherwise so that callers "
         "can retry the request later with a smaller batch of items from the queue").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60))) for _ in range(n)]


def bench_detoxify(n: int, hidden: int, layers: int) -> None:
    from forgemind_detoxify import load_model, score_texts
    from forgemind_detoxify.testing import build_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, folder = build_checkpoint(tmp, random=True, hidden=hidden, layers=layers, heads=4,
                                              vocab=[f"tok{i}" for i in range(2000)] + WORDS)
        model = load_model(checkpoint=str(checkpoint), config_dir=str(folder))
        params = sum(p.numel() for p in model.model.parameters())
        texts = sentences(n)
        score_texts(model, texts[:8], 8)  # warm-up
        timings = {}
        for batch in (1, 32):
            started = time.perf_counter()
            score_texts(model, texts, batch)
            timings[batch] = time.perf_counter() - started
    one, batched = n / timings[1], n / timings[32]
    print(f"detoxify ({params / 1e6:.1f}M-parameter BERT, {hidden} hidden, {layers} layers; {n} texts of 8-60 words)")
    print(f"  one at a time: {one:8.1f} texts/s   ({timings[1]:.2f} s)")
    print(f"  batches of 32: {batched:8.1f} texts/s   ({timings[32]:.2f} s)")
    print(f"  batched / one at a time: {batched / one:.1f}x")


def corpus(n: int, seed: int = 1) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 40)))
        completion = " " + rng.choice(("ok", "no issue", "B602", "B105"))
        roll = rng.random()
        if roll < 0.05:
            completion += f"\n```python\ndef f{i}(x):\n    return x + {i}\n```"
        elif roll < 0.08:
            completion += f"\n```python\nimport subprocess\nsubprocess.run(cmd{i}, shell=True)\n```"
        elif roll < 0.10:
            completion += f"\n```python\ndef broken{i}(:\n```"
        elif roll < 0.12:
            prompt += f" contact user{i}@corp{i % 50}.com"
        elif roll < 0.13:
            prompt += " key AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(16))
        elif roll < 0.14:
            prompt += " buy crypto now"
        out.append(Example(prompt=prompt, completion=completion, category="x"))
    return out


def bench_rules(n: int) -> None:
    examples = corpus(n)
    policy = parse_policy({"deny": [{"pattern": "(?i)buy crypto", "name": "spam"}]})
    ctx = StageContext(policy=policy)
    rows = []
    for label, filt in (("rules (baseline)", Rules(Rules.Options(check_labels=False))),
                        ("safety: regex only", SafetyFilter(SafetyFilter.Options(code=False))),
                        ("safety: full", SafetyFilter())):
        started = time.perf_counter()
        verdicts = filt.filter(examples, ctx)
        seconds = time.perf_counter() - started
        rows.append((label, seconds, sum(not v.keep for v in verdicts)))
    base = rows[0][1]
    print(f"rule checks on {n:,} examples")
    for label, seconds, dropped in rows:
        print(f"  {label:20s} {n / seconds:10,.0f} examples/s  ({seconds:.2f} s, dropped {dropped:,})  "
              f"{seconds / base:.1f}x the baseline's time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--skip-detoxify", action="store_true")
    args = parser.parse_args()
    bench_rules(args.examples)
    if not args.skip_detoxify:
        bench_detoxify(args.texts, args.hidden, args.layers)


if __name__ == "__main__":
    main()
