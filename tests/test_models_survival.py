"""CoxPH against lifelines on the Rossi recidivism data, against a direct evaluation of the
partial likelihood, and recovery of known coefficients from simulated data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from custdyn.errors import InsufficientDataError, NotFittedError
from custdyn.models.survival import CoxPH, concordance_index, plot_hazard_ratios, procedure_effects

# lifelines (the reference) calls pandas methods with positional arguments pandas 4 will refuse
pytestmark = pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0")

ROSSI_COLS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
# Fox (2002), "Cox Proportional-Hazards Regression for Survival Data", appendix to An R and
# S-PLUS Companion to Applied Regression, Efron ties: coefficients and standard errors.
FOX_COEF = [-0.3794, -0.0574, 0.3139, -0.1498, -0.4337, -0.0849, 0.0915]
FOX_SE = [0.1914, 0.0220, 0.3080, 0.2122, 0.3819, 0.1958, 0.0286]


@pytest.fixture(scope="module")
def rossi():
    datasets = pytest.importorskip("lifelines.datasets")
    return datasets.load_rossi()


def test_rossi_matches_published_estimates(rossi):
    m = CoxPH().fit(rossi["week"], rossi["arrest"], rossi[ROSSI_COLS])
    np.testing.assert_allclose(m.params_, FOX_COEF, rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(m.standard_errors_, FOX_SE, rtol=2e-3, atol=1e-4)
    assert m.log_likelihood_ == pytest.approx(-658.748, abs=1e-3)
    assert m.converged_


@pytest.mark.parametrize("penalizer", [0.0, 0.1])
def test_rossi_matches_lifelines(rossi, penalizer):
    lifelines = pytest.importorskip("lifelines")
    ref = lifelines.CoxPHFitter(penalizer=penalizer, baseline_estimation_method="breslow").fit(
        rossi, "week", "arrest"
    )
    m = CoxPH(penalizer=penalizer).fit(rossi["week"], rossi["arrest"], rossi[ROSSI_COLS])
    tol = 1e-6 if penalizer == 0 else 1e-4  # lifelines stops its penalised Newton earlier
    np.testing.assert_allclose(m.params_, ref.params_[ROSSI_COLS].to_numpy(), rtol=tol)
    np.testing.assert_allclose(m.standard_errors_, ref.standard_errors_[ROSSI_COLS].to_numpy(), rtol=tol)
    ci = ref.confidence_intervals_.loc[ROSSI_COLS].to_numpy()
    np.testing.assert_allclose(m.confidence_intervals_, np.exp(ci), rtol=tol)
    np.testing.assert_allclose(m.p_values_, ref.summary["p"][ROSSI_COLS].to_numpy(), rtol=1e-3)
    assert m.concordance_ == pytest.approx(ref.concordance_index_, abs=1e-12)
    X = rossi[ROSSI_COLS].iloc[:20]
    np.testing.assert_allclose(
        m.predict_partial_hazard(X), ref.predict_partial_hazard(X).to_numpy(), rtol=tol
    )
    times = [1, 10, 26, 40, 52]
    np.testing.assert_allclose(
        m.predict_survival_function(X, times),
        ref.predict_survival_function(X, times=times).to_numpy(),
        rtol=tol,
    )
    if penalizer == 0:
        assert m.log_likelihood_ == pytest.approx(ref.log_likelihood_, rel=1e-9)
        assert m.aic_partial_ == pytest.approx(ref.AIC_partial_, rel=1e-9)
        lr = ref.log_likelihood_ratio_test()
        assert m.log_likelihood_ratio_test_[0] == pytest.approx(lr.test_statistic, rel=1e-7)
        assert m.log_likelihood_ratio_test_[2] == pytest.approx(lr.p_value, rel=1e-5)


def _naive_partial_loglik(beta, t, e, X, ties):
    """The partial likelihood written out event time by event time."""
    eta = X @ beta
    ll = 0.0
    for tj in np.unique(t[e == 1]):
        dj = (t == tj) & (e == 1)
        rj = t >= tj
        d = int(dj.sum())
        s_r = np.exp(eta[rj]).sum()
        s_d = np.exp(eta[dj]).sum()
        ll += eta[dj].sum()
        for k in range(d):
            c = k / d if ties == "efron" else 0.0
            ll -= np.log(s_r - c * s_d)
    return ll


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_likelihood_gradient_hessian_against_direct_evaluation(rng, ties):
    n, p = 120, 3
    X = rng.normal(size=(n, p))
    t = rng.integers(1, 15, n).astype(float)  # many ties
    e = (rng.random(n) < 0.7).astype(float)
    beta = np.array([0.3, -0.5, 0.2])
    m = CoxPH(ties=ties)
    order = np.argsort(t, kind="stable")
    prep = m._prepare(t[order], e[order].astype(bool))
    ll, g, h = m._loglik(beta, X[order], e[order].astype(bool), prep)
    assert ll == pytest.approx(_naive_partial_loglik(beta, t, e, X, ties), rel=1e-12)
    eps = 1e-6
    for j in range(p):
        d = np.zeros(p)
        d[j] = eps
        lp, gp, _ = m._loglik(beta + d, X[order], e[order].astype(bool), prep)
        lm, gm, _ = m._loglik(beta - d, X[order], e[order].astype(bool), prep)
        assert g[j] == pytest.approx((lp - lm) / (2 * eps), rel=1e-6, abs=1e-7)
        np.testing.assert_allclose(h[:, j], (gp - gm) / (2 * eps), rtol=1e-5, atol=1e-6)


def test_efron_equals_breslow_without_ties(rng):
    n = 300
    X = rng.normal(size=(n, 2))
    t = rng.exponential(1.0, n)
    e = rng.random(n) < 0.8
    a = CoxPH(ties="efron").fit(t, e, X)
    b = CoxPH(ties="breslow").fit(t, e, X)
    np.testing.assert_allclose(a.params_, b.params_, rtol=1e-10)


def _simulate(rng, n, beta, shape=1.0):
    """Weibull proportional hazards: H(t | x) = (t / 30)^shape exp(x' beta), censored."""
    X = np.column_stack([rng.normal(size=n), rng.random(n) < 0.4, rng.uniform(0, 5, n)]).astype(float)
    u = rng.random(n)
    t_event = 30.0 * (-np.log(u) / np.exp(X @ beta)) ** (1 / shape)
    t_cens = rng.uniform(0, 80, n)
    t = np.minimum(t_event, t_cens)
    e = (t_event <= t_cens).astype(float)
    return t, e, X


@pytest.mark.parametrize("shape", [1.0, 1.7])
def test_recovers_simulated_coefficients(rng, shape):
    beta = np.array([0.5, 0.6, -0.3])
    t, e, X = _simulate(rng, 3000, beta, shape)
    m = CoxPH().fit(t, e, X, feature_names=["a", "b", "c"])
    z = (m.params_ - beta) / m.standard_errors_
    assert np.all(np.abs(z) < 4), z
    np.testing.assert_allclose(m.params_, beta, atol=0.1)
    assert (m.confidence_intervals_[:, 0] < np.exp(beta)).sum() + (
        m.confidence_intervals_[:, 1] > np.exp(beta)
    ).sum() >= 5
    assert m.concordance_ > 0.6
    # the survival curves fall with time and are lower for riskier customers
    s = m.predict_survival_function(np.array([[0, 0, 0], [1, 1, 0]]), [5, 20, 60])
    assert np.all(np.diff(s, axis=0) <= 0)
    assert np.all(s[:, 1] < s[:, 0])
    # conditional risk over a window: 1 - S(d + h) / S(d)
    X2 = np.array([[0, 0, 0], [1, 1, 0], [-1, 0, 4]], dtype=float)
    d = np.array([0.0, 10.0, 30.0])
    p = m.predict_event_probability(X2, d, 15.0)
    s_now = m.predict_survival_function(X2, d).diagonal()
    s_later = m.predict_survival_function(X2, d + 15).diagonal()
    np.testing.assert_allclose(p, 1 - s_later / s_now, rtol=1e-10)
    assert np.all((p > 0) & (p < 1))
    if shape == 1.0:
        # exponential baseline: H0(t) at the covariate means tracks (t / 30) exp(mean' beta)
        h0 = m.baseline_cumulative_hazard([20.0])[0]
        assert h0 == pytest.approx(20 / 30 * np.exp(X.mean(axis=0) @ beta), rel=0.15)


def test_penalizer_shrinks_towards_zero(rng):
    t, e, X = _simulate(rng, 500, np.array([0.8, 0.8, -0.4]))
    free = CoxPH().fit(t, e, X)
    shrunk = CoxPH(penalizer=1.0).fit(t, e, X)
    assert np.all(np.abs(shrunk.params_) < np.abs(free.params_))


def test_concordance_matches_lifelines(rng):
    utils = pytest.importorskip("lifelines.utils")
    n = 700
    t = rng.integers(1, 30, n).astype(float)
    e = rng.random(n) < 0.6
    r = rng.integers(0, 20, n).astype(float) + 0.3 * (30 - t) * rng.random(n)
    ours = concordance_index(t, r, e)
    assert ours == pytest.approx(utils.concordance_index(t, -r, e), abs=1e-12)
    assert concordance_index(t, -t, np.ones(n)) == pytest.approx(1.0)


def _brute_concordance(t, r, e):
    num = den = 0.0
    for i in range(len(t)):
        if not e[i]:
            continue
        for j in range(len(t)):
            if t[i] < t[j] or (t[i] == t[j] and not e[j]):
                den += 1
                num += 1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0
    return num / den if den else float("nan")


@given(
    st.lists(st.tuples(st.integers(1, 6), st.booleans(), st.integers(0, 4)), min_size=2, max_size=40)
)
def test_concordance_equals_the_pairwise_definition(rows):
    t, e, r = (np.array(v, dtype=float) for v in zip(*rows, strict=True))
    want = _brute_concordance(t, r, e.astype(bool))
    got = concordance_index(t, r, e)
    assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want, abs=1e-12)


