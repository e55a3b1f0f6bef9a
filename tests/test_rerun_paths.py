"""The re-run's faster paths give what the straightforward computations give: on the demo
world, each one against the query or loop it replaced (kept here as the reference)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from custdyn.store import Workspace

pytestmark = pytest.mark.slow

# the leaving-phase query as it was written first: one window over the log, calendar
# arithmetic on zoned timestamps, every text signal parsed
REFERENCE_LEAVING_SQL = """
WITH eng AS (SELECT engine FROM text_signals GROUP BY engine
             ORDER BY count(*) DESC, engine LIMIT 1),
ev AS (
  SELECT i.customer_id, i.kind, i.direction, i.thread_id, i.attributes,
         i.occurred_at,
         date_diff('second', i.occurred_at, $at) / 86400.0 AS age,
         s.sentiment_score AS sent, coalesce(s.intent_to_switch, FALSE) AS intent,
         coalesce(json_array_length(s.mentions), 0) > 0 AS mention,
         i.kind IN (SELECT unnest($kinds::VARCHAR[])) AS is_order,
         i.direction = 'inbound' AS inb
  FROM interactions i
  LEFT JOIN text_signals s ON s.interaction_id = i.interaction_id
       AND s.engine = (SELECT engine FROM eng)
  WHERE i.occurred_at < $at AND i.occurred_at >= $at - INTERVAL 730 DAY),
thr AS (
  SELECT customer_id, thread_id, min(age) FILTER (WHERE inb) AS last_in,
         min(age) FILTER (WHERE direction = 'outbound') AS last_out
  FROM ev WHERE thread_id IS NOT NULL AND age <= 90 GROUP BY customer_id, thread_id),
unans AS (
  SELECT customer_id, count(*) AS unanswered_90d FROM thr
  WHERE last_in >= 2 AND (last_out IS NULL OR last_out > last_in) GROUP BY customer_id),
agg AS (
SELECT customer_id,
  count(*) FILTER (WHERE is_order AND age <= 30) AS orders_30d,
  count(*) FILTER (WHERE is_order AND age <= 90) AS orders_90d,
  count(*) FILTER (WHERE is_order AND age > 90 AND age <= 365) AS orders_prev_275d,
  count(*) FILTER (WHERE inb AND kind = 'feedback' AND age <= 30) AS complaints_30d,
  count(*) FILTER (WHERE inb AND kind = 'feedback' AND age <= 90) AS complaints_90d,
  count(*) FILTER (WHERE inb AND kind = 'feedback' AND age > 90 AND age <= 365)
    AS complaints_prev_275d,
  count(*) FILTER (WHERE inb AND kind IN ('support', 'contact') AND age <= 90)
    AS service_messages_90d,
  count(*) FILTER (WHERE inb AND sent < -0.2 AND age <= 30) AS negative_messages_30d,
  count(*) FILTER (WHERE inb AND sent < -0.2 AND age <= 90) AS negative_messages_90d,
  avg(sent) FILTER (WHERE inb AND age <= 30) AS sentiment_30d_recent,
  avg(sent) FILTER (WHERE inb AND age <= 90) AS sentiment_90d_recent,
  avg(sent) FILTER (WHERE inb AND age > 90 AND age <= 365) AS sentiment_prev_275d,
  count(*) FILTER (WHERE inb AND mention AND age <= 30) AS competitor_mentions_30d,
  count(*) FILTER (WHERE inb AND mention AND age <= 90) AS competitor_mentions_90d,
  count(*) FILTER (WHERE inb AND intent AND age <= 90) AS switch_intent_90d,
  min(age) FILTER (WHERE inb AND (mention OR intent)) AS days_since_competitor_talk,
  count(*) FILTER (WHERE kind = 'order_issue' AND age <= 90) AS order_issues_90d,
  count(*) FILTER (WHERE kind = 'return' AND age <= 90) AS returns_90d,
  min(TRY_CAST(json_extract_string(attributes, '$.nps') AS DOUBLE))
    FILTER (WHERE kind = 'survey' AND age <= 180) AS nps_min_180d,
  arg_min(TRY_CAST(json_extract_string(attributes, '$.nps') AS DOUBLE), age)
    FILTER (WHERE kind = 'survey' AND json_extract_string(attributes, '$.nps') IS NOT NULL)
    AS nps_last
FROM ev GROUP BY customer_id)
SELECT agg.*, coalesce(unans.unanswered_90d, 0) AS unanswered_90d
FROM agg LEFT JOIN unans USING (customer_id)
"""

REFERENCE_NO_TEXT = (
    "LEFT JOIN (SELECT NULL::VARCHAR AS interaction_id, NULL::FLOAT AS sentiment_score, "
    "NULL::BOOLEAN AS intent_to_switch, NULL::JSON AS mentions) s "
    "ON s.interaction_id = i.interaction_id")

REFERENCE_LOYALTY_SQL = """SELECT customer_id,
       count(DISTINCT CAST(occurred_at AS DATE)) FILTER (
           WHERE kind IN (SELECT unnest(?::VARCHAR[]))) AS purchase_days,
       count(*) FILTER (WHERE kind IN ('survey', 'feedback')
                        AND direction = 'inbound') AS answered,
       count(*) FILTER (WHERE kind IN ('survey', 'feedback')
                        AND direction = 'outbound') AS asked
