"""The layer rules, read from the source with `ast` (nothing is imported or run).

- `dlsec_core` never imports streamlit or plotly: everything a page does, a notebook or the CLI can do.
- `dlsec_ui` never imports from the pages folder (`app_pages`, read from app.py's `st.Page` paths): pages sit on
  top of the UI helpers, not the other way round.
- No shipped code unpickles: no `torch.load`, `torch.jit.load`, `pickle.load`, ... anywhere (models are stored
  as safetensors; `numpy.load` is only allowed without `allow_pickle=True`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pages_folder() -> str:
    """The folder of the pages app.py registers (one folder; the page tests check every file in it is registered).

    Read from app.py rather than spelled here: the rules once named `pages` while the pages lived in `app_pages`,
    so they checked nothing. (Not `pages/`: on a fresh server Streamlit 1.67 runs a deep-linked `pages/` file
    without app.py's frame; tests/e2e/test_browser.py::test_deep_link_on_a_fresh_server_gets_the_frame.)
    """
    folders = {
        Path(node.args[0].value).parent.as_posix()
        for node in ast.walk(ast.parse((ROOT / "app.py").read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("Page") and node.args
        and isinstance(node.args[0], ast.Constant)
    }  # fmt: skip
    assert len(folders) == 1, folders
    return folders.pop()


PAGES = pages_folder()
CORE_FORBIDDEN = ("streamlit", "plotly")
UI_FORBIDDEN = (PAGES,)
SHIPPED = ("dlsec_core", "dlsec_ui", PAGES, "app.py")
UNSAFE_CALLS = {
    "torch.load",
    "torch.serialization.load",
    "torch.jit.load",
    "torch.hub.load",
    "torch.package.PackageImporter",
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "cloudpickle.load",
    "cloudpickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "pandas.read_pickle",
}


def python_files(*names: str) -> Iterator[Path]:
    for name in names:
        path = ROOT / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import, and for `importlib.import_module("...")`/`__import__`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # `from x import y` may import the submodule x.y
                yield node.lineno, f"{node.module}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and (dotted_name(node.func) or "").rsplit(".", 1)[-1] in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def is_within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def import_violations(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for line, module in imported_modules(parse(path))
        if is_within(module, forbidden)
    ]


def dotted_name(expr: ast.expr) -> str | None:
    """`a.b.c` for a Name/Attribute chain, else None."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if isinstance(expr, ast.Name):
        parts.append(expr.id)
        return ".".join(reversed(parts))
    return None


def import_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> the absolute name it stands for (`np` -> `numpy`, `load` -> `torch.load`)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    aliases = import_aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted_name(node.func)
        if name is None:
            continue
        head, _, rest = name.partition(".")
        full = aliases.get(head, head) + (f".{rest}" if rest else "")
        if full in UNSAFE_CALLS:
            found.append((node.lineno, full))
        elif full == "numpy.load" and any(
            kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False)
            for kw in node.keywords
        ):
            found.append((node.lineno, "numpy.load(allow_pickle=...)"))
    return found


# -- the checkers catch what they should (so a passing rule means something) --------------------------------

BAD_IMPORTS = """
import streamlit as st
import plotly.graph_objects
from streamlit.components import v1
from plotly import express as px
import importlib
importlib.import_module("streamlit.runtime")
import os, plotlyx, streamlit_extras
from dlsec_core import streamlit_free
"""

BAD_LOADS = """
import torch, pickle, numpy as np
from torch import load as tl
import torch.jit as J
from pickle import loads
torch.load("m.pt", weights_only=True)
tl("m.pt")
J.load("m.pt")
torch.jit.load("m.pt")
pickle.load(open("f", "rb"))
loads(b"")
np.load("a.npy", allow_pickle=True)
np.load("a.npy", allow_pickle=False)
np.load("a.npy")
model.load_state_dict(state)
"""


def test_the_import_checker_finds_forbidden_imports():
    found = [
        module for _, module in imported_modules(ast.parse(BAD_IMPORTS)) if is_within(module, CORE_FORBIDDEN)
    ]
    assert set(found) >= {
        "streamlit",
        "plotly.graph_objects",
        "streamlit.components",
        "plotly",
        "streamlit.runtime",
    }
    assert not any(m in found for m in ("plotlyx", "streamlit_extras", "dlsec_core.streamlit_free"))