def test_procedure_effects_sentences_and_coverage(rng):
    n = 4000
    slow = (rng.random(n) < 0.3).astype(float)
    resolution = rng.exponential(48.0, n)  # hours
    tenure = rng.uniform(0, 4, n)
    hr_slow, hr_per_day = 1.8, 1.25
    lin = np.log(hr_slow) * slow + np.log(hr_per_day) / 24 * resolution - 0.3 * tenure
    t_event = rng.exponential(200.0 / np.exp(lin))
    cens = rng.uniform(30, 365, n)
    t, e = np.minimum(t_event, cens), (t_event <= cens).astype(float)
    X = {"slow_first_reply": slow, "resolution_hours": resolution, "tenure_years": tenure}
    rows = procedure_effects(
        t,
        e,
        X,
        {
            "slow_first_reply": {"kind": "binary", "description": "whose first reply took more than 24 h"},
            "resolution_hours": {
                "kind": "continuous",
                "description": "time to resolve issues",
                "unit": "hours",
                "per": 24,
            },
        },
    )
    slow_row, res_row = rows
    for row, truth in ((slow_row, hr_slow), (res_row, hr_per_day)):
        assert row.lower_95 < row.hazard_ratio < row.upper_95
        se = (np.log(row.upper_95) - np.log(row.lower_95)) / (2 * 1.959964)
        assert abs(np.log(row.hazard_ratio) - np.log(truth)) < 3.5 * se  # any seed, not 1 in 20
    assert slow_row.n_with == int(slow.sum())
    assert slow_row.sentence.startswith("Customers whose first reply took more than 24 h left at ")
    assert "x the rate (95% CI " in slow_row.sentence
    assert slow_row.sentence.endswith("observational, not causal.")
    assert "Each additional 24 hours of time to resolve issues" in res_row.sentence
    fig = plot_hazard_ratios(rows)
    assert fig.data[0].x == (slow_row.hazard_ratio, res_row.hazard_ratio)
    assert fig.data[0].error_x.array[0] == pytest.approx(slow_row.upper_95 - slow_row.hazard_ratio)
    with pytest.raises(ValueError, match="not a column"):
        procedure_effects(t, e, X, {"nope": {"kind": "binary"}})