FROM interactions WHERE occurred_at >= ? AND occurred_at < ?
GROUP BY customer_id"""

REFERENCE_STAGES_SQL = """SELECT customer_id,
       bool_or(kind = 'cancellation')::DOUBLE AS cancelled,
       max(gap) AS max_gap_days
FROM (SELECT customer_id, kind,
             CASE WHEN kind IN (SELECT unnest(?::VARCHAR[])) THEN
               date_diff('day', lag(occurred_at) OVER (PARTITION BY customer_id,
                 kind IN (SELECT unnest(?::VARCHAR[])) ORDER BY occurred_at),
                 occurred_at) END AS gap
      FROM interactions WHERE occurred_at < ?)
GROUP BY customer_id"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from custdyn.cli import app
    from custdyn.pipeline import enrich

    d = tmp_path_factory.mktemp("rerun") / "demo"
    r = CliRunner().invoke(app, ["demo", str(d), "--customers", "400", "--seed", "11"])
    assert r.exit_code == 0, r.output
    with Workspace.open(d) as ws:
        enrich(ws, "bulk")
    return d


@pytest.fixture(scope="module")
def ws(demo: Path):
    with Workspace.open(demo) as w:
        yield w


@pytest.fixture(scope="module")
def dates(ws):
    """The analysis date, the trend's dates, and a date that is not a midnight."""
    from custdyn.pipeline._common import default_as_of

    as_of = default_as_of(ws)
    return [as_of, as_of - dt.timedelta(days=30), as_of - dt.timedelta(days=90),
            as_of - dt.timedelta(days=200, hours=7, minutes=13, seconds=5)]


def _ids(ws) -> list[str]:
    return [r[0] for r in ws.con.execute(
        "SELECT DISTINCT customer_id FROM interactions ORDER BY 1").fetchall()]


def _same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=0, equal_nan=True, err_msg=k)


def test_the_demo_world_has_what_the_paths_must_handle(ws):
    kinds = {r[0] for r in ws.con.execute("SELECT DISTINCT kind FROM interactions").fetchall()}
    assert {"order", "survey", "feedback", "cancellation"} <= kinds
    n_mentions = ws.con.execute(
        "SELECT count(*) FROM text_signals WHERE json_array_length(mentions) > 0").fetchone()[0]
    n_nps = ws.con.execute("SELECT count(*) FROM interactions WHERE kind = 'survey' AND "
                           "json_extract_string(attributes, '$.nps') IS NOT NULL").fetchone()[0]
    assert n_mentions > 0 and n_nps > 0


@pytest.mark.parametrize("with_text", [True, False])
def test_leaving_features_match_the_reference_query(ws, dates, with_text):
    from custdyn.pipeline._common import _align
    from custdyn.pipeline.risk import leaving_features

    ids = _ids(ws)
    kinds = list(ws.settings.purchase_kinds)
    ws.con.execute("BEGIN TRANSACTION")
    try:
        if not with_text:
            ws.con.execute("DELETE FROM text_signals")
        for at in dates:
            got = leaving_features(ws, at, ids)
            sql = REFERENCE_LEAVING_SQL if with_text else REFERENCE_LEAVING_SQL.replace(
                "LEFT JOIN text_signals s ON s.interaction_id = i.interaction_id\n"
                "       AND s.engine = (SELECT engine FROM eng)", REFERENCE_NO_TEXT)
            ref = _align(ids, ws.con.execute(sql, {"at": at, "kinds": kinds}).to_arrow_table())
            for k in ref:
                if not k.startswith(("sentiment", "nps", "days_since")):
                    ref[k] = np.nan_to_num(ref[k], nan=0.0)
            assert set(got) - set(ref) == {"order_pace_90d", "complaints_change_90d",
                                           "sentiment_change_90d"}
            _same({k: got[k] for k in ref}, ref)
            if with_text and at == dates[0]:  # the demo's signals are there to be seen
                assert np.nansum(got["competitor_mentions_90d"]) > 0
                assert np.isfinite(got["nps_last"]).sum() > 0
                assert np.isfinite(got["days_since_competitor_talk"]).sum() > 0
    finally:
        ws.con.execute("ROLLBACK")


