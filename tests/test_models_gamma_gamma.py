"""Gamma-Gamma spend model: published CDNOW estimates and spreadsheet values, recovery."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custdyn.errors import DataWarning
from custdyn.models import GammaGamma

PUBLISHED = {"p": 6.25, "q": 3.74, "v": 15.44}  # Fader, Hardie & Lee (2005); Fader & Hardie (2013)


def lifetimes_file(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the lifetimes package (test dependency, ships the CDNOW data) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / name


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    d = pd.read_csv(lifetimes_file("cdnow_customers_summary_with_transactions.csv"))
    return d.rename(columns={"x": "frequency", "zbar": "monetary_value"})


def test_cdnow_reproduces_published_estimates(cdnow: pd.DataFrame) -> None:
    with pytest.warns(DataWarning, match="1,411 customers"):
        m = GammaGamma().fit(cdnow["frequency"], cdnow["monetary_value"])
    for k, v in PUBLISHED.items():
        assert f"{m.params_[k]:.3g}" == f"{v:.3g}", (k, m.params_[k])
    assert m.converged_
    assert m.n_customers_ == 946
    # same optimum without the q > 1 constraint (it is not binding here)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        m2 = GammaGamma(q_constraint=False).fit(cdnow["frequency"], cdnow["monetary_value"])
    assert m2.params_["q"] == pytest.approx(m.params_["q"], rel=1e-5)


def test_spreadsheet_expected_spend(cdnow: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        m = GammaGamma().fit(cdnow["frequency"], cdnow["monetary_value"])
    head = cdnow.head(10)
    expected = np.array([24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17])  # Hardie's note 025
    np.testing.assert_allclose(m.conditional_expected_spend(head["frequency"], head["monetary_value"]), expected, atol=0.01)
    p, q, v = m.params_["p"], m.params_["q"], m.params_["v"]
    assert m.expected_spend() == pytest.approx(p * v / (q - 1))


def test_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(7)
    p, q, v = 5.0, 4.0, 20.0
    n = 200_000
    x = rng.integers(1, 12, n).astype(float)
    nu = rng.gamma(q, 1 / v, n)
    zbar = rng.gamma(p * x, 1 / (x * nu))
    m = GammaGamma().fit(x, zbar)
    for k, val in {"p": p, "q": q, "v": v}.items():
        assert abs(m.params_[k] - val) < 3 * m.standard_errors_[k], (k, m.params_[k], m.standard_errors_[k])


def test_rejects_bad_spend() -> None:
    with pytest.raises(ValueError):
        GammaGamma().fit([1, 2], [10.0, -1.0])


def test_analytic_hessian_matches_differences_of_the_gradient() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(1, 12, 3000).astype(float)
    zbar = rng.gamma(5.0 * x, 1 / (x * rng.gamma(4.0, 1 / 20.0, 3000)))
    w = rng.uniform(0.5, 2.0, 3000)
    m = GammaGamma()
    th = np.array([4.0, 3.0, 15.0])
    ll, g, h = m._loglik_sum_hess(th, (x, zbar), w)
    ll_rows, g_rows = m._loglik(th, (x, zbar))
    assert ll == pytest.approx(float(w @ ll_rows), rel=1e-12)
    np.testing.assert_allclose(g, g_rows @ w, rtol=1e-9, atol=1e-8)
    num = np.empty((3, 3))
    for j in range(3):
        step = 1e-6 * th[j]
        up, dn = th.copy(), th.copy()
        up[j] += step
        dn[j] -= step
        num[:, j] = (m._loglik_sum(up, (x, zbar), w)[1] - m._loglik_sum(dn, (x, zbar), w)[1]) / (2 * step)
    np.testing.assert_allclose(h, num, rtol=1e-5, atol=1e-6 * np.abs(num).max())


def test_recovers_simulated_parameters_1m_customers() -> None:
    rng = np.random.default_rng(30)
    p, q, v = 5.0, 4.0, 20.0
    n = 1_000_000
    x = rng.integers(1, 12, n).astype(float)
    zbar = rng.gamma(p * x, 1 / (x * rng.gamma(q, 1 / v, n)))
    m = GammaGamma().fit(x, zbar)
    assert m.converged_
    for k, val in {"p": p, "q": q, "v": v}.items():
        assert abs(m.params_[k] - val) < 3 * m.standard_errors_[k], (k, m.params_[k], m.standard_errors_[k])
