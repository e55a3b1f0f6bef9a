"""custdyn.features on DuckDB: hand-computed values on a planted log, no look-ahead, agreement
with rfm_summary (planted, CDNOW, demo world) and with the pandas peer, snapshots, cohorts,
CLI."""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import custdyn
import custdyn.features as cf
from custdyn.models import rfm_summary
from custdyn.schema import EMOTIONS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's benchmarks/
from benchmarks.bench_features import pandas_features  # noqa: E402 - the pandas peer

AS_OF = "2024-07-01"
UTC = dt.UTC


def T(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)


_COLS = ("interaction_id", "customer_id", "occurred_at", "channel", "kind", "direction",
         "amount", "thread_id", "attributes")


def ev(iid: str, cust: str, at: str, channel: str, kind: str, direction: str,
       amount: float | None = None, thread: str | None = None,
       attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"interaction_id": iid, "customer_id": cust, "occurred_at": T(at), "channel": channel,
            "kind": kind, "direction": direction, "amount": amount, "thread_id": thread,
            "attributes": json.dumps(attributes) if attributes else None}


def tk(n: int, at: str, direction: str, status: str) -> dict[str, Any]:
    return ev(f"tk{n}", "A", at, "ticket", "support", direction, thread="TK-1",
              attributes={"ticket_id": "TK-1", "status": status})


#: Customer A's history before 2024-07-01 (see the expected values in the tests).
PLANTED = [
    ev("a0", "A", "2024-01-10 10:00", "web", "account_opened", "inbound"),
    ev("o1", "A", "2024-02-01 09:00", "web", "order", "inbound", 100.0),
    ev("o2", "A", "2024-02-01 15:00", "web", "order", "inbound", 20.0),
    ev("o3", "A", "2024-03-01 12:00", "store", "order", "inbound", 50.0),
    ev("o4", "A", "2024-06-20 08:00", "phone", "order", "inbound", 30.0),
    ev("i1", "A", "2024-03-02 10:00", "web", "order_issue", "inbound"),
    ev("r1", "A", "2024-03-05 10:00", "web", "return", "inbound", -50.0),
    ev("e1", "A", "2024-06-01 10:00", "email", "contact", "inbound", thread="T1"),
    ev("e2", "A", "2024-06-01 14:00", "email", "contact", "outbound", thread="T1"),
    ev("e3", "A", "2024-06-02 09:00", "email", "contact", "inbound", thread="T1"),
    ev("e4", "A", "2024-06-02 10:00", "email", "contact", "inbound", thread="T1"),
    ev("e5", "A", "2024-06-03 09:00", "email", "contact", "outbound", thread="T1"),
    ev("c1", "A", "2024-06-25 12:00", "chat", "contact", "inbound", thread="T2"),
    ev("p1", "A", "2024-05-01 10:00", "phone", "contact", "outbound"),
    ev("p2", "A", "2024-06-15 10:00", "phone", "contact", "outbound"),
    ev("m1", "A", "2024-04-01 10:00", "meeting", "contact", "outbound"),
    ev("m2", "A", "2024-06-10 10:00", "meeting", "contact", "outbound"),
    tk(1, "2024-05-10 08:00", "inbound", "opened"),
    tk(2, "2024-05-10 10:00", "outbound", "replied"),
    tk(3, "2024-05-11 08:00", "inbound", "reopened"),
    tk(4, "2024-05-12 14:00", "outbound", "escalated"),
    tk(5, "2024-05-13 08:00", "outbound", "resolved"),
]

#: Events at or after 2024-07-01: none of them may change the features at that moment.
FUTURE = [
    ev("f1", "A", "2024-07-01 00:00", "web", "order", "inbound", 999.0),
    ev("f2", "A", "2024-07-01 05:00", "chat", "contact", "outbound", thread="T2"),
    ev("f3", "A", "2024-08-01 10:00", "email", "contact", "inbound", thread="T1"),
    ev("f4", "A", "2024-09-01 10:00", "meeting", "contact", "outbound"),
    ev("f5", "A", "2024-07-02 10:00", "ticket", "support", "inbound", thread="TK-1",
       attributes={"ticket_id": "TK-1", "status": "reopened"}),
    ev("f6", "D", "2024-07-03 10:00", "web", "order", "inbound", 10.0),
    ev("f7", "A", "2024-07-05 10:00", "web", "return", "inbound", -30.0),
]

