"""Drive R flexmix from Python: one start, timed inside R with ``system.time``.

The data and the starting posterior (responsibilities at the common start, which is how a
flexmix start is given: ``cluster=`` a matrix of initial membership probabilities) go through
CSV files; R prints one JSON object per repeat. R start-up and package loading are not timed.
When ``Rscript`` or the flexmix package is missing, :func:`flexmix_available` says why and the
benchmarks record "not installed".
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

R_SCRIPT = r"""
suppressMessages(library(flexmix))
args <- commandArgs(TRUE)
dat <- read.csv(args[1])
post <- as.matrix(read.csv(args[2]))
tol <- as.numeric(args[3]); reps <- as.integer(args[4]); itmax <- as.integer(args[5])
k <- ncol(post)
num <- function(v) paste0("[", paste(sprintf("%.17g", v), collapse = ","), "]")
for (r in seq_len(reps)) {
  tm <- system.time(
    f <- flexmix(y ~ x, data = dat, k = k, cluster = post, model = FLXMRglm(),
                 concomitant = FLXPmultinom(~ x),
                 control = list(tolerance = tol, iter.max = itmax, minprior = 0))
  )
  pe <- parameters(f)                       # rows coef.(Intercept), coef.x, sigma
  pg <- parameters(f, which = "concomitant") # rows (Intercept), x; column 1 = reference
  cat(sprintf(paste0('{"elapsed": %.6f, "user": %.6f, "loglik": %.17g, "iter": %d, ',
                     '"converged": %s, "k": %d, "b": %s, "a": %s, "sigma": %s, ',
                     '"gate0": %s, "gate1": %s}\n'),
              tm[["elapsed"]], tm[["user.self"]], as.numeric(logLik(f)), f@iter,
              tolower(as.character(f@converged)), f@k,
              num(pe[1, ]), num(pe[2, ]), num(pe[3, ]), num(pg[1, ]), num(pg[2, ])))
}
"""


def flexmix_available() -> tuple[bool, str]:
    """(True, version) or (False, why)."""
    if shutil.which("Rscript") is None:
        return False, "not installed (no Rscript)"
    out = subprocess.run(["Rscript", "-e", 'cat(as.character(packageVersion("flexmix")))'],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return False, "not installed (R present, flexmix missing)"
    return True, out.stdout.strip()


def run_flexmix(x, y, post, *, tol=1e-8, repeats=1, iter_max=5000, timeout=1800):
    """Fit flexmix from the initial posterior ``post`` (n, k); one dict per repeat.

    Each dict: ``elapsed`` (s, inside R), ``loglik`` (flexmix's logLik; its Gaussian M-step
    divides by n − p, so this is very slightly off the exact MLE's), ``iter``, ``converged``,
    ``k`` (components left), and the parameters converted to moetheory's layout
    (``params``: MoEParams with the *last* expert's gate pinned at zero, variances =
    ``sigma``²).
    """
    from moetheory.params import MoEParams

    x = np.asarray(x, float).reshape(len(y), -1)
    if x.shape[1] != 1:
        raise ValueError("the flexmix driver handles d = 1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savetxt(tmp / "data.csv", np.column_stack([x[:, 0], y]), delimiter=",",
                   header="x,y", comments="", fmt="%.17g")
        k = post.shape[1]
        np.savetxt(tmp / "post.csv", post, delimiter=",",
                   header=",".join(f"c{i}" for i in range(k)), comments="", fmt="%.17g")
        (tmp / "fit.R").write_text(R_SCRIPT)
        out = subprocess.run(["Rscript", str(tmp / "fit.R"), str(tmp / "data.csv"),
                              str(tmp / "post.csv"), repr(float(tol)), str(int(repeats)),
                              str(int(iter_max))], capture_output=True, text=True,
                             timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"flexmix failed (rc {out.returncode}): {out.stderr[-2000:]}")
    fits = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        g0, g1 = np.asarray(r["gate0"]), np.asarray(r["gate1"])
        if r["k"] == k:
            r["params"] = MoEParams.create(beta0=g0, beta1=g1[:, None], a=np.asarray(r["a"])[:, None],
                                           b=np.asarray(r["b"]),
                                           var=np.asarray(r["sigma"]) ** 2).pinned()
        else:
            r["params"] = None
        fits.append(r)
    if not fits:
        raise RuntimeError(f"flexmix printed no result: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    return fits
