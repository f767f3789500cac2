"""Softmax-gate EM in vectorised NumPy: the CPU path that needs no compilation.

The fused Numba kernel (:func:`moetheory.kernels.numba_em.em_loop`) is the fastest EM on CPU
once compiled, but compiling it takes about a minute on a 2-core machine, once per install (and
again after every edit of its source). For small problems that minute is most of the wait, so
:func:`moetheory.em.backend.choose_backend` sends fits whose data are small
(:data:`moetheory.em.backend.NUMPY_MAX_CELLS`) here: the same algorithm, whole arrays at a time,
with nothing to compile.

:func:`em_loop` has the Numba kernel's signature and returns its tuple. It runs the same
iteration: an E-step at the current parameters (which gives their log-likelihood), the exact
expert M-step in residual form (weighted least squares with the same tiny ridge, the same
variance floor and empty-expert rule), then ``max_newton`` warm-started Newton steps of the
softmax gate (last expert pinned) on Σ r log g, each halved up to 40 times until the objective
does not decrease. The Numba kernel tests the full step of ``max_newton = 1`` inside the next
pass over the data (the fused check); here the test is made at once on the same
responsibilities: the same iterates, in a different order of rounding. The two paths agree to
rounding (``tests/test_numpy_path.py``: the same iterations and stopping point, ℓ to 1e-10).

Shapes: x (n, d), y and w (n,), k experts; x̃ = (x, 1) has p = d + 1 entries. Inside, arrays
are expert-major, (k, n) and x̃ᵀ (p, n), so that every reduction over the experts is a few
whole-row operations. The free gate parameters θ (k − 1, p) are [β_1, β_0] of experts 0..k−2,
as in :mod:`moetheory.em.mstep`.

An iteration is a few dozen whole-array operations, so its cost is their number and their
passes over (k, n) arrays; what keeps both down:

* the log-probabilities of the gate that the gate step accepts are those the next E-step needs
  (the same product and softmax), so they are handed on, not recomputed;
* the work arrays are made once per run (:class:`_Work`) and written in place;
* every weighted sum of x̃ x̃ᵀ — the experts' Gram matrices, the blocks of the gate's
  information — is one matrix product with the products x̃_u x̃_v (u ≤ v), which include x̃
  itself, for all experts or blocks at once; the experts' weighted least-squares systems are
  solved in one batched call. The information's diagonal blocks take the per-row coefficient
  w g (1 − g), as the Numba kernel does, not a difference of two sums, which cancels to noise
  where the gate saturates;
* exp is taken as 0 below :data:`EXP_MIN` (its result is below 1e-304): NumPy's exp is 5 to
  100 times slower on arguments whose result is subnormal or underflows, and a saturated gate,
  where over-fitted fits spend thousands of iterations, makes many of them.
"""
from __future__ import annotations

import math

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)
#: The rule of :data:`moetheory.em.mstep.MIN_EXPERT_WEIGHT`: emptier experts keep their parameters.
MIN_EXPERT_WEIGHT = 1e-8
#: Step halvings of the gate's Newton step before it is rejected (as the Numba kernel).
MAX_HALVINGS = 40
#: exp(v) is taken as 0 for v below this (exp(v) < 1e-304 is nothing beside the normalisers,
#: which are ≥ 1; the Numba kernel's exp is 0 below −708), where NumPy's exp is slow (see above).
EXP_MIN = -700.0


def design_t(x) -> np.ndarray:
    """x̃ᵀ = (x, 1)ᵀ, shape (d + 1, n), C-contiguous float64 (rows: the covariates, then ones).

    Examples
    --------
    >>> design_t(np.array([[2.0], [3.0]])).tolist()
    [[2.0, 3.0], [1.0, 1.0]]
    """
    x = np.asarray(x, dtype=np.float64)
    xt = np.empty((x.shape[1] + 1, x.shape[0]))
    xt[:-1] = x.T
    xt[-1] = 1.0
    return xt


def _coef(slopes, intercepts):
    """(k, p) rows [slopes, intercept]."""
    return np.concatenate([slopes, intercepts[:, None]], axis=1)