CUSTOMERS = [
    {"customer_id": "A", "created_at": T("2024-01-12 00:00")},
    {"customer_id": "B", "created_at": T("2024-05-01 00:00")},
    {"customer_id": "C", "created_at": T("2024-08-01 00:00")},
]


def _signal(iid: str, score: float, anger: float = 0.0, mentions: str | None = "[]",
            switch: bool = False, engine: str = "default:1") -> dict[str, Any]:
    row: dict[str, Any] = {"interaction_id": iid, "engine": engine, "sentiment_score": score,
                           "mentions": mentions, "intent_to_switch": switch}
    row.update({e: 0.0 for e in EMOTIONS})
    row["anger"] = anger
    return row


SIGNALS = [
    _signal("e1", 0.5),
    _signal("c1", -0.5, anger=0.9, mentions='[{"competitor": "Nordvik"}]', switch=True),
    _signal("tk1", 0.1, anger=0.3),
    _signal("i1", -0.8, anger=0.6),
    _signal("e2", 0.9),  # the vendor's own message: not the customer's voice
    _signal("e1", -1.0, engine="bulk:1"),  # another engine, fewer rows: not chosen
]


def make_ws(path: Path, rows: list[dict[str, Any]], customers: list[dict[str, Any]] | None,
            signals: list[dict[str, Any]] | None = None) -> custdyn.Workspace:
    ws = custdyn.Workspace.create(path)
    it = pa.Table.from_pylist(rows, schema=pa.schema([
        ("interaction_id", pa.string()), ("customer_id", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")), ("channel", pa.string()),
        ("kind", pa.string()), ("direction", pa.string()), ("amount", pa.float64()),
        ("thread_id", pa.string()), ("attributes", pa.string())]))
    ws.con.register("_it", it)
    ws.con.execute(f"INSERT INTO interactions BY NAME SELECT {', '.join(_COLS)} FROM _it")
    if customers:
        cu = pa.Table.from_pylist(customers, schema=pa.schema(
            [("customer_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC"))]))
        ws.con.register("_cu", cu)
        ws.con.execute("INSERT INTO customers BY NAME SELECT * FROM _cu")
    if signals:
        ws.con.register("_ts", pa.Table.from_pylist(signals))
        ws.con.execute("INSERT INTO text_signals BY NAME SELECT * FROM _ts")
    return ws


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> custdyn.Workspace:
    ws = make_ws(tmp_path_factory.mktemp("planted") / "ws", PLANTED, CUSTOMERS, SIGNALS)
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def at_as_of(planted: custdyn.Workspace) -> pa.Table:
    """The planted features at 2024-07-01, computed once for the tests that only read them."""
    return cf.features(planted, AS_OF)


def _row(t: pa.Table, cid: str) -> dict[str, Any]:
    rows = [r for r in t.to_pylist() if r["customer_id"] == cid]
    assert len(rows) == 1, f"{cid} appears {len(rows)} times"
    return rows[0]


# --------------------------------------------------------------------------- planted values
def test_planted_purchases_and_ordering(at_as_of: pa.Table) -> None:
    t = at_as_of
    assert t.column_names == cf.feature_columns()
    a = _row(t, "A")
    # purchase days Feb 1 (100 + 20 merged), Mar 1 (50), Jun 20 (30); weeks
    assert a["frequency"] == 2
    assert a["recency"] == pytest.approx((dt.date(2024, 6, 20) - dt.date(2024, 2, 1)).days / 7)
    assert a["T"] == pytest.approx((dt.date(2024, 7, 1) - dt.date(2024, 2, 1)).days / 7)
    assert a["monetary_value"] == pytest.approx(40.0)
    assert a["revenue"] == pytest.approx(200.0)
    assert a["n_orders"] == 4
    assert a["n_order_issues"] == 1 and a["n_returns"] == 1
    assert a["order_issues_per_order"] == 0.25 and a["returns_per_order"] == 0.25
    # account opened at the first of the event (Jan 10 10:00) and created_at (Jan 12)
    assert a["account_opened_at"] == T("2024-01-10 10:00")
    assert a["first_order_at"] == T("2024-02-01 09:00")
    assert a["first_contact_at"] == T("2024-01-10 10:00")
    assert a["days_to_first_order"] == pytest.approx(21 + 23 / 24)
    assert a["tenure_days"] == pytest.approx((T("2024-07-01 00:00") - T("2024-01-10 10:00"))
                                             / dt.timedelta(days=1))
    assert a["as_of"] == T("2024-07-01 00:00")


