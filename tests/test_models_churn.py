"""DefectionModel on simulated snapshots with planted drivers, and the backtest."""

from __future__ import annotations

import warnings
from datetime import date, timedelta

import numpy as np
import pytest

from custdyn.errors import DataWarning, InsufficientDataError, NotFittedError
from custdyn.models import metrics as M
from custdyn.models.churn import (
    DefectionModel,
    Reason,
    Snapshot,
    backtest,
    plot_calibration,
    plot_roc,
)

pytest.importorskip("lightgbm")

NAMES = ["days_since_last_purchase", "unanswered_share", "slow_replies", "orders_90d", "n1", "n2", "n3", "n4"]
DRIVERS = {"days_since_last_purchase", "unanswered_share", "slow_replies"}
FAST = {"n_estimators": 120, "learning_rate": 0.08}


def simulate(n, seed, shift=0.0):
    """Defection from planted drivers: recency, unanswered messages (missing = none sent) and
    slow replies, with an interaction; ``orders_90d`` is correlated with recency only."""
    rng = np.random.default_rng(seed)
    recency = rng.exponential(60, n)
    unanswered = rng.beta(1, 4, n)
    unanswered[rng.random(n) < 0.2] = np.nan
    slow = rng.poisson(1.0, n).astype(float)
    orders = rng.poisson(3 * np.exp(-recency / 90))
    noise = rng.normal(size=(n, 4))
    u = np.nan_to_num(unanswered, nan=0.0)
    logit = -3.0 + 0.025 * recency + 4.0 * u + 0.7 * slow + 1.0 * (slow >= 2) * (recency > 60) + shift
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    X = np.column_stack([recency, unanswered, slow, orders, noise])
    return X, y


@pytest.fixture(scope="module")
def fitted():
    Xtr, ytr = simulate(3000, 1)
    Xte, yte = simulate(3000, 2)
    model = DefectionModel(**FAST).fit(Xtr, ytr, feature_names=NAMES)
    return model, Xte, yte


def test_beats_the_single_feature_baseline_and_is_calibrated(fitted):
    model, X, y = fitted
    p = model.predict_proba(X)
    assert p.shape == (len(y),) and np.all((p > 0) & (p < 1))
    auc, base_auc = M.roc_auc(y, p), M.roc_auc(y, X[:, 0])
    assert auc > 0.8
    assert auc > base_auc + 0.05
    assert M.top_decile_lift(y, p) > M.top_decile_lift(y, X[:, 0])
    assert M.expected_calibration_error(y, p) < 0.04
    # calibrated: the mean prediction matches the defection rate
    assert p.mean() == pytest.approx(y.mean(), abs=0.03)
    assert M.brier_score(y, p) < M.brier_score(y, np.full_like(p, y.mean()))
    assert model.calibration_method_ == "isotonic"
    assert 0.75 < model.cv_roc_auc_ < 0.95
    table = model.summary()
    assert set(table.index[:3]) == DRIVERS
    assert table["importance"].sum() == pytest.approx(1.0)
    assert table.attrs["calibration"] == "isotonic"


def test_contributions_sum_to_the_log_odds(fitted):
    model, X, _ = fitted
    c = model.contributions(X[:200])
    assert c.shape == (200, len(NAMES) + 1)
    np.testing.assert_allclose(c.sum(axis=1), model.predict_raw(X[:200]), rtol=1e-6, atol=1e-6)