def test_summary_and_repr(rossi):
    m = CoxPH().fit(rossi["week"], rossi["arrest"], rossi[ROSSI_COLS])
    s = m.summary()
    assert list(s.index) == ROSSI_COLS
    np.testing.assert_allclose(s["exp(coef)"], np.exp(s["coef"]))
    assert s.attrs["n_events"] == 114
    fig = plot_hazard_ratios(m)
    assert list(fig.data[0].y) == ROSSI_COLS and fig.layout.xaxis.type == "log"
    assert "432 customers (114 events)" in repr(m)
    assert repr(CoxPH()) == "<custdyn.models.CoxPH: not fitted>"
    params = CoxPH(ties="breslow", penalizer=0.5).get_params()
    assert params["ties"] == "breslow" and CoxPH(**params).get_params() == params
    with pytest.raises(ValueError, match="unknown setting"):
        CoxPH().set_params(l1_ratio=0.5)


def test_errors():
    with pytest.raises(NotFittedError):
        CoxPH().predict_partial_hazard(np.zeros((2, 2)))
    t = np.arange(1.0, 11.0)
    with pytest.raises(InsufficientDataError, match="constant"):
        CoxPH().fit(t, np.ones(10), np.column_stack([np.ones(10), t]))
    with pytest.raises(InsufficientDataError, match="no events"):
        CoxPH().fit(t, np.zeros(10), t.reshape(-1, 1))
    with pytest.raises(ValueError, match="missing"):
        CoxPH().fit(t, np.ones(10), np.r_[np.nan, t[1:]].reshape(-1, 1))
    with pytest.raises(ValueError, match="ties"):
        CoxPH(ties="exact").fit(t, np.ones(10), t.reshape(-1, 1))


def test_separation_warns_but_returns():
    from custdyn.errors import ConvergenceWarning

    t = np.arange(1.0, 41.0)
    x = (t < 20).astype(float)  # every early event has x = 1: the coefficient diverges
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.warns(ConvergenceWarning):
            m = CoxPH(max_iter=15).fit(t, np.ones(40), x.reshape(-1, 1))
    assert m.params_[0] > 3
    ok = CoxPH(penalizer=0.1).fit(t, np.ones(40), x.reshape(-1, 1))
    assert ok.converged_ and np.isfinite(ok.params_[0])
