"""The package import graph has no cycle (function-level imports included), every module imports in a fresh
interpreter, and no module uses another module's private names (a leading underscore means "mine only")."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("peftlab_kernels", "labs", "app")
SCRIPTS = ("app/pages/", "__main__.py")        # Streamlit page scripts and `python -m` entries run on import


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path):
    """(imported module, [names taken from it], {local alias: module}) for every import in the file, at any depth."""
    found, aliases = [], {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:
                    found.append((a.name, []))
                    if a.asname:
                        aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in MODULES:                       # `from labs.methods import io`: the submodule
                    found.append((sub, []))
                    aliases[a.asname or a.name] = sub
                elif node.module in MODULES:
                    found.append((node.module, [a.name]))
    return [(m, names) for m, names in found if m != name], aliases


def _graph() -> dict[str, set[str]]:
    return {m: {dep for dep, _ in _imports(m, p)[0]} for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert len(graph) > 50 and graph["labs.methods.qlora"], "the graph reads the imports"
    assert _cycles(graph) == []
    assert _cycles({**graph, "labs.base": graph["labs.base"] | {"labs.tasks"},
                    "labs.tasks": graph["labs.tasks"] | {"labs.base"}}), "a planted cycle is found"


def test_one_sys_path_bootstrap():
    """The entry (streamlit_app.py) and app/ui.py put the repo root on sys.path; no page does it again."""
    pages = sorted((ROOT / "app" / "pages").glob("*.py"))
    assert pages and not [p.name for p in pages if "sys.path" in p.read_text(encoding="utf-8")]


def test_no_lab_imports_another_lab():
    """Labs share code through labs.toolkit, labs.quant_probe, labs.inference_cost and labs.methods, not each other."""
    labs = {m for m in MODULES if m.startswith("labs.experiments.")}
    bad = {m: sorted(_graph()[m] & labs) for m in labs if _graph()[m] & labs}
    assert bad == {}


def test_no_module_uses_another_module_s_private_names():
    bad = []
    for name, path in MODULES.items():
        found, aliases = _imports(name, path)
        for module, names in found:
            bad += [f"{path.relative_to(ROOT)}: from {module} import {n}" for n in names
                    if n.startswith("_") and not n.startswith("__")]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert bad == []


def test_every_module_imports_in_a_fresh_interpreter():
    names = [m for m, p in MODULES.items() if not any(s in p.relative_to(ROOT).as_posix() for s in SCRIPTS)]
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok', len(sys.argv) - 1)"
    r = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-3000:]