class _Work:
    """The arrays of one EM run (or of one call of a public function), made once and
    overwritten by every iteration, and the index maps that read small matrices out of sums.

    Every symmetric sum Σ_n c_n x̃_n x̃_nᵀ (an expert's Gram matrix, a block of the gate's
    information) is a row of the product c @ xxᵀ, xx (P, n) holding the products x̃_u x̃_v,
    u ≤ v, P = p (p + 1) / 2: one matrix product for all experts or blocks, with no (k, p, n)
    temporary. The products with the constant entry are x̃ itself, so the linear sums
    Σ_n c_n x̃_n are columns of the same product. With ``y`` (the E- and M-step arrays), the
    residuals e (k, n) are stored below xx (``z``), so that the expert M-step's one product
    also gives Σ r e x̃ and Σ r e².
    """

    def __init__(self, xt, w, k, y=None):
        p, n = xt.shape
        n_pairs = p * (p + 1) // 2
        self.xt, self.w, self.k, self.p = xt, w, k, p
        self.unit = bool(np.all(w == 1.0))  # then w·v is v: the products are skipped
        iu, iv = np.triu_indices(p)
        self.z = np.empty((n_pairs + (0 if y is None else k), n))
        self.xx = self.z[:n_pairs]
        np.multiply(xt[iu], xt[iv], out=self.xx)
        self.sym = np.empty((p, p), dtype=np.intp)  # the row of xx of x̃_u x̃_v
        self.sym[iu, iv] = self.sym[iv, iu] = np.arange(n_pairs)
        self.lin = self.sym[:, p - 1].copy()  # the rows of xx that are x̃
        self.tmp = np.empty((k, n))  # scratch: logits, log joint densities, products
        self.mask = np.empty((k, n), dtype=bool)
        self.s = np.empty(n)
        self.gates = ((np.empty((k, n)), np.empty((k, n))), (np.empty((k, n)), np.empty((k, n))))
        # the gate's information: blocks (j, l) of the k − 1 free experts, (j, j) first, then
        # j < l (as ``jl``); ``flat`` maps an entry of the (m, m) information to its entry of
        # the flattened block sums (blocks, P)
        k1 = k - 1
        self.jl = np.triu_indices(k1, 1)
        blocks = k1 + self.jl[0].size
        self.dc = np.empty((k1 + blocks, n))  # r − w g, then the blocks' coefficients
        self.wg = None if self.unit else np.empty((k1, n))
        row = np.empty((k1, k1), dtype=np.intp)
        row[np.arange(k1), np.arange(k1)] = np.arange(k1)
        row[self.jl] = row[self.jl[::-1]] = k1 + np.arange(self.jl[0].size)
        self.flat = (row[:, None, :, None] * n_pairs + self.sym[None, :, None, :]).reshape(
            k1 * p, k1 * p)  # (j, u) × (l, v)
        if y is None:
            return
        self.e = self.z[n_pairs:]
        self.zero_rows = np.flatnonzero(~(w != 0.0))  # rows that add exactly 0 to ℓ
        self.xy = np.empty((p + 1, n))  # (x̃, y): e = [−a, −b, 1] @ xy, one product
        self.xy[:p] = xt
        self.xy[p] = y
        self.c = np.empty((k, p + 1))
        self.c[:, p] = 1.0
        self.rre = np.empty((2 * k, n))  # responsibilities r, then r·e
        self.resp = self.rre[:k]
        self.jm, self.ws = np.empty(n), np.empty(n)
        self.eye_p = np.eye(p)
        self.u = np.empty((k, p + 1, 1))
        self.u[:, p] = -1.0
        # rre @ zᵀ (2k, P + k) holds Σ r_i x̃x̃ᵀ in row i and Σ r_i e_i x̃x̃ᵀ, Σ r_i e_i e_l in
        # row k + i; ``gram`` gathers from its flat form, for every expert, the weighted Gram
        # matrix of (x̃, e), (k, p + 1, p + 1): [[Σ r x̃x̃ᵀ, Σ r e x̃], [Σ r e x̃ᵀ, Σ r e²]]
        width = n_pairs + k
        rows = np.arange(k)[:, None]
        self.gram = np.empty((k, p + 1, p + 1), dtype=np.intp)
        self.gram[:, :p, :p] = rows[:, :, None] * width + self.sym
        self.gram[:, :p, p] = self.gram[:, p, :p] = (k + rows) * width + self.lin
        self.gram[:, p, p] = (k + rows[:, 0]) * width + n_pairs + rows[:, 0]

    def spare_gate(self, logg):
        """(log g, g) arrays for a candidate gate: the pair not holding ``logg`` (the current
        gate's, which a rejected candidate must leave intact)."""
        return self.gates[1] if logg is self.gates[0][0] else self.gates[0]


