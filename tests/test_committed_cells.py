"""The study cells committed under ``data/studies`` (full presets too dear to recompute in CI).

Each committed panel must be intact (every cell's sha256 as its manifest records) and a panel of
the *current* study spec (its directory and manifest carry the hash of the registered spec), so a
change to a study that would make the committed figure stale fails here instead of silently
mixing configurations; and the committed figure must redraw from the committed cells alone.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from moetheory.study.cache import StudyCache
from moetheory.study.registry import names, presets, studies
from moetheory.study.runner import missing_cells

ROOT = Path(__file__).resolve().parents[1] / "data" / "studies"
PANELS = sorted(p for p in ROOT.glob("*/*") if p.is_dir())


def _registered() -> dict:
    """study-spec name -> (registered study, preset, StudySpec) for every registered preset."""
    out = {}
    for name in names():
        for preset in presets(name):
            for spec in studies(name, preset):
                out[spec.name] = (name, preset, spec)
    return out


def test_data_studies_holds_panels():
    # the top-K and temperature full presets' cells live here (docs/studies.md#topk-full,
    # #temperature-full); an empty folder would make every test below vacuous
    assert PANELS, f"no committed panels under {ROOT}"


@pytest.mark.parametrize("panel", PANELS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_panel_is_intact_and_current(panel):
    manifest = json.loads((panel / "manifest.json").read_text())
    registered = _registered()
    assert manifest["study"] in registered, f"{panel}: study {manifest['study']!r} is not registered"
    _, _, spec = registered[manifest["study"]]
    label = manifest["fit"]
    current = spec.panel_hash(label)
    assert manifest["panel_hash"] == current, (
        f"{panel}: committed for another configuration of fit {label!r}; recompute it")
    assert panel.name == f"{label}-{current[:16]}"
    files = {p.name for p in panel.glob("n=*.npz")}
    assert files == {cell["file"] for cell in manifest["cells"].values()}
    for cell in manifest["cells"].values():
        digest = hashlib.sha256((panel / cell["file"]).read_bytes()).hexdigest()
        assert digest == cell["sha256"], f"{panel / cell['file']}: checksum differs"


def _committed_presets() -> list:
    """(registered study, preset) of every committed study folder, each once."""
    registered = _registered()
    return sorted({registered[p.parent.name][:2] for p in PANELS if p.parent.name in registered})


def _copy_preset(name, preset, root) -> list:
    """Copy the committed folders of every StudySpec of (name, preset) under ``root`` (reads may
    record checksums: tests work on a copy); returns the StudySpecs."""
    specs = studies(name, preset)
    for spec in specs:
        assert (ROOT / spec.name).is_dir(), f"{name} --preset {preset}: {spec.name} not committed"
        shutil.copytree(ROOT / spec.name, root / spec.name)
    return specs


@pytest.mark.parametrize("name,preset", _committed_presets(), ids=lambda v: str(v))
def test_committed_study_is_complete_and_redraws(name, preset, tmp_path):
    """Every cell of every spec of the preset is committed; the figure redraws from them
    without computing."""
    from moetheory.study.registry import draw

    root = tmp_path / "cache"
    cache = StudyCache(root)
    for spec in _copy_preset(name, preset, root):
        assert missing_cells(spec, cache) == []
        df = cache.load_results(spec, allow_missing=False)
        assert len(df) == sum((f.replicates or spec.replicates) * len(f.sizes) for f in spec.fits)
    paths = draw(name, preset, root, tmp_path / "figures")
    assert paths and all(Path(p).stat().st_size > 10_000 for p in paths)


@pytest.mark.parametrize("name,preset", _committed_presets(), ids=lambda v: str(v))
def test_readings_table_covers_every_fit(name, preset, tmp_path):
    """`python -m paper_figures.readings NAME --preset P` (the tables in docs/studies.md)."""
    from paper_figures.readings import tables

    specs = _copy_preset(name, preset, tmp_path)
    text = tables(name, preset, tmp_path)
    sections = text.split("Slopes of study ")[1:]
    assert [s.split(" ", 1)[0] for s in sections] == [spec.name for spec in specs]
    for spec, section in zip(specs, sections):
        rows = [line for line in section.splitlines() if line.startswith("| ")]
        for fit in spec.fits:
            hell = [r for r in rows if r.startswith(f"| {fit.label}: Hellinger |")]
            assert len(hell) == 1 and hell[0].count("|") == 9, (spec.name, hell)
            reps = (fit.replicates or spec.replicates) * len(fit.sizes)
            assert f"/{reps} |" in hell[0]           # certified count over every replicate
