"""Tree contributions per distinct decision path against LightGBM's own pred_contrib: bit for
bit, for every missing-value rule, tree size and the values LightGBM reads specially."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

lgb = pytest.importorskip("lightgbm")

import custdyn.models._tree_contrib as tc  # noqa: E402
import custdyn.models.churn as churn  # noqa: E402
from custdyn.models.churn import DefectionModel  # noqa: E402

# how LightGBM is told each missing-value rule, and the name its model dump gives the rule
MISSING = {"NaN": {}, "None": {"use_missing": False}, "Zero": {"zero_as_missing": True}}


def data(seed: int, n: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Features with NaN, exact zeros, negative zeros, values LightGBM reads as zero and
    repeated (rounded) values; a label driven by some of them and by missingness."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, 0] = np.round(X[:, 0] * 2)  # few distinct values: ties with the thresholds' sides
    X[rng.random((n, p)) < 0.15] = np.nan
    X[rng.random((n, p)) < 0.15] = 0.0
    X[rng.random((n, p)) < 0.02] = -0.0
    X[rng.random((n, p)) < 0.02] = 1e-40  # within LightGBM's zero threshold: read as 0
    score = (np.nan_to_num(X[:, 0]) + np.where(np.isnan(X[:, 1]), 1.5, X[:, 1])
             - (X[:, 2] == 0) + rng.normal(size=n))
    return X, (score > 0).astype(float)


def train(X: np.ndarray, y: np.ndarray, leaves: int, rounds: int, **extra) -> lgb.Booster:
    params = dict(objective="binary", num_leaves=leaves, min_data_in_leaf=5, verbosity=-1,
                  num_threads=1, seed=0, **extra)
    return lgb.train(params, lgb.Dataset(X, y), rounds)


def with_thresholds(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    """X with some values set exactly to split thresholds (x == threshold goes left)."""
    X = X.copy()
    tables = tc.TreeTables.from_booster(booster)
    assert tables is not None
    rng = np.random.default_rng(1)
    for tree in tables.trees[:10]:
        for f, thr in zip(tree.feature.tolist(), tree.threshold.tolist(), strict=True):
            rows = rng.choice(X.shape[0], 5, replace=False)
            X[rows, f] = thr
    return X


def exact(booster: lgb.Booster, X: np.ndarray, **kw) -> np.ndarray:
    """tree_contributions on its own route: LightGBM's answer (the fallback) is not taken."""
    def refuse(*a, **k):
        raise AssertionError("fell back to pred_contrib")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tc, "_plain", refuse)
        return tc.tree_contributions(booster, X, **kw)


def leaves_from_codes(tables: tc.TreeTables, X: np.ndarray) -> np.ndarray:
    """The leaf each row reaches in each tree, following the reproduced decisions."""
    columns = tc._Columns(np.ascontiguousarray(X, dtype=float), tables.used_features)
    out = np.zeros((X.shape[0], len(tables.trees)), dtype=np.int64)
    for t, tree in enumerate(tables.trees):
        if tree.root < 0:
            continue
        code = tables.codes(columns, t).astype(np.int64)
        node = np.zeros(X.shape[0], dtype=np.int64)
        while (node >= 0).any():
            inner = node >= 0
            k = node[inner]
            left = ((code[inner] >> k) & 1).astype(bool)
            node[inner] = np.where(left, tree.left[k], tree.right[k])
        out[:, t] = ~node
    return out


@pytest.mark.parametrize("missing", list(MISSING))
@pytest.mark.parametrize("leaves", [2, 4, 15, 40])
def test_bit_for_bit_pred_contrib_for_each_missing_rule_and_tree_size(missing, leaves):
    X, y = data(seed=leaves, n=3000, p=7)
    booster = train(X, y, leaves, rounds=25, **MISSING[missing])
    tables = tc.TreeTables.from_booster(booster)
    assert tables is not None
    kinds = {m for t in tables.trees for m in t.missing.tolist()}
    assert kinds == {tc._MISSING[missing]}  # the rule asked for is the one exercised
    Xt = with_thresholds(booster, X)
    # the reproduced decisions route every row to LightGBM's own leaf
    assert np.array_equal(leaves_from_codes(tables, Xt), booster.predict(Xt, pred_leaf=True))
    want = booster.predict(Xt, pred_contrib=True)
    got = exact(booster, Xt)
    assert got.shape == want.shape
    assert np.array_equal(got, want)  # bit for bit, the expected value too
    assert np.isclose(got.sum(axis=1), booster.predict(Xt, raw_score=True)).all()


