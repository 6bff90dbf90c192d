"""Test-only in-process backends for kernel tests: a word-vote "model" that really learns.

``memo`` trains by counting, for every word of a training prompt, which label it came with;
its runner answers the label with the most votes over the words of a prompt. It learns only
the words it saw, so unseen vocabulary fails - which gives the loop and the planner something
real to improve, in milliseconds instead of minutes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import ClassVar

from attrs import frozen
from forgemind_hookspecs import Checkpoint, Estimate, content_hash, hookimpl
from forgemind_hookspecs.snapshots import read_snapshot

WORD = re.compile(r"[a-z_]+")


class MemoTrainer:
    """Word-vote trainer for kernel tests."""

    name: ClassVar[str] = "memo"

    @frozen
    class Options:
        epochs: int = 1
        learning_rate: float = 0.1
        cost_per_example: float = 0.0
        sleep_s: float = 0.0

    def __init__(self, options: MemoTrainer.Options) -> None:
        self.options = options

    def pretrain(self, spec, ctx):
        path = Path(ctx.cache_dir) / "bases" / content_hash([spec.corpus, spec.preset])
        path.mkdir(parents=True, exist_ok=True)
        return Checkpoint(id=content_hash(str(path)), path=str(path), base_model="memo-base", method="full")

    def load_base(self, base_model, ctx):
        return Checkpoint(id=content_hash(base_model), path=base_model, base_model=base_model, method="full")

    def estimate(self, request, ctx):
        n = request.dataset.n_examples
        cost = n * float(request.hyperparameters.get("cost_per_example", self.options.cost_per_example))
        return Estimate(tokens=n * 10, steps=n, seconds=0.01 * n, cost_usd=cost, basis="measured")

    def train(self, request, ctx):
        votes: dict[str, Counter] = defaultdict(Counter)
        for example in read_snapshot(request.dataset.path):
            for word in set(WORD.findall(example.prompt.lower())):
                votes[word][example.completion.strip()] += 1
        out = Path(request.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.options.sleep_s:
            time.sleep(self.options.sleep_s)
        model = {w: dict(c) for w, c in votes.items()}
        (out / "model.json").write_text(json.dumps(model, sort_keys=True))
        for step in range(3):
            ctx.emit("metric", {"name": "train.loss", "value": 1.0 / (step + 1), "step": step})
        cost = request.dataset.n_examples * float(request.hyperparameters.get("cost_per_example", self.options.cost_per_example))
        return Checkpoint(
            id=content_hash([request.dataset.id, request.base.id, dict(request.hyperparameters)]),
            path=str(out), base_model=request.base.id, method=request.method, kind="full",
            dataset_id=request.dataset.id, parent=request.base.id,
            manifest={"loss_curve": [1.0, 0.5, 0.34], "cost_usd": cost, "pid": os.getpid()},
        )


class MemoRunner:
    """Answers with the label whose words match the prompt best."""

    name: ClassVar[str] = "memo"

    @frozen
    class Options:
        max_new_tokens: int = 8
        sleep_s: float = 0.0

    def __init__(self, options: MemoRunner.Options) -> None:
        self.options = options

    def generate(self, checkpoint, prompts, ctx, *, max_new_tokens=8, temperature=0.0):
        if self.options.sleep_s:
            time.sleep(self.options.sleep_s)
        model = json.loads((Path(checkpoint.path) / "model.json").read_text())
        answers = []
        for prompt in prompts:
            tally: Counter = Counter()
            for word in set(WORD.findall(prompt.lower())):
                counts = model.get(word, {})
                total = sum(counts.values())
                for label, n in counts.items():  # each word votes with its label distribution
                    tally[label] += n / total
            answers.append(" " + tally.most_common(1)[0][0] if tally else " unknown")
        return answers


class DripGenerator:
    """The template generator, slowed down: yields one example every ``sleep_s`` seconds."""

    name: ClassVar[str] = "drip"

    @frozen
    class Options:
        sleep_s: float = 0.0

    def __init__(self, options: DripGenerator.Options) -> None:
        self.options = options

    def generate(self, plan, ctx):
        from forgemind_core.foundry.template import TemplateGenerator

        inner = TemplateGenerator(TemplateGenerator.Options())
        for example in inner.generate(plan, ctx):
            time.sleep(self.options.sleep_s)
            yield example


@hookimpl
def forgemind_register_generators(register):
    register(DripGenerator)


@hookimpl
def forgemind_register_trainers(register):
    register(MemoTrainer)


@hookimpl
def forgemind_register_runners(register):
    register(MemoRunner)
