"""The fast scoring paths against straightforward references: id alignment, CLV intervals
per distinct (history, spend), the purchase predictions per distinct history."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custdyn._keys import _merged_order, _positions
from custdyn.models import BetaGeo, GammaGamma, ModifiedBetaGeo, ParetoNBD, ShiftedBetaGeo, clv
from custdyn.pipeline._common import _align, _PurchaseModels

# --------------------------------------------------------------------------- id alignment


def _index_in(keys: list[str], values: list[str]) -> np.ndarray:
    return np.asarray(pc.index_in(pa.array(keys, pa.string()),
                                  value_set=pa.array(values, pa.string()))
                      .fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


numbered = st.integers(0, 3000).map(lambda i: f"C{i:08d}")  # narrow: direct addressing
spread = st.integers(0, 10**8 - 1).map(lambda i: f"C{i:08d}")  # wide: sorted search
lettered = st.text("abcXYZ09", min_size=5, max_size=5)  # bytes, not digits
mixed = st.text("ab1", min_size=0, max_size=4)  # lengths differ: pyarrow's index_in
long_ids = st.text("0123456789", min_size=12, max_size=12)  # > 8 varying places


@settings(max_examples=150)
@given(st.sampled_from([numbered, spread, lettered, mixed, long_ids]).flatmap(
    lambda ids: st.tuples(st.lists(ids, max_size=60), st.lists(ids, max_size=60),
                          st.booleans())))
def test_positions_match_index_in(case: tuple[list[str], list[str], bool]) -> None:
    keys, values, same = case
    if same:  # the common case: a table of the very ids asked for, in order
        values = sorted(set(keys))
        keys = list(values)
    got = _positions(pa.array(keys, pa.string()), pa.array(values, pa.string()))
    np.testing.assert_array_equal(got, _index_in(keys, values))


def test_positions_on_sliced_arrays_and_duplicates() -> None:
    ids = pa.array([f"C{i:08d}" for i in range(20)] + [f"C{i:08d}" for i in range(5)])
    vals = ids.slice(3, 19)  # an offset into the buffers; C00000003.. and repeats
    keys = pa.array([f"C{i:08d}" for i in (4, 3, 21, 0, 19)]).slice(1, 4)
    np.testing.assert_array_equal(_positions(keys, vals),
                                  _index_in(keys.to_pylist(), vals.to_pylist()))
    # 64-bit offsets: pyarrow's own lookup
    np.testing.assert_array_equal(
        _positions(keys.cast(pa.large_string()), vals.cast(pa.large_string())),
        _index_in(keys.to_pylist(), vals.to_pylist()))


high_bytes = st.text("a\x00\x7fé€", min_size=3, max_size=3).filter(
    lambda t: len(t.encode()) == 6)  # one byte length, bytes above 0x7f and NUL


@settings(max_examples=150)
@given(st.sampled_from([numbered, spread, lettered, mixed, long_ids, high_bytes]).flatmap(
    lambda ids: st.tuples(st.lists(ids, max_size=60), st.lists(ids, max_size=20))))
def test_merged_order_matches_sorting_the_concatenation(case: tuple[list[str], list[str]]
                                                        ) -> None:
    ordered = pa.array(sorted(case[0], key=str.encode), pa.string())
    added = pa.array(case[1], pa.string())
    got = _merged_order(ordered, added)
    both = pa.concat_arrays([ordered, added])
    # the same ids in the same order as a stable sort (ties: the ordered ones first)
    want = np.asarray(pc.sort_indices(both))
    assert both.take(pa.array(got)).to_pylist() == both.take(pa.array(want)).to_pylist()
    assert sorted(got.tolist()) == list(range(len(both)))
    firsts = {}
    for i in got.tolist():
        firsts.setdefault(both[i].as_py(), i)
    assert all(i < len(ordered) for k, i in firsts.items() if k in set(case[0]))


def _align_reference(ids: list[str], table: pa.Table, fill: float) -> dict[str, np.ndarray]:
    rows = {}
    for i, k in enumerate(table.column(0).to_pylist()):
        rows.setdefault(k, i)
    out = {}
    for name in table.column_names[1:]:
        vals = table.column(name).to_pylist()
        out[name] = np.array([
            (np.nan if vals[rows[c]] is None else float(vals[rows[c]])) if c in rows else fill
            for c in ids])
    return out


@settings(max_examples=100)
@given(st.lists(st.integers(0, 200), max_size=40, unique=True),
       st.lists(st.tuples(st.integers(0, 200), st.none() | st.floats(-1e6, 1e6),
                          st.none() | st.integers(-5, 5)), max_size=40, unique_by=lambda t: t[0]),
       st.sampled_from([np.nan, 0.0]), st.booleans())
def test_align_matches_a_dictionary_lookup(ids: list[int], rows: list[tuple], fill: float,
                                           arrow_ids: bool) -> None:
    names = [f"C{i:08d}" for i in ids]
    table = pa.table({"customer_id": pa.array([f"C{r[0]:08d}" for r in rows], pa.string()),
                      "x": pa.array([r[1] for r in rows], pa.float64()),
                      "n": pa.array([r[2] for r in rows], pa.int64())})
    got = _align(pa.array(names) if arrow_ids else names, table, fill=fill)
    ref = _align_reference(names, table, fill)
    assert list(got) == ["x", "n"]
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])


def test_align_same_order_gives_the_columns_as_they_are() -> None:
    names = [f"C{i:08d}" for i in range(1000)]
    x = np.random.default_rng(1).random(1000)
    got = _align(names, pa.table({"customer_id": names, "x": x}))["x"]
    np.testing.assert_array_equal(got, x)
    got[0] = -1.0  # a copy of its own, not a view of the table's buffer
    assert x[0] != -1.0


# --------------------------------------------------------------------------- CLV intervals


@pytest.fixture(scope="module")
def fitted() -> dict:
    gen = BetaGeo().set_params(r=0.5, alpha=4.0, a=0.9, b=2.2)
    rng = np.random.default_rng(5)
    T = rng.integers(8, 60, 2000).astype(float)
    x, rec, T = gen.sample(2000, T, seed=6)
    m = np.where(x > 0, np.round(rng.gamma(4.0, 5.0, 2000), 1), 0.0)
    rep = x > 0
    return {"bg": BetaGeo().fit(x, rec, T), "mbg": ModifiedBetaGeo().fit(x, rec, T),
            "pnbd": ParetoNBD().fit(x, rec, T), "gg": GammaGamma().fit(x[rep], m[rep])}


def _intervals_reference(model, spend, data, n_draws, seed, interval):
    """Each draw's CLV for every customer, its quantiles per customer."""
    t_draws = model._parameter_draws(n_draws, seed)
    s_draws = spend._parameter_draws(n_draws, seed + 1) if spend is not None else None
    vals = np.stack([
        clv(model._with_params(t_draws[j]),
            None if spend is None else spend._with_params(s_draws[j]),
            data, n_draws=0)["clv"].to_numpy()
        for j in range(n_draws)])
    q = np.quantile(vals, [0.5 - interval / 2, 0.5 + interval / 2], axis=0)
    return q[0], q[1]