def test_each_row_shares_its_path_with_many_others():
    """The premise: far fewer distinct decision codes per tree than rows."""
    X, y = data(seed=5, n=20_000, p=6)
    booster = train(X, y, 15, rounds=10)
    tables = tc.TreeTables.from_booster(booster)
    columns = tc._Columns(X, tables.used_features)
    for t, tree in enumerate(tables.trees):
        rep, group = tc._group(tables.codes(columns, t), tree.feature.shape[0])
        assert rep.shape[0] < 2 ** tree.feature.shape[0] and rep.shape[0] < 2000
        assert np.array_equal(tables.codes(columns, t)[rep][group], tables.codes(columns, t))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 400), p=st.integers(3, 8),
       leaves=st.integers(2, 24), rounds=st.integers(1, 12),
       missing=st.sampled_from(list(MISSING)))
def test_property_equal_to_pred_contrib(seed, n, p, leaves, rounds, missing):
    X, _ = data(seed, max(n, 60), p)
    rng = np.random.default_rng(seed)
    y = (rng.random(X.shape[0]) < 0.4).astype(float)
    y[:2] = [0.0, 1.0]
    booster = train(X, y, leaves, rounds, **MISSING[missing])
    Xq = data(seed + 1, n, p)[0]  # other rows than the training ones
    assert np.array_equal(exact(booster, Xq),
                          booster.predict(Xq, pred_contrib=True).reshape(n, -1))


def test_requested_columns_in_order_then_the_expected_value():
    X, y = data(seed=2, n=1500, p=5)
    booster = train(X, y, 8, rounds=15)
    want = booster.predict(X, pred_contrib=True)
    got = exact(booster, X, features=[3, 0])
    assert np.array_equal(got, want[:, [3, 0, 5]])


def test_regression_and_constant_trees():
    """A regression booster, with trees that cannot split (a single leaf) among them."""
    X, _ = data(seed=4, n=800, p=4)
    rng = np.random.default_rng(4)
    y = np.nan_to_num(X[:, 0]) + 0.1 * rng.normal(size=800)
    booster = lgb.train(dict(objective="regression", num_leaves=6, verbosity=-1,
                             min_data_in_leaf=5, num_threads=1), lgb.Dataset(X, y), 10)
    stump = lgb.train(dict(objective="regression", num_leaves=6, verbosity=-1,
                           min_data_in_leaf=10_000, num_threads=1), lgb.Dataset(X, y), 3)
    for b in (booster, stump):
        assert np.array_equal(exact(b, X), b.predict(X, pred_contrib=True))


def test_categorical_splits_fall_back_to_pred_contrib():
    rng = np.random.default_rng(6)
    n = 2000
    cat = rng.integers(0, 6, n).astype(float)
    X = np.column_stack([cat, rng.normal(size=n)])
    y = (np.isin(cat, [1, 4]) ^ (rng.random(n) < 0.1)).astype(float)
    booster = lgb.train(dict(objective="binary", num_leaves=6, verbosity=-1, num_threads=1,
                             min_data_per_group=5, cat_smooth=1),
                        lgb.Dataset(X, y, categorical_feature=[0]), 10)
    dump = booster.dump_model()
    assert "==" in str(dump["tree_info"])  # the model has categorical splits
    assert tc.TreeTables.from_booster(booster) is None
    assert np.array_equal(tc.tree_contributions(booster, X), booster.predict(X, pred_contrib=True))


def test_linear_trees_get_lightgbm_s_own_answer():
    """Not reproduced: LightGBM is asked, and it refuses them itself."""
    X, y = data(seed=7, n=1000, p=3)
    X = np.nan_to_num(X)
    booster = lgb.train(dict(objective="regression", linear_tree=True, num_leaves=4,
                             verbosity=-1, num_threads=1), lgb.Dataset(X, X[:, 0] * 2 + y), 5)
    assert tc.TreeTables.from_booster(booster) is None
    with pytest.raises(lgb.basic.LightGBMError, match="linear trees"):
        booster.predict(X, pred_contrib=True)
    with pytest.raises(lgb.basic.LightGBMError, match="linear trees"):
        tc.tree_contributions(booster, X)