def test_the_load_checker_finds_unpickling_calls():
    found = unsafe_calls(ast.parse(BAD_LOADS))
    assert [line for line, _ in found] == [6, 7, 8, 9, 10, 11, 12]
    assert {name for _, name in found} == {
        "torch.load",
        "torch.jit.load",
        "pickle.load",
        "pickle.loads",
        "numpy.load(allow_pickle=...)",
    }


# -- the rules -----------------------------------------------------------------------------------------------


def test_core_never_imports_streamlit_or_plotly():
    files = list(python_files("dlsec_core"))
    assert len(files) > 10  # the walk found the package
    violations = [v for path in files for v in import_violations(path, CORE_FORBIDDEN)]
    assert not violations, "\n".join(violations)


def test_the_rules_name_folders_that_exist():
    """A rule over a folder that does not exist checks nothing and passes: every folder they name must be there."""
    for name in (*SHIPPED, *UI_FORBIDDEN):
        assert (ROOT / name).exists(), f"{name} is named by the layer rules but does not exist"
    assert list(python_files(PAGES)), PAGES


def test_a_ui_module_importing_a_page_is_caught(tmp_path: Path):
    """The checker on a known-bad example first: a UI helper that imports a page."""
    bad = tmp_path / "bad.py"
    bad.write_text(f"from {PAGES}.models import x\nimport {PAGES}.home\n", encoding="utf-8")
    found = [module for _, module in imported_modules(parse(bad)) if is_within(module, UI_FORBIDDEN)]
    assert {f"{PAGES}.models", f"{PAGES}.home"} <= set(found)


def test_mypy_checks_the_ui_and_the_pages():
    """Issue 13: a page called a method that did not exist because mypy checked only dlsec_core."""
    import tomllib

    files = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]["files"]
    assert set(SHIPPED) <= set(files), files


def test_ui_never_imports_pages():
    violations = [v for path in python_files("dlsec_ui") for v in import_violations(path, UI_FORBIDDEN)]
    assert not violations, "\n".join(violations)


def test_no_shipped_code_unpickles():
    files = list(python_files(*SHIPPED))
    assert files
    violations = [
        f"{path.relative_to(ROOT)}:{line} calls {name}"
        for path in files
        for line, name in unsafe_calls(parse(path))
    ]
    assert not violations, "\n".join(violations)


def module_level_imports(path: Path, package: str) -> set[str]:
    """Absolute module names imported at module level (not inside functions or `if TYPE_CHECKING:`)."""
    here = path.relative_to(ROOT).with_suffix("").parts
    parent = here[:-1] if here[-1] != "__init__" else here[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join([*parent[: len(parent) - child.level + 1], *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in child.names)
            visit(child)

    visit(parse(path))
    return {m for m in found if m == package or m.startswith(package + ".")}


def import_graph(package: str, depth: int | None) -> dict[str, set[str]]:
    """Edges between the package's modules (depth None) or its subpackages and top-level modules (depth 2:
    `dlsec_core.privacy`, `dlsec_core.store`); an edge goes to the module named, as Python imports it."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in python_files(package)
    }

    def node(name: str) -> str:
        return name if depth is None else ".".join(name.split(".")[:depth])

    graph: dict[str, set[str]] = {node(m): set() for m in modules}
    for name, path in modules.items():
        for target in module_level_imports(path, package):
            if target in modules and node(target) != node(name):
                graph[node(name)].add(node(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def test_the_cycle_finder_finds_a_known_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("depth", [None, 2], ids=["modules", "packages"])
def test_the_core_has_no_import_cycles(depth: int | None):
    """Issue "Runs that last": training/__init__ registered recipes by importing defenses and privacy, which import
    training back. Arrows point down only; `dlsec_core.catalog` is the one place that imports every recipe."""
    graph = import_graph("dlsec_core", depth)
    assert len(graph) > (10 if depth else 40)
    assert cycles(graph) == []
