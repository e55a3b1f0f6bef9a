"""Risk-score metrics against scikit-learn and by their defining properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from custdyn.models import metrics as M

sk_metrics = pytest.importorskip("sklearn.metrics")
sk_calibration = pytest.importorskip("sklearn.calibration")


def _data(rng, n=800, ties=True):
    y = (rng.random(n) < 0.25).astype(int)
    s = rng.random(n) + 0.6 * y
    if ties:
        s = np.round(s, 1)
    return y, s, rng.random(n) * 3


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_ranking_metrics_match_sklearn(rng, ties, weighted):
    y, s, w = _data(rng, ties=ties)
    w = w if weighted else None
    assert M.roc_auc(y, s, w) == pytest.approx(sk_metrics.roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert M.pr_auc(y, s, w) == pytest.approx(
        sk_metrics.average_precision_score(y, s, sample_weight=w), abs=1e-12
    )
    fpr, tpr, thr = M.roc_curve(y, s, w)
    sfpr, stpr, sthr = sk_metrics.roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sfpr, atol=1e-12)
    np.testing.assert_allclose(tpr, stpr, atol=1e-12)
    np.testing.assert_allclose(thr[1:], sthr[1:])


def test_brier_and_calibration_match_sklearn(rng):
    y, s, w = _data(rng)
    p = np.clip(s / 1.6, 0, 1)
    assert M.brier_score(y, p) == pytest.approx(sk_metrics.brier_score_loss(y, p), abs=1e-12)
    assert M.brier_score(y, p, w) == pytest.approx(sk_metrics.brier_score_loss(y, p, sample_weight=w), abs=1e-12)
    for strategy, bins in [("uniform", 10), ("uniform", 7), ("quantile", 5)]:
        c = M.calibration_curve(y, p, bins, strategy)
        prob_true, prob_pred = sk_calibration.calibration_curve(y, p, n_bins=bins, strategy=strategy)
        np.testing.assert_allclose(c.observed, prob_true, atol=1e-12)
        np.testing.assert_allclose(c.mean_predicted, prob_pred, atol=1e-12)
        assert c.count.sum() == len(y)
        ece = np.sum(c.count * np.abs(prob_true - prob_pred)) / len(y)
        assert M.expected_calibration_error(y, p, bins, strategy) == pytest.approx(ece, abs=1e-12)
    assert list(c.to_frame().columns) == ["lower", "upper", "mean_predicted", "observed", "count"]


def test_lift_by_hand():
    y = np.zeros(100, dtype=int)
    y[[0, 1, 3, 4, 6, 8]] = 1  # 6 of the 10 highest-scored rows defected
    y[np.arange(20, 90, 5)] = 1  # 14 more further down: base rate 0.2
    s = np.arange(100, 0, -1)  # the first rows score highest
    assert M.lift(y, s, 0.1) == pytest.approx(0.6 / 0.2)
    assert M.top_decile_lift(y, s) == M.lift(y, s, 0.1)
    assert M.lift(y, s, 1.0) == pytest.approx(1.0)
    # with every score tied the expected lift is 1
    assert M.lift(y, np.zeros(100), 0.1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="fraction"):
        M.lift(y, s, 0.0)


def test_calibrated_probabilities_have_small_ece(rng):
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert M.expected_calibration_error(y, p) < 0.02
    assert M.expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.15


def test_score_report_marks_non_probabilities(rng):
    y, s, _ = _data(rng)
    rep = M.score_report(y, s * 100)
    assert np.isnan(rep["brier"]) and np.isnan(rep["ece"])
    assert rep["roc_auc"] == pytest.approx(M.roc_auc(y, s))
    assert rep["base_rate"] == pytest.approx(y.mean())
    rep_p = M.score_report(y, s / 2)
    assert rep_p["brier"] == pytest.approx(M.brier_score(y, s / 2))


def test_bad_inputs():
    with pytest.raises(ValueError, match="0 and 1"):
        M.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        M.roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="match"):
        M.roc_auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="probabilities"):
        M.brier_score([0, 1], [0.1, 1.2])
    assert np.isnan(M.roc_auc([1, 1], [0.1, 0.2]))


labels = st.lists(st.integers(0, 1), min_size=2, max_size=60)


@given(labels, st.integers(0, 2**32 - 1))
def test_properties_of_ranking_metrics(ys, seed):
    y = np.array(ys)
    assume(0 < y.sum() < len(y))
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 6, len(y)).astype(float)  # plenty of ties
    auc = M.roc_auc(y, s)
    # invariance to strictly increasing transforms
    assert M.roc_auc(y, np.exp(s) * 3 - 1) == pytest.approx(auc, abs=1e-12)
    assert M.pr_auc(y, s**3 + 2) == pytest.approx(M.pr_auc(y, s), abs=1e-12)
    assert M.lift(y, 2 * s + 7, 0.3) == pytest.approx(M.lift(y, s, 0.3), abs=1e-12)
    # reversing the ranking mirrors the AUC; row order does not matter
    assert M.roc_auc(y, -s) == pytest.approx(1 - auc, abs=1e-12)
    perm = rng.permutation(len(y))
    assert M.roc_auc(y[perm], s[perm]) == pytest.approx(auc, abs=1e-12)
    assert M.lift(y[perm], s[perm], 0.2) == pytest.approx(M.lift(y, s, 0.2), abs=1e-12)
    # a perfect ranking: AUC 1, AP 1, lift at the base rate = 1 / base rate
    assert M.roc_auc(y, y + 0.0) == 1.0
    assert M.pr_auc(y, y + 0.0) == pytest.approx(1.0)
    base = y.mean()
    assert M.lift(y, y + 0.0, base) == pytest.approx(1 / base)
    # all scores tied: AUC one half
    assert M.roc_auc(y, np.zeros(len(y))) == pytest.approx(0.5)
    # integer weights equal repeated rows
    w = rng.integers(1, 4, len(y))
    rep = np.repeat(np.arange(len(y)), w)
    assert M.roc_auc(y, s, w) == pytest.approx(M.roc_auc(y[rep], s[rep]), abs=1e-12)
    assert M.pr_auc(y, s, w) == pytest.approx(M.pr_auc(y[rep], s[rep]), abs=1e-12)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=50), st.integers(0, 2**32 - 1))
def test_properties_of_probability_metrics(ps, seed):
    p = np.array(ps)
    y = (np.random.default_rng(seed).random(len(p)) < 0.5).astype(int)
    b = M.brier_score(y, p)
    assert 0 <= b <= 1
    assert M.brier_score(y, y + 0.0) == 0.0
    c = M.calibration_curve(y, p, 10)
    assert c.count.sum() == len(p)
    assert np.all((c.mean_predicted >= c.lower - 1e-12) & (c.mean_predicted <= c.upper + 1e-12))
    assert 0 <= c.expected_calibration_error <= 1
