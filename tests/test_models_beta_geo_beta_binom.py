"""BG/BB: published donations estimates and predictions (Fader, Hardie & Shang 2010)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custdyn.models import BetaGeoBetaBinom

PUBLISHED = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}


def lifetimes_file(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the lifetimes package (test dependency, ships the donations data) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / name


@pytest.fixture(scope="module")
def donations() -> pd.DataFrame:
    return pd.read_csv(lifetimes_file("donations.csv"))


@pytest.fixture(scope="module")
def fitted(donations: pd.DataFrame) -> BetaGeoBetaBinom:
    d = donations
    return BetaGeoBetaBinom().fit(d["frequency"], d["recency"], d["periods"], weights=d["weights"])


def test_reproduces_published_estimates(fitted: BetaGeoBetaBinom) -> None:
    for k, v in PUBLISHED.items():
        assert f"{fitted.params_[k]:.3g}" == f"{v:.3g}", (k, fitted.params_[k])
    assert abs(fitted.log_likelihood_ - (-33225.6)) < 0.1
    assert fitted.n_customers_ == 11104
    assert fitted.converged_


def test_published_predictions(fitted: BetaGeoBetaBinom, donations: pd.DataFrame) -> None:
    d = donations
    # Table 6: P(alive in 2002) for (x, t_x) = (0, 0), (2, 4), (6, 6) with n = 6
    np.testing.assert_allclose(fitted.p_alive([0, 2, 6], [0, 4, 6], [6, 6, 6], t=1), [0.11, 0.59, 0.93], atol=0.005)
    # Hardie's spreadsheet: total expected donations in the next 5 years, and the in-sample fit
    total = (fitted.conditional_expected_purchases(5, d["frequency"], d["recency"], d["periods"]) * d["weights"]).sum()
    assert total == pytest.approx(12884.2, abs=0.5)
    counts = fitted.probability_of_n_purchases(6, [0, 6]) * d["weights"].sum()
    np.testing.assert_allclose(counts, [3454.9, 1253.1], atol=0.5)


def test_probabilities_consistent(fitted: BetaGeoBetaBinom) -> None:
    pmf = fitted.probability_of_n_purchases(10, np.arange(11))
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    assert (pmf * np.arange(11)).sum() == pytest.approx(fitted.expected_purchases(10)[0], rel=1e-10)
    # a brand-new customer's conditional expectation is the unconditional one
    assert fitted.conditional_expected_purchases(4, 0, 0, 0)[0] == pytest.approx(fitted.expected_purchases(4)[0])


def test_weights_equal_expanded_rows(donations: pd.DataFrame, fitted: BetaGeoBetaBinom) -> None:
    d = donations.loc[donations.index.repeat(donations["weights"])]
    m = BetaGeoBetaBinom().fit(d["frequency"], d["recency"], d["periods"])
    for k in PUBLISHED:
        assert m.params_[k] == pytest.approx(fitted.params_[k], rel=1e-6)


def test_recovers_simulated_parameters() -> None:
    true = {"alpha": 1.2, "beta": 0.75, "gamma": 0.66, "delta": 2.8}
    x, tx, n = BetaGeoBetaBinom().set_params(**true).sample(1_000_000, 8, seed=4)
    m = BetaGeoBetaBinom().fit(x, tx, n)
    expected_mean = BetaGeoBetaBinom().set_params(**true).expected_purchases(8)[0]
    assert abs(x.mean() - expected_mean) < 4 * x.std() / np.sqrt(len(x))
    for k, v in true.items():
        assert abs(m.params_[k] - v) < 3 * m.standard_errors_[k], (k, m.params_[k], v)


def test_rejects_inconsistent_input() -> None:
    with pytest.raises(ValueError):
        BetaGeoBetaBinom().fit([3], [2], [6])
    with pytest.raises(ValueError):
        BetaGeoBetaBinom().fit([1.5], [2], [6])
