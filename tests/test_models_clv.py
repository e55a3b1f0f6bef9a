"""clv(): the discounted sum against a direct computation, every model kind, intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custdyn.models import (
    BetaGeo,
    BetaGeoBetaBinom,
    GammaGamma,
    ModifiedBetaGeo,
    ParetoNBD,
    ShiftedBetaGeo,
    clv,
)

MONTH_WEEKS = 365.25 / 12 / 7


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    gen = BetaGeo().set_params(r=0.4, alpha=5.0, a=0.8, b=2.5)
    rng = np.random.default_rng(11)
    T = rng.uniform(10, 40, 3000)
    x, rec, T = gen.sample(3000, T, seed=12)
    spend = np.where(x > 0, rng.gamma(6.0, 4.0, 3000), 0.0)
    return pd.DataFrame({"frequency": x, "recency": rec, "T": T, "monetary_value": spend}, index=np.arange(3000) + 100)


@pytest.fixture(scope="module")
def models(data: pd.DataFrame) -> dict:
    args = (data["frequency"], data["recency"], data["T"])
    return {
        "bg": BetaGeo().fit(*args),
        "mbg": ModifiedBetaGeo().fit(*args),
        "pnbd": ParetoNBD().fit(*args),
        "gg": GammaGamma().fit(data["frequency"][data["frequency"] > 0], data["monetary_value"][data["frequency"] > 0]),
    }


@pytest.mark.parametrize("name", ["bg", "mbg", "pnbd"])
def test_matches_direct_sum(models: dict, data: pd.DataFrame, name: str) -> None:
    m, gg = models[name], models["gg"]
    out = clv(m, gg, data, horizon=12, discount_rate=0.01, time_unit="W", n_draws=0)
    assert list(out.index) == list(data.index)
    spend = gg.conditional_expected_spend(data["frequency"], data["monetary_value"])
    direct = np.zeros(len(data))
    prev = np.zeros(len(data))
    for k in range(1, 13):
        cur = m.conditional_expected_purchases(k * MONTH_WEEKS, data["frequency"], data["recency"], data["T"])
        direct += spend * (cur - prev) / 1.01**k
        prev = cur
    np.testing.assert_allclose(out["clv"], direct, rtol=1e-10)
    np.testing.assert_allclose(out["expected_spend"], spend)
    # no discounting: spend times expected purchases over the horizon
    flat = clv(m, gg, data, horizon=12, discount_rate=0.0, time_unit=MONTH_WEEKS, n_draws=0)
    np.testing.assert_allclose(flat["clv"], spend * prev, rtol=1e-10)
    # continuous discounting values purchases earlier within each month: a little higher
    cont = clv(m, gg, data, horizon=12, discount_rate=0.01, continuous=True, n_draws=0)
    assert np.all(cont["clv"] >= out["clv"] - 1e-12)
    assert np.all(cont["clv"] <= out["clv"] * 1.011 + 1e-12)


def test_intervals_bracket_the_estimate_and_shrink_with_data(models: dict, data: pd.DataFrame) -> None:
    out = clv(models["bg"], models["gg"], data, n_draws=60, seed=1)
    assert np.all(out["clv_lower"] <= out["clv"]) and np.all(out["clv"] <= out["clv_upper"])
    assert np.all(np.isfinite(out[["clv", "clv_lower", "clv_upper"]].to_numpy()))
    assert (out["clv_upper"] - out["clv_lower"]).mean() > 0
    # 10x the customers (same histories, weights) -> narrower intervals
    big = BetaGeo().fit(data["frequency"], data["recency"], data["T"], weights=np.full(len(data), 10.0))
    out_big = clv(big, None, data, n_draws=60, seed=1)
    out_small = clv(models["bg"], None, data, n_draws=60, seed=1)
    w_big = (out_big["clv_upper"] - out_big["clv_lower"]).mean()
    w_small = (out_small["clv_upper"] - out_small["clv_lower"]).mean()
    assert w_big < 0.5 * w_small
    # same seed, same answer
    again = clv(models["bg"], models["gg"], data, n_draws=60, seed=1)
    pd.testing.assert_frame_equal(out, again)


def test_bgbb_and_sbg() -> None:
    bb = BetaGeoBetaBinom().set_params(alpha=1.2, beta=0.75, gamma=0.66, delta=2.8)
    d = {"frequency": np.array([0.0, 3.0, 6.0]), "recency": np.array([0.0, 4.0, 6.0]),
         "n_periods": np.array([6.0, 6.0, 6.0]), "monetary_value": np.array([50.0, 50.0, 50.0])}
    out = clv(bb, None, d, horizon=5, discount_rate=0.1, n_draws=0)
    direct = np.zeros(3)
    prev = np.zeros(3)
    for k in range(1, 6):
        cur = bb.conditional_expected_purchases(k, d["frequency"], d["recency"], d["n_periods"])
        direct += 50 * (cur - prev) / 1.1**k
        prev = cur
    np.testing.assert_allclose(out["clv"], direct, rtol=1e-12)
    assert out["clv"].is_monotonic_increasing

    sbg = ShiftedBetaGeo().set_params(alpha=0.7, beta=1.2)
    subs = {"periods": np.array([1.0, 5.0, 5.0]), "churned": np.array([0.0, 0.0, 1.0]), "monetary_value": np.full(3, 10.0)}
    v = clv(sbg, None, subs, horizon=24, discount_rate=0.01, n_draws=50)
    expected = 10 * sbg.expected_residual_payments(np.array([1.0, 5.0]), 0.01, horizon=24)
    np.testing.assert_allclose(v["clv"].to_numpy()[:2], expected)
    assert v["clv"].iloc[2] == 0.0  # churned subscribers are worth nothing
    assert v["clv"].iloc[1] > v["clv"].iloc[0]  # survivors are more loyal


def test_rejects_negative_discount(models: dict, data: pd.DataFrame) -> None:
    with pytest.raises(ValueError):
        clv(models["bg"], None, data, discount_rate=-0.1)
