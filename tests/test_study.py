"""Study engine: declaration, runner, cache, resume after interruption, Dask, CLI.

Everything runs one tiny study (k = 2, three sample sizes in one padded bucket, three
replicates), so the EM and loss kernels compile once for the whole file.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.em.config import EMConfig
from moetheory.study.spec import DesignSpec, FitSpec, StudySpec

REPO = Path(__file__).resolve().parents[1]

TRUTH = MoEParams.create(beta0=[0.3, 0.0], beta1=[[3.0], [0.0]], a=[[2.0], [-1.5]],
                         b=[1.0, -1.0], var=[0.09, 0.25])


def tiny_study(**changes) -> StudySpec:
    # var_floor = the true variance of expert 0: about half the replicates estimate it below
    # the floor, so the study has a deterministic mix of failed (variance collapse) replicates.
    est = EMConfig(init="paper", max_iter=200, var_floor=0.09)
    base = dict(name="tiny", truth_spec=MoESpec(2, 1), truth=TRUTH,
                fits=(FitSpec("k2", MoESpec(2, 1), sizes=(200, 300, 400)),),
                design=DesignSpec("uniform", low=-1.0, high=1.0), estimator=est,
                replicates=3, seed=7, losses=("voronoi",), buckets=(512,))
    base.update(changes)
    return StudySpec(**base)


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("jaxcc")
    old = os.environ.get("MOETHEORY_COMPILE_CACHE")
    os.environ["MOETHEORY_COMPILE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MOETHEORY_COMPILE_CACHE", None)
    else:
        os.environ["MOETHEORY_COMPILE_CACHE"] = old


@pytest.fixture(scope="module")
def reference(tmp_path_factory, compile_cache):
    """An uninterrupted in-process run of the tiny study: (cache dir, DataFrame)."""
    from moetheory.study.runner import run_study

    cache = tmp_path_factory.mktemp("ref-cache")
    df = run_study(tiny_study(), cache, progress=False)
    return cache, df


# ------------------------------------------------------------------------------ declaration
def test_toml_and_json_round_trip(tmp_path):
    s = tiny_study()
    assert StudySpec.from_toml(s.to_toml()) == s
    assert StudySpec.from_json(s.to_json()) == s
    path = tmp_path / "study.toml"
    path.write_text(s.to_toml())
    loaded = StudySpec.load(path)
    assert loaded == s and loaded.hash() == s.hash()
    # a hand-written TOML declaration (flat fit form)
    text = """