def _exp_into(v, out, tmp, mask):
    """out = exp(v), 0 where v < :data:`EXP_MIN`; ``tmp`` (which may be v: then clobbered) and
    ``mask`` (bool) are scratch of v's shape."""
    if v.min() >= EXP_MIN:  # (False for NaN: the slow path keeps it)
        np.exp(v, out=out)
        return
    np.greater_equal(v, EXP_MIN, out=mask)
    np.exp(np.maximum(v, EXP_MIN, out=tmp), out=out)
    np.multiply(out, mask, out=out)


def _log_softmax(h):
    """(log g (k, n), g (k, n)) of logits h (k, n), with the max over experts subtracted."""
    logg, g = np.empty_like(h), np.empty_like(h)
    _log_softmax_into(h, logg, g, np.empty(h.shape[1]), np.empty_like(h),
                      np.empty(h.shape, dtype=bool))
    return logg, g


def _log_softmax_into(h, logg, g, s, tmp, mask):
    """:func:`_log_softmax` of h into ``logg`` and ``g``; ``s`` (n,), ``tmp`` and ``mask`` (bool)
    (k, n) are scratch (``tmp`` may be h)."""
    np.subtract(h, h.max(axis=0, out=s), out=logg)
    _exp_into(logg, g, tmp, mask)
    g.sum(axis=0, out=s)
    np.divide(g, s, out=g)
    np.log(s, out=s)
    np.subtract(logg, s, out=logg)


def estep(xt, y, w, beta0, beta1, a, b, var, hard=False):
    """One E-step at the given parameters (expert-major arrays: every row one expert).

    Parameters
    ----------
    xt : (p, n) x̃ᵀ (:func:`design_t`); y, w : (n,); beta0, b, var : (k,); beta1, a : (k, d)
    hard : classification-EM responsibilities (one-hot of the most probable expert, the first
        on ties, times w) instead of the posterior ones

    Returns
    -------
    (ℓ = Σ_n w_n log p(y_n | x_n), resp (k, n) = w·posterior, residuals e (k, n) = y − a_iᵀx − b_i,
    log g (k, n), g (k, n)); rows with w = 0 add exactly 0 to ℓ and have zero responsibilities.

    Examples
    --------
    >>> xt = design_t(np.array([[0.0], [1.0]])); y = np.array([0.0, 1.0]); w = np.ones(2)
    >>> ll, resp, e, logg, g = estep(xt, y, w, np.zeros(1), np.zeros((1, 1)),
    ...                             np.array([[1.0]]), np.zeros(1), np.ones(1))
    >>> round(ll, 6), resp.tolist()                    # two N(0, 1) densities at 0
    (-1.837877, [[1.0, 1.0]])
    """
    work = _Work(xt, np.asarray(w, dtype=np.float64), beta0.shape[0],
                 np.asarray(y, dtype=np.float64))
    logg, g = _log_softmax(_coef(beta1, beta0) @ xt)
    ll = _estep(work, a, b, var, logg, hard)
    return ll, work.resp, work.e, logg, g


