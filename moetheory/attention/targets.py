"""Targets that are permutation-invariant in the keys.

Every target has the form ``y = (1/N) sum_i h(scale * g(x_0, x_i))`` (+ optional label
noise) where the *inner* statistic ``g`` is

* ``"dot"``      : ``<x_0, x_i>``
* ``"index"``    : ``<beta, x_i>`` (key-only single index; ``beta`` uniform on the unit
  sphere times ``radius``, drawn from the target's generator)
* ``"bilinear"`` : ``x_0^T S x_i`` with ``S`` Gaussian, rescaled to ``|S|_F = sqrt(d)``
  (so the statistic has the same spread as ``<x_0, x_i>``)

and the *link* ``h`` is

* ``"hermite"``  : normalised probabilists' Hermite ``He_k(t) / sqrt(k!)`` (``degree=k``)
* ``"monomial"`` : ``t^k``
* ``"cos"``      : ``cos(freq * t)``
* ``"exp"``      : ``exp(rate * t)``

``scale=None`` means ``sqrt(d) / radius^2``, which gives the statistic unit variance for
inputs uniform on the sphere of radius ``radius`` (``Var <x_0, x_i> = radius^4 / d``).

A small registry :data:`TARGETS` maps names to keyword presets; :func:`make_target`
builds a :class:`Target` from a name (plus overrides) and a generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import hermite_e

from .inputs import check_choice, check_inputs, check_positive, check_positive_int

__all__ = ["Target", "TARGETS", "LINKS", "INNERS", "make_target", "link_function"]

LINKS = ("hermite", "monomial", "cos", "exp")
INNERS = ("dot", "index", "bilinear")

#: Named presets (keyword arguments of :func:`make_target`).
TARGETS: dict[str, dict] = {
    "hermite2_dot": dict(inner="dot", link="hermite", degree=2),
    "hermite3_dot": dict(inner="dot", link="hermite", degree=3),
    "hermite4_dot": dict(inner="dot", link="hermite", degree=4),
    "monomial3_dot": dict(inner="dot", link="monomial", degree=3),
    "cos_dot": dict(inner="dot", link="cos", freq=2.0),
    "exp_dot": dict(inner="dot", link="exp", rate=0.5),
    "hermite2_index": dict(inner="index", link="hermite", degree=2),
    "hermite3_index": dict(inner="index", link="hermite", degree=3),
    "cos_index": dict(inner="index", link="cos", freq=2.0),
    "hermite2_bilinear": dict(inner="bilinear", link="hermite", degree=2),
    "hermite3_bilinear": dict(inner="bilinear", link="hermite", degree=3),
}


def link_function(link: str, t, *, degree: int = 2, freq: float = 1.0, rate: float = 1.0):
    """Evaluate the link ``h`` at ``t`` (any shape).

    Examples
    --------
    >>> float(link_function("hermite", 2.0, degree=2))   # (2^2 - 1) / sqrt(2)
    2.1213203435596424
    """
    check_choice("link", link, LINKS)
    t = np.asarray(t, dtype=np.float64)
    if link == "hermite":
        c = np.zeros(degree + 1)
        c[degree] = 1.0 / math.sqrt(math.factorial(degree))
        return hermite_e.hermeval(t, c)
    if link == "monomial":
        return t ** degree
    if link == "cos":
        return np.cos(freq * t)
    return np.exp(rate * t)


@dataclass(frozen=True, eq=False)
class Target:
    """A key-permutation-invariant target ``(1/N) sum_i h(scale * g(x_0, x_i))``.

    Attributes
    ----------
    inner : {"dot", "index", "bilinear"}
    link : {"hermite", "monomial", "cos", "exp"}
    scale : float
        Multiplies the inner statistic.
    degree, freq, rate : link parameters.
    noise_sd : float
        Standard deviation of Gaussian label noise added by :meth:`sample_labels`.
    beta : ndarray, shape (d,), or None
        Index direction (inner "index").
    S : ndarray, shape (d, d), or None
        Bilinear matrix (inner "bilinear").
    name : str

    Examples
    --------
    >>> from moetheory.attention.inputs import sample_inputs
    >>> rng = np.random.default_rng(0)
    >>> tgt = make_target("cos_dot", d=4, rng=rng)
    >>> tgt(sample_inputs(rng, 3, N=5, d=4)).shape
    (3,)
    """

    inner: str
    link: str
    scale: float
    degree: int = 2
    freq: float = 1.0
    rate: float = 1.0
    noise_sd: float = 0.0
    beta: np.ndarray | None = field(default=None, repr=False)
    S: np.ndarray | None = field(default=None, repr=False)
    name: str = ""

    def statistic(self, X) -> np.ndarray:
        """Inner statistic ``g(x_0, x_i)``, shape (n, N)."""
        X = check_inputs(X)
        x0, keys = X[:, 0], X[:, 1:]
        if self.inner == "dot":
            return np.einsum("nd,nid->ni", x0, keys)
        if self.inner == "index":
            return keys @ self.beta
        return np.einsum("nd,de,nie->ni", x0, self.S, keys)

    def __call__(self, X) -> np.ndarray:
        """Noiseless target values, shape (n,)."""
        h = link_function(self.link, self.scale * self.statistic(X), degree=self.degree,
                          freq=self.freq, rate=self.rate)
        return h.mean(axis=1)

    def sample_labels(self, rng: np.random.Generator, X) -> np.ndarray:
        """Noisy labels ``f(X) + noise_sd * eps``, shape (n,)."""
        y = self(X)
        if self.noise_sd > 0:
            y = y + self.noise_sd * rng.standard_normal(y.shape)
        return y


def make_target(name_or_inner: str, d: int, rng: np.random.Generator | None = None, *,
                radius: float = 1.0, **kw) -> Target:
    """Build a target from a registry name (see :data:`TARGETS`) or an inner-statistic name.

    Parameters
    ----------
    name_or_inner : str
        A key of :data:`TARGETS`, or one of ``INNERS`` (then ``link`` etc. come from ``kw``).
    d : int
        Input dimension.
    rng : numpy.random.Generator, optional
        Draws ``beta`` / ``S`` for "index" / "bilinear" targets (required for those).
    radius : float
        Input sphere radius (sets the default ``scale`` and the norm of ``beta``).
    **kw
        Overrides: ``link``, ``degree``, ``freq``, ``rate``, ``scale``, ``noise_sd``.

    Returns
    -------
    Target

    Examples
    --------
    >>> make_target("hermite3_dot", d=8).degree
    3
    """
    d = check_positive_int("d", d)
    radius = check_positive("radius", radius)
    if name_or_inner in TARGETS:
        spec = {**TARGETS[name_or_inner], **kw}
        name = name_or_inner
    elif name_or_inner in INNERS:
        spec = {"inner": name_or_inner, **kw}
        name = kw.pop("name", name_or_inner)
        spec.pop("name", None)
    else:
        raise ValueError(f"target must be one of {sorted(TARGETS) + list(INNERS)}, "
                         f"got {name_or_inner!r}")
    unknown = set(spec) - {"inner", "link", "degree", "freq", "rate", "scale", "noise_sd"}
    if unknown:
        raise ValueError(f"unknown target option(s) {sorted(unknown)}; expected any of "
                         "link, degree, freq, rate, scale, noise_sd")
    inner = check_choice("inner", spec["inner"], INNERS)
    link = check_choice("link", spec.get("link", "hermite"), LINKS)
    degree = check_positive_int("degree", spec.get("degree", 2), minimum=0)
    scale = spec.get("scale")
    scale = math.sqrt(d) / radius ** 2 if scale is None else check_positive("scale", scale)
    noise_sd = check_positive("noise_sd", spec.get("noise_sd", 0.0), allow_zero=True)
    beta = S = None
    if inner in ("index", "bilinear"):
        if rng is None:
            raise ValueError(f"rng must be a numpy Generator for inner={inner!r}, got None")
        if inner == "index":
            g = rng.standard_normal(d)
            beta = radius * g / np.linalg.norm(g)
        else:
            g = rng.standard_normal((d, d))
            S = math.sqrt(d) * g / np.linalg.norm(g)
    return Target(inner=inner, link=link, scale=float(scale), degree=degree,
                  freq=float(spec.get("freq", 1.0)), rate=float(spec.get("rate", 1.0)),
                  noise_sd=noise_sd, beta=beta, S=S, name=name)
