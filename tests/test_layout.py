"""The package's layering, read from its imports (module level and inside functions, type-only
ones included): no import circles, and no edge the layout table of docs/layout.md forbids.

    python tests/test_layout.py     prints the edges between the parts and what each part imports
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tune_selcopy"
# The repository's search_spaces/ folder is installed as this package (pyproject's package-dir).
SPACES = (ROOT / "search_spaces", f"{PACKAGE}.search_spaces")
COMMANDS = {f"{PACKAGE}.{name}" for name in ("run", "analyze", "train", "data", "__main__")}
SHARED = {f"{PACKAGE}.{name}" for name in ("errors", "uris", "trial_logs")}

# part -> the imports it must not make (prefixes of module names)
FORBIDDEN = {
    "science": ("ray", f"{PACKAGE}.sweeps", f"{PACKAGE}.analysis", f"{PACKAGE}.search_spaces", *COMMANDS),
    "analysis": ("torch", "ray", f"{PACKAGE}.science", f"{PACKAGE}.sweeps", f"{PACKAGE}.search_spaces", *COMMANDS),
    "shared": ("torch", "ray", f"{PACKAGE}.science", f"{PACKAGE}.sweeps", f"{PACKAGE}.analysis",
               f"{PACKAGE}.search_spaces", *COMMANDS),
    "sweeps": (*COMMANDS,),
    "search_spaces": ("ray", *COMMANDS),
    # The commands are entry points: only the dispatcher (tune-selcopy X) may import them.
    "commands": (*(COMMANDS - {f"{PACKAGE}.__main__"}),),
}


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found = {}
    for base, name in ((ROOT / PACKAGE, PACKAGE), SPACES):
        for path in sorted(base.rglob("*.py")):
            parts = [name, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def part(module: str) -> str:
    """Which part of the layout a module belongs to."""
    if module in COMMANDS:
        return "commands"
    if module in SHARED or module == PACKAGE:
        return "shared"
    return module.split(".")[1]


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules ``module`` imports anywhere in its file: package modules by their full
    name (``from pkg import mod`` names the module ``pkg.mod``), others by their top name."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            out.add(name if name.split(".")[0] == PACKAGE else name.split(".")[0])
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {module: imports(module, path, set(found)) for module, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing
    itself): Tarjan's algorithm over the package's own modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
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
            if len(component) > 1 or v in edges[v]:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def forbidden_edges(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} ({part(module)}) imports {name}"
        for module, names in edges.items()
        for name in names
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[part(module)])
    )


def test_every_module_belongs_to_a_part():
    assert set(map(part, modules())) == set(FORBIDDEN)


def test_no_import_circles():
    assert cycles(graph()) == []


def test_no_forbidden_edges():
    assert forbidden_edges(graph()) == []


def test_the_checker_sees_circles_and_forbidden_edges():
    edges = {"tune_selcopy.analysis.a": {"tune_selcopy.analysis.b", "torch"},
             "tune_selcopy.analysis.b": {"tune_selcopy.analysis.a"},
             "tune_selcopy.science.c": {"tune_selcopy.sweeps.d"}, "tune_selcopy.sweeps.d": set()}
    assert cycles(edges) == [["tune_selcopy.analysis.a", "tune_selcopy.analysis.b"]]
    assert forbidden_edges(edges) == ["tune_selcopy.analysis.a (analysis) imports torch",
                                      "tune_selcopy.science.c (science) imports tune_selcopy.sweeps.d"]
    # a function-level import counts as much as a module-level one
    source = "def f():\n    from tune_selcopy.sweeps import storage\n"
    path = ROOT / "tests" / ".layout-probe.py"
    try:
        path.write_text(source)
        assert imports("tune_selcopy.science.x", path, {"tune_selcopy.sweeps.storage"}) == {"tune_selcopy.sweeps.storage"}
    finally:
        path.unlink()


def loaded_by(statement: str) -> set[str]:
    """Which of torch and ray a fresh interpreter has loaded after ``statement``."""
    code = f"{statement}; import sys; print(','.join(m for m in ('torch', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(filter(None, out.stdout.strip().split(",")))


def test_the_analysis_and_the_shared_modules_load_neither_torch_nor_ray():
    assert loaded_by("import tune_selcopy.analyze, tune_selcopy.analysis.report, tune_selcopy.trial_logs") == set()


def test_the_science_loads_no_ray():
    assert loaded_by("import tune_selcopy.science.trial, tune_selcopy.train, tune_selcopy.data") == {"torch"}


def test_space_modules_come_from_the_checkout_they_run_in(tmp_path):
    """A copy of the repository (a Ray job's working dir) runs its own search_spaces/, not the
    installed package's; so does a checkout with nothing installed."""
    for name in ("pyproject.toml", "tune_selcopy", "search_spaces"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    (tmp_path / "search_spaces" / "edited.py").write_text((ROOT / "search_spaces" / "attn_act.py").read_text())
    code = ("from tune_selcopy.sweeps.space_sources import available_spaces; import tune_selcopy.search_spaces as s; "
            "print(s.__file__); print(available_spaces())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    where, spaces = out.stdout.splitlines()
    assert Path(where) == tmp_path / "search_spaces" / "__init__.py"
    assert "edited" in spaces


def summary() -> str:
    edges = graph()
    between: dict[tuple[str, str], int] = defaultdict(int)
    outside: dict[str, set[str]] = defaultdict(set)
    for module, names in edges.items():
        for name in names:
            if name in edges:
                if part(name) != part(module):
                    between[part(module), part(name)] += 1
            elif name in ("torch", "ray", "pandas", "pyarrow", "scipy", "numpy", "matplotlib", "yaml", "tabulate"):
                outside[part(module)].add(name)
    lines = [f"{len(edges)} modules; circles: {cycles(edges) or 'none'}; forbidden edges: "
             f"{forbidden_edges(edges) or 'none'}", "edges between parts (imports):"]
    lines += [f"  {a:>13} -> {b:<13} {n}" for (a, b), n in sorted(between.items())]
    lines += ["third-party imports per part:"]
    lines += [f"  {p:>13}: {', '.join(sorted(names))}" for p, names in sorted(outside.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary())
