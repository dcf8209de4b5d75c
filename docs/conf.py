"""Sphinx configuration for snntorch-egru.

Build (warnings are errors, every tutorial executed)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The build needs no network: tutorials use offline data only, and MathJax is
loaded by the browser when a page is viewed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE / "_ext"))

import snntorch_egru  # noqa: E402

# The "python3" Jupyter kernel that executes the tutorials starts `python` from PATH (ipykernel's
# kernel.json); make that the interpreter running Sphinx, also when its venv is not activated.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
# Tutorials also import the package from the source tree when it is not installed.
os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")

project = "snntorch-egru"
author = "snntorch-egru developers"
copyright = "2026, snntorch-egru developers"
release = snntorch_egru.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "myst_nb",
    "api_pages",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = [
    "_build",
    "jupyter_execute",
    "**.ipynb_checkpoints",
    "_ext",
    "Thumbs.db",
    ".DS_Store",
    "tutorials/README.md",
    "tutorials/_data",
    "changelog.d",  # per-branch changelog fragments, merged into changelog.md by hand
]
html_static_path = ["_static"]
html_css_files = ["custom.css"]

html_theme = "furo"
html_title = f"snntorch-egru {release}"
html_theme_options = {"sidebar_hide_name": False}

# -- autodoc ------------------------------------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # torch base-class docstrings reference labels of the torch docs
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_mock_imports: list[str] = []
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [
    ("Inputs", "params_style"),
    ("Outputs", "returns_style"),
    ("Methods", "params_style"),
]  # no duplicate method entries

# Type hints name classes of torch and others; unresolvable names must not fail the build.
nitpicky = False
intersphinx_mapping: dict = {}  # offline build: no inventories are fetched

# -- myst / myst-nb -----------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("SNNTORCH_EGRU_DOCS_EXECUTE", "force")
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_kernel_rgx_aliases = {".*": "python3"}

# tutorials are optional only when their module is missing; see api_pages.TUTORIAL_REQUIRES
# "more than one target found": a bare ``EGRU`` in a type hint matches both the layer
# (snntorch_egru.EGRU) and the NIR node (snntorch_egru.nir.EGRU); Sphinx then picks one.
suppress_warnings = ["mystnb.unknown_mime_type", "ref.python"]
