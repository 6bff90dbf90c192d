"""A run driven in its own process for ``tests/test_readouts.py``: the memo trainer, emitting its
loss per step and then holding until the file ``<home>/release`` exists, so that another process
reads ``forge status`` while the train stage runs.

    python _readouts_writer.py HOME GOAL RUN_ID
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).parent))

import kernel_plugins
from forgemind_hookspecs import hookimpl

from forgemind_core import Forge


class HeldTrainer(kernel_plugins.MemoTrainer):
    """The memo trainer: four ``train.loss`` metrics 0.1 s apart, then it waits for the release file."""

    name: ClassVar[str] = "held"

    def train(self, request, ctx):
        for step in range(1, 5):
            ctx.emit("metric", {"name": "train.loss", "value": 1.0 / step, "step": step})
            time.sleep(0.1)
        release = Path(ctx.home) / "release"
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().train(request, ctx)


class HeldPlugin:
    @hookimpl
    def forgemind_register_trainers(self, register):
        register(HeldTrainer)


if __name__ == "__main__":
    home, goal, run_id = sys.argv[1:4]
    forge = Forge(home=home, plugins=[kernel_plugins, HeldPlugin()], blocked=["hf", "openai"])
    summary = forge.run(goal, run_id=run_id)
    print(summary["outcome"])
