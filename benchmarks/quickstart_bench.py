"""The offline quickstart, measured: per-iteration scores, wall time and peak memory.

    python benchmarks/quickstart_bench.py [--goal examples/python-security/goal.yaml] [--home DIR]
                                         [--planner default|fixed] [--fresh-base]

Runs `forge run GOAL --json` in a child process (a fresh home unless --home is given; the tiny
base is reused from the shared cache unless --fresh-base) and prints, per iteration, the data
counts and the canary/full/adversarial scores, then the outcome, wall time and the peak resident
memory of the run (the child and its children). Cost is shown two ways: the run's own `cost_usd`
(measured training time x the CPU price, so it grows when something else loads the machine) and the
tokens fine-tuning processed (the compute itself, the same however loaded the machine was).
Targets (issue 9): goal met within 3 iterations, full-tier score rising every iteration, under 10
minutes and under 4 GiB on a 2-core CPU.

`--planner fixed` runs the same goal under the fixed-schedule baseline (data doubled each
iteration, no targeting, no hyper-parameter changes) for the planner-vs-schedule comparison.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goal", default=str(ROOT / "examples" / "python-security" / "goal.yaml"))
    parser.add_argument("--home", help="ForgeMind home (default: a fresh temporary folder)")
    parser.add_argument("--planner", choices=["default", "fixed"], default="default")
    parser.add_argument("--fresh-base", action="store_true", help="pre-train the base again (no shared cache)")
    args = parser.parse_args()

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="forgemind-bench-"))
    cache = ROOT / ".forgemind" / "cache" / "bases"
    if not args.fresh_base and cache.exists() and not (home / "cache" / "bases").exists():
        shutil.copytree(cache, home / "cache" / "bases")  # reuse the pre-trained tiny base
    goal = Path(args.goal).resolve()
    if args.planner != "default":
        # the whole planner line: the default planner's options do not apply to another planner
        text = re.sub(r"(?m)^planner:.*$", f"planner: {{backend: {args.planner}}}", goal.read_text())
        goal = home / f"goal-{args.planner}.yaml"
        home.mkdir(parents=True, exist_ok=True)
        goal.write_text(text.replace("pack: .", f"pack: {Path(args.goal).resolve().parent}"))

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "forgemind_core", "--home", str(home), "run", str(goal), "--json"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode not in (0, 1):
        sys.exit(f"forge run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    summary = json.loads(proc.stdout)

    print(f"goal {summary['goal']}  planner {args.planner}  run {summary['run_id']}")
    print(f"{'iter':>4} {'generated':>9} {'kept':>6} {'canary':>7} {'full':>6} {'advers.':>7} {'train tokens':>12} "
          f"{'cost $':>8} {'sec':>6}  decision")
    tokens = []
    for it in summary["iterations"]:
        tiers = {t: (f"{it['scores'][t]:.0%}" if t in it["scores"] else "-") for t in ("canary", "full", "adversarial")}
        tokens.append(train_tokens(home, summary["run_id"], it["iteration"]))
        print(f"{it['iteration']:>4} {it['data']['generated']:>9} {it['data']['kept']:>6} {tiers['canary']:>7} "
              f"{tiers['full']:>6} {tiers['adversarial']:>7} {tokens[-1]:>12,} {it['cost_usd']:>8.4f} "
              f"{it['seconds']:>6.0f}  {(it.get('decision') or {}).get('action', '-')}")
    fulls = [it["scores"].get("full") for it in summary["iterations"] if "full" in it["scores"]]
    result = {
        "goal": summary["goal"],
        "planner": args.planner,
        "outcome": summary["outcome"],
        "iterations": len(summary["iterations"]),
        "full_scores": fulls,
        "full_rising": all(b > a for a, b in itertools.pairwise(fulls)),
        "final_full": fulls[-1] if fulls else None,
        "cost_usd": summary["cost_usd"],
        "train_tokens": sum(tokens),
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak_kib / 1024 / 1024, 2),
        "reasons": summary["reasons"],
    }
    print(f"outcome {result['outcome']}; wall {result['wall_s']} s; peak RSS {result['peak_rss_gib']} GiB")
    print(json.dumps(result))


def train_tokens(home: Path, run_id: str, iteration: int) -> int:
    """Tokens the iteration's fine-tuning processed (its checkpoint's manifest; 0 when it did not
    train): the compute a try cost, independent of what else loaded the machine meanwhile."""
    path = home / "runs" / run_id / f"iter-{iteration}" / "train.json"
    if not path.is_file():
        return 0
    return int(json.loads(path.read_text())["checkpoint"]["manifest"].get("tokens", 0))


if __name__ == "__main__":
    main()
