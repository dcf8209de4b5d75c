"""The package's house rules, read from its source (issue 20): no import circle between the
package's modules, no import from a lower layer up into a higher one, and small rooms (files
and functions) except where an allow-list says why.

Imports are parsed with ``ast``, at module level AND inside functions (a lazy import is still
a dependency), so a circle cannot hide behind ``import`` statements in function bodies.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "snntorch_egru"
NAME = "snntorch_egru"

# The layers, lowest first. A module may import modules of its own layer or of lower ones.
# Names are relative to the package ("" is the package root); a name stands for itself and
# everything under it ("cuda" covers cuda._cupy, cuda._function, ...).
LAYERS: List[Tuple[str, Tuple[str, ...]]] = [
    ("base", ("_checks", "_version", "_io", "_native", "_import_hook", "cli")),  # cli.main reaches its commands by name
    ("surrogate", ("surrogate",)),
    ("math", ("functional", "state")),
    # the engines, in three sub-layers: the shared room and the registry, the launchers (which never import
    # each other), and the operator that dispatches to them and registers the fast backends
    ("engine core", ("_engine", "backends")),
    ("engine launchers", ("sparse", "_cpu_backward", "_grad", "_onnx", "cuda", "_cell_fast")),
    ("engine operator", ("_op",)),
    # the layers: construction, then the per-call half every module shares, then the modules
    ("layer setup", ("_layer_setup", "_packed")),
    ("layer calls", ("_layer",)),
    ("layers", ("_cell", "modules", "norse")),
    (
        "bridges",
        (
            "interop",
            "_tbptt",
            "_recorder",
            "metrics",
            "nir",
            "_nir",
            "convert",
            "_nb_register",
            "registration",
            "neurobench",
            "bench",
            "utils",
            "streaming",
            "init",
            "_nb_hooks",
            "_bench_report",
            "_bench_events",
            "_roofline",
        ),
    ),
    ("training", ("training",)),
    ("entry points", ("", "__main__", "cuda.__main__")),
]

# Import edges allowed to close a circle, each with its reason. Every entry must still exist
# (a stale one fails the test, so the list can only shrink).
CIRCLE_EDGES_ALLOWED: Dict[Tuple[str, str], str] = {}

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80  # from the ``def`` line to the last line, docstring included

# Files over MAX_FILE_LINES, with the reason (relative paths).
LONG_FILES_ALLOWED: Dict[str, str] = {}

# Functions over MAX_FUNCTION_LINES ("path:qualified name"), with the reason.
LONG_FUNCTIONS_ALLOWED: Dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> Dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _imported(mod: str, is_package: bool, node: ast.AST, known: Set[str]) -> Set[str]:
    """Package modules one ``import`` / ``from ... import`` statement of ``mod`` reaches."""
    out: Set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == NAME or alias.name.startswith(NAME + "."):
                out.add(alias.name[len(NAME) + 1 :])
        return out
    assert isinstance(node, ast.ImportFrom)
    if node.level == 0:
        if node.module is None or not (node.module == NAME or node.module.startswith(NAME + ".")):
            return out
        base = node.module[len(NAME) + 1 :]
    else:
        here = mod.split(".") if mod else []
        if not is_package:
            here = here[:-1]
        up = node.level - 1
        if up > len(here):
            raise AssertionError(f"{mod}: relative import above the package root")
        parts = here[: len(here) - up] + (node.module.split(".") if node.module else [])
        base = ".".join(parts)
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        out.add(sub if sub in known else base)  # `from . import functional` is the module, else the names
    return out


def import_graph() -> Dict[str, Set[str]]:
    """``module -> modules it imports`` over the package (module level and function level)."""
    sources = _sources()
    known = set(sources)
    graph: Dict[str, Set[str]] = {}
    for mod, path in sources.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges: Set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= {m for m in _imported(mod, path.name == "__init__.py", node, known) if m in known}
        edges.discard(mod)
        graph[mod] = edges
    return graph


def strongly_connected(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Tarjan's algorithm (iterative): the strongly connected components of ``graph``."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    comps: List[List[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                comps.append(sorted(comp))
    return comps


def layer_of(mod: str) -> int:
    """Index in :data:`LAYERS` of the most specific name covering ``mod``."""
    best, best_len = -1, -1
    for i, (_, names) in enumerate(LAYERS):
        for n in names:
            covers = mod == n or (n and mod.startswith(n + ".")) or (n == "" and mod == "")
            if covers and len(n) > best_len:
                best, best_len = i, len(n)
    return best


def _show(mod: str) -> str:
    return f"{NAME}.{mod}" if mod else NAME


# ---------------------------------------------------------------------------------------------
# the checker itself


def test_checker_finds_a_circle_and_parses_relative_imports(tmp_path):
    assert sorted(map(len, strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}))) == [1, 3]
    tree = ast.parse(
        "from .. import functional as F\nfrom ..surrogate import heaviside\nfrom . import io\n"
        "import snntorch_egru.cuda._function\nimport numpy\n"
    )
    known = {"functional", "surrogate", "_nir", "_nir.io", "cuda", "cuda._function"}
    got = set()
    for node in tree.body:
        got |= _imported("_nir.export", False, node, known)
    assert got == {"functional", "surrogate", "_nir.io", "cuda._function"}
    # a package's own `from . import x` is relative to the package itself
    assert _imported("cuda", True, ast.parse("from ._function import X").body[0], known) == {"cuda._function"}


def test_import_graph_sees_function_level_imports():
    graph = import_graph()
    # registration imports the NIR page inside functions only: it must still be an edge
    assert "nir" in graph["registration"]
    assert "cuda._cupy" in graph["cuda"]  # a lazy import inside cuda.kernel_launcher()


# ---------------------------------------------------------------------------------------------
# the house rules


def test_every_module_has_a_layer():
    missing = [_show(m) for m in import_graph() if layer_of(m) < 0]
    assert missing == [], f"modules without a layer (add them to LAYERS in {Path(__file__).name}): {missing}"


def test_no_import_circle():
    graph = import_graph()
    for edge, why in CIRCLE_EDGES_ALLOWED.items():
        assert edge[1] in graph.get(edge[0], set()), (
            f"allowed circle edge {edge} ({why}) no longer exists: remove it from CIRCLE_EDGES_ALLOWED"
        )
    pruned = {m: {e for e in es if (m, e) not in CIRCLE_EDGES_ALLOWED} for m, es in graph.items()}
    circles = [[_show(m) for m in c] for c in strongly_connected(pruned) if len(c) > 1]
    assert circles == [], f"import circles among the package's modules: {circles}"


def test_no_import_from_a_lower_layer_up():
    graph = import_graph()
    upward = []
    for mod, edges in sorted(graph.items()):
        for dep in sorted(edges):
            if layer_of(dep) > layer_of(mod):
                upward.append(
                    f"{_show(mod)} ({LAYERS[layer_of(mod)][0]}) imports {_show(dep)} ({LAYERS[layer_of(dep)][0]})"
                )
    assert upward == [], "imports from a lower layer into a higher one:\n" + "\n".join(upward)


def _functions(tree: ast.AST) -> Iterable[Tuple[str, ast.AST]]:
    def walk(node: ast.AST, prefix: str) -> Iterable[Tuple[str, ast.AST]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def _rel(path: Path) -> str:
    return path.relative_to(PKG).as_posix()


def test_no_long_file():
    long = {_rel(p): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    new = {f: n for f, n in long.items() if f not in LONG_FILES_ALLOWED}
    assert new == {}, f"files over {MAX_FILE_LINES} lines (split them): {new}"
    stale = sorted(set(LONG_FILES_ALLOWED) - set(long))
    assert stale == [], f"LONG_FILES_ALLOWED entries now short enough (remove them): {stale}"


def test_no_long_function():
    long = {}
    for p in sorted(PKG.rglob("*.py")):
        for qual, fn in _functions(ast.parse(p.read_text())):
            n = fn.end_lineno - fn.lineno + 1  # type: ignore[attr-defined]
            if n > MAX_FUNCTION_LINES:
                long[f"{_rel(p)}:{qual}"] = n
    new = {f: n for f, n in long.items() if f not in LONG_FUNCTIONS_ALLOWED}
    assert new == {}, f"functions over {MAX_FUNCTION_LINES} lines (cut them): {new}"
    stale = sorted(set(LONG_FUNCTIONS_ALLOWED) - set(long))
    assert stale == [], f"LONG_FUNCTIONS_ALLOWED entries now short enough (remove them): {stale}"


@pytest.mark.parametrize("low", ["_checks", "_version"])
def test_lowest_layer_imports_nothing_of_the_package(low):
    assert import_graph()[low] == set()


# ---------------------------------------------------------------------------------------------
# one name per thing


def test_one_reset_table():
    """Every reset table of the package is the one in ``_checks`` (the kernels' codes included)."""
    import torch

    from snntorch_egru import _checks, _cpu_backward, backends, functional, sparse, surrogate
    from snntorch_egru.cuda import _function

    assert functional.RESET_MECHANISMS == tuple(_checks.RESET_CODES) == ("subtract", "zero", "none")
    assert sorted(_checks.RESET_CODES.values()) == [0, 1, 2]
    assert backends.RESET_CODES is _checks.RESET_CODES and _function.RESET_CODES is _checks.RESET_CODES
    assert sparse.RESET_CODES is _checks.RESET_CODES and _cpu_backward.RESET_CODES is _checks.RESET_CODES
    z = torch.zeros(1, 1)
    call = backends.LayerCall(
        torch.zeros(1, 1, 1),
        z,
        z,
        z,
        torch.zeros(3, 1),
        torch.zeros(3, 1),
        None,
        None,
        torch.zeros(1),
        surrogate.EGRUSurrogate(),
        "half",
    )
    with pytest.raises(ValueError, match=r"^reset_mechanism must be one of 'subtract', 'zero', 'none', got 'half'$"):
        _checks.reset_mechanism("half")
    with pytest.raises(ValueError, match=r"^reset must be one of 'subtract', 'zero', 'none', got 'half'$"):
        _ = call.reset_code  # the code the operator and the kernels take, checked where the call is built
    with pytest.raises(ValueError, match=r"^p\.reset must be one of .*, got 3$"):
        _checks.reset_mechanism(3, "p.reset")
    codes = []
    for r in functional.RESET_MECHANISMS:
        call.reset = r
        codes.append(call.reset_code)
    assert codes == [0, 1, 2]


def test_one_version():
    """``__version__`` lives in ``_version``; the package root, the NIR export and the build read it there."""
    import re

    import tomllib

    import snntorch_egru
    from snntorch_egru import _version

    assert snntorch_egru.__version__ == _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", _version.__version__)
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in cfg["project"]["dynamic"] and "version" not in cfg["project"]
    assert cfg["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "snntorch_egru._version.__version__"}
    assert "_version" in import_graph()["_nir.export"]


def test_one_set_of_layer_tensor_names():
    """The five tensors of a layer have one set of names: the cell's parameters, the sequence layer's
    per-layer tensors, the interop table and the NIR node's fields all use ``LAYER_TENSOR_NAMES``."""
    import dataclasses

    import snntorch_egru as se
    from snntorch_egru import functional, interop, nir

    names = functional.LAYER_TENSOR_NAMES
    assert len(set(names)) == 5
    assert tuple(n for n, _ in se.EGRUCell(3, 4).named_parameters()) == names
    assert tuple(se.EGRU(3, 4, num_layers=2).layer_tensors(1)) == names
    assert interop.PARAMETER_NAMES == names
    assert tuple(f.name for f in dataclasses.fields(nir.EGRU) if f.name in names) == names
