"""Monte Carlo studies: declaration, vectorised runner, cache, Dask execution (DESIGN.md §1, §6).

>>> from moetheory.study import StudySpec, FitSpec, run_study   # doctest: +SKIP
"""
from moetheory.em.config import EMConfig
from moetheory.study.spec import DesignSpec, FitSpec, StudySpec

__all__ = ["StudySpec", "FitSpec", "DesignSpec", "EMConfig", "run_study", "load_results",
           "compute_cell", "summarize"]


def __getattr__(name):  # lazy: importing the spec must not import the runner (JAX work)
    if name in ("summarize", "loss_matrix"):
        from moetheory.study import summary

        return getattr(summary, name)
    if name in ("run_study", "compute_cell"):
        from moetheory.study import runner

        return getattr(runner, name)
    if name in ("load_results", "StudyCache"):
        from moetheory.study import cache

        return getattr(cache, name)
    raise AttributeError(name)