def test_reasons_recover_the_planted_drivers(fitted):
    model, X, _ = fitted
    c = model.contributions(X)[:, :-1]
    strength = dict(zip(model.features_used_, np.abs(c).mean(axis=0), strict=True))
    top3 = set(sorted(strength, key=strength.get, reverse=True)[:3])
    assert top3 == DRIVERS
    p = model.predict_proba(X)
    risky = np.argsort(-p)[:300]
    reasons = model.reasons(X[risky], top=3)
    assert all(1 <= len(r) <= 3 for r in reasons)
    first = [r[0].feature for r in reasons]
    assert np.mean([f in DRIVERS for f in first]) > 0.9
    r0 = reasons[0][0]
    assert isinstance(r0, Reason) and r0.contribution > 0
    j = NAMES.index(r0.feature)
    assert r0.value == pytest.approx(X[risky[0], j]) or (np.isnan(r0.value) and np.isnan(X[risky[0], j]))
    # contributions are listed largest first; "negative" lists the protective ones
    for row in reasons:
        cs = [r.contribution for r in row]
        assert cs == sorted(cs, reverse=True)
    safe = model.reasons(X[np.argsort(p)[:50]], top=2, sign="negative")
    assert all(r.contribution < 0 for row in safe for r in row)
    assert len(model.reasons(X[:5], top=4, sign="any")[0]) == 4


def test_deterministic(fitted):
    model, X, _ = fitted
    Xtr, ytr = simulate(3000, 1)
    again = DefectionModel(**FAST).fit(Xtr, ytr, feature_names=NAMES)
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))


def test_dataframe_input_and_column_order(fitted):
    pd = pytest.importorskip("pandas")
    model, X, _ = fitted
    df = pd.DataFrame(X, columns=NAMES)
    np.testing.assert_allclose(model.predict_proba(df[NAMES[::-1]]), model.predict_proba(X))
    pa = pytest.importorskip("pyarrow")
    table = pa.table({n: X[:, j] for j, n in enumerate(NAMES)})
    np.testing.assert_allclose(model.predict_proba(table), model.predict_proba(X))
    with pytest.raises(ValueError, match="lacks the fitted features"):
        model.predict_proba(df.drop(columns=["slow_replies"]))
    with pytest.raises(ValueError, match="columns"):
        model.predict_proba(X[:, :3])


def test_uninformative_columns_dropped_with_warning():
    X, y = simulate(600, 3)
    X = np.column_stack([X[:, :3], np.full(600, 7.0), np.full(600, np.nan)])
    names = NAMES[:3] + ["constant", "empty"]
    with pytest.warns(DataWarning, match=r"constant or all missing.*'constant', 'empty'"):
        m = DefectionModel(**FAST).fit(X, y, feature_names=names)
    assert m.dropped_features_ == ["constant", "empty"]
    assert m.features_used_ == NAMES[:3]
    assert m.calibration_method_ == "sigmoid"  # under 1,000 rows
    assert {r.feature for row in m.reasons(X[:50], sign="any") for r in row} <= set(NAMES[:3])
    assert M.roc_auc(y, m.predict_proba(X)) > 0.7


