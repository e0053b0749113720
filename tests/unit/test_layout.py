"""DESIGN.md's dependency direction: function_app -> renewal -> ca_clients; renewal never imports
azure.functions; no product code imports the emulator, the tests or the dev tools."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [
    ROOT / "function_app.py",
    *sorted((ROOT / "renewal").rglob("*.py")),
    *sorted((ROOT / "ca_clients").rglob("*.py")),
]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: str(p.relative_to(ROOT)))
def test_product_never_imports_dev_or_test_code(path):
    bad = {m for m in imported_modules(path) if top(m) in {"emulator", "tests", "devtools", "benchmarks"}}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((ROOT / "ca_clients").rglob("*.py")), ids=lambda p: p.name)
def test_ca_clients_know_nothing_of_renewal_key_vault_or_functions(path):
    bad = {
        m
        for m in imported_modules(path)
        if top(m) in {"renewal", "function_app"} or m.startswith(("azure.functions", "azure.keyvault"))
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((ROOT / "renewal").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_renewal_never_imports_azure_functions_or_the_bindings(path):
    bad = {m for m in imported_modules(path) if m.startswith("azure.functions") or top(m) == "function_app"}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_function_app_imports_only_the_bindings_library_and_setting_names_at_module_level():
    tree = ast.parse((ROOT / "function_app.py").read_text())
    module_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            module_level.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            module_level.update(f"{node.module}.{a.name}" for a in node.names)
    assert module_level <= {"__future__.annotations", "json", "logging", "azure.functions", "renewal.settings"}, (
        module_level
    )


# -- the wings inside renewal/ (DESIGN.md, "Where things live") -------------------------------------------
RENEWAL = ROOT / "renewal"
TOP_LEVEL = ["model", "ports", "config", "settings", "errors", "observability", "metrics"]
WING_RULES = {
    # wing: packages it must never import
    "flow": ("renewal.operations", "renewal.azure", "renewal.service"),
    "operations": ("renewal.azure",),
    "azure": ("renewal.flow", "renewal.operations", "renewal.service"),
    **{name: ("renewal.flow", "renewal.operations", "renewal.azure", "renewal.service") for name in TOP_LEVEL},
}


def all_imports(path: Path) -> set[str]:
    """Module-level and function-level imports alike: a lazy import is still a dependency."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.relative_to(ROOT)}: relative import; the layout rules read absolute ones"
            if node.module:
                names.update({node.module, *(f"{node.module}.{a.name}" for a in node.names)})
    return names


def wing_of(path: Path) -> str:
    rel = path.relative_to(RENEWAL)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_renewal_has_the_three_wings_and_the_top_level_modules():
    for wing in ("flow", "operations", "azure"):
        assert (RENEWAL / wing / "__init__.py").is_file(), wing
    loose = {p.stem for p in RENEWAL.glob("*.py")} - {"__init__", "__main__", "service", *TOP_LEVEL}
    assert not loose, f"modules outside the wings: {sorted(loose)}"


@pytest.mark.parametrize("path", sorted(RENEWAL.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_wings_depend_only_in_the_designed_direction(path):
    forbidden = WING_RULES.get(wing_of(path), ())
    bad = {m for m in all_imports(path) for f in forbidden if m == f or m.startswith(f + ".")}
    assert not bad, f"{path.relative_to(ROOT)} ({wing_of(path)}) imports {sorted(bad)}"


def _import_graph(package: Path, prefix: str) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports (relative imports resolved)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        module = f"{prefix}.{path.stem}"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = f"{prefix}.{base}" if base else prefix
                names = [f"{base}.{a.name}" for a in node.names] + [base]
                found.update(
                    n for n in names if n.startswith(prefix + ".") and (package / f"{n.split('.')[-1]}.py").exists()
                )
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith(prefix + "."))
        graph[module] = found - {module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


@pytest.mark.parametrize("package", ["emulator", "renewal", "ca_clients"])
def test_no_import_cycle_inside_a_package(package):
    """Type-only imports count too: a cycle means the two modules cannot change apart."""
    cycle = _cycle(_import_graph(ROOT / package, package))
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _untyped_service_parameters(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                annotation = ast.unparse(arg.annotation) if arg.annotation else None
                if arg.arg == "service" and annotation in (None, "Any", "typing.Any"):
                    found.append(f"{node.name}({arg.arg}: {annotation})")
    return found


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_product_function_takes_an_untyped_service(path):
    """Operator and flow functions take the stores they use, or the typed composition root."""
    assert _untyped_service_parameters(path) == []


def test_the_service_parameter_check_sees_one(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import Any\ndef list_failures(service: Any) -> None: ...\n")
    assert _untyped_service_parameters(probe) == ["list_failures(service: Any)"]


# -- promise 8: what reaches a function is what azure.functions' converters make ------------------------
TRIGGER_TYPES = ("HttpRequest", "QueueMessage", "EventGridEvent", "CloudEvent", "TimerRequest")
HOST = ROOT / "devtools" / "host.py"


def _hand_built_trigger_arguments(path: Path) -> list[str]:
    """Calls that construct an azure.functions trigger type directly (func.HttpRequest(...), QueueMessage(...))."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in TRIGGER_TYPES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node.func)}(...)")
    return found


@pytest.mark.parametrize(
    "path",
    sorted(p for folder in ("tests", "devtools", "benchmarks") for p in (ROOT / folder).rglob("*.py") if p != HOST),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_the_local_host_builds_trigger_arguments(path):
    """Functions get their arguments from devtools/host.py, which decodes the host's payloads with
    azure.functions' own converters; a hand-built func.* object could pass where the worker's would not."""
    assert _hand_built_trigger_arguments(path) == []


def test_the_trigger_argument_check_sees_a_hand_built_one(tmp_path):
    probe = ROOT / "tests" / "unit" / "_probe_hand_built.py"
    try:
        probe.write_text("import azure.functions as func\nfunc.HttpRequest(method='GET', url='/', body=b'')\n")
        assert _hand_built_trigger_arguments(probe) == [f"{probe.relative_to(ROOT)}:2 func.HttpRequest(...)"]
    finally:
        probe.unlink()