def test_planted_customer_side(at_as_of: pa.Table) -> None:
    a = _row(at_as_of, "A")
    assert a["n_interactions"] == len(PLANTED)
    assert a["n_email_inbound_30d"] == 3 and a["n_email_outbound_30d"] == 2
    assert a["n_ticket_inbound_90d"] == 2 and a["n_ticket_outbound_90d"] == 3
    assert a["n_meeting_outbound_90d"] == 1 and a["n_meeting_outbound_365d"] == 2
    assert a["n_inbound_30d"] == 5  # e1 e3 e4 c1 o4
    # inbound channels: web, store, phone, email, chat, ticket
    assert a["channel_breadth_365d"] == 6
    # contacts: threads T1, T2, TK-1 (inbound starts), the order issue (inbound), two calls
    # and two meetings (outbound)
    assert a["contacts_365d"] == 8
    assert a["customer_started_share_365d"] == pytest.approx(0.5)
    assert a["meetings_365d"] == 2
    assert a["meeting_interval_days"] == pytest.approx(70.0)
    assert a["days_since_customer_contact"] == pytest.approx(5.5)


def test_planted_vendor_side_and_support(at_as_of: pa.Table) -> None:
    a = _row(at_as_of, "A")
    # customer turns: e1 (4 h), e3 (24 h; e4 is the same turn), c1 (no reply), tk1 (2 h),
    # tk3 (30 h)
    assert a["customer_turns"] == 5
    assert a["first_response_median_h"] == pytest.approx(14.0)
    assert a["first_response_p90_h"] == pytest.approx(24 + 0.7 * 6)
    assert a["unanswered_inbound"] == 1
    # vendor-started contacts: meetings Apr 1 and Jun 10, calls May 1 and Jun 15
    assert a["vendor_contacts_90d"] == 3 and a["vendor_contacts_365d"] == 4
    assert a["vendor_contact_interval_days"] == pytest.approx(25.0)
    assert a["days_since_vendor_contact"] == pytest.approx(15 + 14 / 24)
    assert a["tickets_opened"] == 1 and a["tickets_opened_365d"] == 1
    assert a["tickets_open"] == 0
    assert a["ticket_resolve_median_h"] == pytest.approx(72.0)
    assert a["tickets_reopened"] == 1 and a["tickets_escalated"] == 1


def test_planted_text(planted: custdyn.Workspace, at_as_of: pa.Table) -> None:
    a = _row(at_as_of, "A")
    # inbound scored messages of engine default:1: e1 .5, c1 -.5, tk1 .1 (last 90 days) and
    # i1 -.8 (121 days before)
    assert a["scored_messages_365d"] == 4
    assert a["sentiment_90d"] == pytest.approx(0.1 / 3)
    assert a["sentiment_365d"] == pytest.approx(-0.7 / 4)
    assert a["sentiment_trend_90d"] == pytest.approx(0.1 / 3 + 0.8)
    assert a["emotion_anger_365d"] == pytest.approx(1.8 / 4)
    assert a["competitor_mentions_365d"] == 1 and a["switch_intent_365d"] == 1
    other = _row(cf.features(planted, AS_OF, text_engine="bulk:1"), "A")
    assert other["sentiment_90d"] == pytest.approx(-1.0)


def test_a_new_engine_version_is_read_once_it_has_caught_up(tmp_path: Path) -> None:
    # the same messages scored again by a newer version (e.g. 'default:1+body'): equal row
    # counts, later scored_at; the newer one is read
    old = [dict(r, scored_at=T("2024-07-02 00:00")) for r in SIGNALS[:5]]
    new = [dict(r, engine="default:1+body", scored_at=T("2024-07-03 00:00"),
                sentiment_score=-r["sentiment_score"]) for r in old]  # fmt: skip
    ws = make_ws(tmp_path / "ws", PLANTED, None, old + new)
    try:
        a = _row(cf.features(ws, AS_OF), "A")
        assert a["sentiment_90d"] == pytest.approx(-0.1 / 3)
    finally:
        ws.close()


def test_who_is_described(at_as_of: pa.Table) -> None:
    t = at_as_of
    assert t.column("customer_id").to_pylist() == ["A", "B"]  # C opens its account later
    b = _row(t, "B")
    assert b["n_interactions"] == 0 and b["tickets_opened"] == 0
    assert b["frequency"] is None and b["first_response_median_h"] is None
    assert b["account_opened_at"] == T("2024-05-01 00:00")
    assert b["tenure_days"] == pytest.approx(61.0)
    assert b["sentiment_90d"] is None


