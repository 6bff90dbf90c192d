"""LoRA on SmolLM2-135M-Instruct on a CPU: forgemind-hf against a plain transformers ``Trainer`` +
peft script, side by side on the same data.

Same base (the ``smollm2-135m-instruct`` GGUF converted once by forgemind-hf), same examples (the
support-tickets pack's template generator, ``mixed``, rendered through the base's chat template
with the loss on the answer only), same LoRA rank and targets, batch size, epochs, learning rate,
schedule and bf16 setting. Variants, each in its own process (so each has its own peak RSS):

- ``baseline``: ``Trainer`` + ``get_peft_model`` on every layer, a padding collator;
- ``forgemind``: the ``hf`` trainer with its defaults (packing, every layer, the full head);
- ``fast``: the ``hf`` trainer with ``train_layers: 8``, ``head: labels`` and ``cache_frozen``.

Reported per variant: real (non-pad) tokens/s, wall seconds, peak RSS, and accuracy on the pack's
canary + full suites (greedy, the ``hf`` runner); then each one's speed as a ratio of the baseline's.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/smollm2_lora_bench.py [--examples 200] [--epochs 1]
Prints one JSON object. Not part of the test suite (timings are never asserted in tests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
GOAL = ROOT / "examples/support-tickets/goal-smollm2-templates.yaml"
VARIANTS = ("baseline", "forgemind", "fast")
FAST = {"train_layers": 8, "head": "labels", "cache_frozen": True}

__all__ = ["main"]


def _setup(work: Path, n: int) -> tuple[Any, Any, Any, list[Any], Any]:
    from forgemind_hookspecs import GenerationPlan
    from forgemind_hookspecs.snapshots import write_snapshot

    from forgemind_core import Forge

    forge = Forge(home=work / "home")
    goal = forge.load_goal(GOAL)
    pack = forge.load_pack(goal)
    ctx = forge.context(goal=goal, pack=pack, seed=7)
    generator = forge.backend("generators", "template", {"strategy": "mixed"})
    examples = list(generator.generate(GenerationPlan("template", n), ctx))[:n]
    dataset = write_snapshot(examples, work / "ds")
    trainer = forge.backend("trainers", "hf")
    base = trainer.load_base("smollm2-135m-instruct", ctx)
    return forge, ctx, trainer, examples, (base, dataset, pack)


def _accuracy(forge: Any, checkpoint: Any, pack: Any) -> float:
    """Share of the pack's canary + full cases whose first answer word is the expected queue."""
    runner = forge.backend("runners", "hf")
    cases = []
    for tier in ("canary", "full"):
        for line in Path(pack.suites[tier]).read_text().splitlines():
            if line.strip():
                cases.append(json.loads(line))
    prompts = [pack.prompt_format.format(input=c["input"]) for c in cases]
    outputs = runner.generate(checkpoint, prompts, forge.context(pack=pack), max_new_tokens=8)
    return sum(o.strip().split()[:1] == [c["expected"]] for o, c in zip(outputs, cases, strict=True)) / len(cases)


def _variant(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch
    from forgemind_hf.engine import device_for_training, use_bf16
    from forgemind_hookspecs import TrainRequest

    forge, ctx, trainer, examples, (base, dataset, pack) = _setup(work, args.examples)
    bf16 = use_bf16("auto", device_for_training())
    hyper = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr, "bf16": bf16,
             "save_every_steps": 0, "max_length": 160, "target_modules": "all-linear", "lora_r": 16}
    if name == "fast":
        hyper.update(FAST)
    if name == "baseline":
        seconds, tokens, checkpoint = _baseline(base, dataset, examples, hyper, work / "hf", bf16)
    else:
        request = TrainRequest(base=base, dataset=dataset, method="lora", output_dir=str(work / name),
                               hyperparameters=hyper)
        checkpoint = trainer.train(request, ctx)
        seconds, tokens = checkpoint.manifest["duration_s"], checkpoint.manifest["tokens"]
    accuracy = _accuracy(forge, checkpoint, pack)
    return {"seconds": round(seconds, 1), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
            "accuracy_canary_full": round(accuracy, 3), "torch_threads": torch.get_num_threads(), "bf16": bf16}


def _baseline(base: Any, dataset: Any, examples: list[Any], hyper: dict[str, Any], out: Path,
              bf16: bool) -> tuple[float, int, Any]:
    """A plain transformers Trainer + peft script: padding collator, LoRA on every layer."""
    from forgemind_hf.text import encode_example
    from forgemind_hookspecs import Checkpoint
    from peft import LoraConfig, get_peft_model
    from train_bench import padding_collator  # the same baseline collator as the tiny-model bench
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(base.path)
    features = []
    for example in examples:
        ids, labels, _ = encode_example(example, tokenizer, hyper["max_length"], chat=True)
        features.append({"input_ids": ids, "labels": labels})
    tokens = int(sum(len(f["input_ids"]) for f in features) * hyper["epochs"])

    collate = padding_collator(tokenizer.pad_token_id)

    model = AutoModelForCausalLM.from_pretrained(base.path)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    targs = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=hyper["batch_size"], num_train_epochs=hyper["epochs"],
        learning_rate=hyper["learning_rate"], lr_scheduler_type="linear", warmup_steps=0.05, max_grad_norm=1.0,
        bf16=bf16, use_cpu=True, report_to="none", save_strategy="no", logging_strategy="no", seed=0,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=features, data_collator=collate)
    began = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - began
    model.save_pretrained(out / "final")
    tokenizer.save_pretrained(out / "final")
    manifest = {"chat_format": "chat", "base_path": base.path}
    (out / "final" / "manifest.json").write_text(json.dumps({"checkpoint": {
        "id": "baseline", "path": str(out / "final"), "base_model": base.base_model, "method": "lora",
        "kind": "adapter", "manifest": manifest, "parent": base.id}}))
    return seconds, tokens, Checkpoint(id="baseline", path=str(out / "final"), base_model=base.base_model,
                                       method="lora", kind="adapter", manifest=manifest, parent=base.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in this process (internal)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(_variant(args.variant, args, Path(args.work))))
        return
    work = Path(tempfile.mkdtemp(prefix="smollm2-bench-"))
    results: dict[str, Any] = {}
    load_before = os.getloadavg()
    for name in args.variants.split(","):
        cmd = [sys.executable, __file__, "--variant", name, "--work", str(work / name), "--examples",
               str(args.examples), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
               "--lr", str(args.lr)]
        out = work / f"{name}.json"
        with out.open("w") as sink:
            proc = subprocess.Popen(cmd, stdout=sink)
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        if status != 0:
            raise SystemExit(f"variant {name} failed (status {status})")
        results[name] = json.loads(out.read_text().strip().splitlines()[-1])
        results[name]["peak_rss_gib"] = round(usage.ru_maxrss / 2**20, 2)  # ru_maxrss: KiB on Linux
    base = results.get("baseline", {}).get("tokens_per_s")
    if base:
        for row in results.values():
            row["speed_vs_baseline"] = round(row["tokens_per_s"] / base, 2)
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "load_before": [round(x, 2) for x in load_before],
                                  "load_after": [round(x, 2) for x in os.getloadavg()]},
                      "examples": args.examples, "epochs": args.epochs, "batch_size": args.batch_size,
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