def test_thin_data_raises_a_catchable_error():
    X, y = simulate(600, 4)
    with pytest.raises(InsufficientDataError, match="too few"):
        DefectionModel().fit(X[:49], y[:49])
    with pytest.raises(InsufficientDataError, match="both outcomes"):
        DefectionModel().fit(X[:100], np.zeros(100))
    with pytest.raises(ValueError):  # InsufficientDataError is also a ValueError
        DefectionModel().fit(X[:100], np.r_[np.ones(2), np.zeros(98)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(InsufficientDataError, match="no usable feature"):
            DefectionModel().fit(np.ones((100, 2)), y[:100])
    with pytest.raises(NotFittedError):
        DefectionModel().predict_proba(X)
    with pytest.raises(ValueError, match="calibration"):
        DefectionModel(calibration="beta").fit(X, y)
    with pytest.raises(ValueError, match="0 .stayed. and 1"):
        DefectionModel().fit(X, y * 2)


def test_calibrators_recover_a_known_link(rng):
    from custdyn.models.churn import _Isotonic, _Platt

    s = rng.normal(0, 1.5, 20000)
    truth = 1 / (1 + np.exp(-(2.0 * s - 1.0)))
    y = (rng.random(s.size) < truth).astype(float)
    w = np.ones_like(s)
    platt = _Platt(s, y, w)
    assert platt.a == pytest.approx(2.0, abs=0.1) and platt.b == pytest.approx(-1.0, abs=0.1)
    iso = _Isotonic(s, y, w)
    grid = np.quantile(s, np.linspace(0.05, 0.95, 19))
    np.testing.assert_allclose(iso(grid), 1 / (1 + np.exp(-(2.0 * grid - 1.0))), atol=0.05)
    assert np.all(np.diff(iso.x) > 0) and np.all(np.diff(iso.y) > 0)
    # strictly increasing between the first and last block centre: no ties among distinct scores
    inner = np.sort(s[(s > iso.x[0]) & (s < iso.x[-1])])
    assert np.all(np.diff(iso(inner)) >= 0)
    assert len(np.unique(iso(inner))) == len(np.unique(inner))


def test_params_round_trip():
    m = DefectionModel(n_estimators=50, n_jobs=1)
    assert m.get_params()["n_estimators"] == 50
    assert DefectionModel(**m.get_params()).get_params() == m.get_params()
    assert m.set_params(learning_rate=0.2) is m and m.learning_rate == 0.2
    with pytest.raises(ValueError, match="unknown setting"):
        m.set_params(depth=3)
    assert "not fitted" in repr(m)


def test_backtest_against_baselines():
    snaps = []
    start = date(2024, 1, 1)
    for k in range(4):
        X, y = simulate(1500, 10 + k, shift=0.1 * k)
        p_alive = 1 / (1 + np.exp(0.02 * (X[:, 0] - 60)))  # a recency-only survival proxy
        snaps.append(
            Snapshot(
                start + timedelta(days=30 * k),
                X,
                y,
                {"days_since_last_purchase": X[:, 0], "1 - p_alive": 1 - p_alive},
            )
        )
    res = backtest(snaps, DefectionModel(**FAST), horizon=timedelta(days=60), feature_names=NAMES)
    table = res.metrics.set_index("scorer")
    assert list(table.index) == ["model", "days_since_last_purchase", "1 - p_alive"]
    # only the first two snapshots had known outcomes 90 days in
    assert table.loc["model", "n_train"] == 3000
    for base in ("days_since_last_purchase", "1 - p_alive"):
        assert table.loc["model", "roc_auc"] > table.loc[base, "roc_auc"]
        assert table.loc["model", "lift_top_decile"] > table.loc[base, "lift_top_decile"]
    assert np.isnan(table.loc["days_since_last_purchase", "brier"])
    assert table.loc["model", "ece"] < 0.06
    assert set(res.calibration) == {"model", "1 - p_alive"}
    fig = res.plot_calibration()
    assert len(fig.data) == 3 and fig.data[1].x == tuple(res.calibration["model"].mean_predicted)
    roc = res.plot_roc()
    assert len(roc.data) == 4 and "AUC" in roc.data[1].name

    # the same backtest on Arrow tables (as the features room returns them)
    pa = pytest.importorskip("pyarrow")
    arrow = [
        Snapshot(s.as_of, pa.table({n: s.X[:, j] for j, n in enumerate(NAMES)}), s.y, s.baselines) for s in snaps
    ]
    res_arrow = backtest(arrow, DefectionModel(**FAST), horizon=timedelta(days=60))
    np.testing.assert_allclose(res_arrow.scores["model"], res.scores["model"])
    assert res_arrow.model.feature_names_in_ == NAMES

    rolling = backtest(snaps, DefectionModel(**FAST), rolling=True, feature_names=NAMES)
    assert rolling.tested == [s.as_of for s in snaps[1:]]
    assert len(rolling.metrics) == 3 * 3
    with pytest.raises(ValueError, match="known outcome"):
        backtest(snaps[:2], DefectionModel(**FAST), horizon=timedelta(days=60))


def test_plot_helpers_take_plain_inputs(rng):
    y = (rng.random(300) < 0.3).astype(int)
    p = np.clip(0.3 + 0.3 * (y - 0.3) + 0.1 * rng.normal(size=300), 0, 1)
    fig = plot_calibration(M.calibration_curve(y, p))
    assert fig.data[1].name.startswith("model (ECE ")
    fig = plot_roc(y, {"p": p})
    fpr, tpr, _ = M.roc_curve(y, p)
    assert fig.data[1].y == tuple(tpr)


def _purchase_world(n, seed):
    """Customers buy as Poisson processes and leave at a rate raised by slow replies and
    unanswered messages (planted); order problems are a noisy sign of slow service."""
    rng = np.random.default_rng(seed)
    birth = rng.uniform(0, 300, n)
    lam = rng.gamma(1.5, 1 / 45, n)  # purchases per day while active
    slow = (rng.random(n) < 0.3).astype(float)
    unanswered = rng.beta(1, 5, n)
    issues = rng.poisson(0.5 + 1.5 * slow, n).astype(float)
    mu = rng.gamma(2.0, 1 / 3000, n) * np.exp(1.0 * slow + 3.0 * unanswered)  # leaving, per day
    end = np.minimum(birth + rng.exponential(1 / mu), 900.0)
    k = rng.poisson(lam * (end - birth))
    buys = [np.sort(np.r_[b, rng.uniform(b, e, m)]) for b, e, m in zip(birth, end, k, strict=True)]
    return slow, unanswered, issues, buys


def _world_snapshot(world, as_of, horizon=90):
    """Active customers (a purchase in the last 180 days) at as_of; label: no purchase in the
    next ``horizon`` days. Features include BG/NBD's P(alive) and expected purchases."""
    from custdyn.errors import ConvergenceWarning
    from custdyn.models import BetaGeo

    slow, unanswered, issues, buys = world
    rows = [i for i, p in enumerate(buys) if p[0] <= as_of and p[p <= as_of].max() >= as_of - 180]
    past = [buys[i][buys[i] <= as_of] for i in rows]
    freq = np.array([len(p) - 1 for p in past], dtype=float)
    first = np.array([p[0] for p in past])
    last = np.array([p[-1] for p in past])
    y = np.array([not np.any((buys[i] > as_of) & (buys[i] <= as_of + horizon)) for i in rows], dtype=float)
    rec_w, age_w = (last - first) / 7, (as_of - first) / 7
    with warnings.catch_warnings():  # the customer-base model's own diagnostics are not under test here
        warnings.simplefilter("ignore", ConvergenceWarning)
        bg = BetaGeo().fit(freq, rec_w, age_w)
    p_alive = bg.p_alive(freq, rec_w, age_w)
    expected = bg.conditional_expected_purchases(horizon / 7, freq, rec_w, age_w)
    idx = np.array(rows)
    X = np.column_stack(
        [as_of - last, freq, as_of - first, p_alive, expected, slow[idx], unanswered[idx], issues[idx]]
    )
    return Snapshot(as_of, X, y, {"days_since_last_purchase": as_of - last, "1 - p_alive": 1 - p_alive})


@pytest.mark.slow
def test_backtest_in_a_purchase_world_beats_recency_and_p_alive():
    names = [
        "days_since_last_purchase", "frequency", "tenure_days", "p_alive", "expected_purchases_90d",
        "slow_reply", "unanswered_share", "order_issues",
    ]
    world = _purchase_world(4000, 7)
    snaps = [_world_snapshot(world, a) for a in (360, 450, 540, 630)]
    res = backtest(snaps, DefectionModel(n_estimators=200), horizon=90, feature_names=names)
    t = res.metrics.set_index("scorer")
    assert t.loc["model", "n_train"] == sum(len(s.y) for s in snaps[:3])
    assert t.loc["model", "roc_auc"] > 0.8
    for base in ("days_since_last_purchase", "1 - p_alive"):
        assert t.loc["model", "roc_auc"] > t.loc[base, "roc_auc"] + 0.02
        assert t.loc["model", "lift_top_decile"] > t.loc[base, "lift_top_decile"]
        assert t.loc["model", "pr_auc"] > t.loc[base, "pr_auc"]
    assert t.loc["model", "ece"] < 0.05
    assert t.loc["model", "brier"] < t.loc["1 - p_alive", "brier"]
    # the planted relationship driver shows up among the reasons of the riskiest customers
    X = snaps[-1].X
    risky = np.argsort(-res.scores["model"])[:200]
    features = {r.feature for row in res.model.reasons(X[risky], top=3) for r in row}
    assert "unanswered_share" in features