def _estep(work, a, b, var, logg, hard):
    """The E-step of :func:`estep` at the gate whose log-probabilities are ``logg``; returns ℓ
    and leaves the responsibilities and residuals in ``work.resp`` and ``work.e``."""
    w, e, lj, r, s, jm = work.w, work.e, work.tmp, work.resp, work.s, work.jm
    c = work.c
    np.negative(a, out=c[:, :-2])
    np.negative(b, out=c[:, -2])
    np.matmul(c, work.xy, out=e)
    np.multiply(e, e, out=r)
    r *= (0.5 / var)[:, None]
    np.add(logg, (-0.5 * (LOG_2PI + np.log(var)))[:, None], out=lj)
    lj -= r  # log g_i + log N_i
    lj.max(axis=0, out=jm)
    lj -= jm
    _exp_into(lj, r, lj, work.mask)
    r.sum(axis=0, out=s)
    np.divide(w, s, out=work.ws)
    ls = np.log(s, out=s)
    ls += jm
    if not work.unit:
        ls *= w
    if work.zero_rows.size:  # a dropped row adds exactly 0, even where its ℓ_n is not finite
        ls[work.zero_rows] = 0.0
    ll = float(ls.sum())
    if hard:
        best = np.argmax(r, axis=0)
        r.fill(0.0)
        r[best, np.arange(r.shape[1])] = 1.0
        r *= w
    else:
        r *= work.ws
    return ll


def gate_objective(resp, logg) -> float:
    """Q = Σ_n Σ_i r_ni log g_i(x_n) (terms with r_ni = 0 are 0); arrays (k, n), r ≥ 0.

    Examples
    --------
    >>> gate_objective(np.array([[1.0, 0.0], [0.0, 1.0]]), np.log(np.full((2, 2), 0.5)))
    -1.3862943611198906
    """
    return _gate_objective(resp, logg, np.empty(np.broadcast_shapes(resp.shape, logg.shape)))


def _gate_objective(resp, logg, tmp):
    """:func:`gate_objective` with ``tmp`` (k, n) as scratch."""
    q = float(np.multiply(resp, logg, out=tmp).sum())
    if not math.isfinite(q):  # maybe a 0 · (−∞) term (g = 0 where r = 0), which counts 0
        q = float(np.sum(np.where(resp > 0.0, tmp, 0.0)))
    return q


def gate_derivatives(xt, w, resp, g):
    """Gradient (m,) and information (m, m) of the gate objective Q, m = (k − 1)·p, at the gate
    whose probabilities are g (k, n) (last expert pinned): ∇Q = Σ_n (r_nj − w_n g_nj) x̃_n,
    −∇²Q = Σ_n w_n (δ_jl g_nj − g_nj g_nl) x̃_n x̃_nᵀ.

    Examples
    --------
    >>> xt = design_t(np.array([[-1.0], [1.0]])); g = np.full((2, 2), 0.5)
    >>> grad, info = gate_derivatives(xt, np.ones(2), np.array([[1.0, 0.0], [0.0, 1.0]]), g)
    >>> grad.tolist(), info.tolist()
    ([-1.0, 0.0], [[0.5, 0.0], [0.0, 0.5]])
    """
    return _gate_derivatives(_Work(xt, np.asarray(w, dtype=np.float64), g.shape[0]), resp, g)


def _gate_derivatives(work, resp, g):
    """:func:`gate_derivatives` with the arrays of ``work``. Each block of the information is
    Σ_n c_n x̃_n x̃_nᵀ with one coefficient per row, c = w g_j (1 − g_j) on the diagonal (as the
    Numba kernel: where g saturates, a difference of two sums would cancel to noise) and
    −w g_j g_l off it; the gradient and all blocks are one product; exactly symmetric."""
    k1 = work.k - 1
    jl, dc = work.jl, work.dc
    wg = g[:k1] if work.unit else np.multiply(work.w, g[:k1], out=work.wg)  # (1·g is g)
    np.subtract(resp[:k1], wg, out=dc[:k1])
    diag = dc[k1:2 * k1]
    np.subtract(1.0, g[:k1], out=diag)
    diag *= wg
    for row, (j, l) in enumerate(zip(*jl), start=2 * k1):
        np.multiply(wg[j], g[l], out=dc[row])
    sums = dc @ work.xx.T  # (k − 1 + blocks, P)
    grad = sums[:k1, work.lin]
    blocks = sums[k1:]
    np.negative(blocks[k1:], out=blocks[k1:])
    return grad.reshape(-1), blocks.reshape(-1)[work.flat]


