"""MBG/NBD: CDNOW estimates (as published by BTYDplus), predictions, simulation recovery."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custdyn.models import ModifiedBetaGeo

# Batislam, Denizel & Filiztekin (2007) model; CDNOW estimates as published by the BTYDplus package
PUBLISHED = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}


def lifetimes_file(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the lifetimes package (test dependency, ships the CDNOW data) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / name


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(lifetimes_file("cdnow_customers_summary.csv"))


@pytest.fixture(scope="module")
def fitted(cdnow: pd.DataFrame) -> ModifiedBetaGeo:
    return ModifiedBetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def test_cdnow_reproduces_published_estimates(fitted: ModifiedBetaGeo, cdnow: pd.DataFrame) -> None:
    for k, v in PUBLISHED.items():
        assert f"{fitted.params_[k]:.3g}" == f"{v:.3g}", (k, fitted.params_[k])
    # the log-likelihood at the published (rounded) estimates is within 0.1 of ours
    ll_pub = ModifiedBetaGeo()._loglik(
        np.array(list(PUBLISHED.values())),
        (cdnow["frequency"].to_numpy(float), cdnow["recency"].to_numpy(float), cdnow["T"].to_numpy(float)),
    )[0].sum()
    assert fitted.log_likelihood_ >= ll_pub
    assert fitted.log_likelihood_ - ll_pub < 0.1
    assert fitted.log_likelihood_ == pytest.approx(-9582.1, abs=0.1)
    assert fitted.converged_


def test_predictions(fitted: ModifiedBetaGeo) -> None:
    # close to BG/NBD's 1.226 for Hardie's example customer (the models differ slightly)
    assert fitted.conditional_expected_purchases(39, 2, 30.43, 38.86)[0] == pytest.approx(1.226, abs=0.05)
    pmf = fitted.probability_of_n_purchases(40, np.arange(400))
    assert pmf.sum() == pytest.approx(1.0, abs=1e-9)
    assert (pmf * np.arange(400)).sum() == pytest.approx(fitted.expected_purchases(40)[0], rel=1e-8)
    # unlike BG/NBD, a customer without repeat purchases may be inactive
    assert fitted.p_alive(0, 0, 38)[0] < 1.0
    # a brand-new customer's conditional expectation is the unconditional one
    assert fitted.conditional_expected_purchases(10, 0, 0, 0)[0] == pytest.approx(fitted.expected_purchases(10)[0])
    # and P(alive) right after the first purchase is b / (a + b)
    a, b = fitted.params_["a"], fitted.params_["b"]
    assert fitted.p_alive(0, 0, 0)[0] == pytest.approx(b / (a + b))


def test_expected_purchases_matches_monte_carlo() -> None:
    m = ModifiedBetaGeo().set_params(r=0.5, alpha=3.0, a=1.5, b=3.0)
    x, _, _ = m.sample(400_000, 20.0, seed=3)
    assert abs(x.mean() - m.expected_purchases(20.0)[0]) < 4 * x.std() / np.sqrt(len(x))
    p0 = m.probability_of_n_purchases(20.0, 0)[0]
    assert abs((x == 0).mean() - p0) < 4 * np.sqrt(p0 * (1 - p0) / len(x))


def test_recovers_simulated_parameters() -> None:
    true = {"r": 0.5, "alpha": 6.0, "a": 0.9, "b": 1.6}
    gen = ModifiedBetaGeo().set_params(**true)
    T = np.random.default_rng(0).uniform(10, 52, 200_000)
    x, rec, T = gen.sample(200_000, T, seed=2)
    m = ModifiedBetaGeo().fit(x, rec, T)
    assert m.converged_
    for k, v in true.items():
        assert abs(m.params_[k] - v) < 3 * m.standard_errors_[k], (k, m.params_[k], v, m.standard_errors_[k])


def test_recovers_simulated_parameters_1m_customers() -> None:
    true = {"r": 0.5, "alpha": 6.0, "a": 0.9, "b": 1.6}
    gen = ModifiedBetaGeo().set_params(**true)
    T = np.random.default_rng(20).uniform(10, 52, 1_000_000)
    x, rec, T = gen.sample(1_000_000, T, seed=21)
    m = ModifiedBetaGeo().fit(x, rec, T)
    assert m.converged_
    for k, v in true.items():
        assert abs(m.params_[k] - v) < 3 * m.standard_errors_[k], (k, m.params_[k], v, m.standard_errors_[k])