def test_events_after_as_of_change_nothing(at_as_of: pa.Table, tmp_path: Path) -> None:
    after = make_ws(tmp_path / "b", PLANTED + FUTURE, CUSTOMERS,
                    SIGNALS + [_signal("f3", -1.0, anger=1.0, switch=True)])
    try:
        assert cf.features(after, AS_OF).equals(at_as_of)
        # ... and they do count once the moment has passed
        later = _row(cf.features(after, "2024-10-01"), "A")
        assert later["n_orders"] == 5 and later["tickets_reopened"] == 1
        # c1's reply came after 5 days 17 h; f3 and f5 (new turns in T1 and TK-1) wait
        assert later["unanswered_inbound"] == 3
        assert later["first_response_median_h"] == pytest.approx(24.0)  # 2, 4, 24, 30, 137
        assert "D" in cf.features(after, "2024-10-01").column("customer_id").to_pylist()
    finally:
        after.close()


def test_absent_text_gives_nulls(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws", PLANTED, None)
    try:
        t = cf.features(ws, AS_OF)
        a = _row(t, "A")
        for c in ("sentiment_90d", "sentiment_trend_90d", "emotion_joy_365d",
                  "competitor_mentions_365d", "scored_messages_365d"):
            assert a[c] is None
        assert t.column_names == cf.feature_columns()
        assert a["account_opened_at"] == T("2024-01-10 10:00")  # no customers table rows
    finally:
        ws.close()


def test_support_without_status_attributes(tmp_path: Path) -> None:
    rows = [{**r, "attributes": None} for r in PLANTED]
    ws = make_ws(tmp_path / "ws", rows, CUSTOMERS)
    try:
        a = _row(cf.features(ws, AS_OF), "A")
        assert a["tickets_opened"] == 1  # from the thread
        assert a["tickets_reopened"] is None and a["ticket_resolve_median_h"] is None
    finally:
        ws.close()


def test_settings_purchase_kinds_and_options(planted: custdyn.Workspace) -> None:
    a = _row(cf.features(planted, AS_OF, purchase_kinds=["order", "return"],
                         unanswered_after_hours=20.0, time_unit="D"), "A")
    # the return (Mar 5, -50) is now a purchase day
    assert a["frequency"] == 3 and a["n_orders"] == 5
    assert a["recency"] == pytest.approx((dt.date(2024, 6, 20) - dt.date(2024, 2, 1)).days)
    assert a["unanswered_inbound"] == 3  # e3 (24 h), tk3 (30 h) and c1 wait over 20 h
    planted.settings.purchase_kinds = ["order", "return"]
    try:
        assert cf.backend(planted).purchase_kinds == ["order", "return"]
    finally:
        planted.settings.purchase_kinds = ["order"]
    with pytest.raises(cf.FeatureError, match="time_unit"):
        cf.features(planted, AS_OF, time_unit="fortnight")
    with pytest.raises(cf.FeatureError, match="engine 'sqlite' is not known"):
        cf.backend(planted, "sqlite")


# --------------------------------------------------------------------------- rfm_summary
def _rfm_reference(ws: custdyn.Workspace, as_of: str, unit: str = "W") -> pd.DataFrame:
    df = ws.query(  # the purchases only, at the edge
        "SELECT customer_id, occurred_at, CAST(amount AS DOUBLE) AS amount FROM interactions "
        "WHERE kind = 'order' AND occurred_at < ?", [pd.Timestamp(as_of, tz="UTC")]).to_pandas()
    df["amount"] = df["amount"].fillna(0.0)
    return rfm_summary(df, "customer_id", "occurred_at", "amount",
                       observation_end=pd.Timestamp(as_of, tz="UTC"), time_unit=unit)


def _assert_rfm_agrees(ws: custdyn.Workspace, as_of: str, unit: str = "W") -> int:
    want = _rfm_reference(ws, as_of, unit)
    got = cf.features(ws, as_of, time_unit=unit).to_pandas().set_index("customer_id")
    got = got[got["frequency"].notna()]
    assert sorted(got.index) == sorted(want.index)
    got = got.loc[want.index]
    for c in ("frequency", "recency", "T", "monetary_value"):
        np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=1e-9,
                                   atol=1e-9, err_msg=c)
    return len(want)


