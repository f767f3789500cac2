"""Griffe extension for the API reference: Sphinx roles in docstrings become cross-references.

The docstrings use Sphinx's roles (``:func:`fit```, ``:class:`~moetheory.spec.MoESpec```),
which mkdocstrings does not read: they would show as raw text. When the package is loaded,
each role is rewritten into an autorefs cross-reference, its target resolved like a Python name
from the docstring's own scope (its module's imports included); ``~`` shows the last component
only. A target that resolves becomes an *optional* reference: a link where the reference pages
render that object, plain code where they do not (a private helper, a constant without a
docstring). A target in the documented packages that does not resolve (a typo, a renamed
function) becomes a plain reference, which the strict build reports. Targets in other packages
(``numpy.linalg.lstsq``) become plain code. In the item lines of a numpydoc section
(``name : type`` under Parameters, the type under Returns), which are shown as code, a role
becomes its bare name.

Registered in mkdocs.yml (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""
from __future__ import annotations

import re

import griffe

#: ``:role:`target``` with an optional ``~`` (show the last component) and explicit title
#: ``:role:`title <target>```
ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|obj|exc|const|type):`(?P<body>[^`]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of a loaded package into cross-references."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)


#: numpydoc sections of items: their unindented lines (``name : type``, or a bare type under
#: Returns) are shown as code, where markup would appear literally
ITEM_SECTIONS = {"Parameters", "Other Parameters", "Returns", "Yields", "Receives", "Raises", "Warns",
                 "Attributes"}


def _rewrite(obj, text: str) -> str:
    lines = text.split("\n")
    section = None
    for i, line in enumerate(lines):
        if line.strip() and i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            section = line.strip()
        if section in ITEM_SECTIONS and line[:1] not in ("", " ", "\t"):
            lines[i] = ROLE.sub(lambda m: _split(m.group("body"))[0], line)  # the bare name
        else:
            lines[i] = ROLE.sub(lambda m: _crossref(obj, m.group("body")), line)
    return "\n".join(lines)


def _walk(obj):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _crossref(obj, body: str) -> str:
    title, target = _split(body)
    path = _resolve(obj, target)
    if path is not None:
        return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'
    if target.split(".", 1)[0] in obj.modules_collection.members:
        return f"[`{title}`][{target}]"  # one of ours that does not resolve: the build reports it
    return f"`{title}`"  # another package's object (numpy, jax, ...): no page to link to


def _split(body: str) -> tuple[str, str]:
    explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", body)
    if explicit:
        return explicit.group("title"), explicit.group("target").lstrip("~")
    target = body.lstrip("~").rstrip("()")
    title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
    if body.rstrip().endswith("()"):
        title += "()"
    return title, target


def _resolve(obj, target: str) -> str | None:
    """The canonical path of ``target`` seen from ``obj``'s scope, or None."""
    first, _, rest = target.partition(".")
    candidates = []
    try:
        candidates.append(obj.resolve(first) + ("." + rest if rest else ""))
    except (griffe.NameResolutionError, ValueError, AttributeError):
        pass
    candidates.append(target)
    for path in candidates:
        try:
            found = obj.modules_collection[path]
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        try:
            return found.final_target.path if found.is_alias else found.path
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return found.target_path
    return None