histories = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 3),
              st.sampled_from([0.0, 12.5, 30.0, 7.25])),
    min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(histories, st.sampled_from(["bg", "mbg", "pnbd"]), st.booleans(),
       st.integers(1, 9), st.sampled_from([0.5, 0.9]))
def test_clv_intervals_match_per_customer_quantiles(fitted: dict, rows: list, name: str,
                                                    with_spend: bool, n_draws: int,
                                                    interval: float) -> None:
    # few distinct histories, many repeats: the distinct-row paths are exercised
    f = np.array([r[0] for r in rows], dtype=float)
    rec = np.array([min(r[0], 1) * r[1] for r in rows], dtype=float)
    T = rec + np.array([r[2] for r in rows], dtype=float) + 1.0
    m = np.where(f > 0, np.array([r[3] for r in rows]), 0.0)
    data = {"frequency": f, "recency": rec, "T": T, "monetary_value": m}
    spend = fitted["gg"] if with_spend else None
    got = clv(fitted[name], spend, data, n_draws=n_draws, seed=3, interval=interval)
    lo, hi = _intervals_reference(fitted[name], spend, data, n_draws, 3, interval)
    est = got["clv"].to_numpy()
    np.testing.assert_array_equal(got["clv_lower"].to_numpy(), np.minimum(lo, est))
    np.testing.assert_array_equal(got["clv_upper"].to_numpy(), np.maximum(hi, est))


