"""Run the openai generator in a separate process (killed midway by test_kill_and_resume).

argv: base_url cache_dir out_file count. Each example is appended to out_file as one JSON line
and flushed before the next is taken, as the kernel persists examples.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from forgemind_hookspecs import GenerationPlan, PromptTemplate, StageContext, TaskPack, to_json
from forgemind_openai import OpenAIGenerator


def main() -> None:
    base_url, cache_dir, out_file, count = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    pack = TaskPack(
        root=".", name="p", task="t", labels=("a", "b"), prompt_format="Code:\n{input}",
        templates=(PromptTemplate("ta", "a", "", instruction="a"), PromptTemplate("tb", "b", "", instruction="b")),
    )
    ctx = StageContext(cache_dir=cache_dir, pack=pack, seed=7)
    gen = OpenAIGenerator(OpenAIGenerator.Options(base_url=base_url, model="m", examples_per_call=1, concurrency=2))
    with open(out_file, "a", encoding="utf-8") as out:
        for example in gen.generate(GenerationPlan("openai", count), ctx):
            out.write(to_json(example) + "\n")
            out.flush()
            os.fsync(out.fileno())
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
