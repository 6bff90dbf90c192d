"""Generation throughput of the ``openai`` generator against the test server.

The server (``python -m forgemind_openai.testing``, its own process, so that it does not share
the client's interpreter lock) answers every call after 50 ms. With 32 calls in flight the ideal
is 32 / 0.05 s = 640 calls/s; we report the measured rate as a ratio to that ideal (target
>= 0.8) and to a sequential client (concurrency 1) run side by side on the same server. One
example per call, response cache on (a fresh folder), so the cache writes are part of the
measured path.

Beside the rates it reports where the CPU goes: the client's and the server's CPU milliseconds
per call during the concurrent run, the generator's ceiling (the same run against a server with
no latency) and the floor set by the ``openai`` client alone (the same client configuration,
bare ``POST``s with nothing of ours around them, against that server). On a 2-core machine the
client has one core: 1000 / client CPU ms per call is the most it can do.

    .venv/bin/python benchmarks/generation_bench.py [--calls 1920] [--latency 0.05] [--concurrency 32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from forgemind_hookspecs import GenerationPlan, PromptTemplate, StageContext, TaskPack
from forgemind_openai import OpenAIGenerator
from forgemind_openai.client import new_event_loop

PACK = TaskPack(root=".", name="bench", task="bench", labels=("a", "b"), prompt_format="{input}",
                templates=(PromptTemplate("ta", "a", "", instruction="a"), PromptTemplate("tb", "b", "", instruction="b")))


class Server:
    """The test server in its own process, with its CPU time readable."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "forgemind_openai.testing", "--latency", str(latency)],
                                     stdout=subprocess.PIPE, text=True)
        self.base_url = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def measure(server: Server, calls: int, concurrency: int, seed: int) -> dict[str, float]:
    """Calls/s and client/server CPU ms per call for ``calls`` one-example generator calls."""
    with tempfile.TemporaryDirectory() as cache:
        ctx = StageContext(cache_dir=Path(cache), pack=PACK, seed=seed)
        gen = OpenAIGenerator(OpenAIGenerator.Options(base_url=server.base_url, model="bench", examples_per_call=1,
                                                      concurrency=concurrency))
        cpu, server_cpu, start = time.process_time(), server.cpu(), time.perf_counter()
        n = sum(1 for _ in gen.generate(GenerationPlan("openai", calls), ctx))
        elapsed = time.perf_counter() - start
        cpu, server_cpu = time.process_time() - cpu, server.cpu() - server_cpu
    assert n == calls, (n, calls)
    return {"calls_per_s": calls / elapsed, "client_cpu_ms": 1000 * cpu / calls, "server_cpu_ms": 1000 * server_cpu / calls}


def bare_client(server: Server, calls: int, concurrency: int) -> dict[str, float]:
    """The ``openai`` client alone, configured as the generator configures it (aiohttp transport,
    a pool of ``concurrency`` connections, its generic POST, the same event loop)."""
    import httpx2
    import openai
    from openai.types.chat import ChatCompletion

    schema = OpenAIGenerator._schema(labelled=True)

    def body(i: int) -> dict[str, Any]:
        return {"model": "bench", "messages": [{"role": "user", "content": f"Write 1 example {i}"}],
                "max_tokens": 1024, "seed": i,
                "response_format": {"type": "json_schema", "json_schema": {"name": "examples", "schema": schema,
                                                                           "strict": True}}}

    async def run() -> dict[str, float]:
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = openai.AsyncOpenAI(api_key="bench", base_url=server.base_url, max_retries=0,
                                    http_client=openai.DefaultAioHttpClient(limits=limits))
        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with slots:
                await client.post("/chat/completions", body=body(i), cast_to=ChatCompletion)

        await asyncio.gather(*(one(i) for i in range(concurrency)))  # connections
        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        await client.close()
        return {"calls_per_s": calls / elapsed, "client_cpu_ms": 1000 * cpu / calls}

    loop = new_event_loop()
    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1920)
    parser.add_argument("--sequential-calls", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="concurrent runs; the best is reported, with the spread")
    args = parser.parse_args()
    slow, instant = Server(args.latency), Server(0.0)
    try:
        measure(slow, 64, args.concurrency, seed=99)  # warm-up: imports, first connections
        sequential = measure(slow, args.sequential_calls, 1, seed=1)
        runs = [measure(slow, args.calls, args.concurrency, seed=2 + i) for i in range(args.repeat)]
        # the same generator against a server with no latency: what this machine's CPU allows
        ceiling = measure(instant, args.calls, args.concurrency, seed=50)
        floor = bare_client(instant, args.calls, args.concurrency)
    finally:
        slow.stop()
        instant.stop()
    ideal = args.concurrency / args.latency
    best = max(runs, key=lambda r: r["calls_per_s"])
    rates = [r["calls_per_s"] for r in runs]
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    print(json.dumps({
        "latency_s": args.latency, "concurrency": args.concurrency, "calls": args.calls, "event_loop": loop,
        "cpu_count": psutil.cpu_count(), "load_average_1min": round(psutil.getloadavg()[0], 2),
        "ideal_calls_per_s": round(ideal, 1), "sequential_calls_per_s": round(sequential["calls_per_s"], 1),
        "concurrent_calls_per_s": round(best["calls_per_s"], 1),
        "concurrent_runs_calls_per_s": [round(r, 1) for r in rates],
        "spread_pct": round(100 * (max(rates) - min(rates)) / statistics.median(rates), 1),
        "ratio_to_ideal": round(best["calls_per_s"] / ideal, 3),
        "speedup_over_sequential": round(best["calls_per_s"] / sequential["calls_per_s"], 2),
        "target_ratio_to_ideal": 0.8,
        "client_cpu_ms_per_call": round(best["client_cpu_ms"], 3),
        "server_cpu_ms_per_call": round(best["server_cpu_ms"], 3),
        "cpu_ceiling_calls_per_s": round(ceiling["calls_per_s"], 1),
        "ceiling_client_cpu_ms_per_call": round(ceiling["client_cpu_ms"], 3),
        "ratio_to_min_ideal_and_ceiling": round(best["calls_per_s"] / min(ideal, ceiling["calls_per_s"]), 3),
        "openai_client_alone_calls_per_s": round(floor["calls_per_s"], 1),
        "openai_client_alone_cpu_ms_per_call": round(floor["client_cpu_ms"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