@pytest.mark.filterwarnings("ignore::custdyn.errors.ConvergenceWarning")
def test_clv_intervals_with_a_margin_and_subscriptions(fitted: dict) -> None:
    rng = np.random.default_rng(2)
    n = 300
    f = rng.integers(0, 3, n).astype(float)
    data = {"frequency": f, "recency": f * rng.integers(1, 4, n), "T": 20.0 + f * 4,
            "monetary_value": np.where(f > 0, rng.choice([10.0, 20.0], n), 0.0)}
    got = clv(fitted["bg"], fitted["gg"], data, n_draws=12, seed=4, margin=0.3)
    lo, hi = _intervals_reference(fitted["bg"], fitted["gg"], data, 12, 4, 0.9)
    np.testing.assert_allclose(got["clv_lower"], np.minimum(0.3 * lo, got["clv"]), rtol=1e-12)
    np.testing.assert_allclose(got["clv_upper"], np.maximum(0.3 * hi, got["clv"]), rtol=1e-12)
    # subscriptions: churned subscribers have no value in any draw
    sbg = ShiftedBetaGeo().fit(rng.integers(1, 12, 400).astype(float),
                               rng.integers(0, 2, 400).astype(float))
    periods = rng.integers(1, 6, 50).astype(float)
    churned = rng.integers(0, 2, 50).astype(float)
    subs = {"periods": periods, "churned": churned, "monetary_value": np.full(50, 9.0)}
    out = clv(sbg, None, subs, n_draws=20, seed=0)
    draws = sbg._parameter_draws(20, 0)
    vals = np.stack([9.0 * (1 - churned) * sbg._with_params(d).expected_residual_payments(
        periods, 0.01, horizon=12) for d in draws])
    q = np.quantile(vals, [0.05, 0.95], axis=0)
    np.testing.assert_allclose(out["clv_lower"], np.minimum(q[0], out["clv"]), rtol=1e-12)
    np.testing.assert_allclose(out["clv_upper"], np.maximum(q[1], out["clv"]), rtol=1e-12)
    assert np.all(out["clv_upper"].to_numpy()[churned == 1] == 0.0)


# ----------------------------------------------------------------- purchase predictions


def test_predictions_per_distinct_history_match_every_customer(fitted: dict) -> None:
    rng = np.random.default_rng(9)
    n = 5000
    f = rng.integers(0, 5, n).astype(float)
    rec = f * rng.integers(1, 5, n) / 7.0
    T = rec + rng.integers(0, 30, n) / 7.0
    m = np.where(f > 0, rng.choice([5.0, 9.5, 20.0], n), 0.0)
    pm = _PurchaseModels.__new__(_PurchaseModels)
    pm.warnings = []
    pm.model, pm.spend = fitted["bg"], fitted["gg"]
    pm.rfm = pa.table({"customer_id": [f"C{i:08d}" for i in range(n)], "frequency": f,
                       "recency": rec, "T": T, "monetary_value": m})
    got = pm.predict()
    mod = fitted["bg"]
    assert got["customer_id"] == [f"C{i:08d}" for i in range(n)]
    np.testing.assert_array_equal(got["p_alive"], mod.p_alive(f, rec, T))
    for days in (90, 365):
        np.testing.assert_allclose(got[f"expected_purchases_{days}d"],
                                   mod.conditional_expected_purchases(days / 7, f, rec, T),
                                   rtol=1e-14, atol=1e-300)
    ref = clv(mod, fitted["gg"], {"frequency": f, "recency": rec, "T": T, "monetary_value": m},
              horizon=12, discount_rate=0.01, time_unit="W", n_draws=50)
    for k in ("clv", "clv_lower", "clv_upper"):
        np.testing.assert_array_equal(got[k], ref[k].to_numpy())


# ------------------------------------------------------------------- feature matrix


def _matrix_reference(table: pa.Table, rows: np.ndarray | None) -> np.ndarray:
    """Each column cast to float by Arrow as a whole (nulls: NaN), then the masked rows."""
    cols = [np.asarray(table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False),
                       dtype=float) for name in table.column_names[2:]]
    m = np.column_stack(cols) if cols else np.empty((table.num_rows, 0))
    return m if rows is None else m[rows]


