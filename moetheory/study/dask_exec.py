"""Run the cells of a study on a Dask cluster (imported only when asked for).

Each missing cell is one task ``_cell_task(study_json, label, n, ..., em_backend)``: the worker rebuilds
the :class:`StudySpec` from its JSON, computes the cell with exactly the same code as the local
runner (:func:`moetheory.study.runner.compute_cell`) and returns plain NumPy arrays. The client
writes each result to the cache as it arrives (atomically; the manifest is only ever written by
the client), so an interrupted distributed run resumes like a local one; the client claims the
cells it submits (:mod:`moetheory.study.claims`), so concurrent runs on one cache share the work.
The EM backend (:func:`moetheory.study.runner.cell_backend`) is decided once on the client and
sent with every task, so local and distributed runs of the same study produce the same numbers
on the same kind of machine.

Usage: ``scheduler="tcp://host:8786"`` connects to a running cluster; ``workers=N`` starts a
local cluster of N single-threaded worker processes for the duration of the run; or pass an
existing ``client``.
"""
from __future__ import annotations

import time

from moetheory.study.spec import _check_int


def _cell_task(study_json: str, label: str, n: int, compile_cache=None, em_backend: str = "auto"):
    import os

    if compile_cache and "MOETHEORY_COMPILE_CACHE" not in os.environ:
        os.environ["MOETHEORY_COMPILE_CACHE"] = compile_cache
    from moetheory.study.runner import compute_cell, configure_compile_cache
    from moetheory.study.spec import StudySpec

    configure_compile_cache()
    study = StudySpec.from_json(study_json)
    t0 = time.perf_counter()
    # One task slot of a worker is one thread: the cluster, not the cell, runs things in parallel
    # (unless $MOETHEORY_THREADS says otherwise on the worker).
    threads = None if os.environ.get("MOETHEORY_THREADS") else 1
    arrays = compute_cell(study, label, n, em_backend=em_backend, threads=threads)
    return arrays, time.perf_counter() - t0


def _client(scheduler=None, workers=None, processes=True):
    workers = 1 if workers is None else _check_int("workers", workers, 1)  # before importing dask
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                           dashboard_address=None)
    return Client(cluster), cluster


def run_cells_dask(study, todo, cache, *, scheduler=None, workers=None, client=None,
                   progress=True, processes=True):
    """Compute the cells ``todo`` [(label, n), ...] on Dask and write them to ``cache``.

    Parameters
    ----------
    study : StudySpec
    todo : list of (fit label, n)
        Cells to compute (e.g. :func:`moetheory.study.runner.missing_cells`); empty: no-op.
    cache : StudyCache
        Each result (arrays of shape (replicates, ...)) is written here as it arrives.
    scheduler : str, optional
        Address of a running scheduler, e.g. ``"tcp://host:8786"``.
    workers : int, optional
        Start a local cluster of this many single-threaded workers for the run.
    client : dask.distributed.Client, optional
        Use an existing client (not closed afterwards).
    progress : bool
        Show a :class:`~moetheory.study.progress.CellProgress` bar.
    processes : bool
        Local cluster workers are processes (True) or threads.

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)
    >>> from moetheory.study.cache import StudyCache  # doctest: +SKIP
    >>> cache = StudyCache("/tmp/mt-cache")  # doctest: +SKIP
    >>> run_cells_dask(study, study.cells(), cache, workers=2, progress=False)  # doctest: +SKIP
    >>> cache.status(study)["k2"]["missing"]  # doctest: +SKIP
    []
    """
    import os
    from contextlib import closing

    from dask.distributed import as_completed

    from moetheory.study.progress import CellProgress
    from moetheory.study.runner import _cell_delay, cell_backend

    if not todo:
        return
    own_cluster = None
    own_client = client is None
    if client is None:
        client, own_cluster = _client(scheduler, workers, processes)
    # an explicit compile cache is passed on; otherwise each worker uses its own user's default
    compile_cache = os.environ.get("MOETHEORY_COMPILE_CACHE")
    if compile_cache and compile_cache != "off":
        compile_cache = os.path.abspath(compile_cache)
    claims = {}
    try:
        spec_json = study.to_json()

        def submit(label, n):
            backend = cell_backend(study, label)  # decided here, sent to the worker
            fut = client.submit(_cell_task, spec_json, label, int(n), compile_cache, backend,
                                pure=False,
                                key=f"moetheory-{study.name}-{label}-{int(n)}-{time.time_ns()}")
            futures[fut] = (label, int(n))
            return fut

        futures, others = {}, []
        for label, n in todo:  # claim what no other process computes; submit it all at once
            claim = cache.claim(study, label, n)
            if claim.acquire():
                claims[(label, int(n))] = claim
                submit(label, n)
            else:
                others.append((label, n))
        with CellProgress(study, todo, enabled=progress, desc=f"{study.name} [dask]") as bar:
            for fut in as_completed(list(futures)):
                label, n = futures[fut]
                arrays, wall = fut.result()
                cache.write_cell(study, label, n, arrays, wall_s=wall)
                claims.pop((label, n)).release()
                bar.done(label, n, arrays, wall)
                _cell_delay()
            # cells another process was computing: wait for them (or take over a stale claim)
            with closing(cache.share(study, others, on_other=bar.skip)) as cells:
                for label, n in cells:
                    arrays, wall = submit(label, n).result()
                    cache.write_cell(study, label, n, arrays, wall_s=wall)
                    bar.done(label, n, arrays, wall)
    finally:
        for claim in claims.values():
            claim.release()
        if own_client:
            client.close()
        if own_cluster is not None:
            own_cluster.close()
