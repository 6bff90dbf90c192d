"""The kernel embedded in a plain Python script with its own in-process plugin."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from colors_pack import write_pack

SCRIPT = textwrap.dedent('''
    import json, sys
    from typing import ClassVar
    from attrs import frozen
    from forgemind_hookspecs import Verdict, hookimpl
    from forgemind_core import Forge

    sys.path.insert(0, {tests!r})
    import kernel_plugins  # the test trainer/runner

    class NoCars:
        """Drops every example that mentions a car."""
        name: ClassVar[str] = "no_cars"

        @frozen
        class Options:
            word: str = "car"

        def __init__(self, options):
            self.options = options

        def filter(self, examples, ctx):
            return [Verdict(example_id=e.id, filter=self.name, keep=self.options.word not in e.prompt.split(),
                            rule="word", reason="mentions a car") for e in examples]

    class MyApp:
        @hookimpl
        def forgemind_register_filters(self, register):
            register(NoCars)

    forge = Forge(home={home!r}, plugins=[kernel_plugins, ("myapp", MyApp())], blocked=["hf", "openai"])
    summary = forge.run({goal!r}, run_id="embedded")
    print(json.dumps({{"outcome": summary["outcome"], "plugins": [p["name"] for p in forge.plugins()],
                      "rejected": len(forge.registry().rejections("embedded"))}}))
''')


def test_embed_the_kernel_in_a_script(tmp_path):
    goal = write_pack(tmp_path / "pack")
    goal.write_text(goal.read_text().replace("  - backend: rules\n", "  - backend: rules\n  - backend: no_cars\n"))
    script = SCRIPT.format(tests=str(Path(__file__).parent), home=str(tmp_path / "home"), goal=str(goal))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "promoted"
    assert "myapp" in result["plugins"]
    assert result["rejected"] > 0
