"""Sphinx configuration of geoinv's documentation (numpydoc, PyData theme, an executed gallery)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import geoinv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

project = "geoinv"
author = "the geoinv developers"
release = geoinv.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py.md5", "generated/results_index.md"]
myst_enable_extensions = ["dollarmath"]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": True}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types with their units
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

html_theme = "pydata_sphinx_theme"
html_title = f"geoinv {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}

# The Results page includes an index generated from the committed result files at every build
sys.path.insert(0, str(ROOT / "benchmarks"))
from _index import write_index  # noqa: E402

write_index(Path(__file__).resolve().parent / "generated" / "results_index.md")

# The gallery runs every example when the docs build, so examples cannot rot. GEOINV_QUICK=1 (what CI sets)
# makes them use their small settings; a full build shows the real runs.
os.environ.setdefault("MPLBACKEND", "Agg")
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/",  # execute every example, not only plot_*.py
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
}
