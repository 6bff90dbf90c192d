"""Generation throughput of the ``openai`` generator against the test server.

The server (``python -m forgemind_openai.testing``, its own process) answers every call after
50 ms. With 32 calls in flight the ideal is 32 / 0.05 s = 640 calls/s; we report the measured
rate as a ratio to that ideal (target >= 0.8) and to a sequential client (concurrency 1) run
side by side on the same server. A third run against a zero-latency server measures the
client's CPU ceiling on this machine (the openai client costs milliseconds of CPU per call), so
the report also gives the ratio to min(ideal, ceiling). One example per call, response cache on (a fresh folder), so
the cache writes are part of the measured path.

    .venv/bin/python benchmarks/generation_bench.py [--calls 640] [--latency 0.05] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forgemind_hookspecs import GenerationPlan, PromptTemplate, StageContext, TaskPack
from forgemind_openai import OpenAIGenerator

PACK = TaskPack(root=".", name="bench", task="bench", labels=("a", "b"), prompt_format="{input}",
                templates=(PromptTemplate("ta", "a", "", instruction="a"), PromptTemplate("tb", "b", "", instruction="b")))


def rate(base_url: str, calls: int, concurrency: int, seed: int) -> float:
    """Calls per second for ``calls`` one-example calls at ``concurrency``."""
    with tempfile.TemporaryDirectory() as cache:
        ctx = StageContext(cache_dir=Path(cache), pack=PACK, seed=seed)
        gen = OpenAIGenerator(OpenAIGenerator.Options(base_url=base_url, model="bench", examples_per_call=1,
                                                      concurrency=concurrency))
        start = time.perf_counter()
        n = sum(1 for _ in gen.generate(GenerationPlan("openai", calls), ctx))
        elapsed = time.perf_counter() - start
    assert n == calls, (n, calls)
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=640)
    parser.add_argument("--sequential-calls", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    servers = [subprocess.Popen([sys.executable, "-m", "forgemind_openai.testing", "--latency", str(latency)],
                                stdout=subprocess.PIPE, text=True) for latency in (args.latency, 0.0)]
    try:
        base_url, instant_url = (s.stdout.readline().strip() for s in servers)  # type: ignore[union-attr]
        rate(base_url, 32, args.concurrency, seed=99)  # warm-up: imports, connections
        sequential = rate(base_url, args.sequential_calls, 1, seed=1)
        concurrent = rate(base_url, args.calls, args.concurrency, seed=2)
        # the same client against a server with no latency: what this machine's CPU allows
        ceiling = rate(instant_url, args.calls, args.concurrency, seed=3)
    finally:
        for server in servers:
            server.kill()
            server.wait()
    ideal = args.concurrency / args.latency
    print(json.dumps({
        "latency_s": args.latency, "concurrency": args.concurrency, "calls": args.calls,
        "ideal_calls_per_s": round(ideal, 1), "sequential_calls_per_s": round(sequential, 1),
        "concurrent_calls_per_s": round(concurrent, 1),
        "ratio_to_ideal": round(concurrent / ideal, 3), "speedup_over_sequential": round(concurrent / sequential, 2),
        "target_ratio_to_ideal": 0.8,
        "cpu_ceiling_calls_per_s": round(ceiling, 1),
        "ratio_to_min_ideal_and_ceiling": round(concurrent / min(ideal, ceiling), 3),
        "client_cpu_ms_per_call": round(1000 / ceiling, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