def _expert_m_step(work, a, b, var, var_floor):
    """The exact expert M-step in residual form (in place) on the responsibilities and
    residuals in ``work``, all experts at once (one product for the sums, one batched solve);
    True when a variance was floored."""
    k, p = work.k, work.p
    d = p - 1
    np.multiply(work.resp, work.e, out=work.rre[k:])
    M = (work.rre @ work.z.T).reshape(-1)[work.gram]  # (k, p + 1, p + 1), see _Work
    G, rxe = M[:, :p, :p], M[:, :p, p:]
    weight = M[:, d, d]  # Σ r (x̃_d = 1)
    A = G + (1e-13 * (np.trace(G, axis1=1, axis2=2) / p))[:, None, None] * work.eye_p
    alive = weight > MIN_EXPERT_WEIGHT
    all_alive = bool(alive.all())
    if all_alive:
        delta = np.linalg.solve(A, rxe)  # (k, p, 1)
    else:  # emptier experts keep their parameters: solve a harmless system for them
        A[~alive] = work.eye_p
        delta = np.linalg.solve(A, np.where(alive[:, None, None], rxe, 0.0))
    u = work.u  # (δ, −1): SSR = Σ r (e − δᵀx̃)² = uᵀ M u = Σ r e² − 2 δᵀΣ r e x̃ + δᵀ G δ
    u[:, :p] = delta
    ssr = (u.transpose(0, 2, 1) @ (M @ u))[:, 0, 0]
    v = ssr / weight
    low = v < var_floor
    if all_alive:
        a += delta[:, :d, 0]
        b += delta[:, d, 0]
        np.maximum(v, var_floor, out=var)  # (NaN stays NaN, as the test v < floor leaves it)
    else:
        low &= alive
        a += delta[:, :d, 0]  # += 0 for an emptier expert
        b += delta[:, d, 0]
        var[:] = np.where(alive, np.where(low, var_floor, v), var)
    return bool(low.any())


def _gate_step(xt, w, resp, beta0, beta1, q, g, max_newton, newton_tol, stats):
    """``max_newton`` Newton steps with step halving on Q, from the current gate (whose Q is
    ``q`` and probabilities ``g``); returns the new (beta0, beta1)."""
    work = _Work(xt, np.asarray(w, dtype=np.float64), beta0.shape[0])
    return _newton(work, resp, beta0, beta1, q, None, g, max_newton, newton_tol, stats)[:2]


def _newton(work, resp, beta0, beta1, q, logg, g, max_newton, newton_tol, stats):
    """:func:`_gate_step` with the arrays of ``work``, from the gate whose (log g, g) are
    (``logg``, ``g``); returns (beta0, beta1, log g, g) of the gate it ends at, so that the next
    E-step need not recompute them (the same product and softmax: bit-identical)."""
    k, d = beta1.shape
    p = d + 1
    m = (k - 1) * p
    theta = _coef(beta1[: k - 1], beta0[: k - 1]).reshape(m)
    full = np.zeros((k, p))
    for t in range(max_newton):
        grad, info = _gate_derivatives(work, resp, g)
        ridge = 1e-12 * (1.0 + info.trace() / m)
        info.reshape(-1)[:: m + 1] += ridge  # (info is a fresh array)
        step = np.linalg.solve(info, grad)
        logg_c, g_c = work.spare_gate(logg)
        alpha = 1.0
        ok = False
        for h in range(MAX_HALVINGS):
            cand = theta + (step if alpha == 1.0 else alpha * step)
            full[: k - 1] = cand.reshape(k - 1, p)
            _log_softmax_into(np.matmul(full, work.xt, out=work.tmp), logg_c, g_c, work.s,
                              work.tmp, work.mask)
            qc = _gate_objective(resp, logg_c, work.tmp)
            stats[0] += 1
            if math.isfinite(qc) and qc >= q:
                ok = True
                break
            if t == 0 and h == 0:
                stats[1] += 1
            alpha *= 0.5
        if not ok:
            break
        improvement = qc - q
        q_old = q
        theta, q, logg, g = cand, qc, logg_c, g_c
        if not improvement > newton_tol * (1.0 + abs(q_old)):
            break
    full[: k - 1] = theta.reshape(k - 1, p)
    full[k - 1] = 0.0
    return full[:, d].copy(), full[:, :d].copy(), logg, g