name = "hand"
replicates = 2
losses = ["voronoi", "hellinger"]
[truth]
n_experts = 2
dim = 1
[truth.params]
beta0 = [0.3, 0.0]
beta1 = [[3.0], [0.0]]
a = [[2.0], [-1.5]]
b = [1.0, -1.0]
var = [0.09, 0.25]
[design]
name = "uniform"
[estimator]
tol = 1e-6
[[fits]]
label = "k3"
n_experts = 3
dim = 1
sizes = [500, 1000]
n_starts = 2
"""
    hand = StudySpec.from_toml(text)
    assert hand.fit("k3").spec == MoESpec(3, 1) and hand.fit("k3").n_starts == 2
    assert StudySpec.from_toml(hand.to_toml()) == hand


def test_hash_is_stable_and_content_based():
    a, b = tiny_study(), tiny_study()
    assert a.hash() == b.hash() and len(a.hash()) == 64
    assert tiny_study(seed=8).hash() != a.hash()
    # adding sample sizes changes the study hash but not the cells' identity
    more = tiny_study(fits=(FitSpec("k2", MoESpec(2, 1), sizes=(200, 300, 350, 400)),))
    assert more.hash() != a.hash()
    assert more.panel_hash("k2") == a.panel_hash("k2")
    # anything that changes the numbers changes the cells' identity
    est = EMConfig(init="paper", tol=1e-7, max_iter=200, var_floor=0.09)
    assert tiny_study(estimator=est).panel_hash("k2") != a.panel_hash("k2")
    own = FitSpec("k2", MoESpec(2, 1), sizes=(200, 300, 400), estimator="official")
    assert tiny_study(fits=(own,)).panel_hash("k2") != a.panel_hash("k2")


def test_fit_translation_defaults_to_the_gates_own():
    act = MoESpec(2, 1, gate="activation", activation="tanh")
    assert FitSpec("a", act, sizes=(100,)).translation == "bias"
    assert FitSpec("s", MoESpec(2, 1), sizes=(100,)).translation == "infimum"
    assert FitSpec("p", act, sizes=(100,), translation="pinned").translation == "pinned"
    # the resolved value is what is hashed: an explicit default gives the same cells
    a = tiny_study()
    explicit = tiny_study(fits=(FitSpec("k2", MoESpec(2, 1), sizes=(200, 300, 400),
                                        translation="infimum"),))
    assert explicit.panel_hash("k2") == a.panel_hash("k2")


def test_declaration_mistakes_are_named_not_ignored(tmp_path):
    base = tiny_study().to_toml()
    # a misspelt key in the model or parameter tables
    typo = base.replace("[fits.spec]\n", "[fits.spec]\ntua = \"estimated\"\n", 1)
    assert typo != base
    with pytest.raises(ValueError, match=r"unknown fit 'k2' spec field\(s\) \['tua'\]"):
        StudySpec.from_toml(typo)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['gamma'\]"):
        StudySpec.from_toml(base.replace("[truth.params]\n", "[truth.params]\ngamma = [1.0]\n", 1))
    # a string is not a boolean (bool("false") is True)
    with pytest.raises(ValueError, match="fixed_iter must be true or false"):
        EMConfig(fixed_iter="false")
    with pytest.raises(ValueError, match="var_from_sd must be true or false"):
        EMConfig(var_from_sd="no")
    # TOML shapes that are easy to get wrong
    with pytest.raises(ValueError, match=r"write \[\[fits\]\]"):
        StudySpec.from_toml(base.replace("[[fits]]", "[fits]"))
    with pytest.raises(ValueError, match="sizes must be a list; got 200"):
        StudySpec.from_toml(base.replace("sizes = [200, 300, 400]", "sizes = 200"))
    with pytest.raises(ValueError, match="buckets must be a list"):
        tiny_study(buckets=512)
    with pytest.raises(ValueError, match=r"estimator var_floor must be a finite number > 0 \(a variance\); got True"):
        EMConfig(var_floor=True)
    with pytest.raises(ValueError, match="design scale must be a number"):
        DesignSpec("gaussian", scale="1")
    with pytest.raises(ValueError, match=r"unknown design field\(s\) \['sd'\]"):
        StudySpec.from_dict({**tiny_study().to_dict(), "design": {"name": "gaussian", "sd": 2}})
    with pytest.raises(ValueError, match="has no model"):
        FitSpec.from_dict({"label": "k2", "sizes": [100]})
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ValueError, match="bad.toml: not valid TOML"):
        StudySpec.load(bad)
    # designs, names and seeds that cannot work
    for kw in (dict(scale=0.0), dict(scale=-1.0), dict(scale=float("inf")), dict(radius=0.0),
               dict(low=-float("inf"))):
        with pytest.raises(ValueError, match="design (scale|radius|low) must be"):
            DesignSpec("gaussian", **kw)
    for name in ("..", ".", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="study name"):
            tiny_study(name=name)
    with pytest.raises(ValueError, match="seed must be an integer in"):
        tiny_study(seed=2 ** 63)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        from moetheory.study.dask_exec import _client
        _client(workers=0)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        from moetheory.study.runner import run_study
        run_study(tiny_study(), tmp_path / "never", workers=-3, progress=False)


def test_toml_round_trip_keeps_a_missing_theory_slope():
    s = tiny_study(fits=(FitSpec("k2", MoESpec(2, 1), sizes=(200, 300), expected_rate=None),))
    text = s.to_toml()
    assert "expected_rate = nan" in text
    again = StudySpec.from_toml(text)
    assert again.fit("k2").expected_rate is None and again.hash() == s.hash()


def test_bad_declarations_raise_clear_errors():
    with pytest.raises(ValueError, match="losses"):
        tiny_study(losses=("nope",))
    with pytest.raises(ValueError, match="init"):
        EMConfig(init="magic")
    with pytest.raises(ValueError, match="k=1 < k\\*=2"):
        tiny_study(fits=(FitSpec("k1", MoESpec(1, 1), sizes=(100,)),))
    with pytest.raises(ValueError, match="unknown study field"):
        StudySpec.from_dict({**tiny_study().to_dict(), "bogus": 1})


# ------------------------------------------------------------------------------ runner / cache
def test_results_table_and_failures(reference):
    from moetheory.study.runner import STATUS_BITS, loss_matrix, summarize

    _, df = reference
    assert len(df) == 3 * 3
    assert set(df["n"]) == {200, 300, 400} and set(df["replicate"]) == {0, 1, 2}
    for col in ("loss_voronoi", "loglik", "n_iter", "converged", "failed", "status",
                "cell_beta1_0", "match_var_1", "fit_var_0"):
        assert col in df.columns
    # the variance floor was hit in some replicates but not all: recorded, flagged, counted
    failed = df["failed"].to_numpy(bool)
    assert 0 < failed.sum() < len(df)
    assert np.all((df["status"].to_numpy()[failed] & STATUS_BITS["variance_collapse"]) > 0)
    summ = summarize(df)
    assert summ["n_failed"].sum() == failed.sum()
    # every healthy replicate carries a certified estimate: the means are over all of them
    assert df.loc[~df["failed"], "certified"].all() and summ["n_not_certified"].sum() == 0
    for _, row in summ.iterrows():
        g = df[(df["n"] == row["n"]) & ~df["failed"]]
        if len(g):
            assert row["mean"] == pytest.approx(g["loss_voronoi"].mean())
    # failed replicates are NaN in the matrix handed to the rate fit (never averaged)
    sizes, mat = loss_matrix(df, "k2")
    assert np.isnan(mat).sum() == failed.sum()
    # an uncertified replicate is left out and counted, never averaged
    marked = df.assign(certified=df["certified"] & (df["replicate"] != 0))
    n_out = int((~marked["failed"] & ~marked["certified"]).sum())
    assert summarize(marked)["n_not_certified"].sum() == n_out > 0
    assert np.isnan(loss_matrix(marked, "k2")[1]).sum() == failed.sum() + n_out
    # the good replicates are sensible fits
    assert np.all(np.isfinite(df["loss_voronoi"]))


def test_cache_files_are_plain_arrays_with_provenance(reference):
    from moetheory.study.cache import StudyCache

    cache_dir, _ = reference
    s = tiny_study()
    cache = StudyCache(cache_dir)
    files = sorted(cache.panel_dir(s, "k2").glob("*.npz"))
    assert len(files) == 3
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            for key in z.files:
                assert z[key].dtype.kind != "O", key
    man = json.loads(cache.manifest_path(s, "k2").read_text())
    assert man["panel_hash"] == s.panel_hash("k2") and man["spec_hash"] == s.hash()
    assert set(man["cells"]) == {"200", "300", "400"}
    for c in man["cells"].values():  # each cell keeps the provenance of the run that made it
        prov = c["provenance"]
        assert prov["x64"] is True and prov["device"]
        assert {"jax", "numba", "numpy"} <= set(prov["versions"])
    assert all(c["wall_s"] is not None for c in man["cells"].values())
    assert not list(cache.panel_dir(s, "k2").glob("*.tmp"))


def test_manifest_recovers_a_cell_written_without_its_entry(reference, tmp_path):
    from moetheory.study.cache import StudyCache

    cache_dir, _ = reference
    s = tiny_study()
    src = StudyCache(cache_dir)
    cache = StudyCache(tmp_path / "c")
    dst = cache.cell_path(s, "k2", 300)
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.cell_path(s, "k2", 300).read_bytes())  # killed before the manifest
    assert cache.reconcile(s) == [("k2", 300)]
    assert cache.read_manifest(s, "k2")["cells"]["300"]["recovered"] is True
    assert cache.reconcile(s) == []


def test_cells_keep_their_own_provenance_and_a_corrupt_manifest_is_rebuilt(reference, tmp_path,
                                                                           monkeypatch):
    from moetheory.study import cache as cache_mod

    cache_dir, _ = reference
    s = tiny_study()
    src = cache_mod.StudyCache(cache_dir)
    cache = cache_mod.StudyCache(tmp_path / "c")
    real = cache_mod.provenance()
    for n, rev in ((200, "AAAA"), (300, "BBBB")):  # two runs, two revisions
        monkeypatch.setattr(cache_mod, "provenance", lambda rev=rev: {**real, "git_revision": rev})
        cache.write_cell(s, "k2", n, src.read_cell(s, "k2", n), wall_s=1.0)
    cells = cache.read_manifest(s, "k2")["cells"]
    assert [cells[k]["provenance"]["git_revision"] for k in ("200", "300")] == ["AAAA", "BBBB"]
    path = cache.manifest_path(s, "k2")
    path.write_text(path.read_text()[:40])  # truncated by a crash or a full disk
    with pytest.warns(RuntimeWarning, match="unreadable study manifest"):
        assert cache.read_manifest(s, "k2") == {}  # a plain read changes nothing on disk
    assert path.exists() and not list(path.parent.glob("manifest.json.corrupt-*"))
    with pytest.warns(RuntimeWarning, match="unreadable study manifest"):
        assert cache.reconcile(s) == [("k2", 200), ("k2", 300)]
    assert len(list(path.parent.glob("manifest.json.corrupt-*"))) == 1
    assert cache.read_manifest(s, "k2")["cells"]["200"]["recovered"] is True
    assert cache.status(s)["k2"]["done"] == [200, 300]


def test_changed_spec_never_reuses_cells(reference, tmp_path):
    from moetheory.study.cache import StudyCache

    cache_dir, _ = reference
    cache = StudyCache(cache_dir)
    est = EMConfig(init="paper", tol=1e-7, max_iter=200, var_floor=0.09)
    changed = tiny_study(estimator=est)
    assert all(not cache.has_cell(changed, "k2", n) for n in (200, 300, 400))
    assert cache.load_results(changed).empty
    # even a cell file planted at the new path is rejected: its stored hash is checked
    src = cache.cell_path(tiny_study(), "k2", 200)
    dst = cache.cell_path(changed, "k2", 200)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    assert not cache.has_cell(changed, "k2", 200)
    # ... while adding a sample size reuses the existing cells
    more = tiny_study(fits=(FitSpec("k2", MoESpec(2, 1), sizes=(200, 300, 350, 400)),))
    assert cache.status(more)["k2"] == {"done": [200, 300, 400], "missing": [350], "damaged": []}


def test_keys_depend_only_on_seed_n_replicate(reference):
    from moetheory.study.runner import compute_cell

    _, df = reference
    # replicates 0 and 2 recomputed together with a new replicate 4: unchanged
    arrays = compute_cell(tiny_study(), "k2", 300, replicates=[0, 2, 4])
    ref = df[df["n"] == 300].set_index("replicate")
    for i, r in enumerate((0, 2)):
        assert arrays["loglik"][i] == ref.loc[r, "loglik"]
        assert arrays["loss_voronoi"][i] == ref.loc[r, "loss_voronoi"]
    assert arrays["loglik"][2] not in set(ref["loglik"])


def _assert_same_results(a: pd.DataFrame, b: pd.DataFrame):
    key = ["fit", "n", "replicate"]
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)[a.columns]
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_dask_local_cluster_gives_identical_results(reference, tmp_path):
    pytest.importorskip("dask.distributed")
    from dask.distributed import Client, LocalCluster

    from moetheory.study.cache import StudyCache
    from moetheory.study.dask_exec import run_cells_dask

    _, df = reference
    s = tiny_study()
    cache = StudyCache(tmp_path / "dask-cache")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        run_cells_dask(s, s.cells(), cache, client=client, progress=False)
    _assert_same_results(df, cache.load_results(s))


# ------------------------------------------------------------------------------ interruption
def _start_subprocess(spec_path, cache_dir, delay, cli=False):
    # Ctrl-C semantics even when this test runs under a shell that ignores SIGINT for background
    # jobs (a child inherits SIG_IGN, and Python then installs no KeyboardInterrupt handler).
    # cli=True runs exactly what the `moetheory` console script runs.
    run = (f"from moetheory.cli import main; sys.exit(main(['study', 'run', {str(spec_path)!r}, "
           f"'--cache', {str(cache_dir)!r}, '--quiet']))" if cli else
           "from moetheory.study.spec import StudySpec; "
           "from moetheory.study.runner import run_study; "
           f"run_study(StudySpec.load({str(spec_path)!r}), {str(cache_dir)!r}, progress=False)")
    code = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); " + run
    env = dict(os.environ, MOETHEORY_STUDY_CELL_DELAY=str(delay), JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_study_resumes_without_recomputing(reference, tmp_path, sig):
    from moetheory.study.cache import StudyCache
    from moetheory.study.runner import run_study

    _, ref_df = reference
    s = tiny_study()
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(s.to_toml())
    cache = StudyCache(tmp_path / "cache")
    first = cache.cell_path(s, "k2", 200)

    def first_cached():  # the cell file and its manifest entry (written just after it)
        return first.exists() and "200" in cache.read_manifest(s, "k2").get("cells", {})

    # A long pause after each cell: the signal lands in it however slowly this process polls
    # (the pause is interrupted, so it costs nothing when things go well). SIGINT goes to the
    # command line (the Ctrl-C of a user), SIGKILL to a bare run_study.
    proc = _start_subprocess(spec_path, cache.root, delay=30, cli=sig == signal.SIGINT)
    try:
        deadline = time.monotonic() + 240
        while not first_cached():
            if proc.poll() is not None:
                raise AssertionError(f"study subprocess exited early:\n{proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise AssertionError("the first cell was never written")
            time.sleep(0.2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig == signal.SIGINT:  # one line, exit status 130, no traceback
        assert proc.returncode == 130, err.decode()[-3000:]
        assert err.decode() == "interrupted; 1 cell kept, rerun to resume\n", err.decode()[-3000:]
        assert out.decode() == ""
    else:
        assert proc.returncode == -signal.SIGKILL
    done = cache.status(s)["k2"]["done"]
    assert 200 in done and len(done) < 3, done
    stamps = {n: cache.cell_path(s, "k2", n).stat().st_mtime_ns for n in done}
    walls = {n: cache.read_manifest(s, "k2")["cells"][str(n)]["completed_utc"] for n in done}

    df = run_study(s, cache.root, progress=False)  # resume in-process (a SIGKILL leaves a claim)
    assert cache.status(s)["k2"]["missing"] == []
    for n in done:  # finished cells were not recomputed
        assert cache.cell_path(s, "k2", n).stat().st_mtime_ns == stamps[n]
        assert cache.read_manifest(s, "k2")["cells"][str(n)]["completed_utc"] == walls[n]
    assert not list(cache.panel_dir(s, "k2").glob("*.tmp"))
    assert not list(cache.panel_dir(s, "k2").glob("*.claim"))
    _assert_same_results(ref_df, df)  # bit-identical to the uninterrupted run


# ------------------------------------------------------------------------------ integrity
def _copy_reference(reference, dst):
    import shutil

    from moetheory.study.cache import StudyCache

    cache_dir, _ = reference
    shutil.copytree(Path(cache_dir) / "tiny", Path(dst) / "tiny")
    return StudyCache(dst)


def test_a_flipped_byte_is_detected_named_and_recomputed(reference, tmp_path, capsys):
    from moetheory.cli import main
    from moetheory.study.runner import run_study
    from moetheory.study.store import DamagedCellError, DamagedCellWarning

    _, ref_df = reference
    s = tiny_study()
    cache = _copy_reference(reference, tmp_path / "c")
    path = cache.cell_path(s, "k2", 300)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte, inside the zip
    path.write_bytes(bytes(data))
    assert cache.status(s)["k2"] == {"done": [200, 400], "missing": [], "damaged": [300]}
    with pytest.raises(DamagedCellError, match="n=0000000300.npz"):
        cache.read_cell(s, "k2", 300)
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(s.to_toml())
    assert main(["study", "status", str(spec_path), "--cache", str(cache.root)]) == 0
    out = capsys.readouterr().out
    assert "DAMAGED n = [300]" in out and "complete" not in out.splitlines()[-1]
    stamps = {n: cache.cell_path(s, "k2", n).stat().st_mtime_ns for n in (200, 400)}

    with pytest.warns(DamagedCellWarning, match=r"n=0000000300\.npz \(its sha256 differs"):
        df = run_study(s, cache.root, progress=False)
    _assert_same_results(ref_df, df)  # recomputed, bit-identical
    assert cache.status(s)["k2"] == {"done": [200, 300, 400], "missing": [], "damaged": []}
    for n in (200, 400):  # the sound cells were not touched
        assert cache.cell_path(s, "k2", n).stat().st_mtime_ns == stamps[n]
    [aside] = path.parent.glob("n=0000000300.npz.damaged-*")  # kept for inspection
    assert aside.read_bytes() == bytes(data)


def test_a_cache_without_checksums_is_still_read_and_gets_them(reference, tmp_path):
    # caches written before checksums: a cell that decodes completely is used, and the next run
    # records its checksum; one whose array bytes are damaged fails the npz's CRC-32 instead
    from moetheory.study.runner import run_study
    from moetheory.study.store import DamagedCellWarning

    _, ref_df = reference
    s = tiny_study()
    cache = _copy_reference(reference, tmp_path / "c")
    man_path = cache.manifest_path(s, "k2")
    man = json.loads(man_path.read_text())
    for entry in man["cells"].values():
        del entry["sha256"]
    man_path.write_text(json.dumps(man))
    assert cache.status(s)["k2"]["done"] == [200, 300, 400]
    path = cache.cell_path(s, "k2", 400)
    data = bytearray(path.read_bytes())
    at = bytes(data).find(cache.read_cell(s, "k2", 400)["loglik"].tobytes())
    assert at > 0
    data[at + 3] ^= 0x10  # a digit of a stored log-likelihood
    path.write_bytes(bytes(data))
    assert cache.status(s)["k2"]["damaged"] == [400]
    with pytest.warns(DamagedCellWarning, match=r"n=0000000400\.npz \(unreadable: BadZipFile"):
        df = run_study(s, cache.root, progress=False)
    _assert_same_results(ref_df, df)
    cells = cache.read_manifest(s, "k2")["cells"]
    assert all("sha256" in c for c in cells.values())
    assert cells["200"]["checksum_recorded_later"] and cells["300"]["checksum_recorded_later"]
    assert "checksum_recorded_later" not in cells["400"]  # recomputed: checksummed on write


# ------------------------------------------------------------------------------ concurrency
def test_concurrent_runs_compute_each_cell_once(reference, tmp_path):
    from moetheory.study.cache import StudyCache

    _, ref_df = reference
    s = tiny_study()
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(s.to_toml())
    cache_dir = tmp_path / "shared"
    # Each process logs the cells it writes; both start run_study at the same moment (a file
    # barrier), so without claims both would compute every cell (6 writes instead of 3).
    code = f"""
