"""BG/NBD: published CDNOW estimates, published predictions, simulation recovery, API."""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custdyn.errors import ConvergenceWarning, NotFittedError
from custdyn.models import BetaGeo, ModifiedBetaGeo

PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # Fader, Hardie & Lee (2005)


def lifetimes_file(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the lifetimes package (test dependency, ships the CDNOW data) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / name


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(lifetimes_file("cdnow_customers_summary.csv"))


@pytest.fixture(scope="module")
def fitted(cdnow: pd.DataFrame) -> BetaGeo:
    return BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def same3(x: float, y: float) -> bool:
    return f"{x:.3g}" == f"{y:.3g}"


def test_cdnow_reproduces_published_estimates(fitted: BetaGeo) -> None:
    for k, v in PUBLISHED.items():
        assert same3(fitted.params_[k], v), (k, fitted.params_[k], v)
    assert abs(fitted.log_likelihood_ - (-9582.4)) < 0.1
    assert fitted.converged_
    assert fitted.n_customers_ == 2357


def test_fitted_attributes(fitted: BetaGeo) -> None:
    se = np.array([fitted.standard_errors_[k] for k in PUBLISHED])
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    cov = fitted.covariance_
    assert cov.shape == (4, 4)
    np.testing.assert_allclose(cov, cov.T, rtol=1e-8)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), se)
    assert fitted.aic_ == pytest.approx(8 - 2 * fitted.log_likelihood_)
    assert fitted.bic_ == pytest.approx(4 * np.log(2357) - 2 * fitted.log_likelihood_)
    s = fitted.summary()
    assert list(s.index) == ["r", "alpha", "a", "b"]
    assert np.all(s["lower_95"] < s["estimate"]) and np.all(s["estimate"] < s["upper_95"])
    assert re.fullmatch(
        r"<custdyn\.models\.BetaGeo: fitted on 2,357 customers \(1,016 distinct rows\), converged in \d+ iterations>",
        repr(fitted),
    )
    assert repr(BetaGeo()) == "<custdyn.models.BetaGeo: not fitted>"


def test_predictions_match_published_spreadsheet_and_btyd(fitted: BetaGeo) -> None:
    # Hardie's BG/NBD spreadsheet: customer with x=2, t_x=30.43, T=38.86, next 39 weeks
    assert fitted.conditional_expected_purchases(39, 2, 30.43, 38.86)[0] == pytest.approx(1.226, abs=1e-3)
    times = np.array([0.1429, 1.0, 3.00, 31.8571, 32.00, 78.00])
    expected = np.array([0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576])
    np.testing.assert_allclose(fitted.expected_purchases(times), expected, atol=6e-4)
    # R BTYD's documented values at the published parameters
    m = BetaGeo().set_params(**PUBLISHED)
    assert m.probability_of_n_purchases(2, 10)[0] == pytest.approx(1.07869e-07, rel=1e-4)
    assert m.probability_of_n_purchases(39, 0)[0] == pytest.approx(0.5737864, abs=1e-6)
    pmf = np.array([0.0019995214, 0.0015170236, 0.0011633150, 0.0009003148, 0.0007023638,
                    0.0005517902, 0.0004361913, 0.0003467171, 0.0002769613, 0.0002222260])
    np.testing.assert_allclose(m.probability_of_n_purchases(30, np.arange(11, 21)), pmf, rtol=1e-5)


def test_probabilities_consistent(fitted: BetaGeo) -> None:
    pmf = fitted.probability_of_n_purchases(52, np.arange(400))
    assert pmf.sum() == pytest.approx(1.0, abs=1e-9)
    assert (pmf * np.arange(400)).sum() == pytest.approx(fitted.expected_purchases(52)[0], rel=1e-8)
    # no repeat purchase: alive for sure under BG/NBD
    assert fitted.p_alive(0, 0, 30)[0] == 1.0
    # a long silence after purchases lowers P(alive); a future horizon lowers it further
    p = fitted.p_alive([5, 5, 5], [35, 20, 5], [38, 38, 38])
    assert p[0] > p[1] > p[2]
    assert np.all(fitted.p_alive([5, 5, 5], [35, 20, 5], [38, 38, 38], t=20) < p)


def test_expected_purchases_matches_monte_carlo() -> None:
    m = BetaGeo().set_params(r=0.5, alpha=3.0, a=1.5, b=3.0)
    x, _, _ = m.sample(400_000, 20.0, seed=3)
    se = x.std() / np.sqrt(len(x))
    assert abs(x.mean() - m.expected_purchases(20.0)[0]) < 4 * se
    # and P(X(t)=0)
    p0 = m.probability_of_n_purchases(20.0, 0)[0]
    assert abs((x == 0).mean() - p0) < 4 * np.sqrt(p0 * (1 - p0) / len(x))


