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
    # the top-K full preset's cells live here (docs/studies.md#topk-full); an empty folder would
    # make every test below vacuous
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


@pytest.mark.parametrize("study_dir", sorted({p.parent for p in PANELS}), ids=lambda p: p.name)
def test_committed_study_is_complete_and_redraws(study_dir, tmp_path):
    """Every cell of the spec is committed; the figure redraws from them without computing."""
    from moetheory.study.registry import draw

    name, preset, spec = _registered()[study_dir.name]
    root = tmp_path / "cache"
    shutil.copytree(study_dir, root / study_dir.name)  # reads may record checksums: work on a copy
    cache = StudyCache(root)
    assert missing_cells(spec, cache) == []
    df = cache.load_results(spec, allow_missing=False)
    assert len(df) == sum((f.replicates or spec.replicates) * len(f.sizes) for f in spec.fits)
    paths = draw(name, preset, root, tmp_path / "figures")
    assert paths and all(Path(p).stat().st_size > 10_000 for p in paths)


@pytest.mark.parametrize("study_dir", sorted({p.parent for p in PANELS}), ids=lambda p: p.name)
def test_readings_table_covers_every_fit(study_dir, tmp_path):
    """`python -m paper_figures.readings NAME --preset P` (the tables in docs/studies.md)."""
    from paper_figures.readings import tables

    name, preset, spec = _registered()[study_dir.name]
    shutil.copytree(study_dir, tmp_path / study_dir.name)
    text = tables(name, preset, tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for fit in spec.fits:
        hell = [r for r in rows if r.startswith(f"| {fit.label}: Hellinger |")]
        assert len(hell) == 1 and hell[0].count("|") == 9, hell
        reps = (fit.replicates or spec.replicates) * len(fit.sizes)
        assert f"/{reps} |" in hell[0]           # certified count over every replicate