def test_several_outputs_are_refused():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(300, 3))
    booster = lgb.train(dict(objective="multiclass", num_class=3, verbosity=-1, num_threads=1),
                        lgb.Dataset(X, rng.integers(0, 3, 300)), 3)
    with pytest.raises(ValueError, match="single-output"):
        tc.tree_contributions(booster, X)


def test_a_lightgbm_that_adds_up_differently_gets_its_own_answer(monkeypatch):
    """The rows checked on every call catch a mismatch; LightGBM's answer is returned."""
    X, y = data(seed=9, n=1000, p=4)
    booster = train(X, y, 8, rounds=10)
    real = tc._unwound_sums
    monkeypatch.setattr(tc, "_unwound_sums", lambda path, w: real(path, w) * (1 + 1e-12))
    with pytest.raises(AssertionError, match="fell back"):
        exact(booster, X)
    assert np.array_equal(tc.tree_contributions(booster, X), booster.predict(X, pred_contrib=True))


def test_tables_follow_a_booster_that_grows():
    X, y = data(seed=10, n=1000, p=4)
    booster = lgb.train(dict(objective="binary", num_leaves=5, verbosity=-1, num_threads=1),
                        lgb.Dataset(X, y), 3, keep_training_booster=True)
    assert len(tc.tables_of(booster).trees) == 3
    booster.update()
    assert len(tc.tables_of(booster).trees) == 4
    assert np.array_equal(exact(booster, X), booster.predict(X, pred_contrib=True))


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Defection driven by recency, an unanswered share (missing: nothing sent) and slow
    replies; two features of noise and one constant (dropped by the model)."""
    rng = np.random.default_rng(seed)
    recency = rng.exponential(60, n)
    unanswered = np.where(rng.random(n) < 0.3, np.nan, rng.beta(2, 5, n))
    slow = np.round(rng.gamma(2, 2, n))
    noise = rng.normal(size=(n, 2))
    z = 0.02 * recency + 3 * np.nan_to_num(unanswered, nan=0.5) + 0.2 * slow - 3
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    X = np.column_stack([recency, unanswered, slow, noise, np.ones(n)])
    return X, y


@pytest.mark.parametrize("sign", ["positive", "negative", "any"])
def test_top_reasons_identical_to_pred_contrib_path(sign, monkeypatch):
    X, y = simulate(6000, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DefectionModel(n_estimators=60).fit(X, y)
    assert X.shape[0] >= churn._PATHS_FROM_ROWS  # the per-path route is taken
    monkeypatch.setattr(tc, "_plain", lambda *a: pytest.fail("fell back to pred_contrib"))
    calls = []
    real = churn.tree_contributions
    monkeypatch.setattr(churn, "tree_contributions",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    for top in (1, 3, 8):
        new = model.top_reasons(X, top=top, sign=sign)
        monkeypatch.setattr(churn, "_PATHS_FROM_ROWS", 10**12)
        old = model.top_reasons(X, top=top, sign=sign)  # pred_contrib on every row
        monkeypatch.setattr(churn, "_PATHS_FROM_ROWS", 2_000)
        assert new[0].shape == old[0].shape == (X.shape[0], min(top, len(model.features_used_)))
        assert np.array_equal(new[0], old[0])
        assert np.array_equal(new[1], old[1], equal_nan=True)
        assert np.array_equal(new[2], old[2], equal_nan=True)
        assert (new[0] >= 0).any()
        if top == 8 and sign != "any":  # more asked than push that way: -1 and NaN
            assert (new[0] == -1).any() and np.isnan(new[2][new[0] == -1]).all()
    assert len(calls) == 3
    # reasons() shares the route; NaN values compare equal as text
    new_reasons = repr(model.reasons(X, top=2, sign=sign))
    monkeypatch.setattr(churn, "_PATHS_FROM_ROWS", 10**12)
    assert new_reasons == repr(model.reasons(X, top=2, sign=sign))
    assert len(calls) == 4


@pytest.mark.parametrize("jobs", [2, 3])
def test_threads_over_row_blocks_give_the_same_bits(jobs, monkeypatch):
    monkeypatch.setattr(tc, "_MIN_ROWS_PER_JOB", 300)  # blocks of a few hundred rows
    X, y = data(seed=12, n=1000, p=5)
    booster = train(X, y, 12, rounds=20)
    got = exact(booster, X, n_jobs=jobs)
    assert np.array_equal(got, booster.predict(X, pred_contrib=True))
    assert np.array_equal(got, exact(booster, X, n_jobs=1))