import sys, time
from pathlib import Path
from moetheory.study import cache as C
from moetheory.study.runner import run_study
from moetheory.study.spec import StudySpec
real = C.StudyCache.write_cell
def logged(self, study, label, n, arrays, wall_s=None):
    print("computed", label, n, flush=True)
    return real(self, study, label, n, arrays, wall_s)
C.StudyCache.write_cell = logged
spec = StudySpec.load({str(spec_path)!r})
Path({str(tmp_path)!r}, "ready-" + sys.argv[1]).touch()
while len(list(Path({str(tmp_path)!r}).glob("ready-*"))) < 2:
    time.sleep(0.01)
run_study(spec, {str(cache_dir)!r}, progress=False)
"""
    env = dict(os.environ, MOETHEORY_STUDY_CELL_DELAY="0.5", JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], env=env, cwd=str(REPO),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()[-3000:]
            outs.append(out.decode().split("\n")[:-1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    computed = [line for lines in outs for line in lines]
    assert sorted(computed) == ["computed k2 200", "computed k2 300", "computed k2 400"], outs
    cache = StudyCache(cache_dir)
    pids = {c["pid"] for c in cache.read_manifest(s, "k2")["cells"].values()}
    assert pids <= {p.pid for p in procs}
    assert not list(cache.panel_dir(s, "k2").glob("*.claim"))
    _assert_same_results(ref_df, cache.load_results(s))


def test_claims_of_dead_or_expired_processes_are_taken_over(tmp_path, monkeypatch):
    import platform

    from moetheory.study.claims import Claim, is_stale
    from moetheory.study.store import directory_lock

    def lock():
        return directory_lock(tmp_path)

    path = tmp_path / "n=0000000200.npz.claim"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.write_text(json.dumps({"pid": sleeper.pid, "host": platform.node()}))
        assert not Claim(path, lock).acquire()  # its process runs: the cell is left to it
    finally:
        sleeper.kill()
        sleeper.wait()
    mine = Claim(path, lock)
    assert mine.acquire()  # the process is gone: taken over
    assert json.loads(path.read_text())["pid"] == os.getpid()
    mine.release()
    assert not path.exists()
    # another host's claim: only its age can make it stale
    other = {"pid": 1, "host": platform.node() + "-elsewhere"}
    assert not is_stale(other, 3600.0)
    monkeypatch.setenv("MOETHEORY_CLAIM_TTL", "600")
    assert is_stale(other, 601.0) and not is_stale(other, 599.0)


# ------------------------------------------------------------------------------ registry / CLI
def test_registry_declares_the_canonical_studies():
    from moetheory.study import registry

    for name in ("softmax", "topk", "temperature"):
        for preset in ("quick", "full"):
            specs = registry.studies(name, preset)
            assert specs and all(isinstance(s, StudySpec) for s in specs)
            for s in specs:
                assert StudySpec.from_json(s.to_json()) == s
    (full,) = registry.studies("softmax", "full")
    # the certified MLE: the paper's k = 2 grid, a reduced over-fitted grid, and the paper's
    # protocol beside it on the same data
    assert len(full.fit("k2").sizes) == 200 and len(full.fit("k3").sizes) == 10
    assert len(full.fit("k4").sizes) == 5 and set(full.fit("k4").sizes) <= set(full.fit("k3").sizes)
    assert full.replicates == 40 and full.fit("k3").n_starts == 5 and full.fit("k2").n_starts == 1
    mle = full.estimator_of("k3")
    assert mle.polish == "newton" and mle.stop_rule == "mean" and mle.init == "paper"
    official = full.estimator_of("k3-official")
    assert official.tol == 1e-6 and official.stop_rule == "relative" and official.max_iter == 2000
    assert official.polish == "none" and full.fit("k3-official").sizes == full.fit("k3").sizes
    assert full.fit("k4-official").sizes == full.fit("k4").sizes
    (paper,) = registry.studies("softmax", "official")
    assert len(paper.fit("k3").sizes) == 200 and paper.estimator_of("k3") == official


def test_cli_errors_for_unknown_study_and_preset(capsys, tmp_path):
    from moetheory.cli import main

    assert main(["study", "run", "nope", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown study 'nope'" in err and "softmax" in err and "topk" in err
    assert main(["reproduce", "softmax", "--preset", "huge", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'huge'" in err and "quick" in err and "full" in err
    assert main(["study", "status", "softmax", "--cache", str(tmp_path)]) == 0
    assert "incomplete" in capsys.readouterr().out
    assert main(["study", "list"]) == 0
    out = capsys.readouterr().out
    assert "softmax" in out and "temperature" in out


def test_cli_runs_a_toml_declaration(reference, tmp_path, capsys):
    from moetheory.cli import main

    cache_dir, _ = reference
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_study().to_toml())
    assert main(["study", "status", str(path), "--cache", str(cache_dir)]) == 0
    assert "3/3 cells cached" in capsys.readouterr().out
    assert main(["study", "run", str(path), "--cache", str(cache_dir), "--quiet"]) == 0  # all cached
    assert main(["study", "run", str(path), "--preset", "full", "--cache", str(cache_dir)]) == 2
    assert "--preset applies to registered studies" in capsys.readouterr().err
    for bad in ("0", "-3"):  # checked for declaration files too (it used to hang at -3)
        assert main(["study", "run", str(path), "--cache", str(cache_dir), "--workers", bad]) == 2
        assert "workers must be an integer >= 1" in capsys.readouterr().err


def test_rate_table_has_a_title_headers_and_pinned_rows_only_when_asked(tmp_path):
    import io

    from moetheory.study.cache import StudyCache
    from moetheory.study.registry import print_study_rates

    spec = tiny_study(fits=(FitSpec("k3", MoESpec(3, 1), sizes=(100, 400, 1600), expected_rate=-0.5,
                                    title="over-fitted k = 3"),),
                      losses=("voronoi", "voronoi_pinned"))
    cache = StudyCache(tmp_path)
    for n in (100, 400, 1600):  # fake cells: D_2 = 2 n^-1/2, the pinned loss explodes
        failed = np.array([False, True, False])
        cache.write_cell(spec, "k3", n, {
            "n": np.full(3, n), "replicate": np.arange(3), "failed": failed,
            "converged": np.ones(3, bool), "loss_voronoi": np.full(3, 2 / n ** 0.5),
            "loss_voronoi_pinned": np.full(3, n ** 8.0)})
    out = io.StringIO()
    print_study_rates(spec, tmp_path, file=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Convergence rates of tiny:")
    assert lines[1].split() == ["fit", "model", "loss", "slope", "95%", "CI", "theory", "n", "range",
                                "sizes", "excluded", "law", "test"]
    assert len(lines) == 4 and lines[2].split()[:6] == ["k3", "over-fitted", "k", "=", "3", "D_2"]
    assert lines[2].split()[-2:] == ["3", "n^-1/2"]  # 3 failed replicates excluded; the law
    assert lines[3].startswith("excluded: replicates left out") and "--pinned" in lines[3]
    assert "pinned" not in "".join(lines[:3]) and "+8.000" not in out.getvalue()
    out = io.StringIO()
    print_study_rates(spec, tmp_path, file=out, pinned=True)
    [row] = [line for line in out.getvalue().splitlines() if "D_2 pinned" in line]
    assert "+8.000" in row


def test_reproduce_draws_outside_the_checkout_unless_asked():
    from moetheory.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["reproduce", "softmax"]).out == "results/figures"
    assert parser.parse_args(["reproduce", "softmax", "--out", "docs/figures"]).out == "docs/figures"
    assert parser.parse_args(["reproduce", "softmax", "--pinned"]).pinned is True


def test_local_execution_imports_no_dask():
    code = ("import sys; import moetheory.study.runner, moetheory.study.cli, moetheory.study.cache; "
            "from moetheory.cli import build_parser; build_parser(); "
            "assert not any(m == 'dask' or m.startswith(('dask.', 'distributed')) for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(REPO))


def test_figure_scripts_need_the_cache(tmp_path):
    from moetheory.study import registry

    with pytest.raises(FileNotFoundError, match="moetheory study run softmax"):
        registry.draw("softmax", "quick", tmp_path / "empty", tmp_path / "out")


def test_studies_page_toml_is_the_python_declaration():
    # docs/studies.md shows one declaration twice, in Python and as TOML: they must be one study
    import re

    text = (REPO / "docs" / "studies.md").read_text(encoding="utf-8")
    py = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    toml = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(py.split("df = run_study")[0], namespace)  # the declaration, without running it
    assert StudySpec.from_toml(toml).hash() == namespace["study"].hash()


def test_the_library_never_imports_the_declarations_or_the_figures():
    # studies and figures register themselves (entry points); the import graph of moetheory/
    # has no edge to simulations/ or paper_figures/, and no sys.path manipulation
    import re

    pattern = re.compile(r"^\s*(from|import)\s+(simulations|paper_figures)\b|sys\.path", re.M)
    hits = [str(p.relative_to(REPO)) for p in (REPO / "moetheory").rglob("*.py")
            if pattern.search(p.read_text())]
    assert not hits, hits
    from moetheory.study import registry

    assert {"softmax", "topk", "temperature", "attention", "neural"} <= set(registry.names())
    assert registry.entry("softmax").studies["quick"][0].name == "softmax-quick"
    assert callable(registry.figure("softmax"))


# ------------------------------------------------------------------------------ rescoring
def test_rescore_rewrites_earlier_metrics_cells_without_refitting(reference, tmp_path):
    """Cells of an earlier metrics version are rescored from their stored fits: the result
    equals a fresh run's cells, no fit is repeated, the manifest says where they came from."""
    import shutil

    from moetheory.study.cache import StudyCache, _cell_name
    from moetheory.study.runner import rescore_study
    from moetheory.study.spec import METRICS_VERSION

    ref_cache, _ = reference
    s = tiny_study()
    # turn the reference cells into cells of the previous metrics version, losses spoiled
    src, dst = StudyCache(ref_cache), StudyCache(tmp_path)
    old = dst.earlier_store(s, "k2", METRICS_VERSION - 1)
    for n in s.fit("k2").sizes:
        arrays = src.read_cell(s, "k2", n)
        arrays["loss_voronoi"] = np.full_like(arrays["loss_voronoi"], 99.0)
        arrays["__panel_hash__"] = np.array(s.panel_hash("k2", METRICS_VERSION - 1))
        import io
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        old.write(str(n), buf.getvalue(), {"wall_s": 1.5, "provenance": {"git_revision": "x"}})
    assert not any(dst.has_cell(s, "k2", n) for n in s.fit("k2").sizes)

    written = rescore_study(s, tmp_path, progress=False)
    assert written == [("k2", n) for n in s.fit("k2").sizes]
    for n in s.fit("k2").sizes:
        new, ref = dst.read_cell(s, "k2", n), src.read_cell(s, "k2", n)
        assert set(new) == set(ref)
        for key in ref:
            np.testing.assert_array_equal(new[key], ref[key], err_msg=key)
    entry = dst.read_manifest(s, "k2")["cells"]["200"]
    assert entry["rescored_from"] == s.panel_hash("k2", METRICS_VERSION - 1)
    assert entry["wall_s"] == 1.5 and entry["fit_provenance"] == {"git_revision": "x"}
    assert (old.directory / _cell_name(200)).exists()          # the earlier cells stay
    assert rescore_study(s, tmp_path, progress=False) == []    # nothing left to do
    with pytest.raises(ValueError, match="earlier metrics version"):
        rescore_study(s, tmp_path, from_version=METRICS_VERSION)
    shutil.rmtree(tmp_path / s.name)
