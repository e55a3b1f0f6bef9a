"""Pareto/NBD: published CDNOW estimates and BTYD predictions, stability, simulation recovery."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special

from custdyn.models import ParetoNBD

PUBLISHED = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}  # Fader, Hardie & Lee (2005)


def lifetimes_file(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the lifetimes package (test dependency, ships the CDNOW data) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / name


@pytest.fixture(scope="module")
def fitted() -> ParetoNBD:
    d = pd.read_csv(lifetimes_file("cdnow_customers_summary.csv"))
    return ParetoNBD().fit(d["frequency"], d["recency"], d["T"])


def test_cdnow_reproduces_published_estimates(fitted: ParetoNBD) -> None:
    for k, v in PUBLISHED.items():
        assert f"{fitted.params_[k]:.3g}" == f"{v:.3g}", (k, fitted.params_[k])
    assert abs(fitted.log_likelihood_ - (-9595.0)) < 0.1
    assert fitted.converged_
    assert all(np.isfinite(v) and v > 0 for v in fitted.standard_errors_.values())


def test_btyd_documented_predictions(fitted: ParetoNBD) -> None:
    # BTYD walkthrough: x=26, t_x=30.86, T=31, next 52 weeks -> 25.46
    assert fitted.conditional_expected_purchases(52, 26, 30.86, 31)[0] == pytest.approx(25.46, abs=0.01)
    m = ParetoNBD().set_params(r=0.5534, alpha=10.5802, s=0.6061, beta=11.6562)
    assert m.p_alive(26.0, 30.86, 31.0)[0] == pytest.approx(0.9979, abs=1e-3)


def _likelihood_by_quadrature(params: dict[str, float], x: float, tx: float, T: float) -> float:
    """The likelihood from its definition (integral over the death time), for checking."""
    r, alpha, s, beta = params["r"], params["alpha"], params["s"], params["beta"]
    c = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = np.exp(c - (r + x) * np.log(alpha + T) - s * np.log(beta + T))
    f = lambda y: s * np.exp(c - (r + x) * np.log(alpha + y) - (s + 1) * np.log(beta + y))  # noqa: E731
    dead = integrate.quad(f, tx, T, epsabs=0, epsrel=1e-12, limit=200)[0] if T > tx else 0.0
    return float(np.log(alive + dead))


@pytest.mark.parametrize(
    "params",
    [
        {"r": 0.55, "alpha": 10.6, "s": 0.61, "beta": 11.7},  # alpha < beta branch
        {"r": 0.55, "alpha": 30.0, "s": 0.61, "beta": 2.0},  # alpha > beta branch
        {"r": 2.0, "alpha": 5.0, "s": 3.0, "beta": 5.0},  # alpha == beta
        {"r": 0.2, "alpha": 0.5, "s": 0.05, "beta": 400.0},
    ],
)
def test_likelihood_matches_definition_on_both_branches(params: dict[str, float]) -> None:
    m = ParetoNBD().set_params(**params)
    rows = [(0, 0, 10), (1, 2.5, 10), (7, 3.0, 39), (30, 29.9, 30), (3, 0.1, 52)]
    x, tx, T = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    ll, _ = m._loglik(np.array(list(params.values())), (x, tx, T))
    m.__dict__.pop("_pair_caches", None)
    ref = [_likelihood_by_quadrature(params, *row) for row in rows]
    np.testing.assert_allclose(ll, ref, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("u", [np.log([0.5, 10.0, 0.6, 11.7]), np.log([0.5, 12.0, 0.6, 1.7]), np.log([3, 2, 0.2, 2])])
def test_gradient_matches_finite_differences(fitted: ParetoNBD, u: np.ndarray) -> None:
    data, w = fitted._fit_data_, fitted._fit_weights_
    _, g = fitted._objective(u, data, w, w.sum())
    num = np.empty(4)
    for j in range(4):
        e = np.zeros(4)
        e[j] = 1e-6
        num[j] = (fitted._objective(u + e, data, w, w.sum())[0] - fitted._objective(u - e, data, w, w.sum())[0]) / 2e-6
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)


def test_no_overflow_for_extreme_histories() -> None:
    # inputs that overflow other implementations
    m = ParetoNBD().set_params(r=10.465, alpha=7.98565181e-03, s=3.0516, beta=2.820)
    freq, rec, age = np.array([400.0, 500.0, 500.0]), np.array([5.0, 1.0, 4.0]), np.array([6.0, 37.0, 37.0])
    ll, _ = m._loglik(np.array([10.465, 7.98565181e-03, 3.0516, 2.820]), (freq, rec, age))
    assert np.all(np.isfinite(ll))
    p = m.p_alive(freq / 10, rec, age)
    assert np.all((p >= 0) & (p <= 1))
    # smooth in the frequency (no underflow jump)
    m2 = ParetoNBD().set_params(r=0.55, alpha=10.58, s=0.61, beta=11.67)
    left, right = m2.conditional_expected_purchases(10, [132, 133], [200, 200], [200, 200])
    assert abs(left - right) < 0.05


def test_predictions_consistent(fitted: ParetoNBD) -> None:
    pmf = fitted.probability_of_n_purchases(30, np.arange(300))
    assert pmf.sum() == pytest.approx(1.0, abs=1e-6)
    assert (pmf * np.arange(300)).sum() == pytest.approx(fitted.expected_purchases(30)[0], rel=1e-4)
    # a brand-new customer (T = 0) has the unconditional expectation
    assert fitted.conditional_expected_purchases(20, 0, 0, 0)[0] == pytest.approx(fitted.expected_purchases(20)[0], rel=1e-9)
    assert fitted.p_alive(0, 0, 0)[0] == pytest.approx(1.0)
    p = fitted.p_alive([3, 3], [30, 30], [38, 38], t=[0, 26])
    assert p[1] < p[0]


def test_expected_purchases_matches_monte_carlo() -> None:
    m = ParetoNBD().set_params(r=0.8, alpha=5.0, s=1.5, beta=20.0)
    x, _, _ = m.sample(400_000, 30.0, seed=5)
    assert abs(x.mean() - m.expected_purchases(30.0)[0]) < 4 * x.std() / np.sqrt(len(x))
    # s = 1 exactly uses the logarithmic limit
    m1 = ParetoNBD().set_params(r=0.8, alpha=5.0, s=1.0, beta=20.0)
    assert m1.expected_purchases(30.0)[0] == pytest.approx(0.8 / 5.0 * 20.0 * np.log1p(30 / 20), rel=1e-9)


def test_recovers_simulated_parameters() -> None:
    true = {"r": 0.6, "alpha": 8.0, "s": 0.8, "beta": 15.0}
    gen = ParetoNBD().set_params(**true)
    T = np.round(np.random.default_rng(0).uniform(10, 52, 200_000) * 7) / 7
    x, rec, T = gen.sample(200_000, T, seed=1)
    m = ParetoNBD().fit(x, np.round(rec * 7) / 7, T)
    assert m.converged_
    for k, v in true.items():
        assert abs(m.params_[k] - v) < 3 * m.standard_errors_[k], (k, m.params_[k], v, m.standard_errors_[k])


def test_recovers_simulated_parameters_1m_customers() -> None:
    # ages and recencies at day resolution (in weeks), as rfm_summary produces them
    true = {"r": 0.6, "alpha": 8.0, "s": 0.8, "beta": 15.0}
    gen = ParetoNBD().set_params(**true)
    T = np.round(np.random.default_rng(10).uniform(10, 52, 1_000_000) * 7) / 7
    x, rec, T = gen.sample(1_000_000, T, seed=11)
    m = ParetoNBD().fit(x, np.round(rec * 7) / 7, T)
    assert m.converged_
    for k, v in true.items():
        assert abs(m.params_[k] - v) < 3 * m.standard_errors_[k], (k, m.params_[k], v, m.standard_errors_[k])


def test_hypergeometric_where_dropout_rates_barely_vary():
    """Large s and beta (dropout rates nearly equal across customers) put 2F1(1, b; c; z) at
    large b near z = 1, where the library routine is slow or returns NaN: the quadrature
    branch matches high-precision values, and its derivatives match finite differences."""
    mpmath = pytest.importorskip("mpmath")
    from custdyn.models.pareto_nbd import _laguerre, _log_f

    rng = np.random.default_rng(3)
    b = 22272.0 + rng.uniform(0, 5000, 8)
    c = b + rng.uniform(12, 40, 8)
    z = 1 - 10 ** rng.uniform(-4, -2.5, 8)
    got = _log_f(b, c, z)
    for i in range(8):
        exact = float(mpmath.log(mpmath.hyp2f1(1, b[i], c[i], z[i])))
        assert got[i] == pytest.approx(exact, rel=1e-9, abs=1e-9)
    lf, db, dc, dz = _laguerre(b, c, z, grad=True)
    h = 1e-6
    num_b = (_laguerre(b * (1 + h), c, z)[0] - _laguerre(b * (1 - h), c, z)[0]) / (2 * h * b)
    num_c = (_laguerre(b, c * (1 + h), z)[0] - _laguerre(b, c * (1 - h), z)[0]) / (2 * h * c)
    hz = 1e-5 * (1 - z)
    num_z = (_laguerre(b, c, z + hz)[0] - _laguerre(b, c, z - hz)[0]) / (2 * hz)
    np.testing.assert_allclose(db, num_b, rtol=1e-4)
    np.testing.assert_allclose(dc, num_c, rtol=1e-4)
    np.testing.assert_allclose(dz, num_z, rtol=1e-4)


def test_fit_converges_when_lifetimes_barely_vary():
    """Customers who all buy at a steady pace until a dropout rate that barely varies: the
    fit converges to large s and beta (a near-constant dropout rate) instead of stalling."""
    rng = np.random.default_rng(11)
    n = 4000
    lam = rng.gamma(4.0, 1 / 8.0, n)
    mu = np.full(n, 0.02)
    T = rng.uniform(20, 100, n)
    life = rng.exponential(1 / mu)
    end = np.minimum(life, T)
    x = rng.poisson(lam * end)
    tx = np.where(x > 0, end * rng.beta(np.maximum(x, 1), 1), 0.0)
    m = ParetoNBD().fit(x.astype(float), tx, T)
    assert m.converged_
    p = m.params_
    assert p["s"] > 5 and p["s"] / p["beta"] == pytest.approx(0.02, rel=0.35)