def test_rfm_agrees_on_planted(planted: custdyn.Workspace) -> None:
    assert _assert_rfm_agrees(planted, AS_OF) == 1
    assert _assert_rfm_agrees(planted, "2024-06-20 12:00", "D") == 1


@pytest.fixture(scope="module")
def cdnow_ws(tmp_path_factory: pytest.TempPathFactory) -> custdyn.Workspace:
    import lifetimes

    src = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"
    ws = custdyn.Workspace.create(tmp_path_factory.mktemp("cdnow") / "ws")
    ws.ingest(src, format="cdnow")
    yield ws
    ws.close()


@pytest.mark.slow
@pytest.mark.parametrize("as_of", ["1998-07-01", "1997-10-01"])
def test_rfm_agrees_on_cdnow(cdnow_ws: custdyn.Workspace, as_of: str) -> None:
    n = _assert_rfm_agrees(cdnow_ws, as_of)
    assert n == 23570 if as_of == "1998-07-01" else n > 20000


# --------------------------------------------------------------------------- demo world
@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory: pytest.TempPathFactory) -> custdyn.Workspace:
    from typer.testing import CliRunner

    from custdyn.cli import app

    d = tmp_path_factory.mktemp("demo") / "ws"
    r = CliRunner().invoke(app, ["demo", str(d), "--customers", "150", "--seed", "3"])
    assert r.exit_code in (0, 1), r.output
    ws = custdyn.Workspace.open(d)
    yield ws
    ws.close()


@pytest.mark.slow
@pytest.mark.parametrize("as_of", ["2024-06-30", "2025-09-15 13:30"])
def test_demo_world_matches_pandas_peer_and_rfm(demo_ws: custdyn.Workspace, as_of: str) -> None:
    got = cf.features(demo_ws, as_of).to_pandas()
    it = demo_ws.query("SELECT * FROM interactions").to_pandas()
    cu = demo_ws.query("SELECT * FROM customers").to_pandas()
    want = pandas_features(it, as_of, customers=cu)
    assert_frames_match(got, want)
    assert len(got) > 50
    assert got["first_response_median_h"].notna().sum() > 10
    assert got["tickets_reopened"].fillna(0).sum() > 0
    _assert_rfm_agrees(demo_ws, as_of)


