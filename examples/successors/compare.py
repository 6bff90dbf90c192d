"""The two generations of examples/successors side by side (README, "Successors: two generations").

Run after gen1.yaml and gen2.yaml in the same home:

    python examples/successors/compare.py --home H [--json]

For each generation's model — generation 1: ``stable:support-tickets``; generation 2: its stable
version when it was promoted, else the best try of its latest run — it prints:

- **accuracy** on the support-tickets pack's three suites, evaluated now with the ``hf`` runner
  (``forge eval``'s code, the same for both, so a tier the run did not reach is measured too);
- **tickets/s and answer tokens/s** at inference: the full and adversarial suites (98 tickets)
  with the model already loaded, batched greedy decoding on this machine's CPU; answer tokens are
  counted in each model's own tokenizer;
- **size on disk**: the trained checkpoint with everything it needs to run (a LoRA adapter counts
  with its base), and the q8_0 GGUF that ``forge serve`` exports (``--gguf``, made if missing);
- for generation 2, what its teacher did: how many tickets it labelled, how many went to review,
  how often its label agrees with the queue the ticket was written for (``meta.written_as`` in
  tickets.jsonl, which the run never reads), and the share of the teacher's accuracy the student
  keeps.

It uses :class:`forgemind_core.Forge`, the registry's contract and the Foundry's pack reader.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from forgemind_core import Forge

HERE = Path(__file__).resolve().parent
PACK = HERE.parent / "support-tickets"
SUITES = {tier: PACK / "suites" / f"{tier}.jsonl" for tier in ("canary", "full", "adversarial")}
TEACHER_GOAL, STUDENT_GOAL = "support-tickets", "support-tickets-gen2"


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else (
        path.stat().st_size if path.exists() else 0)


def latest_run(forge: Forge, goal: str) -> dict[str, Any]:
    runs = [r for r in forge.registry().run_tree() if r["goal_name"] == goal and r.get("parent_run") is None]
    if not runs:
        sys.exit(f"no run of the goal {goal!r} in {forge.home}: run examples/successors/"
                 f"{'gen1' if goal == TEACHER_GOAL else 'gen2'}.yaml there first")
    return runs[-1]


def chosen_checkpoint(forge: Forge, goal: str) -> tuple[str, str]:
    """``(checkpoint id, how it was chosen)``: the stable version, else the latest run's best try
    on the full tier (canary where the full tier never ran)."""
    run = latest_run(forge, goal)
    if run.get("stable_checkpoint"):
        stable = run["stable_checkpoint"]
        return (stable["id"] if isinstance(stable, dict) else str(stable)), f"stable:{goal}"
    shown = forge.show(run["id"]) or {}
    tried = [c["id"] for c in shown.get("checkpoints", []) if c.get("dataset_id")]
    if not tried:
        sys.exit(f"the run {run['id']} trained no checkpoint")

    def score(checkpoint_id: str) -> tuple[float, float]:
        reports = {r["tier"]: r["metrics"].get("accuracy", 0.0) for r in forge.registry().eval_reports(checkpoint_id)}
        return reports.get("full", -1.0), reports.get("canary", -1.0)

    return max(tried, key=score), f"best try of {run['id']} (not promoted)"


def measure(forge: Forge, checkpoint_id: str) -> dict[str, Any]:
    from tokenizers import Tokenizer

    record = forge.registry().checkpoint(checkpoint_id)
    assert record is not None, checkpoint_id
    ckpt = record["checkpoint"]
    out: dict[str, Any] = {"checkpoint": checkpoint_id, "method": ckpt["method"], "base_model": ckpt["base_model"]}
    reports: dict[str, Any] = {}
    seconds = 0.0
    for tier, suite in SUITES.items():  # canary first: it loads the model, the timed tiers reuse it
        started = time.perf_counter()
        reports[tier] = forge.evaluate(checkpoint_id, str(suite), tier=tier, pack=str(PACK), max_new_tokens=8)
        if tier != "canary":
            seconds += time.perf_counter() - started
    out["accuracy"] = {tier: round(r.metrics["accuracy"], 4) for tier, r in reports.items()}
    path = Path(ckpt["path"])
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    timed = [r for tier, report in reports.items() if tier != "canary" for r in report.results]
    answer_tokens = sum(len(tokenizer.encode(r.output, add_special_tokens=False).ids) for r in timed)
    out["tickets_per_s"] = round(len(timed) / seconds, 2)
    out["answer_tokens_per_s"] = round(answer_tokens / seconds, 2)
    base = Path(ckpt.get("manifest", {}).get("base_path") or "") if ckpt["kind"] == "adapter" else None
    out["size_bytes"] = folder_bytes(path) + (folder_bytes(base) if base else 0)
    out["parameters"] = ckpt.get("manifest", {}).get("parameters")
    return out


def gguf_bytes(forge: Forge, checkpoint_id: str) -> int:
    """The q8_0 GGUF ``forge serve`` uses (exported once and cached; started and stopped here)."""
    cached = forge.home / "cache" / "served" / checkpoint_id / "model-q8_0.gguf"
    if not cached.exists():
        with forge.serve(checkpoint_id):
            pass
    return cached.stat().st_size


def teacher_report(forge: Forge, student_run: str, student_ckpt: str) -> dict[str, Any]:
    """What generation 1 did as generation 2's labeller."""
    from forgemind_core.foundry.packs import load_pack
    from forgemind_core.foundry.prompts import format_prompt

    pack = load_pack(PACK)  # the prompt each ticket was labelled and trained with
    written = {}
    for line in (HERE / "tickets.jsonl").read_text().splitlines():
        row = json.loads(line)
        written[format_prompt(pack, row["input"])] = row["meta"]["written_as"]
    record = forge.registry().checkpoint(student_ckpt)
    dataset = record["checkpoint"].get("dataset_id") if record else None
    examples = forge.registry().examples(dataset) if dataset else []
    labelled = [e for e in examples if e["source"]["generator"] == "files" and e["prompt"] in written]
    agree = sum(1 for e in labelled if e["completion"].strip() == written[e["prompt"]])
    queued = forge.review_queue(student_run, status=None)
    return {"tickets": len(written), "in_dataset": len(labelled), "to_review": len(queued),
            "agree_with_author": round(agree / len(labelled), 4) if labelled else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("FORGEMIND_HOME", ".forgemind"))
    parser.add_argument("--gguf", action="store_true", help="also the size of each model's q8_0 GGUF (made if missing)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    forge = Forge(home=args.home)
    rows = []
    for generation, goal in ((1, TEACHER_GOAL), (2, STUDENT_GOAL)):
        checkpoint_id, chosen = chosen_checkpoint(forge, goal)
        row = {"generation": generation, "goal": goal, "chosen": chosen, **measure(forge, checkpoint_id)}
        if args.gguf:
            row["gguf_q8_0_bytes"] = gguf_bytes(forge, checkpoint_id)
        rows.append(row)
    teacher, student = rows
    student["teacher"] = teacher_report(forge, latest_run(forge, STUDENT_GOAL)["id"], student["checkpoint"])
    student["kept_share"] = {tier: round(student["accuracy"][tier] / teacher["accuracy"][tier], 4)
                             for tier in SUITES if teacher["accuracy"][tier]}
    student["speedup"] = round(student["tickets_per_s"] / teacher["tickets_per_s"], 2)
    student["size_ratio"] = round(teacher["size_bytes"] / student["size_bytes"], 1)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    mib = 1024 * 1024
    print("| generation | model | canary | full | adversarial | tickets/s | answer tokens/s | size on disk |"
          + (" q8_0 GGUF |" if args.gguf else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if args.gguf else ""))
    for row in rows:
        acc = row["accuracy"]
        print(f"| {row['generation']} | {row['base_model']} {row['method']} ({row['chosen']}) | "
              f"{acc['canary']:.1%} | {acc['full']:.1%} | {acc['adversarial']:.1%} | {row['tickets_per_s']} | "
              f"{row['answer_tokens_per_s']} | {row['size_bytes'] / mib:.1f} MiB |"
              + (f" {row['gguf_q8_0_bytes'] / mib:.1f} MiB |" if args.gguf else ""))
    kept = student["kept_share"]
    t = student["teacher"]
    print(f"\nthe student keeps {kept.get('full', 0):.0%} of the teacher's full-tier accuracy "
          f"({kept.get('canary', 0):.0%} canary, {kept.get('adversarial', 0):.0%} adversarial), "
          f"{student['speedup']}x its tickets/s, at 1/{student['size_ratio']} of its size; the teacher labelled "
          f"{t['tickets']} tickets: {t['in_dataset']} in the student's dataset, {t['to_review']} sent to review, "
          f"labels agreeing with the author's queue: {t['agree_with_author']:.1%}" if t["agree_with_author"] is not None
          else "")


if __name__ == "__main__":
    main()
