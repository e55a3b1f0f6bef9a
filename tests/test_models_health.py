"""Scorecards, learned weights, loyalty and attention, and the four quadrants."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from custdyn.errors import DataWarning, InsufficientDataError, NotFittedError
from custdyn.models.health import (
    ATTENTION_COMPONENTS,
    QUADRANTS,
    Component,
    LearnedScorecard,
    Scorecard,
    align_previous,
    plot_quadrants,
    quadrants,
    relationship_scores,
    score_trend,
)

CONFIG = {
    "components": [
        {"name": "recency_days", "weight": 0.3, "good": 30, "bad": 180},
        {"name": "first_response_hours_median", "weight": 0.2, "good": 4, "bad": 72},
        {"name": "orders_90d", "weight": 0.5, "good": 3, "bad": 0, "missing": 0.0},
    ],
    "bands": {"at risk": 0, "watch": 40, "healthy": 70},
}


def test_linear_mapping_thresholds_and_missing():
    card = Scorecard.from_config(CONFIG)
    X = {
        "recency_days": [30, 180, 105, 10, 400, np.nan],
        "first_response_hours_median": [4, 72, 38, 1, 100, 4],
        "orders_90d": [3, 0, 1.5, 10, -1, None],
    }
    v = card.component_values(X)
    np.testing.assert_allclose(v[:, 0], [1, 0, 0.5, 1, 0, 0.5])  # missing -> neutral 0.5
    np.testing.assert_allclose(v[:, 1], [1, 0, 0.5, 1, 0, 1])
    np.testing.assert_allclose(v[:, 2], [1, 0, 0.5, 1, 0, 0])  # configured missing = 0
    s = card.score(X)
    np.testing.assert_allclose(s, [100, 0, 50, 100, 0, 100 * (0.3 * 0.5 + 0.2)])
    assert card.band(s).tolist() == ["healthy", "at risk", "watch", "healthy", "at risk", "at risk"]
    assert card.band([39.99, 40, 70]).tolist() == ["at risk", "watch", "healthy"]
    np.testing.assert_allclose(card.contributions(X).max(axis=0), [30, 20, 50])
    assert card.component_names == ["recency_days", "first_response_hours_median", "orders_90d"]
    assert Scorecard.from_config(card.to_config()).to_config() == card.to_config()
    assert "recency_days 30%" in repr(card)


def test_pandas_and_arrow_tables():
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    card = Scorecard.from_config(CONFIG)
    d = {"recency_days": [30.0, None], "first_response_hours_median": [4.0, 72.0], "orders_90d": [3.0, 0.0]}
    want = card.score({k: np.array([np.nan if v is None else v for v in vs]) for k, vs in d.items()})
    np.testing.assert_allclose(card.score(pd.DataFrame(d)), want)
    np.testing.assert_allclose(card.score(pa.table(d)), want)


def test_configuration_errors():
    with pytest.raises(ValueError, match="did you mean"):
        Scorecard.from_config(CONFIG).score({"recency_day": [1], "first_response_hours_median": [1], "orders_90d": [1]})
    with pytest.raises(ValueError, match="contradicts"):
        Component.from_dict({"name": "x", "good": 1, "bad": 5, "direction": "higher_is_better"})
    assert Component.from_dict({"name": "x", "good": 1, "bad": 5, "direction": "lower_is_better"}).good == 1
    with pytest.raises(ValueError, match="differ"):
        Component.from_dict({"name": "x", "good": 1, "bad": 1})
    with pytest.raises(ValueError, match="unknown keys"):
        Component.from_dict({"name": "x", "good": 1, "bad": 0, "wieght": 2})
    with pytest.raises(ValueError, match="components"):
        Scorecard.from_config({"bands": {}})
    with pytest.raises(ValueError, match="unique"):
        Scorecard([{"name": "x", "good": 1, "bad": 0}] * 2).score({"x": [1]})
    with pytest.raises(ValueError, match="ignoring case"):  # they name the score's parts
        Scorecard([{"name": "x", "good": 1, "bad": 0},
                   {"name": "X", "column": "x", "good": 1, "bad": 0}]).score({"x": [1]})
    with pytest.raises(ValueError, match="empty"):
        Scorecard([{"name": "", "column": "x", "good": 1, "bad": 0}]).score({"x": [1]})


finite = st.floats(-1e3, 1e3, allow_nan=False)
maybe_missing = st.one_of(finite, st.just(float("nan")))


@given(
    st.lists(st.tuples(finite, finite, st.floats(0, 10)), min_size=1, max_size=5),
    st.lists(st.lists(maybe_missing, min_size=5, max_size=5), min_size=1, max_size=8),
)
def test_contributions_sum_to_score_and_stay_in_range(specs, rows):
    comps = []
    for k, (good, bad, w) in enumerate(specs):
        if good == bad:
            bad = good + 1
        comps.append({"name": f"c{k}", "good": good, "bad": bad, "weight": w + 1e-3})
    card = Scorecard(comps)
    X = {f"c{k}": np.array([r[k] for r in rows]) for k in range(len(specs))}
    c = card.contributions(X)
    s = card.score(X)
    np.testing.assert_allclose(c.sum(axis=1), s, rtol=0, atol=1e-9)
    assert np.all((s >= 0) & (s <= 100 + 1e-9))
    assert np.all(c >= 0) and np.all(c <= 100 * card.weights + 1e-9)


@given(st.floats(0, 400), st.floats(0, 400))
def test_monotone_in_each_component(a, b):
    card = Scorecard.from_config(CONFIG)
    lo, hi = min(a, b), max(a, b)
    X = {"recency_days": [lo, hi], "first_response_hours_median": [10, 10], "orders_90d": [1, 1]}
    s = card.score(X)
    assert s[0] >= s[1]  # fewer days since the last purchase is never worse
    X = {"recency_days": [50, 50], "first_response_hours_median": [10, 10], "orders_90d": [lo / 100, hi / 100]}
    s = card.score(X)
    assert s[0] <= s[1]


def _snapshot_data(rng, n=4000):
    recency = rng.exponential(80, n)
    reply = rng.exponential(24, n)
    noise = rng.normal(size=n)
    orders = rng.poisson(2, n).astype(float)
    # defection driven by recency strongly, reply time mildly, orders and noise not at all
    c_rec = np.clip((recency - 200) / (20 - 200), 0, 1)
    c_rep = np.clip((reply - 72) / (2 - 72), 0, 1)
    logit = 1.0 - 3.0 * c_rec - 1.0 * c_rep
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    X = {"recency_days": recency, "reply_hours": reply, "noise": noise, "orders": orders}
    return X, y


def test_learned_weights_recover_planted_importance(rng):
    X, y = _snapshot_data(rng, 10000)
    comps = [
        {"name": "recency_days", "good": 20, "bad": 200},
        {"name": "reply_hours", "good": 2, "bad": 72},
        "noise",
        "orders",
    ]
    model = LearnedScorecard(components=comps).fit(X, y)
    w = model.weights_
    assert sum(w.values()) == pytest.approx(100)
    assert all(v >= 0 for v in w.values())
    # planted: beta = (3, 1, 0, 0) -> weights 75, 25, 0, 0 (the null components can only err
    # upwards, as weights are non-negative: a few points; tolerances are about 4 sd over seeds)
    assert w["recency_days"] == pytest.approx(75, abs=10)
    assert w["reply_hours"] == pytest.approx(25, abs=8)
    assert w["noise"] + w["orders"] < 10
    assert w["recency_days"] / w["reply_hours"] == pytest.approx(3.0, rel=0.35)
    np.testing.assert_allclose(model.coef_[:2], [3.0, 1.0], atol=0.35)
    np.testing.assert_allclose(model.contributions(X).sum(axis=1), model.score(X), atol=1e-9)
    p = model.predict_proba(X)
    s = model.score(X)
    assert np.all(np.diff(p[np.argsort(s)]) <= 1e-12)  # risk falls as health rises
    card = Scorecard.from_config(model.to_config())
    np.testing.assert_allclose(card.score(X), s)


def test_learned_mapping_from_data(rng):
    X, y = _snapshot_data(rng)
    model = LearnedScorecard(components=["recency_days", "reply_hours"]).fit(X, y)
    comps = {c.name: c for c in model.scorecard_._parsed()[0]}
    # more days since the last purchase goes with defection: lower is better
    assert comps["recency_days"].good < comps["recency_days"].bad
    assert comps["recency_days"].good == pytest.approx(np.quantile(X["recency_days"], 0.1))
    assert model.weights_["recency_days"] > model.weights_["reply_hours"] > 0


def test_learned_scorecard_thin_data(rng):
    X, y = _snapshot_data(rng, 40)
    with pytest.raises(InsufficientDataError, match="too few"):
        LearnedScorecard().fit(X, y)
    X, y = _snapshot_data(rng, 200)
    with pytest.raises(InsufficientDataError, match="one outcome"):
        LearnedScorecard().fit(X, np.zeros(200))
    X["flat"] = np.ones(200)
    with pytest.warns(DataWarning, match="flat"):
        m = LearnedScorecard().fit(X, y)
    assert "flat" not in m.weights_
    with pytest.raises(NotFittedError):
        LearnedScorecard().score(X)
    params = LearnedScorecard(penalizer=3.0).get_params()
    assert params["penalizer"] == 3.0 and LearnedScorecard(**params).get_params() == params


def _features(rng, n=500):
    turns = rng.integers(0, 20, n).astype(float)
    return {
        "purchase_regularity": rng.uniform(0, 1.5, n),
        "customer_started_share_365d": rng.uniform(0, 1, n),
        "channel_breadth_365d": rng.integers(1, 6, n).astype(float),
        "tenure_days": rng.uniform(0, 1500, n),
        "sentiment_trend_90d": rng.uniform(-0.5, 0.5, n),
        "survey_response_rate": rng.uniform(0, 1, n),
        "first_response_median_h": rng.exponential(12, n),
        "unanswered_inbound": np.floor(turns * rng.uniform(0, 0.5, n)),
        "customer_turns": turns,
        "vendor_contacts_90d": rng.integers(0, 9, n).astype(float),
        "ticket_resolve_median_h": rng.exponential(48, n),
    }


def test_relationship_scores(rng):
    t = _features(rng)
    r = relationship_scores(t)
    assert r.loyalty_components == [
        "purchase_regularity",
        "contacts_started",
        "channel_breadth",
        "tenure",
        "sentiment_trend",
        "feedback_engagement",
    ]
    assert r.attention_components == ["first_response", "unanswered_inbound", "proactive_outbound", "resolution_time"]
    np.testing.assert_allclose(r.loyalty_contributions.sum(axis=1), r.loyalty)
    np.testing.assert_allclose(r.attention_contributions.sum(axis=1), r.attention)
    assert np.all((r.loyalty >= 0) & (r.loyalty <= 100))
    # first replies at the base's median are 1x the norm: between good (0.5x) and bad (2x)
    med = np.median(t["first_response_median_h"])
    j = np.argmin(np.abs(t["first_response_median_h"] - med))
    assert r.attention_contributions[j, 0] == pytest.approx(25 * (2 - 1) / 1.5, rel=0.02)
    # faster replies than the norm never lower attention
    t2 = dict(t)
    t2["first_response_median_h"] = t["first_response_median_h"] * 1.0
    t2["first_response_median_h"][0] = 0.0
    assert relationship_scores(t2).attention[0] >= r.attention[0]
    # a fixed norm (the whole base's) scores a subset the same way as the full table
    fixed = [
        dict(c) | {"norm": float(np.median(t[c["column"]]))} if c.get("relative_to_norm") else dict(c)
        for c in ATTENTION_COMPONENTS
    ]
    sub = {k: v[:10] for k, v in t.items()}
    np.testing.assert_allclose(relationship_scores(sub, attention=fixed).attention, r.attention[:10])
    # unanswered messages per customer message; no messages -> missing -> neutral 0.5
    share = np.where(t["customer_turns"] > 0, t["unanswered_inbound"] / np.maximum(t["customer_turns"], 1), np.nan)
    want = 25 * np.where(np.isnan(share), 0.5, np.clip((share - 0.3) / -0.3, 0, 1))
    np.testing.assert_allclose(r.attention_contributions[:, 1], want)
    assert np.any(t["customer_turns"] == 0)
    frame = r.to_frame()
    assert frame.shape == (500, 2 + 6 + 4)


def test_relationship_scores_with_missing_columns(rng):
    t = _features(rng)
    del t["sentiment_trend_90d"]
    with pytest.warns(DataWarning, match="sentiment_trend_90d"):
        r = relationship_scores(t)
    assert "sentiment_trend" not in r.loyalty_components
    custom = [{"name": "visits", "column": "web_visits_30d", "good": 10, "bad": 0}]
    t["web_visits_30d"] = np.arange(500.0) % 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r2 = relationship_scores(t | {"sentiment_trend_90d": np.zeros(500)}, loyalty=custom)
    np.testing.assert_allclose(r2.loyalty, 100 * np.clip((np.arange(500.0) % 12) / 10, 0, 1))
    with pytest.raises(ValueError, match="none of the attention columns"):
        relationship_scores({"x": [1.0]}, loyalty=[{"name": "x", "good": 1, "bad": 0}])


def test_quadrants():
    loyalty = np.array([80, 80, 20, 20, 50, np.nan])
    attention = np.array([80, 20, 80, 20, 50, 10])
    value = np.array([100, 50, 20, 5, 1, 7])
    q = quadrants(loyalty, attention, value)
    assert q.labels.tolist() == [
        "both high",
        "loyal but neglected",
        "courted but cool",
        "both low",
        "both high",
        "unknown",
    ]
    table = q.table.set_index("quadrant")
    assert list(table.index[:4]) == list(QUADRANTS)
    assert table.loc["both high", "customers"] == 2
    assert table.loc["both high", "value"] == 101
    assert table.loc["loyal but neglected", "value_share"] == pytest.approx(50 / 183)
    assert table["customers"].sum() == 6
    q2 = quadrants(loyalty[:5], attention[:5], threshold=60)
    assert q2.labels[4] == "both low" and "unknown" not in set(q2.table["quadrant"])


def test_plot_quadrants():
    fig = plot_quadrants([80, 20, 90], [70, 30, 10], value=[1.0, 4.0, 0.0])
    assert [tr.name for tr in fig.data] == [
        "both high (1)", "loyal but neglected (1)", "courted but cool (0)", "both low (1)"
    ]
    assert fig.data[0].x == (80.0,) and fig.data[3].y == (30.0,)


def test_trend_against_earlier_snapshots():
    ids_now = np.array(["c3", "c1", "c2", "c9"])
    now = np.array([50.0, 70.0, 20.0, 40.0])
    d = score_trend(ids_now, now, {30: (np.array(["c1", "c2", "c3"]), np.array([60.0, 25.0, 50.0])),
                                   90: (np.array(["c2"]), np.array([10.0]))})
    np.testing.assert_allclose(d[30], [0.0, 10.0, -5.0, np.nan])
    np.testing.assert_allclose(d[90], [np.nan, np.nan, 10.0, np.nan])
    np.testing.assert_allclose(align_previous([1, 2], [], []), [np.nan, np.nan])
    with pytest.raises(ValueError, match="unique"):
        align_previous([1], [1, 1], [0.0, 1.0])
