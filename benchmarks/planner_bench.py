"""The default planner against the fixed schedule, side by side, on the example packs.

    python benchmarks/planner_bench.py [--packs python-security log-triage support-tickets] [--home DIR]

By default the packs are python-security (the quickstart) and log-triage, the two whose loops reach
their goals. For each pack runs `benchmarks/quickstart_bench.py` twice, one run after the other (never at the
same time: the runs share the CPU and cost is measured as training time): once with the goal's own
planner section (the default planner) and once with a copy whose planner is the fixed schedule
(data doubled each iteration, no targeting, no strategy or hyper-parameter changes), started with
the same number of examples and the same strategy as the default planner's first try. Prints per
pack and planner the outcome, the full-tier score per iteration, the final full score, the
iterations run, the training compute (tokens fine-tuning processed), the measured cost and the
wall time, then whether the default planner won or tied on final full score at lower or equal
compute. (The measured $ is wall time x price: a run that overlapped other work looks dearer.)

The pre-trained tiny base is shared through each run's home (`<home>/<pack>-<planner>/cache/bases`,
copied from `--base-cache` or from the first run), so only the first run pays for pre-training.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "quickstart_bench.py"


def goal_for(goal: Path, planner: str, home: Path, factor: float = 2.0) -> Path:
    """The goal file as it is (default planner), or a copy whose planner line is the fixed schedule,
    started where the default planner starts: the same first size and the same first strategy (the
    first rung of its `strategies` ladder), so the comparison measures what the planner changes."""
    if planner == "default":
        return goal
    text = goal.read_text()
    line = re.search(r"^planner:.*$", text, flags=re.M)
    initial = re.search(r"initial_examples:\s*(\d+)", line.group(0)) if line else None
    first = re.search(r"strategies:\s*\[\s*([\w-]+)", line.group(0)) if line else None
    options = f", initial_examples: {initial.group(1)}" if initial else ""
    options += f", strategy: {first.group(1)}" if first else ""
    options += f", factor: {factor}"
    fixed = f"planner: {{backend: {planner}{options}}}"
    text = text[: line.start()] + fixed + text[line.end():] if line else text + f"\n{fixed}\n"
    copy = home / f"goal-{planner}.yaml"
    copy.write_text(text.replace("pack: .", f"pack: {goal.parent}"))
    return copy


def run_one(goal: Path, planner: str, home: Path, base_cache: Path | None, factor: float = 2.0) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    if base_cache is not None and base_cache.exists() and not (home / "cache" / "bases").exists():
        shutil.copytree(base_cache, home / "cache" / "bases")
    # quickstart_bench's own --planner swaps only a bare `planner: {backend: default}` line, so the
    # goal is rewritten here and the bench runs it as written.
    proc = subprocess.run([sys.executable, str(BENCH), "--goal", str(goal_for(goal, planner, home, factor)),
                           "--home", str(home)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"planner": planner, "error": proc.stderr[-2000:] or proc.stdout[-2000:]}
    print(f"[{planner}] " + proc.stdout.rsplit("\n", 2)[0], flush=True)  # the per-iteration table
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "planner": planner}


def final_text(row: dict, missing: str) -> str:
    """The run's final full-tier score, or ``missing`` when its full tier never ran (canary red)."""
    return f"{row['final_full']:.0%}" if row["final_full"] is not None else missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", nargs="+", default=["python-security", "log-triage"])
    parser.add_argument("--home", help="folder for the runs' homes (default: a fresh temporary folder)")
    parser.add_argument("--base-cache", help="a cache/bases folder holding the pre-trained tiny base",
                        default=str(ROOT / ".forgemind" / "cache" / "bases"))
    parser.add_argument("--fixed-factor", type=float, default=2.0,
                        help="growth of the fixed schedule's new data per iteration (2.0 doubles it); raise it to give "
                             "the fixed schedule at least the default planner's training compute")
    parser.add_argument("--planners", nargs="+", choices=["default", "fixed"], default=["default", "fixed"],
                        help="run only these (e.g. only fixed, at another --fixed-factor)")
    args = parser.parse_args()

    root = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="forgemind-planner-bench-"))
    base_cache: Path | None = Path(args.base_cache) if args.base_cache else None
    rows = []
    for pack in args.packs:
        goal = ROOT / "examples" / pack / "goal.yaml"
        for planner in args.planners:
            home = root / f"{pack}-{planner}"
            result = run_one(goal, planner, home, base_cache, args.fixed_factor)
            if base_cache is None or not base_cache.exists():
                base_cache = home / "cache" / "bases"
            rows.append({"pack": pack, **result})

    print()
    header = (f"{'pack':<16} {'planner':<8} {'outcome':<9} {'iters':>5} {'full per iteration':<22} {'final':>6} "
              f"{'train tokens':>12} {'cost $':>8} {'wall s':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row:
            print(f"{row['pack']:<16} {row['planner']:<8} error: {row['error'].strip().splitlines()[-1][:80]}")
            continue
        fulls = " ".join(f"{f:.0%}" for f in row["full_scores"]) or "-"
        final = final_text(row, "-")
        print(f"{row['pack']:<16} {row['planner']:<8} {row['outcome']:<9} {row['iterations']:>5} {fulls:<22} "
              f"{final:>6} {row['train_tokens']:>12,} {row['cost_usd']:>8.4f} {row['wall_s']:>7.0f}")
    print()
    verdicts = {}
    for pack in args.packs:
        by = {r["planner"]: r for r in rows if r["pack"] == pack and "error" not in r}
        if set(by) != {"default", "fixed"}:
            verdicts[pack] = "incomplete"
            continue
        d, f = by["default"], by["fixed"]
        score_ok = (d["final_full"] or 0.0) >= (f["final_full"] or 0.0)
        # Cost is compute: the tokens fine-tuning processed. The measured $ follows wall time, which
        # another process on the machine inflates for whichever run it overlapped.
        cost_ok = d["train_tokens"] <= f["train_tokens"]
        better = (d["final_full"] or 0.0) > (f["final_full"] or 0.0)
        verdicts[pack] = "default wins or ties" if score_ok and cost_ok else (
            f"default scores {'higher' if better else 'the same' if score_ok else 'lower'} "
            f"at {'lower or equal' if cost_ok else 'higher'} training compute")
        print(f"{pack}: final full {final_text(d, 'none (canary never green)')} (default) vs "
              f"{final_text(f, 'none (canary never green)')} (fixed); "
              f"training {d['train_tokens']:,} vs {f['train_tokens']:,} tokens "
              f"(measured ${d['cost_usd']:.4f} vs ${f['cost_usd']:.4f}) -> {verdicts[pack]}")
    print(json.dumps({"rows": rows, "verdicts": verdicts}))


if __name__ == "__main__":
    main()
