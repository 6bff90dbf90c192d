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


# --- the kernel's layering (docs/architecture.md) -------------------------------------------------

KERNEL = ROOT / "forgemind_core"

#: The kernel's rooms, lowest first: a module may import its own room and the rooms below it.
#: The four pillar rooms of one level are independent of each other; the Brain sequences them.
LAYERS: dict[str, int] = {
    "base": 0,
    "lorekeeper": 1,
    "foundry": 2, "forge": 2, "trials": 2, "warden": 2,
    "brain": 3,
    "adhoc": 4, "api": 5,
    "cli": 6, "__main__": 7,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _kernel_imports() -> dict[str, list[tuple[int, str, str]]]:
    """``{module: [(line, imported module, imported name), ...]}`` for every import of the kernel by
    the kernel, function-level and ``TYPE_CHECKING`` ones included (they are edges all the same)."""
    import ast

    modules = {_module_name(p): p for p in KERNEL.rglob("*.py")}
    found: dict[str, list[tuple[int, str, str]]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges = found.setdefault(name, [])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges += [(node.lineno, a.name, "") for a in node.names if a.name.startswith("forgemind_core")]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                if not base.startswith("forgemind_core"):
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    edges.append((node.lineno, sub, "") if sub in modules else (node.lineno, base, a.name))
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "api"  # the package itself only re-exports the API


def test_the_kernel_has_no_import_cycle():
    from graphlib import CycleError, TopologicalSorter

    graph = {m: {t for _, t, _ in edges if t != m and not t.startswith(m + ".")}  # a package's lazy re-export
             for m, edges in _kernel_imports().items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")


def test_no_kernel_module_imports_another_modules_private_name():
    private = [f"{m}:{line} {t}.{n}" for m, edges in _kernel_imports().items() for line, t, n in edges
               if n.startswith("_") and not n.startswith("__") and t != m]
    assert not private


def test_every_kernel_module_lives_in_a_room_and_imports_only_down():
    wrong = []
    for module, edges in _kernel_imports().items():
        room = _room(module)
        assert room in LAYERS, f"{module} is in no room of LAYERS"
        for line, target, _ in edges:
            other = _room(target)
            if other == room or target == "forgemind_core":
                continue
            if LAYERS[other] >= LAYERS[room]:
                wrong.append(f"{module}:{line} imports {target} ({other} is not below {room})")
    assert not wrong, "\n".join(wrong)


def test_the_base_layer_imports_nothing_else_of_the_kernel():
    edges = _kernel_imports()
    base = [m for m in edges if _room(m) == "base"]
    assert len(base) >= 5  # plugins, logs, options, file I/O, the run folder at least
    outside = [f"{m} imports {t}" for m in base for _, t, _ in edges[m] if _room(t) != "base"]
    assert not outside


def test_no_kernel_file_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in KERNEL.rglob("*.py") if (n := p.read_text().count("\n")) > 600}
    assert not long
