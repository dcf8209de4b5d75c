"""Generate one API page per public module of snntorch_egru at build time.

Every public (not underscore-prefixed) submodule that imports is documented,
so modules written later (``metrics``, ``nir``, ``training``, ...) appear
without editing the docs. Each page holds an autosummary table of the
module's ``__all__`` and the full autodoc entries.

Tutorials whose module is missing are excluded from the build (and so from
the glob toctree) rather than failing it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import snntorch_egru

# Not documented as pages: the CLI entry points and the module whose classes the
# package root re-exports (they are documented as ``snntorch_egru.EGRU`` etc.).
SKIP = {"snntorch_egru.cli", "snntorch_egru.__main__", "snntorch_egru.modules"}

# tutorial file stem -> modules it needs
TUTORIAL_REQUIRES = {
    "01_first_egru": [],
    "02_norse_flavour": ["snntorch_egru.norse", "snntorch_egru.interop", "norse"],
    "03_sparsity_and_sparse_bptt": ["snntorch_egru.metrics", "snntorch_egru.sparse", "snntorch_egru.bench"],
    "04_nir_export": ["snntorch_egru.nir"],
    "05_event_camera_gestures": ["tonic"],
    "06_language_modelling": ["snntorch_egru.training"],
    "07_neurobench": ["snntorch_egru.neurobench", "neurobench"],
}


def public_modules() -> list[str]:
    names = ["snntorch_egru"]
    for info in pkgutil.walk_packages(snntorch_egru.__path__, "snntorch_egru."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts[1:]) or info.name in SKIP:
            continue
        names.append(info.name)
    out = []
    for name in sorted(set(names), key=lambda n: (n != "snntorch_egru", n)):
        try:
            importlib.import_module(name)
        except Exception as exc:  # optional dependency missing, or module unfinished
            print(f"[api_pages] skipping {name}: {type(exc).__name__}: {exc}")
            continue
        out.append(name)
    return out


def public_names(modname: str) -> list[str]:
    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [
            n
            for n, o in vars(mod).items()
            if not n.startswith("_")
            and getattr(o, "__module__", None) == modname
            and (inspect.isclass(o) or inspect.isfunction(o))
        ]
    return [n for n in names if not n.startswith("__") and not inspect.ismodule(getattr(mod, n, None))]


def _page(modname: str) -> str:
    mod = importlib.import_module(modname)
    names = public_names(modname)
    title = f"``{modname}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {modname}", "   :no-members:", ""]
    if names:
        lines += [".. rubric:: Summary", "", f".. currentmodule:: {modname}", "", ".. autosummary::", ""]
        lines += [f"   {n}" for n in names]
        lines += [""]
        lines += [".. rubric:: Reference", ""]
        for n in names:
            obj = getattr(mod, n)
            if inspect.isclass(obj):
                kind = "autoclass"
                public_bases = [b for b in obj.__bases__ if not b.__name__.startswith("_") and b is not object]
                opts = ["   :members:"] + (["   :show-inheritance:"] if public_bases else [])
                if issubclass(obj, tuple):  # NamedTuples: fields are documented in the class docstring
                    opts = ["   :no-members:", "   :show-inheritance:"]
            elif callable(obj):
                kind, opts = "autofunction", []
            else:
                kind, opts = "autodata", ["   :no-value:"]
            lines += [f".. {kind}:: {modname}.{n}", *opts, ""]
    return "\n".join(lines) + "\n"


def generate(app) -> None:
    srcdir = Path(app.srcdir)
    gen = srcdir / "api" / "generated"
    gen.mkdir(parents=True, exist_ok=True)
    mods = public_modules()
    wanted = {f"{m}.rst" for m in mods}
    for f in gen.glob("*.rst"):
        if f.name not in wanted:
            f.unlink()
    for m in mods:
        text = _page(m)
        f = gen / f"{m}.rst"
        if not f.exists() or f.read_text() != text:  # keep mtimes stable for incremental builds
            f.write_text(text)


def exclude_tutorials(app, config) -> None:
    for stem, needs in TUTORIAL_REQUIRES.items():
        missing = []
        for m in needs:
            try:
                importlib.import_module(m)
            except Exception:
                missing.append(m)
        if missing:
            print(f"[api_pages] tutorial {stem} left out: missing {', '.join(missing)}")
            config.exclude_patterns.append(f"tutorials/{stem}.*")


def add_nir_spec(app, docname, source) -> None:
    """Put the NIR helper's node specification (docs/nir_egru_spec.md) under the NIR guide, when present."""
    if docname == "guide/nir" and (Path(app.srcdir) / "nir_egru_spec.md").exists():
        source[0] += "\n```{toctree}\n:maxdepth: 2\n\n/nir_egru_spec\n```\n"


def setup(app):
    app.connect("config-inited", exclude_tutorials)
    app.connect("source-read", add_nir_spec)
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