def test_loyalty_counts_of_many_dates_match_one_query_per_date(ws, dates):
    from custdyn.pipeline._common import _align
    from custdyn.pipeline.health import _loyalty_counts

    ids = _ids(ws)
    kinds = list(ws.settings.purchase_kinds)
    got = _loyalty_counts(ws, dates)
    assert list(got) == dates
    for at in dates:
        ref = _align(ids, ws.con.execute(
            REFERENCE_LOYALTY_SQL, [kinds, at - dt.timedelta(days=365), at]).to_arrow_table(),
            fill=0.0)
        _same(_align(ids, got[at], fill=0.0), ref)
        assert ref["purchase_days"].sum() > 0 and ref["answered"].sum() > 0


def test_stage_inputs_match_the_window_query(ws, dates):
    from custdyn.pipeline._common import _align
    from custdyn.pipeline.analysis import _stage_inputs, _stage_tables

    ids = _ids(ws)
    kinds = list(ws.settings.purchase_kinds)
    for at in (dates[0], dates[-1]):
        ref = _align(ids, ws.con.execute(REFERENCE_STAGES_SQL, [kinds, kinds, at])
                     .to_arrow_table())
        got = _stage_inputs(ids, _stage_tables(ws, at))
        np.testing.assert_array_equal(got["cancelled"], ref["cancelled"] == 1.0)
        np.testing.assert_array_equal(got["max_gap_days"], ref["max_gap_days"])
        assert got["cancelled"].any() and np.isfinite(got["max_gap_days"]).any()


def test_p_alive_from_a_kept_summary_or_later_purchases_equals_reading_afresh(ws, dates):
    import warnings

    from custdyn import models as m
    from custdyn.pipeline._common import _naive, _PurchaseModels, transactions_before

    as_of, earlier = dates[0], dates[2]
    later_tx = _PurchaseModels(ws, as_of, []).transactions(as_of)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for at in (as_of, earlier, dates[-1]):
            fresh = _PurchaseModels(ws, at, []).p_alive_only("BetaGeo")
            tx = transactions_before(later_tx, at)
            # the same rows (purchases at the same moment come in either order)
            by = [(c, "ascending") for c in ("customer_id", "occurred_at", "amount")]
            assert tx.sort_by(by).equals(_PurchaseModels(ws, at, []).transactions(at).sort_by(by))
            rfm = m.rfm_summary(tx, "customer_id", "occurred_at", "amount",
                                observation_end=_naive(at))
            assert _PurchaseModels(ws, at, []).p_alive_only("BetaGeo", rfm=rfm).equals(fresh)
            assert _PurchaseModels(ws, at, []).p_alive_only(
                "BetaGeo", transactions=later_tx).equals(fresh)
            assert fresh.num_rows > 0