@settings(max_examples=60)
@given(st.lists(st.tuples(st.none() | st.integers(-10**9, 10**9),
                          st.none() | st.floats(allow_nan=False, allow_infinity=False),
                          st.booleans(), st.integers(0, 10**12), st.booleans()),
                max_size=50),
       st.integers(1, 4), st.booleans())
def test_numeric_matrix_matches_a_row_by_row_reading(rows: list[tuple], n_chunks: int,
                                                     masked: bool) -> None:
    import decimal

    from custdyn.pipeline._common import _numeric_matrix

    n = len(rows)
    cols = {
        "customer_id": pa.array([f"C{i:08d}" for i in range(n)], pa.string()),
        "as_of": pa.array([0] * n, pa.int64()),  # an id column: left out
        "ints_with_nulls": pa.array([r[0] for r in rows], pa.int64()),
        "floats_with_nulls": pa.array([r[1] for r in rows], pa.float64()),
        "flags": pa.array([r[2] for r in rows], pa.bool_()),
        "counts": pa.array([r[3] % 2**31 for r in rows], pa.int32() if n % 2 else pa.int64()),
        "money": pa.array([decimal.Decimal(r[3]) / 100 for r in rows], pa.decimal128(18, 2)),
        "ratio": pa.array([float(r[3]) / 7 for r in rows], pa.float32()),
        "label": pa.array(["x"] * n, pa.string()),  # not numeric: left out
    }
    table = pa.table(cols)
    cut = sorted({0, n, *(min(n, (k * n) // n_chunks + k % 2) for k in range(1, n_chunks))})
    table = pa.concat_tables([table.slice(a, b - a) for a, b in zip(cut, cut[1:], strict=False)]
                             or [table])
    keep = np.array([r[4] for r in rows], dtype=bool) if masked else None
    got, names = _numeric_matrix(table, rows=keep, extra=2)
    assert names == ["ints_with_nulls", "floats_with_nulls", "flags", "counts", "money", "ratio"]
    assert got.shape == ((n if keep is None else int(keep.sum())), len(names) + 2)
    ref = _matrix_reference(table.drop_columns(["label"]), keep)
    np.testing.assert_array_equal(got[:, :len(names)], ref)


# ------------------------------------------------------------------- RFM summary


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.text("abZé0ü", min_size=0, max_size=3), st.integers(0, 40),
                          st.floats(0, 500, allow_nan=False)), min_size=2, max_size=60),
       st.booleans(), st.booleans())
def test_rfm_of_an_id_ordered_arrow_log_matches_pandas(rows: list[tuple], merge: bool,
                                                       calibrate: bool) -> None:
    """A log read in customer order (the analysis reads it so) is coded from its runs of
    equal ids; the summary is the one pandas input gives (ids of any length, non-ASCII)."""
    import datetime as dt

    from custdyn.models import rfm_summary

    rows = sorted(rows, key=lambda r: (r[0], r[1]))  # by id (code point order), then time
    t0 = dt.datetime(2024, 1, 1)
    times = [t0 + dt.timedelta(days=r[1], hours=r[1] % 5) for r in rows]
    tab = pa.table({"cid": pa.array([r[0] for r in rows], pa.string()),
                    "at": pa.array(times, pa.timestamp("us")),
                    "amount": pa.array([r[2] for r in rows], pa.float64())})
    kw = {"observation_end": t0 + dt.timedelta(days=41), "merge_same_day": merge,
          "calibration_end": t0 + dt.timedelta(days=20) if calibrate else None}
    try:
        ref = rfm_summary(tab.to_pandas(), "cid", "at", "amount", **kw)
    except ValueError:  # e.g. nobody bought in the calibration period
        return
    got = rfm_summary(tab, "cid", "at", "amount", **kw)
    assert got.column("cid").to_pylist() == list(ref.index)
    for name in ref.columns:
        np.testing.assert_array_equal(got.column(name).to_numpy(), ref[name].to_numpy())
    if not merge:  # unmerged, which of two purchases at one time is the first is the order
        return
    # the same log out of order takes the general path: the same summary
    shuffled = tab.take(np.random.default_rng(len(rows)).permutation(len(rows)))
    again = rfm_summary(shuffled, "cid", "at", "amount", **kw)
    assert again.column("cid").to_pylist() == list(ref.index)
    for name in ref.columns:  # amounts of one day summed in another order: to rounding
        np.testing.assert_allclose(again.column(name).to_numpy(), ref[name].to_numpy(),
                                   rtol=1e-12, atol=1e-9)


# ------------------------------------------------------------------- leaving features


def _filter_form(sql: str) -> str:
    """The leaving-phase query written with a ``FILTER`` clause per aggregate, as it was:
    ``count(CASE WHEN c THEN 1 END)`` -> ``count(*) FILTER (WHERE c)``, ``f(CASE WHEN c THEN
    x END)`` -> ``f(x) FILTER (WHERE c)``."""
    import re

    out, i = [], 0
    pattern = re.compile(r"\b(count|avg|min)\(CASE WHEN ")
    while (m := pattern.search(sql, i)) is not None:
        out.append(sql[i:m.start()])
        depth, j = 1, m.end()
        while depth:  # the aggregate's closing parenthesis
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            j += 1
        body = sql[m.end():j - 1]  # "cond THEN x END"
        cond, value = body.rsplit(" THEN ", 1)
        value = value.removesuffix(" END")
        arg = "*" if m.group(1) == "count" else value
        out.append(f"{m.group(1)}({arg}) FILTER (WHERE {cond})")
        i = j
    out.append(sql[i:])
    return "".join(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leaving_sums_match_filtered_aggregates(tmp_path, seed: int) -> None:
    """The one-pass sums give what a FILTER clause per sum gives, on a random log with
    orders, complaints, threads with and without replies, surveys and competitor talk."""
    import datetime as dt
    import json

    pytest.importorskip("custdyn.text")
    from custdyn.pipeline import enrich
    from custdyn.pipeline import risk as R
    from custdyn.settings import Settings
    from custdyn.store import Workspace

    assert "FILTER (WHERE c)" not in _filter_form(R._LEAVING_SQL)
    assert _filter_form(R._LEAVING_SQL).count("FILTER (WHERE") >= 20
    texts = ["Nordvik offered me 20% off, I'm thinking of switching.", "Terrible, I'm furious.",
             "Thanks, all good!", "Where is my refund?", "Meh."]
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(400):
        kind = str(rng.choice(["order", "feedback", "support", "contact", "survey",
                               "order_issue", "return"]))
        r = {"interaction_id": f"e{i}", "customer_id": f"C{rng.integers(0, 30):03d}",
             "occurred_at": (dt.datetime(2023, 1, 1) + dt.timedelta(
                 hours=int(rng.integers(0, 24 * 760)))).isoformat() + "Z",
             "channel": "email", "kind": kind,
             "direction": "outbound" if rng.random() < 0.2 else "inbound"}
        if kind in ("feedback", "support", "contact") and rng.random() < 0.8:
            r["text"] = str(rng.choice(texts))
        if kind in ("support", "contact") and rng.random() < 0.7:
            r["thread_id"] = f"T{rng.integers(0, 40)}"
        if kind == "survey" and rng.random() < 0.8:
            r["attributes"] = json.dumps({"nps": int(rng.integers(0, 11))})
        rows.append(r)
    w = Workspace.create(tmp_path / "log", Settings(
        competitors=[{"name": "Nordvik", "aliases": ["nordvik.no"]}]))
    try:
        p = tmp_path / "log.jsonl"
        p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        w.ingest(p)
        enrich(w, "bulk")
        params = {"at": dt.datetime(2025, 1, 20, tzinfo=dt.UTC),
                  "kinds": list(w.settings.purchase_kinds)}
        sql = R._LEAVING_SQL.replace("{signals}", R._LEAVING_SIGNALS)
        got = w.con.execute(sql + " ORDER BY customer_id", params).to_arrow_table()
        ref = w.con.execute(_filter_form(sql) + " ORDER BY customer_id",
                            params).to_arrow_table()
    finally:
        w.close()
    assert got.num_rows >= 20
    assert got.schema == ref.schema
    assert got.equals(ref)
