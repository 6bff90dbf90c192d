"""Meta-tests of the contract: every hook documented with its exact signature and tested by name;
the contract and the registry import nothing from the kernel."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from forgemind_hookspecs.hookspecs import ALL_HOOKS

ROOT = Path(__file__).resolve().parents[1]


def signature(fn) -> str:
    """``name(arg: Type, ...) -> Return`` as docs/hooks.md writes it."""
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{fn.__name__}({params}) -> {sig.return_annotation}"


def test_every_hook_is_documented_with_its_exact_signature():
    docs = (ROOT / "docs" / "hooks.md").read_text()
    missing = [signature(h) for h in ALL_HOOKS if f"`{signature(h)}`" not in docs]
    assert not missing, f"docs/hooks.md lacks: {missing}"
    documented = set(re.findall(r"^### `(forgemind_\w+)\(", docs, re.M))
    assert documented == {h.__name__ for h in ALL_HOOKS}


def test_every_hook_has_a_test_named_after_it():
    sources = [p.read_text() for pattern in ("tests/**/*.py", "plugins/*/tests/*.py", "docs/example_plugin/tests/*.py")
               for p in ROOT.glob(pattern)]
    text = "\n".join(sources)
    untested = [h.__name__ for h in ALL_HOOKS if not re.search(rf"def test_hook_{h.__name__}\w*\(", text)]
    assert not untested, f"no test_hook_<name> for: {untested}"


def test_every_hook_is_firstresult_only_when_it_chooses_one():
    firstresult = {h.__name__ for h in ALL_HOOKS if getattr(h, "forgemind_spec", {}).get("firstresult")}
    assert firstresult == {"forgemind_registry"}


#: Every plugin distribution under plugins/ (folder = import name), found rather than listed so
#: that a new plugin is held to the rule the day it lands.
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / p.name / "__init__.py").is_file())


def test_the_plugin_list_is_found_from_the_plugins_folder():
    # the Warden's and the dashboard's plugins must be among those checked below; an empty or
    # short list (a moved folder, a broken glob) would make the import checks pass vacuously
    assert {"forgemind_detoxify", "forgemind_dashboard", "forgemind_duckdb_registry", "forgemind_hf",
            "forgemind_openai"} <= set(PLUGINS)


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [("forgemind_hookspecs", ("forgemind_core", *PLUGINS))] + [(plugin, ("forgemind_core",)) for plugin in PLUGINS],
)
def test_plugins_and_contract_do_not_import_the_kernel(module, forbidden):
    code = (f"import sys, {module}; "
            f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
    package = ROOT / ("hookspecs" if module == "forgemind_hookspecs" else f"plugins/{module}") / module
    sources = list(package.rglob("*.py"))
    assert sources, package
    for path in sources:
        assert not re.search(r"^\s*(from|import)\s+forgemind_core", path.read_text(), re.M), path


def test_the_cli_imports_no_heavy_library():
    code = ("import sys, forgemind_core.cli.main; "
            "heavy = {'torch', 'transformers', 'duckdb', 'pyarrow', 'datasets', 'openai', 'datasketch'}; "
            "print(','.join(sorted(m for m in heavy if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
    help_ = subprocess.run([sys.executable, "-c", "from forgemind_core.cli.main import main; main(['--help'])"],
                           capture_output=True, text=True)
    assert help_.returncode == 0 and "run" in help_.stdout

