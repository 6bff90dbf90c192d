"""Generation throughput of a real LLM teacher: SmolLM2-135M-Instruct served by llama-cpp-python's
server, through the ``openai`` generator, at concurrency 1, 2 and 4, against the one-request
ceiling measured side by side.

Every configuration sends the same requests (same seed, so llama.cpp writes the same answers).
The ceiling replays exactly those request bodies (the grammar-constrained response format
included) one at a time through the bare ``openai`` client, each request alone on the server:
their completion tokens per second is what the server gives one request. The server
answers one request at a time, so the ideal for the generator at any concurrency is 1.0 x that
ceiling; the ratios say what concurrency buys (overlapping the client's share of each request
with the server's work) and what it costs. Rounds interleave the configurations (c=1, c=2, c=4,
ceiling, c=1, ...) so that a change of load hits all of them alike; medians are reported.

Beside it: the same bodies replayed with no response format, because the grammar that keeps a
135M model's answer in the schema is most of what a request costs on this server.

    .venv/bin/python benchmarks/teacher_bench.py [--requests 6] [--rounds 2] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from forgemind_hookspecs import GenerationPlan, PromptTemplate, StageContext, TaskPack
from forgemind_openai import OpenAIGenerator
from forgemind_openai.client import LLMEngine
from forgemind_openai.testing import llama_cpp_missing, llama_cpp_server

MODEL = "smollm2-135m-instruct"
QUEUES = {
    "billing": "Write a customer support ticket about a wrong charge, a refund or an invoice.",
    "outage": "Write a customer support ticket reporting that the service is down or very slow.",
    "login": "Write a customer support ticket from someone who cannot sign in to their account.",
    "shipping": "Write a customer support ticket about a parcel that is late, lost or damaged.",
}
PACK = TaskPack(root=".", name="tickets", task="Route customer support tickets to the right queue.",
                labels=tuple(QUEUES), prompt_format="Ticket:\n{input}\nQueue:",
                templates=tuple(PromptTemplate(q, q, "", instruction=i) for q, i in QUEUES.items()))


def context(cache: Path, seed: int, sink: list[tuple[str, dict[str, Any]]]) -> StageContext:
    return StageContext(cache_dir=cache, pack=PACK, seed=seed, emit=lambda kind, p: sink.append((kind, dict(p))))


def generator_run(base_url: str, requests: int, concurrency: int, max_tokens: int, seed: int) -> dict[str, float]:
    """``requests`` one-example calls through the generator (cache off: every call is made)."""
    sink: list[tuple[str, dict[str, Any]]] = []
    gen = OpenAIGenerator(OpenAIGenerator.Options(
        base_url=base_url, model=MODEL, examples_per_call=1, max_tokens=max_tokens, temperature=0.8,
        concurrency=concurrency, cache=False, max_calls_factor=1.0))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        examples = list(gen.generate(GenerationPlan("openai", requests), context(Path(tmp), seed, sink)))
        wall = time.perf_counter() - start
    metric = {p["name"]: p["value"] for kind, p in sink if kind == "metric"}
    calls, tokens = metric["generate.calls"], metric["generate.completion_tokens"]
    reasons = [p["reason"][:70] for kind, p in sink if kind == "generation.rejected"]
    return {"wall_s": wall, "calls": calls, "examples": len(examples), "completion_tokens": tokens,
            "tokens_per_s": tokens / wall, "requests_per_s": calls / wall, "rejected": metric["generate.rejected"],
            "reasons": reasons}


RECORDED: list[dict[str, Any]] = []


def record_bodies() -> None:
    """Keep every request body the generator's engine sends (for the ceiling's replay)."""
    original = LLMEngine.call

    async def call(self: LLMEngine, body: Any) -> Any:
        RECORDED.append(dict(body))
        return await original(self, body)

    LLMEngine.call = call  # type: ignore[method-assign]


def replay(base_url: str, bodies: list[dict[str, Any]], response_format: str) -> dict[str, float]:
    """``bodies`` one at a time, each alone on the server, through the bare ``openai`` client
    (``schema``: as the generator sent them, llama.cpp's grammar; ``none``: no response format)."""
    import openai

    sink: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = LLMEngine(OpenAIGenerator.Options(base_url=base_url, dialect="llamacpp"),
                           context(Path(tmp), 0, sink), what="bench")
    client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=900)
    wall = 0.0
    tokens = 0
    for body in bodies:
        sent = engine.wire(body)
        if response_format == "none":
            sent.pop("response_format", None)
        start = time.perf_counter()
        answer = client.chat.completions.create(**sent)
        wall += time.perf_counter() - start
        tokens += answer.usage.completion_tokens if answer.usage else 0
    return {"wall_s": wall, "completion_tokens": tokens, "tokens_per_s": tokens / wall,
            "requests_per_s": len(bodies) / wall}


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6, help="generator calls per configuration and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    missing = llama_cpp_missing(MODEL)
    if missing:
        raise SystemExit(missing)
    load_before = os.getloadavg()
    record_bodies()
    ceiling: list[dict[str, float]] = []
    no_grammar: list[dict[str, float]] = []
    runs: dict[int, list[dict[str, float]]] = {c: [] for c in args.concurrency}
    with tempfile.TemporaryDirectory() as tmp, llama_cpp_server(Path(tmp) / "server.log", MODEL) as server:
        generator_run(server.base_url, 1, 1, 8, seed=999)  # warm-up: imports, the first prompt and grammar
        for r in range(args.rounds):
            for c in args.concurrency:  # the same seed: the same requests (and answers) at every concurrency
                RECORDED.clear()
                runs[c].append(generator_run(server.base_url, args.requests, c, args.max_tokens, seed=r))
            bodies = list(RECORDED)
            ceiling.append(replay(server.base_url, bodies, "schema"))
            no_grammar.append(replay(server.base_url, bodies, "none"))
    load_after = os.getloadavg()
    top = median(ceiling, "tokens_per_s")
    result = {
        "machine": {"cpus": os.cpu_count(), "server_threads": 2,
                    "load_1min_before": round(load_before[0], 2), "load_1min_after": round(load_after[0], 2)},
        "requests_per_configuration": args.requests, "rounds": args.rounds, "max_tokens": args.max_tokens,
        "ceiling": {"tokens_per_s": round(top, 2), "requests_per_s": round(median(ceiling, "requests_per_s"), 3)},
        "no_response_format": {"tokens_per_s": round(median(no_grammar, "tokens_per_s"), 2),
                               "requests_per_s": round(median(no_grammar, "requests_per_s"), 3)},
        "generator": {c: {"tokens_per_s": round(median(rows, "tokens_per_s"), 2),
                          "requests_per_s": round(median(rows, "requests_per_s"), 3),
                          "ratio_to_ceiling": round(median(rows, "tokens_per_s") / top, 3),
                          "examples": sum(int(x["examples"]) for x in rows),
                          "rejected": sum(int(x["rejected"]) for x in rows),
                          "rejection_reasons": sorted({r for x in rows for r in x["reasons"]})}
                      for c, rows in runs.items()},
    }
    print(json.dumps(result, indent=1))
    print(f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs; "
          f"the same requests one at a time, alone: {top:.1f} completion tokens/s "
          f"({result['no_response_format']['tokens_per_s']:.1f} with no response format, no grammar)")
    for c, row in result["generator"].items():
        print(f"concurrency {c}: {row['tokens_per_s']:.1f} tokens/s, {row['requests_per_s']:.3f} requests/s, "
              f"{row['ratio_to_ceiling']:.2f} x the one-request ceiling")


if __name__ == "__main__":
    main()
