"""The documentation site: it builds in strict mode, and its examples run.

* ``test_mkdocs_build_strict`` runs ``mkdocs build --strict`` (warnings visible: any warning
  fails it) into a temporary directory (skipped with a reason when the ``docs`` extra is not
  installed: ``pip install -e ".[docs]"``). The rendered site is then checked: no raw Sphinx role
  (``:func:`...```) on any page, and nothing loaded from another host (MathJax is vendored).
* ``test_page_examples[...]`` executes the fenced ``python`` blocks of ``docs/quickstart.md`` and
  ``docs/tutorials/*.md`` in order, one fresh namespace per page, in a temporary working
  directory. A block preceded by ``<!-- no-test ... -->`` is skipped (only for blocks that need
  a cluster or take more than 30 s). A ``bash`` block preceded by ``<!-- run -->`` is executed
  too, line by line, with ``moetheory`` meaning this interpreter's ``python -m moetheory.cli``.
  A page holding ``<!-- requires: mod1 mod2 -->`` is skipped when one of those modules is
  missing (e.g. the PyTorch bridge tutorial without torch).
* ``test_local_links_resolve`` checks, without mkdocs, that the relative links and images of
  the pages this suite owns point at files that exist.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Pages whose examples are executed.
EXAMPLE_PAGES = [DOCS / "quickstart.md", *sorted((DOCS / "tutorials").glob("*.md"))]

_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*(?P<word>no-test|run)\b[^>]*-->\s*$")
_REQUIRES = re.compile(r"<!--\s*requires:\s*(?P<mods>[\w .,-]+?)\s*-->")


def extract_blocks(text: str) -> list[dict]:
    """Fenced code blocks of a Markdown page, in order.

    Each block is a dict with ``lang``, ``code``, ``line`` (1-based line of the opening fence)
    and ``marker`` (``"no-test"``, ``"run"`` or ``None``: the HTML comment on the line(s) just
    before the fence, blank lines allowed).
    """
    blocks = []
    for m in _FENCE.finditer(text):
        before = text[:m.start()].rstrip()
        last_line = before.rsplit("\n", 1)[-1] if before else ""
        mk = _MARKER.search(last_line)
        blocks.append({"lang": m.group("lang").lower(), "code": m.group("code"),
                       "line": text.count("\n", 0, m.start()) + 1,
                       "marker": mk.group("word") if mk else None})
    return blocks


def required_modules(text: str) -> list[str]:
    """Modules listed by ``<!-- requires: ... -->`` comments of a page."""
    mods = []
    for m in _REQUIRES.finditer(text):
        mods += [s for s in re.split(r"[\s,]+", m.group("mods")) if s]
    return mods


def test_extract_blocks_markers():
    page = ("text\n\n```python\na = 1\n```\n\n<!-- no-test: needs a cluster -->\n```python\n"
            "boom()\n```\n<!-- run -->\n\n```bash\nmoetheory --help\n```\n```bash\nmoetheory x\n```\n"
            "<!-- requires: torch dask -->\n")
    blocks = extract_blocks(page)
    assert [(b["lang"], b["marker"]) for b in blocks] == [
        ("python", None), ("python", "no-test"), ("bash", "run"), ("bash", None)]
    assert blocks[0]["code"] == "a = 1\n" and blocks[0]["line"] == 3
    assert required_modules(page) == ["torch", "dask"]


def _shell(line: str, cwd: Path, where: str) -> None:
    argv = shlex.split(line, comments=True)
    if not argv:
        return
    if argv[0] == "moetheory":
        argv = [sys.executable, "-m", "moetheory.cli", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, (f"{where}: `{line}` exited with {out.returncode}\n"
                                 f"stdout:\n{out.stdout[-3000:]}\nstderr:\n{out.stderr[-3000:]}")


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples(page, tmp_path, monkeypatch):
    text = page.read_text(encoding="utf-8")
    for mod in required_modules(text):
        pytest.importorskip(mod, reason=f"{page.name} needs {mod}")
    blocks = [b for b in extract_blocks(text) if b["lang"] in ("python", "py", "bash", "sh")]
    if not any(b["lang"] in ("python", "py") for b in blocks):
        pytest.skip(f"{page.name} has no Python examples yet")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("MOETHEORY_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(ROOT))  # simulations/ and paper_figures/ live at the root
    import matplotlib

    matplotlib.use("Agg")
    namespace = {"__name__": f"docs_{page.stem}"}
    rel = page.relative_to(ROOT)
    for b in blocks:
        where = f"{rel}:{b['line']}"
        if b["marker"] == "no-test":
            continue
        if b["lang"] in ("python", "py"):
            code = compile(b["code"], where, "exec")
            try:
                exec(code, namespace)  # noqa: S102 (the documentation's own examples)
            except Exception as err:  # name the page and line in the failure
                raise AssertionError(f"example at {where} failed: {type(err).__name__}: {err}") from err
        elif b["marker"] == "run":
            for line in b["code"].splitlines():
                _shell(line, tmp_path, where)
    import matplotlib.pyplot as plt

    plt.close("all")


# Pages this suite is responsible for (other pages are checked by the strict mkdocs build).
OWNED_PAGES = [p for p in [ROOT / "README.md", DOCS / "index.md", DOCS / "installation.md", DOCS / "quickstart.md",
                           DOCS / "gallery.md", DOCS / "troubleshooting.md",
                           *sorted((DOCS / "tutorials").glob("*.md")),
                           *sorted((DOCS / "theory").glob("*.md")),
                           *sorted((DOCS / "api").glob("*.md"))] if p.exists()]

_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize("page", OWNED_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # links inside code are not links
    broken = []
    for m in _LINK.finditer(text):
        target = m.group("target")
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).resolve().exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built by ``mkdocs build --strict`` with its warnings visible (no ``--quiet``):
    (completed process, site directory)."""
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python",
                           "pymdownx") if _find_spec(m) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed (missing {missing}); "
                    "install it with  pip install -e \".[docs]\"")
    out_dir = tmp_path_factory.mktemp("docs") / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                          "-f", str(ROOT / "mkdocs.yml"), "-d", str(out_dir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    return out, out_dir


def test_mkdocs_build_strict(site):
    out, out_dir = site
    log = out.stdout + out.stderr
    assert out.returncode == 0, f"mkdocs build --strict failed:\n{log[-5000:]}"
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert not warnings, "the docs build warns:\n" + "\n".join(warnings)
    assert (out_dir / "index.html").exists()
    assert (out_dir / "api" / "fit" / "index.html").exists()


def _rendered(out_dir: Path):
    """(relative path, text) of every rendered page and of the search index."""
    paths = sorted(out_dir.rglob("*.html")) + [out_dir / "search" / "search_index.json"]
    return [(str(p.relative_to(out_dir)), p.read_text(encoding="utf-8")) for p in paths if p.exists()]


#: a Sphinx role as it shows when nothing converts it: :func:`fit` or :func:<code>fit</code>
_RAW_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|obj|exc|const|type):(?:`|<code>)")


def test_rendered_pages_have_no_raw_roles(site):
    """Docstrings' Sphinx roles render as links or code (docs/_ext/sphinx_roles.py), never raw."""
    out, out_dir = site
    assert out.returncode == 0, "the build failed (see test_mkdocs_build_strict)"
    pages = _rendered(out_dir)
    assert len(pages) > 20
    raw = {name: _RAW_ROLE.findall(text)[:3] for name, text in pages if _RAW_ROLE.search(text)}
    assert not raw, f"raw Sphinx roles in the rendered pages: {raw}"
    # nor a converted one shown as text (markup inside a type, which is rendered as code)
    shown = [name for name, text in pages if "&lt;autoref" in text or "[<code>" in text]
    assert not shown, f"cross-reference markup shown as text in {shown}"
    # the conversion produces links: the fitting page links to MoESpec's entry on the model page
    fit_page = (out_dir / "api" / "fit" / "index.html").read_text(encoding="utf-8")
    assert 'href="../model/#moetheory.spec.MoESpec"' in fit_page


#: anything a page would load from another host: <script src>, <link href>, <img src>, url(...)
_REMOTE_LOAD = re.compile(r"<(?:script|img|iframe|source)\b[^>]*\bsrc=[\"']?(?:https?:)?//[^\s\"'>]+"
                          r"|<link\b[^>]*\bhref=[\"']?(?:https?:)?//[^\s\"'>]+"
                          r"|@import\s+(?:url\()?[\"']?(?:https?:)?//|url\([\"']?(?:https?:)?//", re.I)


def test_pages_load_nothing_from_a_cdn(site):
    """Maths renders offline: MathJax is shipped with the site, and no page loads a script,
    stylesheet or font from another host (links to other sites are fine)."""
    out, out_dir = site
    assert out.returncode == 0, "the build failed (see test_mkdocs_build_strict)"
    remote = {name: _REMOTE_LOAD.findall(text)[:3] for name, text in _rendered(out_dir)
              if _REMOTE_LOAD.search(text)}
    assert not remote, f"pages load from other hosts: {remote}"
    theory = (out_dir / "theory" / "softmax" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in theory  # the page has maths for MathJax to typeset ...
    scripts = re.findall(r'<script src="([^"]+)"', theory)
    mathjax = [src for src in scripts if "mathjax" in src.lower()]
    assert any(src.endswith("tex-svg-full.js") for src in mathjax), scripts
    for src in mathjax:  # ... with a script that is in the site itself
        assert (out_dir / "theory" / "softmax" / src).resolve().is_file(), src


def _find_spec(name):
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None


def test_nav_pages_exist():
    """Every page named in mkdocs.yml's nav exists (checked without mkdocs installed)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:", 1)[1]
    pages = re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, flags=re.M)
    assert len(pages) > 10, f"nav parsing found only {pages}"
    missing = [p for p in pages if not (DOCS / p).exists()]
    assert not missing, f"mkdocs.yml nav names pages that do not exist: {missing}"
