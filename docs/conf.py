"""Sphinx configuration for the fastdecode documentation.

The package must be importable: installed, or built in place and put on the path. From the
project root::

    python setup.py build_ext --inplace
    PYTHONPATH=. python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import fastdecode

project = "fastdecode"
author = "the fastdecode authors"
copyright = "the fastdecode authors"
version = fastdecode.__version__
release = fastdecode.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]

# Everything is built offline: no intersphinx, no remote assets.
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []
root_doc = "index"
default_role = "code"
highlight_language = "python3"
pygments_style = "sphinx"

# API reference: one page (api.rst), with autosummary tables over the entries of each group;
# no generated stub pages.
autosummary_generate = False
autodoc_typehints = "none"
add_module_names = True

# numpydoc: accept today's prose docstrings as well as numpydoc ones, without validation
# warnings and without member tables that would point into private modules.
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

html_theme = "alabaster"
html_title = f"fastdecode {release}"
html_static_path = ["_static"]
html_theme_options = {
    "description": "Filter decoding with substitution, with a compiled core",
    "fixed_sidebar": True,
    "page_width": "1240px",
    "sidebar_width": "230px",
    "show_relbars": True,
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_show_sourcelink = False


# --- Prose docstrings --------------------------------------------------------------------
# Docstrings written in numpydoc format (with underlined sections such as "Parameters") are
# left to numpydoc. Older prose docstrings, written as plain text with "name: description"
# lines, are laid out as paragraphs and bullet lists, and characters that reStructuredText
# would read as markup outside literals (``*`` and ``|``) are escaped, so that both kinds build
# without warnings.

import re  # noqa: E402

_SECTION_RULE = re.compile(r"^\s*-{3,}\s*$")
_BULLET = re.compile(r"^\s*[-*] ")
_KEY = re.compile(r"^[A-Za-z_][\w, ]*(\s\([^)]*\))?:(\s|$)")
_LITERAL_OR_ROLE = re.compile(r"(``.+?``|:[\w:]+:`[^`]+`)")


def _escape_markup(text):
    parts = _LITERAL_OR_ROLE.split(text)
    out = []
    for i, part in enumerate(parts):
        if part is None:
            continue
        if _LITERAL_OR_ROLE.fullmatch(part):
            out.append(part)
        else:
            out.append(part.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|"))
    return "".join(out)


def _prose_to_rst(lines):
    items = []  # (kind, text): kind is "para" or "bullet"
    for raw in lines:
        line = raw.strip()
        if not line:
            items.append(None)
            continue
        if _BULLET.match(raw):
            items.append(["bullet", line[2:].strip()])
        elif _KEY.match(line) or not items or items[-1] is None:
            items.append(["para", line])
        else:
            items[-1][1] += " " + line
    out = []
    previous = None
    for item in items:
        if item is None:
            previous = None
            continue
        kind, text = item
        if out and not (kind == "bullet" and previous == "bullet"):
            out.append("")
        out.append(("- " if kind == "bullet" else "") + _escape_markup(text))
        previous = kind
    return out


_RST_BLOCK = re.compile(r"^\s*(\.\. |>>>)|::\s*$")


def _process_docstring(app, what, name, obj, options, lines):
    # numpydoc sections, directives, literal blocks or doctests: reStructuredText, left alone.
    if not lines or any(_SECTION_RULE.match(line) or _RST_BLOCK.search(line) for line in lines):
        return
    lines[:] = _prose_to_rst(lines)


def setup(app):
    # Before numpydoc (priority 500), which then sees plain paragraphs.
    app.connect("autodoc-process-docstring", _process_docstring, priority=400)