def test_recovers_simulated_parameters_1m_customers() -> None:
    true = {"r": 0.35, "alpha": 6.0, "a": 0.9, "b": 3.0}
    gen = BetaGeo().set_params(**true)
    T = np.random.default_rng(0).uniform(5, 52, 1_000_000)
    x, rec, T = gen.sample(1_000_000, T, seed=1)
    m = BetaGeo().fit(x, rec, T)
    assert m.converged_
    for k, v in true.items():
        assert abs(m.params_[k] - v) < 3 * m.standard_errors_[k], (k, m.params_[k], v, m.standard_errors_[k])


def test_weights_equal_expanded_rows(cdnow: pd.DataFrame) -> None:
    g = cdnow.groupby(["frequency", "recency", "T"]).size().reset_index(name="n")
    a = BetaGeo().fit(g["frequency"], g["recency"], g["T"], weights=g["n"])
    b = BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    for k in PUBLISHED:
        assert a.params_[k] == pytest.approx(b.params_[k], rel=1e-6)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-10)


def test_penalizer_shrinks(cdnow: pd.DataFrame) -> None:
    plain = BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    pen = BetaGeo(penalizer=0.1).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert sum(v**2 for v in pen.params_.values()) < sum(v**2 for v in plain.params_.values())


def test_not_fitted_and_bad_input() -> None:
    with pytest.raises(NotFittedError):
        BetaGeo().p_alive(1, 1, 2)
    with pytest.raises(ValueError):
        BetaGeo().fit([1, 2], [3, 1], [2, 2])  # recency > T
    with pytest.raises(ValueError):
        BetaGeo().fit([1, np.nan], [1, 1], [2, 2])


def test_unidentified_data_warns_instead_of_raising() -> None:
    # nobody ever repeats: the dropout parameters are not identified
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m = BetaGeo().fit(np.zeros(50), np.zeros(50), np.linspace(1, 30, 50))
    assert any(issubclass(w.category, ConvergenceWarning) for w in rec)
    assert not m.converged_
    assert all(np.isfinite(v) for v in m.params_.values())
    assert np.all(np.isfinite(m.conditional_expected_purchases(10, [0, 1], [0, 1], [10, 10])))


@pytest.mark.parametrize("cls", [BetaGeo, ModifiedBetaGeo])
@pytest.mark.parametrize("theta", [[0.9, 4.0, 0.6, 2.0], [0.24, 4.4, 0.79, 2.4], [3.0, 0.5, 5.0, 0.3]])
def test_analytic_hessian_matches_differences_of_the_gradient(cdnow: pd.DataFrame, cls: type, theta: list) -> None:
    m = cls()
    data = tuple(cdnow[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(data[0]))
    th = np.array(theta)
    ll, g, h = m._loglik_sum_hess(th, data, w)
    ll_rows, g_rows = m._loglik(th, data)
    assert ll == pytest.approx(float(w @ ll_rows), rel=1e-12)
    np.testing.assert_allclose(g, g_rows @ w, rtol=1e-9, atol=1e-9)
    num = np.empty((4, 4))
    for j in range(4):
        step = 1e-6 * th[j]
        up, dn = th.copy(), th.copy()
        up[j] += step
        dn[j] -= step
        num[:, j] = (m._loglik_sum(up, data, w)[1] - m._loglik_sum(dn, data, w)[1]) / (2 * step)
    np.testing.assert_allclose(h, num, rtol=1e-5, atol=1e-6 * np.abs(num).max())
    np.testing.assert_array_equal(h, h.T)


def test_beta_expectation_with_very_large_shapes_matches_the_exact_quantiles():
    """Fits where dropout barely varies drive a and b to millions; the expectation over the
    narrow Beta then uses the normal's quantiles and still matches the exact inverse."""
    from scipy import special

    from custdyn.models._base import beta_quantile_mean

    rng = np.random.default_rng(0)
    m = 200
    a = 10 ** rng.uniform(4.1, 7.5, m)
    b = a * 10 ** rng.uniform(-0.5, 1, m)
    s = rng.uniform(0.3, 10, m)[:, None]
    w = rng.uniform(0.01, 50, m)[:, None]

    def fn(p):
        return -np.expm1(-s * np.log1p(p * w)) / p

    x, wq = special.roots_legendre(256)
    u = 0.5 * (x + 1)
    exact = fn(np.clip(special.betaincinv(a[:, None], b[:, None], u[None, :]), 1e-300, 1)) @ (
        0.5 * wq)
    np.testing.assert_allclose(beta_quantile_mean(fn, a, b), exact, rtol=1e-7)