def em_loop(x, y, w, beta0, beta1, a, b, var, tol_rel, tol_abs, max_iter, var_floor, max_newton,
            newton_tol, n_chunks, trace, fuse_check, stats, n_hard):
    """Softmax-gate EM; the signature and result of :func:`moetheory.kernels.numba_em.em_loop`.

    Parameters
    ----------
    x : (n, d); y, w : (n,) float64
    beta0, b, var : (k,); beta1, a : (k, d), the start (the gate is pinned first)
    tol_rel, tol_abs : stop at iteration t > n_hard when |ℓ_t − ℓ_{t−1}| ≤ max(tol_rel·|ℓ_{t−1}|,
        tol_abs); max_iter : iterations at most; var_floor : the variance floor
    max_newton, newton_tol : the gate's Newton loop per iteration
    n_chunks, fuse_check : accepted for the kernel's signature (whole arrays here; the
        full-step test is always made at once: the same iterates)
    trace : (max_iter + 1,) float, written: ℓ of every visited iterate
    stats : (2,) int64, incremented: passes over the data, rejected full gate steps
    n_hard : the first n_hard iterations use hard (classification) E-steps

    Returns
    -------
    (beta0, beta1, a, b, var, ℓ, n_iter, converged, floor_hit): the last iterate (gate pinned),
    its log-likelihood, the iteration count, whether the stopping rule was met, whether a
    variance was floored.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (200, 1)); y = np.where(x[:, 0] > 0, 2.0, -2.0) + 0.3 * rng.standard_normal(200)
    >>> out = em_loop(x, y, np.ones(200), np.array([0.5, 0.0]), np.array([[1.0], [0.0]]),
    ...               np.zeros((2, 1)), np.array([1.0, -1.0]), np.ones(2), 0.0, 1e-6, 200, 1e-10, 1,
    ...               1e-12, 1, np.full(201, np.nan), True, np.zeros(2, np.int64), 0)
    >>> b = out[3]; bool(abs(b[0] - 2.0) < 0.2 and abs(b[1] + 2.0) < 0.2), out[7]
    (True, True)
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        return _em_loop(x, y, w, beta0, beta1, a, b, var, tol_rel, tol_abs, max_iter, var_floor,
                        max_newton, newton_tol, trace, stats, n_hard)


def _em_loop(x, y, w, beta0, beta1, a, b, var, tol_rel, tol_abs, max_iter, var_floor, max_newton,
             newton_tol, trace, stats, n_hard):
    xt = design_t(x)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    k = beta0.shape[0]
    beta0 = np.array(beta0, dtype=np.float64) - beta0[k - 1]
    beta1 = np.array(beta1, dtype=np.float64) - beta1[k - 1]
    a = np.array(a, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    var = np.array(var, dtype=np.float64)
    work = _Work(xt, w, k, y)
    # the current gate's (log g, g): computed here once, then handed on by the gate step (its
    # accepted candidate's)
    logg, g = work.spare_gate(None)
    _log_softmax_into(np.matmul(_coef(beta1, beta0), xt, out=work.tmp), logg, g, work.s,
                      work.tmp, work.mask)
    prev = -np.inf
    n_iter = max_iter
    converged = False
    floor_any = False
    ll = -np.inf
    for it in range(max_iter + 1):
        hard = it < n_hard
        ll = _estep(work, a, b, var, logg, hard)
        stats[0] += 1
        trace[it] = ll
        if it > n_hard and abs(ll - prev) <= max(tol_rel * abs(prev), tol_abs):
            converged = True
            n_iter = it
            break
        if it == max_iter:
            break
        prev = ll
        floor_any |= _expert_m_step(work, a, b, var, var_floor)
        if k > 1:
            beta0, beta1, logg, g = _newton(work, work.resp, beta0, beta1,
                                            _gate_objective(work.resp, logg, work.tmp), logg, g,
                                            max_newton, newton_tol, stats)
    if not converged:
        ll_f = _estep(work, a, b, var, logg, False)
        stats[0] += 1
        trace[max_iter] = ll_f
        converged = max_iter > 0 and abs(ll_f - prev) <= max(tol_rel * abs(prev), tol_abs)
        ll = ll_f
    return beta0, beta1, a, b, var, ll, n_iter, converged, floor_any
