"""Sphinx configuration: Markdown pages (MyST), the furo theme, strict build (make docs).

The reference's generated parts come from docs/_ext/reference.py at every build; the CLI
reference comes from the real parser (sphinx-argparse on allocscope.cli.build_parser).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent / "src"))

from allocscope import __version__  # noqa: E402

project = "allocscope"
author = "the allocscope developers"
copyright = "the allocscope developers; Apache-2.0"
release = version = __version__
extensions = ["myst_parser", "sphinxarg.ext", "reference"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "reference/_generated", "**/_generated"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
html_theme = "furo"
html_title = f"allocscope {__version__}"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"  # without one, browsers log a 404 for /favicon.ico
# Strict: every warning fails `make docs` (sphinx-build -W -n); a page outside every
# toctree, a broken link or a missing include is a warning.
nitpicky = True
# Pygments' console lexer reads an output line starting with "#" as a root prompt and
# falls back to plain text (harmless); sphinx-argparse's domain has no "any" lookup.
suppress_warnings = ["misc.highlighting_failure", "myst.domains"]
