"""Property tests: probabilities in [0, 1] and finite non-negative expectations everywhere.

Parameters range over 1e-4 .. 1e4, frequency up to 10,000 and T up to 10,000.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from custdyn.models import (
    BetaGeo,
    BetaGeoBetaBinom,
    GammaGamma,
    ModifiedBetaGeo,
    ParetoNBD,
    ShiftedBetaGeo,
)

param = st.floats(-4, 4).map(lambda e: float(10.0**e))
unit = st.floats(0, 1)
freq = st.integers(0, 10_000).map(float)
age = st.floats(0, 10_000)


def _history(x: float, u: float, T: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tx = 0.0 if x == 0 else u * T
    return np.array([x, 0.0, 1.0, x]), np.array([tx, 0.0, 0.5 * T, T]), np.array([T, T, T, T])


def _check_transaction_model(m, x: float, u: float, T: float, t: float) -> None:  # type: ignore[no-untyped-def]
    xs, txs, Ts = _history(x, u, T)
    for future in (0.0, t):
        p = m.p_alive(xs, txs, Ts, t=future)
        assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1)), (p, future)
    e = m.conditional_expected_purchases(t, xs, txs, Ts)
    assert np.all(np.isfinite(e)) and np.all(e >= 0), e
    e0 = m.expected_purchases(np.array([0.0, t, T]))
    assert np.all(np.isfinite(e0)) and np.all(e0 >= 0), e0
    assert e0[0] == 0.0
    pm = m.probability_of_n_purchases(np.array([t, t, T]), np.array([0.0, x, 1.0]))
    assert np.all(np.isfinite(pm)) and np.all((pm >= 0) & (pm <= 1)), pm
    ll, g = m._loglik(np.array(list(m.params_.values())), (xs, np.minimum(txs, Ts), Ts))
    m.__dict__.pop("_pair_caches", None)
    m.__dict__.pop("_uniq_cache", None)
    assert np.all(np.isfinite(ll)), ll


@given(param, param, param, param, freq, unit, age, age)
def test_beta_geo(r, alpha, a, b, x, u, T, t) -> None:  # type: ignore[no-untyped-def]
    _check_transaction_model(BetaGeo().set_params(r=r, alpha=alpha, a=a, b=b), x, u, T, t)


@given(param, param, param, param, freq, unit, age, age)
def test_modified_beta_geo(r, alpha, a, b, x, u, T, t) -> None:  # type: ignore[no-untyped-def]
    _check_transaction_model(ModifiedBetaGeo().set_params(r=r, alpha=alpha, a=a, b=b), x, u, T, t)


@given(param, param, param, param, freq, unit, age, age)
def test_pareto_nbd(r, alpha, s, beta, x, u, T, t) -> None:  # type: ignore[no-untyped-def]
    _check_transaction_model(ParetoNBD().set_params(r=r, alpha=alpha, s=s, beta=beta), x, u, T, t)


@given(param, param, param, st.integers(0, 10_000).map(float), st.floats(1e-2, 1e5))
def test_gamma_gamma(p, q, v, x, m) -> None:  # type: ignore[no-untyped-def]
    gg = GammaGamma(q_constraint=False).set_params(p=p, q=max(q, 1.0 + 1e-4) if q <= 1 else q, v=v)
    e = gg.conditional_expected_spend(np.array([x, 0.0]), np.array([m, 0.0]))
    assert np.all(np.isfinite(e)) and np.all(e >= 0)
    if x > 0:
        ll, _ = gg._loglik(np.array([p, gg.params_["q"], v]), (np.array([x]), np.array([m])))
        assert np.all(np.isfinite(ll))


@given(param, param, param, param, st.integers(0, 200), st.integers(0, 200), st.integers(0, 200), st.integers(0, 30))
def test_beta_geo_beta_binom(al, be, ga, de, i, j, k, t) -> None:  # type: ignore[no-untyped-def]
    n, tx, x = sorted([i, j, k], reverse=True)
    m = BetaGeoBetaBinom().set_params(alpha=al, beta=be, gamma=ga, delta=de)
    if x > 0 and tx == 0:
        tx = x
    p = m.p_alive([x], [tx], [n], t=t)
    assert np.all((p >= 0) & (p <= 1))
    e = m.conditional_expected_purchases(t, [x], [tx], [n])
    assert np.all(np.isfinite(e)) and np.all(e >= 0) and np.all(e <= t + 1e-9)
    pm = m.probability_of_n_purchases([n], [x])
    assert np.all((pm >= 0) & (pm <= 1))


@given(param, param, st.integers(0, 10_000), st.integers(0, 10_000), st.floats(1e-4, 1.0))
def test_shifted_beta_geo(al, be, n, t, d) -> None:  # type: ignore[no-untyped-def]
    m = ShiftedBetaGeo().set_params(alpha=al, beta=be)
    for v in (m.survival([t]), m.churn_probability([t]), m.p_alive([n], t), m.retention_rate([max(t, 1)])):
        assert np.all(np.isfinite(v)) and np.all((v >= 0) & (v <= 1))
    r = m.expected_residual_payments([n], d, horizon=50)
    assert np.all(np.isfinite(r)) and np.all(r >= 0)
