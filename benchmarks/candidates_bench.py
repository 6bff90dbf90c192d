"""K candidates on the local executor: one after another (workers=1) vs in parallel (workers=2),
side by side on the same machine.

    python benchmarks/candidates_bench.py [--candidates 4] [--steps 60] [--workers 2]

Each candidate is a tiny real training: a 2-layer Llama-architecture model (hidden 128, vocab 512,
built from its config, no download) trained for ``--steps`` optimiser steps of batch 8 x 64 tokens
on CPU with its own learning rate, as the ``search.space`` of a goal would vary it. The work is
handed to ``LocalExecutor.map`` exactly as the loop hands it candidate jobs, so the measured ratio
includes spawning workers, importing torch in each, and the thread share each worker gets
(``cpu_count // workers``). Prints the wall time of each mode, the ratio, and each candidate's
final loss (the same in both modes: the work is the same).
"""

from __future__ import annotations

import argparse
import os
import time

from forgemind_hookspecs import StageContext

from forgemind_core.brain.planners import LocalExecutor


def train_candidate(job: tuple[int, float, int]) -> dict[str, float]:
    """One candidate: a tiny causal LM trained for ``steps`` steps at ``learning_rate``."""
    seed, learning_rate, steps = job
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    threads = os.environ.get("FORGEMIND_WORKER_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    data = torch.randint(0, 64, (steps, 8, 64))  # a small alphabet, so the loss can fall
    loss = torch.tensor(0.0)
    for step in range(steps):
        batch = data[step]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    return {"learning_rate": learning_rate, "loss": loss.item(), "threads": float(torch.get_num_threads())}


def measure(workers: int, jobs: list[tuple[int, float, int]]) -> tuple[float, list[dict[str, float]]]:
    executor = LocalExecutor(LocalExecutor.Options(workers=workers))
    started = time.perf_counter()
    results = executor.map(train_candidate, jobs, StageContext())
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rates = [1e-3, 3e-3, 1e-2, 3e-4, 2e-3, 5e-3, 7e-4, 4e-3]
    jobs = [(k, rates[k % len(rates)], args.steps) for k in range(args.candidates)]
    print(f"{args.candidates} candidates x {args.steps} steps, {os.cpu_count()} CPUs")
    seq_s, seq = measure(1, jobs)
    par_s, par = measure(args.workers, jobs)
    print(f"{'mode':<28}{'wall s':>10}{'ratio':>10}")
    print(f"{'sequential (workers=1)':<28}{seq_s:>10.1f}{1.0:>10.2f}")
    print(f"{f'parallel (workers={args.workers})':<28}{par_s:>10.1f}{seq_s / par_s:>10.2f}  (speed-up)")
    print(f"threads per worker: sequential {seq[0]['threads']:.0f}, parallel {par[0]['threads']:.0f}")
    for a, b in zip(seq, par, strict=True):
        print(f"  lr {a['learning_rate']:<8g} final loss sequential {a['loss']:.3f}  parallel {b['loss']:.3f}")


if __name__ == "__main__":
    main()
