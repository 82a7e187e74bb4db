"""Sphinx configuration: the narrative pages (Markdown, through myst-parser) and
the API reference generated from the docstrings (autodoc).

Build with ``make docs``; ``make test`` builds with warnings as errors, so a
docstring that names a parameter that no longer exists breaks the build.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # document this checkout, installed or not

import sse_kit  # noqa: E402

project = "sse_kit"
author = "sse_kit contributors"
release = version = sse_kit.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_inventories", "Thumbs.db", ".DS_Store"]

# The Markdown stays GitHub-readable: the pages link to each other as `page.md#heading`,
# which needs GitHub-style anchors for headings.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

# -- autodoc --------------------------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
# Signatures show the annotations; the descriptions stay what the docstrings say.
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# The adapters' optional dependencies come with the test and dev extras; where one is
# missing it is mocked, so that the reference still builds (with sphinx and myst-parser only).
autodoc_mock_imports: list[str] = []
for optional in ("redis", "prometheus_client"):
    try:
        __import__(optional)
    except ImportError:
        autodoc_mock_imports.append(optional)

# -- intersphinx ----------------------------------------------------------------------
# Links into the Python, Flask, werkzeug, gunicorn and redis-py docs. Their inventories
# (objects.inv) live on those projects' sites, and the machines that build these docs
# (CI, the dev machines) reach no network but the package registries: a fetch that
# fails is a warning that no `suppress_warnings` entry silences, and `-W` would fail
# the build. So an inventory is read from docs/_inventories/<name>.inv when that file
# is there (saved by hand from <url>/objects.inv), and fetched from the site only
# with SSE_KIT_DOCS_ONLINE=1; otherwise that project is left out and its names are
# shown as plain text (the build is not nitpicky, so an unresolved external name is
# no warning).
INTERSPHINX = {
    "python": "https://docs.python.org/3",
    "flask": "https://flask.palletsprojects.com/en/stable",
    "werkzeug": "https://werkzeug.palletsprojects.com/en/stable",
    "gunicorn": "https://docs.gunicorn.org/en/stable",
    "redis": "https://redis.readthedocs.io/en/stable",
}
ONLINE = os.environ.get("SSE_KIT_DOCS_ONLINE") == "1"
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
for name, url in INTERSPHINX.items():
    local = DOCS / "_inventories" / f"{name}.inv"
    if local.is_file():
        intersphinx_mapping[name] = (url, str(local))
    elif ONLINE:
        intersphinx_mapping[name] = (url, None)
intersphinx_timeout = 10

# -- HTML -----------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"sse_kit {release}"
html_static_path: list[str] = []

# -- nitpicky ---------------------------------------------------------------------------
# `-n` warns about every reference that resolves nowhere. A name from a project whose
# inventory was not loaded (see intersphinx above) cannot resolve, so it is let go,
# and only then: with the inventories, every such name must resolve.
nitpicky = True
_EXTERNAL_MODULES = {
    "python": sorted(sys.stdlib_module_names),
    "flask": ["flask"],
    "werkzeug": ["werkzeug"],
    "gunicorn": ["gunicorn"],
    "redis": ["redis"],
    # No inventory is configured for prometheus_client: its docs are not Sphinx.
    "prometheus_client": ["prometheus_client"],
}
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(modules)})(\..*)?")
    for name, modules in _EXTERNAL_MODULES.items()
    if name not in intersphinx_mapping
]
# Private types in public signatures: the hub's counters table, which a backplane
# reader only adds to (Feed.counters), and RedisBackplane's reader, a BackplaneReader.
nitpick_ignore = [("py:class", "sse_kit._stats.Counters"), ("py:class", "sse_kit.redis._Reader")]


# -- docstrings that name parameters -----------------------------------------------------
# Sphinx renders a `:param x:` field whatever x is; this check warns (so `-W` fails the
# build) when x is no parameter of the documented callable: a renamed or removed one.
_PARAM = re.compile(r"\s*:param\s+(?:[^:]*\s)?\\?\*{0,2}(\w+):")
_log = logging.getLogger("sse_kit.docs")


def _check_params(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                  lines: list[str]) -> None:
    if what not in ("class", "exception", "function", "method"):
        return
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    for line in lines:
        match = _PARAM.match(line)
        if match and match[1] not in parameters:
            _log.warning("%s: `:param %s:` names no parameter of %s%s", name, match[1],
                         name, inspect.signature(obj), type="sse_kit", subtype="param")


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-docstring", _check_params)
