"""Voronoi cells, Voronoi losses D_1/D_2 and per-parameter errors (DESIGN.md §4.1).

See :mod:`moetheory.losses.voronoi` for the definitions and the translation convention.
"""
from moetheory.losses.errors import (CellErrors, MatchedErrors, cell_errors, matched_errors,
                                     summarize_cells)
from moetheory.losses.voronoi import (RBAR, LossResult, VoronoiCells, best_translation, d1_loss,
                                      d2_loss, voronoi_cells, voronoi_loss)
from moetheory.spec import gate_translation

__all__ = [
    "RBAR", "voronoi_cells", "d1_loss", "d2_loss", "voronoi_loss", "best_translation",
    "gate_translation",
    "cell_errors", "matched_errors", "summarize_cells",
    "VoronoiCells", "LossResult", "CellErrors", "MatchedErrors",
]
