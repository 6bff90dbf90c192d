"""How fast `forge --help` answers, against a bare Python start side by side, and which heavy
libraries importing the CLI loads (none is the target).

    python benchmarks/cli_startup.py [--repeat 15]

Prints a table and a JSON line. Target: `forge --help` under 0.3 s on the CI machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "transformers", "duckdb", "pyarrow", "datasets", "openai", "datasketch", "peft")


def timed(cmd: list[str], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    bare = timed([sys.executable, "-c", "pass"], args.repeat)
    helper = [sys.executable, "-c", "from forgemind_core.cli.main import main; main(['--help'])"]
    forge = timed(helper, args.repeat)
    probe = ("import sys, forgemind_core.cli.main as c; c.build_cli(); "
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    result = {
        "python_start_s": statistics.median(bare),
        "forge_help_s": statistics.median(forge),
        "forge_help_minus_python_s": statistics.median(forge) - statistics.median(bare),
        "ratio_to_python_start": statistics.median(forge) / statistics.median(bare),
        "heavy_modules_loaded": [m for m in loaded.split(",") if m],
        "target_s": 0.3,
    }
    print(f"{'python -c pass':<28}{result['python_start_s']:.3f} s")
    print(f"{'forge --help':<28}{result['forge_help_s']:.3f} s  ({result['ratio_to_python_start']:.1f}x a bare start)")
    print(f"{'heavy modules loaded':<28}{result['heavy_modules_loaded'] or 'none'}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
