"""The shape of the package: no import cycles, no import back up into the package
``__init__``, public names that report a public module, declared seams satisfied."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import msgflux as mf
import msgflux.transport as transport

SRC = Path(mf.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every msgflux module ``path`` imports, wherever the import stands (module level,
    ``TYPE_CHECKING`` blocks, inside functions, ``_lazy.module("...")``): a cycle
    through a lazy import is still a knot in the design."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import sub`` imports the submodule ``pkg.sub``.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "module" and node.args
              and isinstance(node.args[0], ast.Constant)):
            targets = [node.args[0].value]  # msgflux._lazy.module("msgflux....")
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_up_into_the_package_init() -> None:
    """Only the entry points above the package (``__main__``, ``cli``) may use it."""
    graph = _graph()
    up = sorted(name for name, deps in graph.items()
                if "msgflux" in deps and name not in ("msgflux.__main__", "msgflux.cli"))
    assert up == []


@pytest.mark.parametrize("module", [mf, transport], ids=["msgflux", "msgflux.transport"])
def test_public_names_report_a_public_module(module) -> None:
    for name in module.__all__:
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        assert not any(part.startswith("_") for part in value.__module__.split(".")), (
            f"{module.__name__}.{name} reports {value.__module__}"
        )


def test_default_clients_satisfy_the_transport_protocols() -> None:
    assert isinstance(transport.HTTPTransport(), transport.Transport)
    assert isinstance(transport.AsyncHTTPTransport(), transport.AsyncTransport)
