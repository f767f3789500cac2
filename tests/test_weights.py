"""Case weights in fit(): a row of weight w counts w times (issue 17, item 5)."""
import dataclasses
import warnings

import numpy as np
import pytest

import moetheory as mt
from conftest import TRUTHS, simulate_softmax


@pytest.fixture(scope="module")
def weighted_case():
    x, y = simulate_softmax(TRUTHS[(2, 1)], 300, 3)
    w = np.random.default_rng(1).integers(0, 4, 300)  # 0 leaves a row out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = mt.fit(x, y, 2, weights=w)
        b = mt.fit(np.repeat(x, w, axis=0), np.repeat(y, w), 2)
    return x, y, w, a, b


def test_integer_weights_fit_like_repeated_rows(weighted_case):
    x, y, w, a, b = weighted_case
    assert a.converged and b.converged
    assert a.n_obs == b.n_obs == w.sum()
    # Both are certified within cert_tol = 1e-6 nats of a maximum (their starts differ: they
    # draw rows): one maximum, so ℓ agrees to 2·cert_tol and the estimates to the distance
    # 2e-6 nats allows along the flattest direction (measured 6e-8).
    assert a.loglik == pytest.approx(b.loglik, abs=2e-6)
    np.testing.assert_allclose(a.free_params, b.free_params, atol=1e-5)
    assert a.bic == pytest.approx(b.bic, abs=4e-6)


@pytest.mark.parametrize("cov_type", ["oim", "opg", "sandwich"])
def test_weighted_inference_equals_repeated_rows_at_the_same_estimate(weighted_case, cov_type):
    # The same parameters: the weighted information and scores' outer products are the sums
    # over the repeated rows, up to rounding.
    x, y, w, a, b = weighted_case
    at_b = dataclasses.replace(a, params=b.params, loglik=b.loglik)
    np.testing.assert_allclose(at_b.bse(cov_type), b.bse(cov_type), rtol=1e-9)
    assert at_b.icl == pytest.approx(b.icl, rel=1e-12)


def test_zero_weights_drop_rows(weighted_case):
    x, y, w, a, _ = weighted_case
    keep = w > 0
    c = mt.fit(x[keep], y[keep], 2, weights=w[keep])
    assert c.loglik == pytest.approx(a.loglik, abs=2e-6)
    assert "No. Observations:        477.0" in a.summary()


@pytest.mark.parametrize("weights, message", [
    (np.ones(299), r"one weight per row \(n=300\)"),
    (np.r_[np.ones(299), -1.0], r"weights must be >= 0; got -1.0 at row 299"),
    (np.r_[np.ones(299), np.nan], r"weights contains NaN or inf, first at row 299"),
    (np.zeros(300), r"weights are all zero"),
    (np.r_[np.ones(5), np.zeros(295)], r"n=5 rows of positive weight"),
])
def test_bad_weights_are_named(weighted_case, weights, message):
    x, y = weighted_case[:2]
    with pytest.raises(ValueError, match=message):
        mt.fit(x, y, 2, weights=weights)


def test_bootstrap_lrt_refuses_weights(weighted_case):
    x, y, w = weighted_case[:3]
    with pytest.raises(ValueError, match="bootstrap_lrt does not take weights"):
        mt.bootstrap_lrt(x, y, 1, n_boot=3, weights=w)


def test_cli_weights_column(tmp_path, capsys, weighted_case):
    import json

    from moetheory.cli import main

    x, y, w, a, _ = weighted_case
    path = tmp_path / "data.csv"
    rows = "\n".join(f"{float(xi)!r},{float(yi)!r},{int(wi)}" for xi, yi, wi in zip(x[:, 0], y, w))
    path.write_text("x,y,w\n" + rows + "\n")
    assert main(["fit", str(path), "--experts", "2", "--weights", "w", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    # the weights column is not a covariate; the same fit as the API's
    assert got["n_obs"] == w.sum() and got["loglik"] == pytest.approx(a.loglik, abs=1e-9)
    assert main(["fit", str(path), "--experts", "2", "--weights", "nope"]) == 2
    err = capsys.readouterr().err
    assert "column 'nope' (--weights) not found" in err and "Traceback" not in err
    path.write_text("x,y,w\n" + rows.replace(",3\n", ",-3\n", 1) + "\n")
    assert main(["fit", str(path), "--experts", "2", "--weights", "w"]) == 2
    assert "weights (--weights) must be >= 0; got -3.0" in capsys.readouterr().err
