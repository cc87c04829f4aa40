"""Sphinx configuration: furo, MyST Markdown pages, API reference from the docstrings."""

from __future__ import annotations

import wsgi_session

project = "wsgi_session"
author = "wsgi_session developers"
release = version = wsgi_session.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"wsgi_session {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# The docs build with warnings as errors; these annotations name types that
# live only under TYPE_CHECKING or in typeshed.
nitpicky = False
