"""Every public function and class of moetheory has a docstring.

"Public" means: a module-level function or class whose name does not start with ``_``, defined in
``moetheory`` or one of its public submodules (no path component starting with ``_``), i.e.
``obj.__module__`` is that module. Auto-generated docstrings (dataclasses, NamedTuples) do not
count. Modules that need an optional dependency which is not installed (torch for
``moetheory.bridge.torch``) are skipped.

Every such docstring also has an ``Examples`` section, and functions taking arrays state their
shapes (issue 9); the examples themselves run as doctests (``test_doctests``), except those
marked ``# doctest: +SKIP`` because they take seconds (JIT compilation, training, studies).
``python tests/test_docstrings.py`` prints the same report.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import moetheory

#: Optional dependencies: a module that fails to import because one of these is missing is skipped.
OPTIONAL = {"torch", "dask", "distributed", "sklearn"}


def public_modules():
    """(names, skipped) of moetheory's public modules; skipped maps name -> reason."""
    names, skipped = ["moetheory"], {}
    for info in pkgutil.walk_packages(moetheory.__path__, prefix="moetheory."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return names, skipped


def _import(name):
    try:
        return importlib.import_module(name), None
    except ImportError as err:
        missing = getattr(err, "name", None) or ""
        cause = err.__cause__
        if missing.split(".")[0] in OPTIONAL or (
                isinstance(cause, ImportError) and (cause.name or "").split(".")[0] in OPTIONAL):
            return None, f"optional dependency missing: {err}"
        raise


def _is_auto_doc(obj, doc: str) -> bool:
    """Docstrings that Python writes itself: ``Name(field, ...)`` for dataclasses/NamedTuples."""
    return inspect.isclass(obj) and "\n" not in doc and doc.startswith(f"{obj.__name__}(") \
        and doc.endswith(")")


def public_objects(module):
    """[(qualified name, object)] of the public functions and classes defined in ``module``."""
    out = []
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        out.append((f"{module.__name__}.{name}", obj))
    return out


def docstring_of(obj) -> str:
    doc = obj.__doc__ if (inspect.isclass(obj) and "__doc__" in vars(obj)) or not inspect.isclass(obj) \
        else None
    doc = inspect.cleandoc(doc) if doc else ""
    return "" if _is_auto_doc(obj, doc) else doc


def collect():
    """(objects [(name, obj, doc)], import failures {module: error}, skipped {module: reason})."""
    names, skipped = public_modules()
    objects, failures = [], {}
    for name in names:
        try:
            module, reason = _import(name)
        except Exception as err:  # a module that does not import is reported, not hidden
            failures[name] = f"{type(err).__name__}: {err}"
            continue
        if module is None:
            skipped[name] = reason
            continue
        objects += [(qual, obj, docstring_of(obj)) for qual, obj in public_objects(module)]
    return objects, failures, skipped


def test_public_modules_import():
    _, failures, _ = collect()
    assert not failures, "public modules that fail to import:\n" + "\n".join(
        f"  {m}: {e}" for m, e in sorted(failures.items()))


def test_every_public_function_and_class_has_a_docstring():
    objects, _, skipped = collect()
    assert len(objects) > 50, f"found only {len(objects)} public objects: the walk is broken"
    missing = sorted(qual for qual, _, doc in objects if not doc.strip())
    assert not missing, (f"{len(missing)} public functions/classes lack a docstring "
                         "(add one, or make the name private with a leading underscore):\n  "
                         + "\n  ".join(missing)
                         + (f"\n(skipped modules: {sorted(skipped)})" if skipped else ""))


def test_top_level_exports_are_documented():
    for name in moetheory.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(moetheory, name)
        assert docstring_of(obj).strip(), f"moetheory.{name} has no docstring"


# --------------------------------------------------------------------------- the report
_SHAPE = re.compile(r"shape|\((?:n|k|d|p|m|N|M|K|batch|\.\.\.)\b[^()]*\)|\(\)|scalar")


def report() -> dict:
    """{module: {"no_examples": [...], "no_shapes": [...]}} over the public objects."""
    objects, failures, skipped = collect()
    out = {}
    for qual, obj, doc in objects:
        mod = qual.rsplit(".", 1)[0]
        entry = out.setdefault(mod, {"no_docstring": [], "no_examples": [], "no_shapes": []})
        short = qual.rsplit(".", 1)[1]
        if not doc.strip():
            entry["no_docstring"].append(short)
            continue
        if not re.search(r"^Examples?\s*\n-{3,}|^>>> ", doc, flags=re.M):
            entry["no_examples"].append(short)
        takes_arrays = inspect.isfunction(obj) and any(
            p in inspect.signature(obj).parameters for p in ("x", "y", "X", "params", "fitted", "theta"))
        if takes_arrays and not _SHAPE.search(doc):
            entry["no_shapes"].append(short)
    return {"modules": out, "import_failures": failures, "skipped": skipped}


def test_every_public_docstring_has_an_example_and_shapes():
    rep = report()["modules"]
    lacking = {f"{mod}: {key}: {', '.join(names)}" for mod, entry in rep.items()
               for key, names in entry.items() if names}
    assert not lacking, "docstrings lacking an Examples section or parameter shapes:\n  " + \
        "\n  ".join(sorted(lacking))


def _doctest_modules():
    names, _ = public_modules()
    return [n for n in names if n != "moetheory"]


@pytest.mark.parametrize("name", _doctest_modules())
def test_doctests(name):
    import doctest

    module, reason = _import(name)
    if module is None:
        pytest.skip(reason)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):  # the module's own namespace, like pytest --doctest-modules
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"


if __name__ == "__main__":  # pragma: no cover
    rep = report()
    for mod, entry in sorted(rep["modules"].items()):
        if any(entry.values()):
            print(mod)
            for key, names in entry.items():
                if names:
                    print(f"  {key}: {', '.join(names)}")
    for mod, err in sorted(rep["import_failures"].items()):
        print(f"IMPORT FAILURE {mod}: {err}")
    for mod, why in sorted(rep["skipped"].items()):
        print(f"skipped {mod}: {why}")