def assert_frames_match(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert got["customer_id"].tolist() == want["customer_id"].tolist()
    for c in got.columns[1:]:
        a, b = got[c], want[c]
        if isinstance(a.dtype, pd.DatetimeTZDtype) or isinstance(b.dtype, pd.DatetimeTZDtype):
            a, b = pd.to_datetime(a, utc=True), pd.to_datetime(b, utc=True)
            same = (a == b) | (a.isna() & b.isna())
            assert same.all(), f"{c}: {got.loc[~same, ['customer_id', c]].head()}"
        else:
            np.testing.assert_allclose(a.astype(float).to_numpy(), b.astype(float).to_numpy(),
                                       rtol=1e-9, atol=1e-9, err_msg=c)


# --------------------------------------------------------------------------- snapshots, cohorts
def test_snapshot_dates() -> None:
    d = cf.snapshot_dates("2024-01-31", "2024-05-01", "month")
    assert [x.date().isoformat() for x in d] == [
        "2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"]
    assert len(cf.snapshot_dates("2024-01-01", "2025-12-01")) == 24
    assert len(cf.snapshot_dates("2024-01-01", "2024-01-29", "week")) == 5
    with pytest.raises(cf.FeatureError, match="every"):
        cf.snapshot_dates("2024-01-01", "2024-02-01", "fortnight")


def test_snapshots_one_query_equals_single_dates(planted: custdyn.Workspace) -> None:
    dates = ["2024-03-01", "2024-05-11", AS_OF]
    n = cf.snapshots(planted, dates)
    snap = planted.query("SELECT * FROM snapshots ORDER BY as_of, customer_id").to_pandas()
    assert n == len(snap) == 1 + 2 + 2  # A; A and B (from May 1); A and B
    for d in dates:
        one = cf.features(planted, d).to_pandas()
        part = snap[snap["as_of"] == pd.Timestamp(d, tz="UTC")].reset_index(drop=True)
        assert_frames_match(part[one.columns], one)
    # re-running a date replaces its rows; other dates stay
    assert cf.snapshots(planted, [AS_OF]) == 2
    assert planted.query("SELECT count(*) AS n FROM snapshots").column("n")[0].as_py() == 5
    # split into several queries (bounded memory): the same rows
    assert cf.snapshots(planted, dates, table="split", dates_per_query=2) == 5
    split = planted.query("SELECT * FROM split ORDER BY as_of, customer_id").to_pandas()
    assert_frames_match(split, snap)


#: Dates for the incremental parity checks: before any event, on an event's exact moment and
#: one microsecond after it, mid-day (a purchase day split by as_of), months apart, and long
#: after the last event (windows emptied).
PARITY_DATES = ["2023-12-01", "2024-01-10 10:00", "2024-01-10 10:00:00.000001",
                "2024-02-01 12:00", "2024-03-01", "2024-05-11", "2024-06-01 14:00", AS_OF,
                "2024-07-03 10:00", "2024-10-01", "2025-06-01", "2026-01-01"]


def _stored(ws: custdyn.Workspace, table: str) -> pd.DataFrame:
    return ws.query(f"SELECT * FROM {table} ORDER BY as_of, customer_id").to_pandas()


def _assert_incremental_matches(ws: custdyn.Workspace, dates: list[str], name: str,
                                **options: Any) -> pd.DataFrame:
    """Incremental (one part and three parts; numpy running sums and window functions) and
    per-date snapshots give the same table, every column."""
    import ibis

    from custdyn.features.build import as_of_arrow
    from custdyn.features.incremental import snapshot_expr

    n_old = cf.snapshots(ws, dates, table=f"{name}_old", method="per_date", **options)
    want = _stored(ws, f"{name}_old")
    assert n_old == len(want) > 0
    assert want["as_of"].nunique() >= 2
    for parts in (1, 3):
        table = f"{name}_inc{parts}"
        assert cf.snapshots(ws, dates, table=table, parts=parts, **options) == n_old
        assert_frames_match(_stored(ws, table), want)
    arrow = as_of_arrow(dates)
    arrow = arrow.append_column("k", pa.array(range(arrow.num_rows), pa.int64()))
    b = cf.backend(ws)
    expr = snapshot_expr(b, arrow.column("as_of_s").to_pylist(), ibis.memtable(arrow),
                         **options)
    windowed = b.to_pyarrow(expr.order_by(["as_of", "customer_id"])).to_pandas()
    assert_frames_match(windowed, want)
    return want


def test_incremental_snapshots_equal_per_date_on_planted(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws", PLANTED + FUTURE, CUSTOMERS,
                 SIGNALS + [_signal("f3", -1.0, anger=1.0, switch=True)])
    try:
        want = _assert_incremental_matches(ws, PARITY_DATES, "planted")
        # the planted history is in it: C from Aug 1, D after its first order, nobody before
        # the first event or account
        first = want.groupby("customer_id")["as_of"].min()
        assert first["C"] == pd.Timestamp("2024-10-01", tz="UTC")
        assert "2023-12-01" not in set(want["as_of"].dt.strftime("%Y-%m-%d"))
        late = want[want["as_of"] == pd.Timestamp("2026-01-01", tz="UTC")].set_index(
            "customer_id")
        assert late.loc["A", "n_email_inbound_365d"] == 0 and late.loc["A", "n_orders"] == 5
        assert late.loc["A", "first_response_median_h"] == pytest.approx(24.0)
        # other options take the same path
        _assert_incremental_matches(ws, PARITY_DATES[3:9], "opts",
                                    purchase_kinds=["order", "return"], time_unit="D",
                                    unanswered_after_hours=20.0)
    finally:
        ws.close()


def test_incremental_snapshots_leave_no_partial_dates_when_a_part_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A part failing after earlier parts were committed (and while one is being written)
    removes every row at the requested dates; rows at other dates stay."""
    import custdyn.features.incremental as inc

    ws = make_ws(tmp_path / "ws", PLANTED + FUTURE, CUSTOMERS, SIGNALS)
    try:
        kept = cf.snapshots(ws, ["2024-03-01"], parts=1)
        assert kept > 0
        real, calls = inc.derive_arrow, []

        def failing(g: pa.Table, pl: Any) -> pa.Table:
            calls.append(g.num_rows)
            if len(calls) == 3:
                raise RuntimeError("part failed")
            return real(g, pl)

        monkeypatch.setattr(inc, "derive_arrow", failing)
        with pytest.raises(RuntimeError, match="part failed"):
            cf.snapshots(ws, ["2024-05-11", AS_OF, "2026-01-01"], parts=4)
        assert len(calls) == 3
        left = _stored(ws, "snapshots")
        assert len(left) == kept
        assert set(left["as_of"]) == {pd.Timestamp("2024-03-01", tz="UTC")}
    finally:
        ws.close()


@pytest.mark.slow
def test_incremental_snapshots_equal_per_date_on_demo_world(demo_ws: custdyn.Workspace
                                                            ) -> None:
    dates = [d.isoformat() for d in cf.snapshot_dates("2024-01-31", "2025-12-31", "month")]
    dates += ["2025-03-17 06:30", "2030-01-01"]
    want = _assert_incremental_matches(demo_ws, dates, "demo")
    assert want["first_response_median_h"].notna().sum() > 100
    assert want["sentiment_90d"].notna().sum() > 10 or not demo_ws.query(
        "SELECT count(*) AS n FROM text_signals").column("n")[0].as_py()


@settings(max_examples=20, deadline=None)
@given(moments=st.lists(st.integers(0, 10**6), min_size=1, max_size=30, unique=True),
       values=st.lists(st.integers(-10, 10**6 + 10), min_size=1, max_size=40))
def test_first_index_is_a_binary_search(moments: list[int], values: list[int]) -> None:
    """The date index written as nested CASE equals a plain search, for any sorted dates."""
    import ibis

    from custdyn.features.incremental import _first_index

    m = sorted(float(x) for x in moments)
    t = ibis.memtable({"ts": [float(v) + 0.5 * (i % 2) for i, v in enumerate(values)]})
    got = ibis.duckdb.connect().to_pyarrow(
        t.select(k=_first_index(m, lambda a: t.ts < a))).column("k").to_pylist()
    want = [int(np.searchsorted(m, v, side="right")) for v in t.to_pyarrow().column(
        "ts").to_pylist()]
    assert got == want


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5),
                               st.floats(-1e6, 1e6, allow_nan=False)), max_size=60),
       q=st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]))
def test_running_quantiles_equal_quantiles_of_the_values_so_far(
        rows: list[tuple[int, int, float]], q: float) -> None:
    """The numpy running quantiles (incremental snapshots) equal numpy's linear quantile of
    each customer's values up to each date where one arrived, recomputed from scratch."""
    from custdyn.features.incremental import _running_quantiles

    n_k = 6
    at = np.array([c * n_k + k for c, k, _ in rows], np.int64)
    v = np.array([x for _, _, x in rows], np.float64)
    pos, (got,) = _running_quantiles(at, v, n_k, [q])
    assert list(pos) == sorted(set(at.tolist()))
    for p_, g in zip(pos, got, strict=True):
        c, k = divmod(int(p_), n_k)
        so_far = v[(at // n_k == c) & (at % n_k <= k)]
        assert g == pytest.approx(float(np.quantile(so_far, q)), rel=1e-12, abs=1e-6)


def test_cohorts(tmp_path: Path) -> None:
    rows = [
        ev("1", "A", "2024-01-05 10:00", "web", "order", "inbound", 10.0),
        ev("2", "A", "2024-02-05 10:00", "web", "order", "inbound", 20.0),
        ev("3", "A", "2024-02-06 10:00", "web", "order", "inbound", 5.0),
        ev("4", "B", "2024-01-20 10:00", "web", "order", "inbound", 30.0),
        ev("5", "C", "2024-02-01 10:00", "web", "order", "inbound", 40.0),
        ev("6", "C", "2024-04-01 10:00", "web", "order", "inbound", 8.0),
        ev("7", "C", "2024-04-02 10:00", "web", "contact", "inbound"),
    ]
    ws = make_ws(tmp_path / "ws", rows, None)
    try:
        t = cf.cohorts(ws).to_pylist()
        got = [(r["cohort"].isoformat(), r["months_since"], r["customers"], r["revenue"],
                r["cohort_size"]) for r in t]
        assert got == [("2024-01-01", 0, 2, 40.0, 2), ("2024-01-01", 1, 1, 25.0, 2),
                       ("2024-02-01", 0, 1, 40.0, 1), ("2024-02-01", 2, 1, 8.0, 1)]
        assert t[1]["retention"] == 0.5 and t[1]["revenue_retention"] == pytest.approx(25 / 40)
        early = cf.cohorts(ws, as_of="2024-02-01 12:00").to_pylist()
        assert [(r["cohort"].isoformat(), r["months_since"]) for r in early] == [
            ("2024-01-01", 0), ("2024-02-01", 0)]
        # the curves: one line per cohort in each panel, months without buyers at 0
        fig = cf.cohort_curves(ws)
        lines = {(tr.name, tr.xaxis): (list(tr.x), list(tr.y)) for tr in fig.data}
        assert set(lines) == {("2024-01", "x"), ("2024-01", "x2"), ("2024-02", "x"),
                              ("2024-02", "x2")}
        assert lines[("2024-01", "x")] == ([0, 1], [1.0, 0.5])
        assert lines[("2024-01", "x2")][1] == pytest.approx([1.0, 25 / 40])
        assert lines[("2024-02", "x")] == ([0, 1, 2], [1.0, 0.0, 1.0])
        assert lines[("2024-02", "x2")][1] == pytest.approx([1.0, 0.0, 0.2])
        assert len(cf.cohort_curves(ws, max_cohorts=1).data) == 2
        with pytest.raises(cf.FeatureError, match="no cohorts"):
            cf.cohort_curves(ws, as_of="2024-01-01")
        with pytest.raises(cf.FeatureError, match="lacks"):
            cf.cohort_figure(pa.table({"cohort": [1]}))
    finally:
        ws.close()


# --------------------------------------------------------------------------- backend choice
def test_backend_reads_parquet_folder(planted: custdyn.Workspace, at_as_of: pa.Table,
                                      tmp_path: Path) -> None:
    planted.export(tmp_path / "pq", ["interactions", "customers", "text_signals"])
    b = cf.backend(tmp_path / "pq", "duckdb")
    assert set(b.tables) == {"interactions", "customers", "text_signals"}
    assert cf.features(b, AS_OF).equals(at_as_of)
    with pytest.raises(cf.FeatureError, match="neither a custdyn workspace"):
        cf.backend(tmp_path / "nowhere")


# --------------------------------------------------------------------------- CLI
def test_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from custdyn.cli import app

    ws = make_ws(tmp_path / "ws", PLANTED, CUSTOMERS, SIGNALS)
    path = str(ws.path)
    ws.close()
    run = CliRunner().invoke
    r = run(app, ["-w", path, "features", "--as-of", AS_OF, "--json",
                  "--out", str(tmp_path / "f.parquet")])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["customer_id"] for x in rows] == ["A", "B"]
    assert rows[0]["frequency"] == 2
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "f.parquet").num_rows == 2
    r = run(app, ["-w", path, "features", "--as-of", "yesterday-ish"])
    assert r.exit_code == 2 and "not a date" in r.output
    r = run(app, ["-w", path, "features", "--as-of", AS_OF, "--engine", "sqlite"])
    assert r.exit_code == 2 and "not known" in r.output
    r = run(app, ["-w", path, "snapshots", "--from", "2024-04-01", "--to", AS_OF, "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["dates"] == 4 and info["rows"] == 1 + 1 + 2 + 2  # B from after May 1 00:00
    html = tmp_path / "cohorts.html"
    r = run(app, ["-w", path, "cohorts", "--json", "--html", str(html)])
    assert r.exit_code == 0, r.output
    page = html.read_text()
    assert "plotly" in page and "2024-02" in page and "months since acquisition" in page
    r2 = run(app, ["-w", path, "cohorts", "--as-of", "2024-01-01", "--html", str(html)])
    assert r2.exit_code == 2 and "no cohorts" in r2.output
    assert json.loads(r.stdout)[0]["cohort"] == "2024-02-01"
    assert not math.isnan(json.loads(r.stdout)[0]["retention"])


def test_feature_tables_in_memory_equal_single_dates(demo_ws: custdyn.Workspace) -> None:
    """feature_tables (one incremental pass, kept in memory, several customer parts) gives
    each date's table as features() does, row for row, and only the asked columns where
    columns are named; nothing is left in the workspace."""
    from custdyn.features.backend import as_utc

    dates = ["2025-06-30", "2025-09-30", "2025-12-31"]
    before = demo_ws.con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
    got = cf.feature_tables(demo_ws, dates, parts=3,
                            columns={"2025-06-30": ["n_orders", "recency"]})
    assert demo_ws.con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == before
    for d in dates:
        want = cf.features(demo_ws, d)
        t = got[as_utc(d)]
        if d == "2025-06-30":
            assert set(t.column_names) == {"customer_id", "as_of", "recency", "n_orders"}
            want = want.select(t.column_names)
        assert t.schema.equals(want.schema)
        assert t.num_rows == want.num_rows > 100
        assert_frames_match(t.to_pandas(), want.to_pandas())