def test_health_trend_from_what_was_read_equals_the_reference(ws, dates):
    import warnings

    import custdyn.features as cf
    from custdyn.models.health import Scorecard, score_trend
    from custdyn.pipeline._common import _align, _PurchaseModels
    from custdyn.pipeline.health import (
        DEFAULT_HEALTH,
        _health_table,
        _loyalty_counts,
        health_trend,
    )

    as_of = dates[0]
    card = Scorecard.from_config(DEFAULT_HEALTH)
    feats = cf.features(ws, as_of)
    ids = [str(x) for x in feats.column("customer_id").to_pylist()]
    rng = np.random.default_rng(0)
    health_now = rng.uniform(0, 100, len(ids))
    days = (30.0, 90.0)
    # the reference: every date read afresh, lined up by sorting
    earlier = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for d in days:
            at = as_of - dt.timedelta(days=d)
            f = cf.features(ws, at)
            then_ids = [str(x) for x in f.column("customer_id").to_pylist()]
            pm = _PurchaseModels(ws, at, [])
            p_alive = _align(then_ids, pm.p_alive_only("BetaGeo"))["p_alive"]
            earlier[f"{d:g}d"] = (then_ids, card.score(_health_table(ws, at, f, p_alive, pm)))
    ref = score_trend(ids, health_now, earlier)
    plain = health_trend(ws, as_of, ids, health_now, card, days)
    tx = _PurchaseModels(ws, as_of, []).transactions(as_of)
    at = [as_of - dt.timedelta(days=d) for d in days]
    fast = health_trend(ws, as_of, ids, health_now, card, days,
                        features_at={a: cf.features(ws, a) for a in at}, transactions=tx,
                        loyalty=_loyalty_counts(ws, [as_of, *at]))
    for got in (plain, fast):
        assert list(got) == list(ref)
        _same(got, ref)
    assert np.isfinite(ref["30d"]).sum() > 100
    # a window reaching before the data: NaN, listed first as before
    far = health_trend(ws, as_of, ids, health_now, card, (30.0, 10_000.0))
    assert list(far) == ["10000d", "30d"] and np.isnan(far["10000d"]).all()


def test_numeric_matrix_holds_the_columns_of_the_kept_rows(ws, dates):
    import custdyn.features as cf
    from custdyn.pipeline._common import _numeric_matrix

    feats = cf.features(ws, dates[0])
    keep = np.arange(feats.num_rows) % 3 != 0
    X, names = _numeric_matrix(feats, rows=keep, extra=2)
    assert X.shape == (keep.sum(), len(names) + 2)
    for j, name in enumerate(names):
        col = np.asarray(feats.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False))
        np.testing.assert_array_equal(X[:, j], col[keep])


def _reference_reasons(model, X, top):
    """The reasons as first written: contributions, a stable sort, a loop per row."""
    from custdyn.models.churn import Reason

    Xa, _ = model._design(X)
    c = model.contributions(X)[:, :-1]
    key = np.where(c > 0, -c, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :top]
    vals = Xa[:, model._keep]
    out = []
    for i in range(c.shape[0]):
        row = []
        for j in order[i]:
            if not np.isfinite(key[i, j]):
                break
            row.append(Reason(model.features_used_[j], float(vals[i, j]), float(c[i, j])))
        out.append(row)
    return out


@pytest.mark.parametrize("top", [1, 3, 8])
def test_reasons_and_their_json_match_the_row_by_row_reference(top):
    pytest.importorskip("lightgbm")
    from custdyn.models.churn import DefectionModel
    from custdyn.pipeline._common import _num
    from custdyn.pipeline.analysis import _reasons_text

    rng = np.random.default_rng(3)
    n = 3000
    X = rng.normal(size=(n, 6))
    X[:, 5] = 1.0  # constant: dropped, so used columns differ from the input's
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * X[:, 0] - X[:, 1])))).astype(float)
    gone = rng.random(n) < 0.1  # a missing value that raises the risk: a reason, null
    X[gone, 0] = np.nan
    y[gone] = (rng.random(gone.sum()) < 0.9).astype(float)
    names = ["a", "b", "c\u00e9", 'd "q"', "e", "const"]
    with pytest.warns(Warning):
        model = DefectionModel(n_estimators=40).fit(X, y, feature_names=names)
    ref = _reference_reasons(model, X, top)
    def text(rows):  # NaN values compare equal as text
        return [[(r.feature, repr(r.value), repr(r.contribution)) for r in row] for row in rows]

    assert text(model.reasons(X, top=top)) == text(ref)
    assert any(len(r) < top for r in ref) and any(len(r) == min(top, 3) for r in ref)
    which, values, pushes = model.top_reasons(X, top=top)
    quoted = [json.dumps(f) for f in model.features_used_]
    for i in range(n):
        old = json.dumps([{"feature": r.feature, "value": _num(r.value),
                           "contribution": _num(r.contribution)} for r in ref[i]])
        got = _reasons_text(quoted, which[i].tolist(), values[i].tolist(), pushes[i].tolist())
        assert got == old
    assert any("NaN" not in t and "null" in t for t in (
        _reasons_text(quoted, which[i].tolist(), values[i].tolist(), pushes[i].tolist())
        for i in range(n)))
