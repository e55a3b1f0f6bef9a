"""rfm_summary: CDNOW reproduction, hand-checked example, pandas/polars/Arrow agreement."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custdyn.models import BetaGeo, rfm_summary


def lifetimes_file(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the lifetimes package (test dependency, ships the CDNOW data) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / name


@pytest.fixture(scope="module")
def cdnow_tx() -> pd.DataFrame:
    tx = pd.read_csv(
        lifetimes_file("CDNOW_sample.txt"), sep=r"\s+", header=None,
        names=["master_id", "id", "date", "cds", "amount"], dtype={"date": str},
    )
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    return tx


def test_cdnow_summary_reproduced(cdnow_tx: pd.DataFrame) -> None:
    s = rfm_summary(cdnow_tx, "id", "date", "amount", observation_end="1998-06-30", calibration_end="1997-09-30")
    ref = pd.read_csv(lifetimes_file("cdnow_customers_summary.csv"), index_col=0)
    ref_m = pd.read_csv(lifetimes_file("cdnow_customers_summary_with_transactions.csv"), index_col=0)
    assert len(s) == 2357
    assert list(s.index) == list(ref.index)
    np.testing.assert_array_equal(s["frequency"], ref["frequency"])
    np.testing.assert_allclose(s["recency"], ref["recency"], atol=0.005 + 1e-9)  # file rounds to 2 decimals
    np.testing.assert_allclose(s["T"], ref["T"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(s["monetary_value"], ref_m["zbar"], atol=0.005 + 1e-9)
    assert np.all(s["duration_holdout"] == 39.0)
    # the published BG/NBD fit from the raw transactions
    m = BetaGeo().fit(s["frequency"], s["recency"], s["T"])
    assert f"{m.params_['r']:.3g}" == "0.243" and f"{m.params_['b']:.3g}" == "2.43"


def test_holdout_counts_match_an_independent_count(cdnow_tx: pd.DataFrame) -> None:
    s = rfm_summary(cdnow_tx, "id", "date", observation_end="1998-06-30", calibration_end="1997-09-30")
    days = cdnow_tx.drop_duplicates(["id", "date"])
    hold = days[(days["date"] > "1997-09-30") & (days["date"] <= "1998-06-30")].groupby("id").size()
    np.testing.assert_array_equal(s["frequency_holdout"], hold.reindex(s.index, fill_value=0).to_numpy())


def _toy() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cust": ["a", "a", "a", "a", "b", "c", "c", "d"],
            "ts": pd.to_datetime(
                ["2024-01-01 09:00", "2024-01-01 18:00", "2024-01-15 00:00", "2024-02-12 00:00",
                 "2024-01-08 00:00", "2024-01-29 00:00", "2024-02-19 00:00", "2024-02-05 00:00"]
            ),
            "amt": [10.0, 5.0, 20.0, 30.0, 7.0, 8.0, 9.0, 4.0],
        }
    )


def test_hand_example() -> None:
    s = rfm_summary(_toy(), "cust", "ts", "amt", observation_end="2024-02-26", calibration_end="2024-02-05", time_unit="W")
    # d's first purchase is on the calibration end day, so it is in calibration
    assert list(s.index) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(s["frequency"], [1, 0, 0, 0])  # a: Jan 1 (merged) and Jan 15
    np.testing.assert_allclose(s["recency"], [2, 0, 0, 0])
    np.testing.assert_allclose(s["T"], [5, 4, 1, 0])
    np.testing.assert_allclose(s["monetary_value"], [20, 0, 0, 0])
    np.testing.assert_array_equal(s["frequency_holdout"], [1, 0, 1, 0])
    np.testing.assert_allclose(s["monetary_value_holdout"], [30, 0, 9, 0])
    np.testing.assert_allclose(s["duration_holdout"], 3.0)
    # without merging, a's two purchases on Jan 1 count separately (9 hours apart)
    u = rfm_summary(_toy(), "cust", "ts", "amt", observation_end="2024-02-26", time_unit="D", merge_same_day=False)
    assert u.loc["a", "frequency"] == 3
    assert u.loc["a", "recency"] == pytest.approx(42 - 9 / 24)
    assert u.loc["a", "monetary_value"] == pytest.approx((5 + 20 + 30) / 3)


def test_observation_end_drops_later_transactions() -> None:
    s = rfm_summary(_toy(), "cust", "ts", observation_end="2024-01-20", time_unit="D")
    assert list(s.index) == ["a", "b"]
    np.testing.assert_allclose(s["T"], [19, 12])


def test_polars_and_arrow_inputs_agree(cdnow_tx: pd.DataFrame) -> None:
    pl = pytest.importorskip("polars")
    pa = pytest.importorskip("pyarrow")
    kw = {"observation_end": "1998-06-30", "calibration_end": "1997-09-30"}
    ref = rfm_summary(cdnow_tx, "id", "date", "amount", **kw)
    from_pl = rfm_summary(pl.from_pandas(cdnow_tx), "id", "date", "amount", **kw)
    from_pa = rfm_summary(pa.Table.from_pandas(cdnow_tx, preserve_index=False), "id", "date", "amount", **kw)
    assert isinstance(from_pl, pl.DataFrame) and isinstance(from_pa, pa.Table)
    for col in ref.columns:
        np.testing.assert_allclose(from_pl[col].to_numpy(), ref[col].to_numpy())
        np.testing.assert_allclose(from_pa[col].to_numpy(), ref[col].to_numpy())
    np.testing.assert_array_equal(from_pl["id"].to_numpy(), ref.index.to_numpy())
    # a dict of numpy arrays gives pandas
    d = {c: cdnow_tx[c].to_numpy() for c in ["id", "date", "amount"]}
    pd.testing.assert_frame_equal(rfm_summary(d, "id", "date", "amount", **kw), ref)


def test_random_log_matches_pandas_groupby(rng: np.random.Generator) -> None:
    n = 20_000
    tx = pd.DataFrame(
        {
            "c": rng.integers(0, 3000, n),
            "t": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 400 * 24, n), unit="h"),
            "v": rng.gamma(2.0, 10.0, n),
        }
    )
    end = pd.Timestamp("2021-02-04")
    s = rfm_summary(tx, "c", "t", "v", observation_end=end, time_unit="D")
    tx["day"] = tx["t"].dt.floor("D")
    daily = tx.groupby(["c", "day"], as_index=False)["v"].sum().sort_values(["c", "day"])
    g = daily.groupby("c")
    first, last, cnt = g["day"].min(), g["day"].max(), g.size()
    rep = g["v"].sum() - g["v"].first()
    np.testing.assert_array_equal(s["frequency"], cnt - 1)
    np.testing.assert_allclose(s["recency"], (last - first).dt.days)
    np.testing.assert_allclose(s["T"], (end - first).dt.days)
    np.testing.assert_allclose(s["monetary_value"], np.where(cnt > 1, rep / np.maximum(cnt - 1, 1), 0.0))


def _reference_summary(tx: pd.DataFrame, end: pd.Timestamp, cut: pd.Timestamp) -> pd.DataFrame:
    """Merged-day RFM with holdout by pandas groupby (independent of the numpy core)."""
    tx = tx[tx["t"].dt.floor("D") <= end].assign(day=lambda d: d["t"].dt.floor("D"))
    daily = tx.groupby(["c", "day"], as_index=False)["v"].sum().sort_values(["c", "day"])
    cal = daily[daily["day"] <= cut]
    hold = daily[daily["day"] > cut]
    g = cal.groupby("c")
    cnt = g.size()
    out = pd.DataFrame(
        {
            "frequency": (cnt - 1).astype(float),
            "recency": (g["day"].max() - g["day"].min()).dt.days.astype(float),
            "T": (cut - g["day"].min()).dt.days.astype(float),
            "monetary_value": np.where(cnt > 1, (g["v"].sum() - g["v"].first()) / np.maximum(cnt - 1, 1), 0.0),
        }
    )
    hc = hold.groupby("c").size().reindex(out.index, fill_value=0)
    hv = hold.groupby("c")["v"].sum().reindex(out.index, fill_value=0.0)
    out["frequency_holdout"] = hc.astype(float)
    out["monetary_value_holdout"] = np.where(hc > 0, hv / np.maximum(hc, 1), 0.0)
    return out


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    n_cust=st.integers(1, 40),
    id_kind=st.sampled_from(["dense", "sparse", "str"]),
    hours=st.sampled_from([48, 24 * 400, 24 * 40_000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_merged_summary_matches_groupby(n: int, n_cust: int, id_kind: str, hours: int, seed: int) -> None:
    # dense integer ids take the direct-addressing path, sparse and string ids the hashing one;
    # a span of 40,000 days with many customers may need 64-bit sort keys
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, n_cust, n)
    ids = {"dense": raw + 10**12, "sparse": raw * 10**9, "str": np.array([f"c{i:03d}" for i in raw])}[id_kind]
    t = pd.Timestamp("1960-01-01") + pd.to_timedelta(rng.integers(0, hours, n), unit="h")
    tx = pd.DataFrame({"c": ids, "t": t, "v": np.round(rng.gamma(2.0, 10.0, n), 2)})
    days = tx["t"].dt.floor("D")
    end = days.max() - pd.Timedelta(days=int(rng.integers(0, 3)))
    cut = days.min() + (end - days.min()) * float(rng.random())
    cut = cut.floor("D")
    s = rfm_summary(tx, "c", "t", "v", observation_end=end, calibration_end=cut, time_unit="D")
    ref = _reference_summary(tx, end, cut)
    assert list(s.index) == list(ref.index)
    for col in ref.columns:
        np.testing.assert_allclose(s[col].to_numpy(), ref[col].to_numpy(), rtol=1e-12, atol=1e-9, err_msg=col)
    np.testing.assert_allclose(s["duration_holdout"], (end - cut).days)


def test_numeric_days_with_a_wide_span_use_64_bit_keys(rng: np.random.Generator) -> None:
    # 5,000 customers over 10 million days: (customer, day) keys no longer fit 32 bits
    n = 20_000
    tx = pd.DataFrame({"c": rng.integers(0, 5_000, n), "t": rng.random(n) * 1e7, "v": rng.gamma(2.0, 10.0, n)})
    tx.loc[:99, "t"] = tx.loc[100:199, "t"].to_numpy() + 0.01  # some same-day repeats
    s = rfm_summary(tx, "c", "t", "v", time_unit="D")
    tx["day"] = np.floor(tx["t"])
    daily = tx.groupby(["c", "day"], as_index=False)["v"].sum().sort_values(["c", "day"])
    g = daily.groupby("c")
    cnt = g.size()
    np.testing.assert_array_equal(s["frequency"], cnt - 1)
    np.testing.assert_allclose(s["recency"], g["day"].max() - g["day"].min())
    np.testing.assert_allclose(s["T"], np.floor(tx["t"].max()) - g["day"].min())
    rep = (g["v"].sum() - g["v"].first()) / np.maximum(cnt - 1, 1)
    np.testing.assert_allclose(s["monetary_value"], np.where(cnt > 1, rep, 0.0))


def test_time_zone_aware_times_are_taken_in_utc() -> None:
    import warnings

    tx = _toy()
    aware = tx.assign(ts=tx["ts"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = rfm_summary(aware, "cust", "ts", "amt", observation_end="2024-02-26", time_unit="D")
    pd.testing.assert_frame_equal(s, rfm_summary(tx, "cust", "ts", "amt", observation_end="2024-02-26", time_unit="D"))


@pytest.mark.parametrize("bad", [pd.NaT, None])
def test_missing_times_are_rejected(bad: object) -> None:
    tx = _toy()
    tx["ts"] = tx["ts"].astype(object)
    tx.loc[2, "ts"] = bad
    with pytest.raises(ValueError, match="missing"):
        rfm_summary(tx, "cust", "ts")
    with pytest.raises(ValueError, match="missing"):
        rfm_summary(tx.assign(ts=pd.to_datetime(tx["ts"])), "cust", "ts")
    with pytest.raises(ValueError, match="missing"):
        rfm_summary({"cust": np.array([1, 2]), "ts": np.array([3.0, np.nan])}, "cust", "ts")
