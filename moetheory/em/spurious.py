"""Regular and spurious maxima of a mixture-of-experts likelihood.

The likelihood of a Gaussian mixture of experts is unbounded (an expert through d + 1 points
with σ → 0) and has many *spurious* local maxima: an expert fitted to a few observations that
happen to lie close to a line, with a small variance (McLachlan & Peel 2000, §3.10), or a gate
boundary that has become a step on the data, along which the likelihood keeps rising as the
slope grows without bound (the separated case of logistic regression, Albert & Anderson 1984).
Their log-likelihood is often the highest a multistart finds — and information criteria then
prefer them (a 3–4 point expert beat the true two-regime model by AIC).

:func:`assess` classifies an estimate (data-driven fits only; :mod:`moetheory.em.pipeline`):

* **small expert** — an expert that some observation's active set contains (every expert,
  except under a top-K gate) with an effective size Σ_n r_ni below ``min_size``·n (default 0.05) or below
  d + 2 (an expert's own parameter count: it can then fit its points exactly). The threshold is
  flexmix's ``minprior`` (Leisch 2004, *J. Stat. Softw.* 11(8); Grün & Leisch 2008), which
  removes such components during EM; here the maximum is set aside instead, so the fit keeps
  the k experts that were asked for;
* **step gate** — the Fisher information of the gate's own multinomial logit, Σ_n (diag g_n −
  g_n g_nᵀ) ⊗ x̃_n x̃_nᵀ in standardised covariates (the reference expert's block left out), has
  an eigenvalue below :data:`STEP_INFORMATION` observations: some boundary between experts has
  no observation in its transition zone. On the seven real data sets of ``docs/realdata.md``
  every verified regular maximum has a smallest eigenvalue ≥ 5e-4 and every flat (step)
  one ≤ 2e-12;
* **variance floor** — an expert's variance on the floor ``var_floor`` (an expert that fits its
  points exactly);
* **not certified** — the convergence certificate failed (:mod:`moetheory.em.certify`).

An estimate with none of these is *regular*. With ``EMConfig(spurious="reject")`` (default) the
pipeline returns the best regular maximum whenever one was found, and reports any higher maxima
it set aside; ``spurious="keep"`` returns the raw optimum.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.kernels.numpy_em import design_t, estep, gate_derivatives

#: Smallest eigenvalue (in observations, standardised covariates) of the gate's own Fisher
#: information below which a gate counts as a step on the data (module docstring).
STEP_INFORMATION = 1e-8

#: classification of an estimate, in order of precedence
CAUSES = ("regular", "nonfinite", "variance_floor", "small_expert", "step_gate", "not_certified")


class Assessment(NamedTuple):
    """What :func:`assess` found about one estimate.

    Attributes
    ----------
    cause : str, one of :data:`CAUSES` ("regular" when none applies)
    sizes : (k,) effective expert sizes Σ_n w_n r_ni
    min_count : float, the smallest admissible size (max(min_size·n, d + 2))
    expert : int, the expert that caused it (smallest size, or on the floor), or -1
    gate_information : float, the smallest eigenvalue of the gate's own information (inf for
        one expert or a gate whose logits are not linear in x)

    Examples
    --------
    >>> a = Assessment("small_expert", np.array([3.2, 500.0]), 25.0, 0, 12.0)
    >>> a.regular, a.describe()
    (False, 'expert 1 has an effective size of 3.2 observations (below 25)')
    """

    cause: str
    sizes: np.ndarray
    min_count: float
    expert: int
    gate_information: float

    @property
    def regular(self) -> bool:
        return self.cause == "regular"

    def describe(self) -> str:
        """The cause in words (for warnings and summaries)."""
        i = self.expert + 1
        if self.cause == "small_expert":
            return (f"expert {i} has an effective size of {self.sizes[self.expert]:.3g} observations "
                    f"(below {self.min_count:.3g})")
        if self.cause == "step_gate":
            return (f"the gate is a step on the data (smallest eigenvalue of its information "
                    f"{self.gate_information:.2g}): a gate slope runs off to infinity")
        if self.cause == "variance_floor":
            return f"expert {i}'s variance sits on the floor var_floor"
        if self.cause == "not_certified":
            return "it is not certified as a maximum"
        if self.cause == "nonfinite":
            return "its log-likelihood is not finite"
        return "regular"

    def to_dict(self) -> dict:
        return {"cause": self.cause, "sizes": [float(v) for v in self.sizes],
                "min_count": float(self.min_count), "expert": int(self.expert),
                "gate_information": float(self.gate_information)}


def min_count(min_size: float, n_weight: float, dim: int) -> float:
    """The smallest admissible effective expert size: max(min_size·n, d + 2).

    Examples
    --------
    >>> min_count(0.05, 1000, 1), min_count(0.05, 20, 1)
    (50.0, 3.0)
    """
    return max(float(min_size) * float(n_weight), float(dim + 2))


def _sizes_and_information(spec, params, x, y, w):
    """(effective sizes (k,) = Σ_n w_n r_ni, used experts (k,), the gate's information
    :func:`gate_information` (inf for a gate that is not a softmax of linear logits)): NumPy or
    the Numba kernels for a gate with closed-form kernels (the softmax: nothing to compile per
    data size), JAX otherwise."""
    linear = spec.gate_family.softmax_of_linear(spec)
    if not spec.cpu_kernels:
        sizes, g, used = (np.asarray(v) for v in _posterior_jax(spec, params, x, y, w))
        return sizes, used, gate_information(g, x, w) if linear else float("inf")
    from moetheory.em.backend import small_data

    p = jax.tree.map(lambda v: np.asarray(v, dtype=np.float64), params)
    used = np.full(spec.n_experts, bool(np.any(w > 0)))
    if small_data(spec, x.shape[0]):
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            _, resp, _, _, g = estep(design_t(x), np.asarray(y, dtype=np.float64), w, p.beta0,
                                     p.beta1, p.a, p.b, p.var)
        return resp.sum(axis=1), used, gate_information(g.T, x, w)
    from moetheory.kernels.numba_em import estep_stats, gate_qd

    sizes = estep_stats(p, x, y, w)["R"]
    if spec.n_experts == 1:
        return sizes, used, float("inf")
    # gate_information in one kernel pass: the same logits in the standardised covariates
    # x̃ = (x − m)/s have slopes β_1·s and intercepts β_0 + β_1ᵀm
    mean, sd = _standardisation(x, w)
    xs = np.ascontiguousarray((x - mean) / sd)
    info = gate_qd(xs, w, np.zeros((x.shape[0], spec.n_experts)), p.beta0 + p.beta1 @ mean,
                   np.ascontiguousarray(p.beta1 * sd), 1)[2]
    return sizes, used, float(np.linalg.eigvalsh(info)[0])


def _standardisation(x, w):
    """(mean (d,), sd (d,), 1 where 0) of the rows of x with positive weight."""
    live = w > 0
    sd = x[live].std(axis=0)
    return x[live].mean(axis=0), np.where(sd > 0, sd, 1.0)


@partial(jax.jit, static_argnums=0)
def _posterior_jax(spec, params, x, y, w):
    from moetheory.model import gate_probabilities, responsibilities

    from moetheory.gates import active_mask

    r = responsibilities(spec, params, x, y) * w[:, None]
    used = jnp.any(active_mask(spec, params, x) & (w[:, None] > 0), axis=0)
    return r.sum(0), gate_probabilities(spec, params, x), used


def gate_information(g, x, w=None) -> float:
    """Smallest eigenvalue of Σ_n w_n (diag g_n − g_n g_nᵀ) ⊗ x̃_n x̃_nᵀ without the last
    (reference) expert's block: the Fisher information of a multinomial logit with the gate
    probabilities g (n, k), in covariates x (n, d) standardised here (x̃ = (1, (x − m)/s)).

    Examples
    --------
    >>> x = np.linspace(-1, 1, 50)[:, None]
    >>> soft = np.column_stack([1 / (1 + np.exp(-3 * x[:, 0])), 1 / (1 + np.exp(3 * x[:, 0]))])
    >>> hard = np.column_stack([x[:, 0] > 0, x[:, 0] <= 0]).astype(float)
    >>> gate_information(soft, x) > 0.1, gate_information(hard, x) < 1e-12
    (True, True)
    """
    g = np.asarray(g, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    n, k = g.shape
    if k == 1:
        return float("inf")
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    mean, sd = _standardisation(x, w)
    xt = np.vstack([((x - mean) / sd).T, np.ones((1, n))])  # (d + 1, n)
    # the gate objective's information at g (the multinomial logit's Fisher information)
    info = gate_derivatives(xt, w, g.T, np.ascontiguousarray(g.T))[1]
    return float(np.linalg.eigvalsh(0.5 * (info + info.T))[0])


def assess(spec, params, x, y, weights, *, var_floor: float, certificate, min_size: float) -> Assessment:
    """Classify the estimate ``params`` (module docstring).

    Parameters
    ----------
    spec : MoESpec; params : MoEParams
    x : (n, d); y : (n,); weights : (n,) observation weights
    var_floor : the variance floor of the fit
    certificate : its :class:`~moetheory.em.certify.Certificate`
    min_size : fraction of n, see :func:`min_count`

    Returns
    -------
    Assessment

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.em.certify import certify
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (300, 1)); y = x[:, 0] + 0.1 * rng.standard_normal(300)
    >>> p = MoEParams.create([-6., 0.], [[0.], [0.]], [[1.], [1.]], [0., 0.], [0.01, 0.01])
    >>> a = assess(MoESpec(2, 1), p, x, y, np.ones(300), var_floor=1e-10,
    ...            certificate=certify(MoESpec(2, 1), p, x, y), min_size=0.05)
    >>> a.cause, a.expert
    ('small_expert', 0)
    """
    w = np.ones(np.shape(y)[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    k = spec.n_experts
    count = min_count(min_size, float(w.sum()), spec.dim)
    if not all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(params)):
        return Assessment("nonfinite", np.full(k, np.nan), count, -1, float("nan"))
    sizes, used, info = _sizes_and_information(spec, jax.tree.map(np.asarray, params),
                                               np.asarray(x, dtype=np.float64),
                                               np.asarray(y, dtype=np.float64), w)
    var = np.asarray(params.var)
    on_floor = var <= var_floor * (1 + 1e-9)
    if not np.all(np.isfinite(sizes)):
        return Assessment("nonfinite", sizes, count, -1, info)
    if on_floor.any():
        return Assessment("variance_floor", sizes, count, int(np.argmax(on_floor)), info)
    # a top-K expert that no observation selects is unused, not fitted to a few points (its
    # parameters are unidentified: moetheory.mle leaves them out of the inference)
    small = used & (sizes < count)
    if k > 1 and small.any():
        i = int(np.argmin(np.where(small, sizes, np.inf)))
        return Assessment("small_expert", sizes, count, i, info)
    if info < STEP_INFORMATION:
        return Assessment("step_gate", sizes, count, -1, info)
    if not certificate.certified:
        return Assessment("not_certified", sizes, count, -1, info)
    return Assessment("regular", sizes, count, -1, info)
