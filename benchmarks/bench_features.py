"""Relationship features: custdyn's Ibis expressions (DuckDB, Spark local) against pandas.

A synthetic workspace (1M customers, 10M interactions over two years: account openings,
orders, contacts by e-mail/phone/chat/meeting, support tickets with a status in
``attributes``, order issues and returns; threads for e-mail, chat and tickets) is generated
once in DuckDB under ``benchmarks/.data``. Each side then runs in its own child process and
builds the full feature table at one ``as_of``:

* custdyn on DuckDB (the workspace file),
* the same Ibis expressions on Spark in local mode, reading the workspace's Parquet export,
* a straightforward pandas groupby implementation of the same table (:func:`pandas_features`,
  which the tests also use as the reference), reading the same Parquet export.

Then 24 monthly snapshots of the same data are written with ``custdyn.features.snapshots``.

``python -m benchmarks.run features`` (full size), ``... features --quick`` (100k customers),
``--customers N`` for another size, ``--no-spark`` to skip Spark, ``--only spark,pandas`` to
re-run some sides (the others' last results at that size are kept).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import DATA, child, fmt_ratio, machine, run_measured, update_section

DAY_S = 86_400.0
HOUR_S = 3_600.0
AS_OF = "2025-07-01"
SNAP_FROM, SNAP_TO = "2024-01-31", "2025-12-31"
STATUS_RE = r'"status"\s*:\s*"([^"]*)"'
TICKET_RE = r'"ticket_id"\s*:\s*"([^"]*)"'


# --------------------------------------------------------------------------- the pandas peer
def pandas_features(
    interactions: Any,
    as_of: Any,
    customers: Any = None,
    text_signals: Any = None,
    purchase_kinds: tuple[str, ...] = ("order",),
    unit_days: float = 7.0,
    unanswered_after_hours: float = 48.0,
    text_engine: str | None = None,
) -> Any:
    """The feature table of ``custdyn.features`` written as plain pandas groupbys.

    ``interactions`` is a pandas DataFrame in the contract (``occurred_at`` UTC datetimes,
    ``amount`` numbers); returns one row per customer (sorted), the same columns and units.
    """
    import warnings

    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        return _pandas_features(interactions, as_of, customers, text_signals, purchase_kinds,
                                unit_days, unanswered_after_hours, text_engine)


def _pandas_features(interactions: Any, as_of: Any, customers: Any, text_signals: Any,
                     purchase_kinds: tuple[str, ...], unit_days: float,
                     unanswered_after_hours: float, text_engine: str | None) -> Any:
    import pandas as pd

    from custdyn.features import NON_CONTACT_KINDS, WINDOWS_DAYS, feature_columns
    from custdyn.schema import CHANNELS, DIRECTIONS, EMOTIONS

    a = pd.Timestamp(as_of)
    a = a.tz_localize("UTC") if a.tzinfo is None else a.tz_convert("UTC")
    a_s = a.value / 1e9
    df = interactions.copy()
    df["occurred_at"] = pd.to_datetime(df["occurred_at"], utc=True)
    df["ts"] = df["occurred_at"].astype("datetime64[us, UTC]").astype("int64") / 1e6
    df["amount"] = pd.to_numeric(df["amount"]).astype("float64")
    non_contact = [*purchase_kinds, *NON_CONTACT_KINDS]
    df["is_contact"] = df["kind"].isna() | ~df["kind"].isin(non_contact)
    x = df[df["ts"] < a_s].copy()
    x["age"] = a_s - x["ts"]
    g = x.groupby("customer_id", sort=True)
    out = pd.DataFrame(index=pd.Index(sorted(x["customer_id"].unique()), name="customer_id"))

    def count(mask: Any, frame: Any = x, key: str = "customer_id") -> Any:
        return mask.groupby(frame[key]).sum().reindex(out.index, fill_value=0).astype("int64")

    inb = x["direction"] == "inbound"
    outb = x["direction"] == "outbound"
    purchase = x["kind"].isin(purchase_kinds)
    out["n_interactions"] = g.size().astype("int64")
    for w in WINDOWS_DAYS:
        inw = x["age"] <= w * DAY_S
        for ch in CHANNELS:
            for d in DIRECTIONS:
                out[f"n_{ch}_{d}_{w}d"] = count(inw & (x["channel"] == ch) & (x["direction"] == d))
        out[f"n_inbound_{w}d"] = count(inw & inb)
        out[f"n_outbound_{w}d"] = count(inw & outb)
    sel = x[inb & (x["age"] <= 365 * DAY_S)]
    out["channel_breadth_365d"] = sel.groupby("customer_id")["channel"].nunique().reindex(
        out.index, fill_value=0).astype("int64")
    meet = x["channel"] == "meeting"
    out["meetings_365d"] = count(meet & (x["age"] <= 365 * DAY_S))
    out["meeting_interval_days"] = _interval(x[meet], out.index)
    out["last_c"] = x[inb & x["is_contact"]].groupby("customer_id")["ts"].max()
    out["last_v"] = x[outb & x["is_contact"]].groupby("customer_id")["ts"].max()
    out["n_orders"] = count(purchase)
    out["n_order_issues"] = count(x["kind"] == "order_issue")
    out["n_returns"] = count(x["kind"] == "return")
    out["first_contact_at"] = g["occurred_at"].min()
    out["first_s"] = g["ts"].min()
    opened = x[x["kind"] == "account_opened"].groupby("customer_id")
    out["opened_event_s"] = opened["ts"].min()
    out["opened_event_at"] = opened["occurred_at"].min()
    orders = x[purchase].groupby("customer_id")
    out["first_order_s"] = orders["ts"].min()
    out["first_order_at"] = orders["occurred_at"].min()

    # contacts
    thr = df[df["thread_id"].notna() & df["is_contact"]].sort_values(["ts"], kind="stable")
    starts_thr = thr.groupby(["customer_id", "thread_id"], sort=False).first()[
        ["ts", "direction"]].reset_index()[["customer_id", "ts", "direction"]]
    starts_one = df[df["thread_id"].isna() & df["is_contact"]][["customer_id", "ts", "direction"]]
    c = pd.concat([starts_thr, starts_one], ignore_index=True)
    c = c[c["ts"] < a_s]
    c_age = a_s - c["ts"]
    y365 = c_age <= 365 * DAY_S
    cin, cout = c["direction"] == "inbound", c["direction"] == "outbound"
    contacts = count(y365, c)
    started = count(cin & y365, c)
    out["contacts_365d"] = contacts
    out["customer_started_share_365d"] = (started / contacts.where(contacts > 0)).astype(float)
    out["vendor_contacts_90d"] = count(cout & (c_age <= 90 * DAY_S), c)
    out["vendor_contacts_365d"] = count(cout & y365, c)
    out["vendor_contact_interval_days"] = _interval(c[cout], out.index)

    # replies
    th = df[df["thread_id"].notna()].sort_values(
        ["customer_id", "thread_id", "ts", "interaction_id"], kind="stable")
    grp = th.groupby(["customer_id", "thread_id"], sort=False)
    prev = grp["direction"].shift(1)
    out_ts = th["ts"].where(th["direction"] == "outbound")
    reply = out_ts.groupby([th["customer_id"], th["thread_id"]], sort=False).bfill()
    th = th.assign(prev=prev, reply=reply)
    turn = (th["direction"] == "inbound") & (th["prev"].isna() | (th["prev"] != "inbound"))
    u = th[turn & (th["ts"] < a_s)].copy()
    answered = u["reply"].notna() & (u["reply"] < a_s)
    u["resp_h"] = ((u["reply"] - u["ts"]) / HOUR_S).where(answered)
    due = u["ts"] + unanswered_after_hours * HOUR_S
    ug = u.groupby("customer_id")["resp_h"]
    out["customer_turns"] = u.groupby("customer_id").size().reindex(out.index, fill_value=0)
    out["first_response_median_h"] = ug.median()
    out["first_response_p90_h"] = ug.quantile(0.9)
    out["unanswered_inbound"] = count((due <= a_s) & (u["reply"].isna() | (u["reply"] > due)), u)

    # tickets
    tk = x[(x["kind"] == "support") | (x["channel"] == "ticket")].copy()
    attr = tk["attributes"].astype("string")
    tk["status"] = attr.str.extract(STATUS_RE, expand=False).replace("", pd.NA)
    tid = attr.str.extract(TICKET_RE, expand=False).replace("", pd.NA)
    tk["ticket"] = tid.fillna(tk["thread_id"]).fillna(tk["interaction_id"])
    tk["resolved"] = tk["ts"].where(tk["status"] == "resolved")
    tk["reopened"] = tk["status"] == "reopened"
    tk["escalated"] = tk["status"] == "escalated"
    tk["has_status"] = tk["status"].notna()
    per = tk.groupby(["customer_id", "ticket"]).agg(
        opened_s=("ts", "min"), resolved_s=("resolved", "min"), reopened=("reopened", "any"),
        escalated=("escalated", "any"), has_status=("has_status", "any"),
    ).reset_index()
    per["resolve_h"] = (per["resolved_s"] - per["opened_s"]) / HOUR_S
    pg = per.groupby("customer_id")
    out["tickets_opened"] = pg.size().reindex(out.index, fill_value=0).astype("int64")
    out["tickets_opened_365d"] = count((a_s - per["opened_s"]) <= 365 * DAY_S, per)
    known = pg["has_status"].any().reindex(out.index, fill_value=False).astype(bool)
    out["tickets_open"] = count(per["has_status"] & per["resolved_s"].isna(), per).where(known)
    out["ticket_resolve_median_h"] = pg["resolve_h"].median()
    out["tickets_reopened"] = count(per["reopened"].astype(bool), per).where(known)
    out["tickets_escalated"] = count(per["escalated"].astype(bool), per).where(known)

    # purchases
    p = x[purchase][["customer_id", "ts", "amount"]].copy()
    p["day"] = np.floor(p["ts"] / DAY_S)
    p["amount"] = p["amount"].fillna(0.0)
    pday = p.groupby(["customer_id", "day"], sort=True)["amount"].sum().reset_index()
    r = pday.groupby("customer_id").agg(n=("day", "size"), first=("day", "min"),
                                         last=("day", "max"), total=("amount", "sum"),
                                         first_amt=("amount", "first"))
    freq = (r["n"] - 1).astype(float)
    out["frequency"] = freq
    out["recency"] = (r["last"] - r["first"]) / unit_days
    out["T"] = (np.floor(a_s / DAY_S) - r["first"]) / unit_days
    out["monetary_value"] = ((r["total"] - r["first_amt"]) / freq.where(freq > 0)).fillna(0.0)
    out["revenue"] = r["total"]

    # text
    emo_cols = [f"emotion_{e}_365d" for e in EMOTIONS]
    if text_signals is not None and len(text_signals):
        sig = text_signals
        eng = text_engine or sig.groupby("engine").size().sort_index().sort_values(
            ascending=False, kind="stable").index[0]
        sig = sig[sig["engine"] == eng].copy()
        for col in ["sentiment_score", *EMOTIONS]:  # float32 in the contract: mean in float64
            sig[col] = sig[col].astype("float64")
        z = x[x["direction"] == "inbound"][["interaction_id", "customer_id", "age"]].merge(
            sig, on="interaction_id")
        z["mention"] = z["mentions"].fillna("").astype(str).str.len() > 2
        z["switch"] = z["intent_to_switch"].fillna(False).astype(bool)
        z90, z365 = z[z["age"] <= 90 * DAY_S], z[z["age"] <= 365 * DAY_S]
        zp = z[(z["age"] > 90 * DAY_S) & (z["age"] <= 180 * DAY_S)]
        scored = z.groupby("customer_id").size()
        out["scored_messages_365d"] = z365.groupby("customer_id").size().reindex(
            scored.index, fill_value=0)
        out["sentiment_90d"] = z90.groupby("customer_id")["sentiment_score"].mean()
        out["sentiment_365d"] = z365.groupby("customer_id")["sentiment_score"].mean()
        out["sentiment_trend_90d"] = out["sentiment_90d"] - zp.groupby("customer_id")[
            "sentiment_score"].mean()
        for e in EMOTIONS:
            out[f"emotion_{e}_365d"] = z365.groupby("customer_id")[e].mean()
        out["competitor_mentions_365d"] = z365.groupby("customer_id")["mention"].sum().reindex(
            scored.index, fill_value=0)
        out["switch_intent_365d"] = z365.groupby("customer_id")["switch"].sum().reindex(
            scored.index, fill_value=0)
    else:
        for col in ["scored_messages_365d", "sentiment_90d", "sentiment_365d",
                    "sentiment_trend_90d", *emo_cols, "competitor_mentions_365d",
                    "switch_intent_365d"]:
            out[col] = np.nan

    # people and lifecycle
    if customers is not None and len(customers):
        cu = customers[["customer_id", "created_at"]].dropna().copy()
        cu["created_at"] = pd.to_datetime(cu["created_at"], utc=True)
        cu["created_s"] = cu["created_at"].astype("datetime64[us, UTC]").astype("int64") / 1e6
        cu = cu[cu["created_s"] < a_s].set_index("customer_id")
        out = out.reindex(out.index.union(cu.index))
        out.index.name = "customer_id"
        out["created_s"] = cu["created_s"]
        out["created_at"] = cu["created_at"]
        for col in out.columns:
            if col.startswith("n_") or col in (
                    "meetings_365d", "channel_breadth_365d", "contacts_365d",
                    "vendor_contacts_90d", "vendor_contacts_365d", "customer_turns",
                    "unanswered_inbound", "tickets_opened", "tickets_opened_365d"):
                out[col] = out[col].fillna(0).astype("int64")
        out["account_opened_s"] = out[["opened_event_s", "created_s"]].min(axis=1)
        out["account_opened_at"] = out[["opened_event_at", "created_at"]].min(axis=1)
    else:
        out["account_opened_s"] = out["opened_event_s"]
        out["account_opened_at"] = out["opened_event_at"]
    out["days_since_customer_contact"] = (a_s - out["last_c"]) / DAY_S
    out["days_since_vendor_contact"] = (a_s - out["last_v"]) / DAY_S
    orders_n = out["n_orders"].where(out["n_orders"] > 0)
    out["order_issues_per_order"] = out["n_order_issues"] / orders_n
    out["returns_per_order"] = out["n_returns"] / orders_n
    out["days_to_first_order"] = (out["first_order_s"] - out["account_opened_s"]) / DAY_S
    out["tenure_days"] = (a_s - out[["first_s", "account_opened_s"]].min(axis=1)) / DAY_S
    out["as_of"] = a
    out = out.reset_index()
    return out[feature_columns()]


def _interval(events: Any, index: Any) -> Any:
    """Mean days between consecutive events per customer; NaN under two events."""
    g = events.groupby("customer_id")["ts"]
    n = g.size()
    span = (g.max() - g.min()) / DAY_S
    return (span / (n - 1)).where(n >= 2).reindex(index)


# --------------------------------------------------------------------------- data
def make_workspace(n_customers: int, per_customer: int = 10, seed: int = 42) -> Path:
    """A workspace of synthetic interactions built in DuckDB SQL (cached) plus its export."""
    import custdyn

    d = DATA / f"features_ws_{n_customers}"
    if (d / "ready").exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    ws = custdyn.Workspace.create(d)
    n, m = n_customers, n_customers * (per_customer - 1)
    con = ws.con
    con.execute(f"SELECT setseed({(seed % 1000) / 1000})")
    con.execute(f"""
        CREATE TEMP TABLE c AS SELECT i, printf('C%08d', i) AS customer_id,
          TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_microseconds(
            CAST(random() * 540 * 86400e6 AS BIGINT)) AS created_at,
          0.2 + random() * 1.6 AS activity
        FROM range({n}) t(i)""")
    con.execute("""INSERT INTO customers (customer_id, created_at, segment, batch_id)
                   SELECT customer_id, created_at, 'b2c', 0 FROM c""")
    con.execute(f"""
        CREATE TEMP TABLE e AS
        WITH r AS (
          SELECT j, CAST(floor(random() * {n}) AS BIGINT) AS i, random() AS u, random() AS v,
                 random() AS w, random() AS q FROM range({m}) t(j))
        SELECT r.j, c.customer_id, c.created_at + to_microseconds(CAST(
                 r.w * (epoch(TIMESTAMPTZ '2026-01-01 00:00:00+00') - epoch(c.created_at))
                 * 1e6 AS BIGINT)) AS occurred_at,
               CASE WHEN r.u < 0.22 THEN 'order' WHEN r.u < 0.25 THEN 'order_issue'
                    WHEN r.u < 0.27 THEN 'return' WHEN r.u < 0.42 THEN 'support'
                    WHEN r.u < 0.45 THEN 'feedback' ELSE 'contact' END AS kind,
               r.v, r.q
        FROM r JOIN c USING (i)""")
    con.execute("""
        INSERT INTO interactions (interaction_id, customer_id, occurred_at, channel, kind,
                                  direction, amount, currency, thread_id, agent_id, source,
                                  attributes, batch_id)
        SELECT 'A' || customer_id, customer_id, created_at, 'web', 'account_opened', 'inbound',
               NULL, NULL, NULL, NULL, 'bench', NULL, 0 FROM c
        UNION ALL
        SELECT 'I' || j, customer_id, occurred_at,
          CASE WHEN kind = 'order' THEN (CASE WHEN v < 0.6 THEN 'web' WHEN v < 0.85
                                          THEN 'store' ELSE 'phone' END)
               WHEN kind IN ('order_issue', 'return', 'feedback') THEN 'web'
               WHEN kind = 'support' THEN 'ticket'
               ELSE (CASE WHEN v < 0.45 THEN 'email' WHEN v < 0.7 THEN 'phone'
                          WHEN v < 0.9 THEN 'chat' ELSE 'meeting' END) END,
          kind,
          CASE WHEN kind IN ('order', 'order_issue', 'return', 'feedback') THEN 'inbound'
               WHEN q < 0.5 THEN 'inbound' ELSE 'outbound' END,
          CASE WHEN kind = 'order' THEN CAST(round(10 + v * 190, 2) AS DECIMAL(18, 4))
               WHEN kind = 'return' THEN CAST(-round(10 + v * 90, 2) AS DECIMAL(18, 4)) END,
          CASE WHEN kind IN ('order', 'return') THEN 'EUR' END,
          CASE WHEN kind = 'support' THEN 'TK-' || customer_id || '-' || CAST(floor(q * 3) AS INT)
               WHEN kind = 'contact' AND v < 0.45 THEN 'EM-' || customer_id || '-'
                    || CAST(floor(q * 4) AS INT)
               WHEN kind = 'contact' AND v >= 0.7 AND v < 0.9 THEN 'CH-' || customer_id || '-'
                    || CAST(floor(q * 2) AS INT) END,
          NULL, 'bench',
          CASE WHEN kind = 'support' THEN json_object(
            'ticket_id', 'TK-' || customer_id || '-' || CAST(floor(q * 3) AS INT),
            'status', CASE WHEN v < 0.35 THEN 'opened' WHEN v < 0.6 THEN 'replied'
                           WHEN v < 0.66 THEN 'reopened' WHEN v < 0.7 THEN 'escalated'
                           ELSE 'resolved' END) END,
          0
        FROM e""")
    con.execute("DROP TABLE e")
    con.execute("DROP TABLE c")
    con.execute("CHECKPOINT")
    ws.export(d / "parquet", ["interactions", "customers"])
    ws.close()
    (d / "ready").write_text("ok")
    return d


# --------------------------------------------------------------------------- children
def _child(mode: str, ws_dir: str) -> None:
    """One measured side; prints a JSON line with its inner timings."""
    import custdyn
    import custdyn.features as cf

    d = Path(ws_dir)
    out: dict[str, Any] = {"mode": mode}
    if mode == "duckdb":
        ws = custdyn.Workspace.open(d, read_only=True)
        t0 = time.perf_counter()
        t = cf.features(ws, AS_OF)
        out.update(seconds=time.perf_counter() - t0, rows=t.num_rows, cols=t.num_columns)
    elif mode == "spark":
        t0 = time.perf_counter()
        b = cf.backend(d / "parquet", "spark")
        t1 = time.perf_counter()
        expr = cf.feature_expr(b, AS_OF)
        target = d / "spark_features.parquet"
        shutil.rmtree(target, ignore_errors=True)
        b.con.to_parquet(expr, str(target))  # the whole table is written, as the others build it
        t2 = time.perf_counter()
        n = int(b.con.execute(b.con.read_parquet(str(target)).count()))
        out.update(seconds=t2 - t1, startup=t1 - t0, rows=n)
    elif mode == "pandas":
        import pandas as pd

        t0 = time.perf_counter()
        it = pd.read_parquet(d / "parquet" / "interactions.parquet")
        cu = pd.read_parquet(d / "parquet" / "customers.parquet")
        t1 = time.perf_counter()
        f = pandas_features(it, AS_OF, customers=cu)
        out.update(seconds=time.perf_counter() - t1, load=t1 - t0, rows=len(f),
                   cols=f.shape[1])
    elif mode in ("snapshots", "snapshots_per_date"):
        ws = custdyn.Workspace.open(d, purpose="benchmark snapshots")
        dates = cf.snapshot_dates(SNAP_FROM, SNAP_TO, "month")
        method = "incremental" if mode == "snapshots" else "per_date"
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        n = cf.snapshots(ws, dates, table="bench_snapshots", method=method)
        out.update(seconds=time.perf_counter() - t0, cpu=time.process_time() - c0, rows=n,
                   dates=len(dates), method=method, load_start=load0,
                   load_end=os.getloadavg()[0])
        ws.con.execute("DROP TABLE bench_snapshots")
        ws.close()
    print(json.dumps(out), flush=True)


def main(flags: list[str]) -> None:
    if "--child" in flags:
        i = flags.index("--child")
        _child(flags[i + 1], flags[i + 2])
        return
    n = 100_000 if "--quick" in flags else 1_000_000
    if "--customers" in flags:
        n = int(flags[flags.index("--customers") + 1])
    t0 = time.perf_counter()
    d = make_workspace(n)
    gen_s = time.perf_counter() - t0
    import duckdb

    con = duckdb.connect(str(d / "custdyn.duckdb"), read_only=True)
    row = con.execute("SELECT count(*) FROM interactions").fetchone()
    con.close()
    n_rows = int(row[0]) if row else 0
    print(f"data: {n:,} customers, {n_rows:,} interactions ({gen_s:.0f} s)", flush=True)
    env = {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    # results of earlier runs at this size are kept, so one side can be re-run alone
    saved = d / "results.json"
    res: dict[str, dict[str, Any]] = json.loads(saved.read_text()) if saved.exists() else {}
    sides = ["duckdb", "pandas", "spark", "snapshots"]
    known = [*sides, "snapshots_per_date"]  # the per-date method only when named
    if "--only" in flags:
        sides = [s for s in flags[flags.index("--only") + 1].split(",") if s in known]
    if "--no-spark" in flags:
        sides.remove("spark")
    for side in sides:
        try:
            r = run_measured(child("benchmarks.bench_features", "--child", side, str(d)),
                             env=env)
        except RuntimeError as e:
            print(f"{side} failed: {str(e)[-800:]}", flush=True)
            continue
        res[side] = {**(r["result"] or {}), "wall": r["seconds"], "rss": r["peak_rss_mib"]}
        print(side, json.dumps(res[side]), flush=True)
        latest = json.loads(saved.read_text()) if saved.exists() else {}
        res = {**latest, side: res[side]}  # another run may have added other sides meanwhile
        saved.write_text(json.dumps(res, indent=1))
    _write(n, n_rows, res, "--quick" in flags or n != 1_000_000)


def _write(n: int, n_rows: int, res: dict[str, dict[str, Any]], reduced: bool) -> None:
    def cell(side: str, key: str, fmt: str) -> str:
        v = res.get(side, {}).get(key)
        return "not run" if v is None else format(v, fmt)

    lines = [
        "## Relationship features (`custdyn.features`)",
        "",
        f"{n:,} customers, {n_rows:,} interactions (synthetic, two years; "
        "`benchmarks/bench_features.py`), the full feature table "
        f"({res.get('duckdb', {}).get('cols', '?')} columns) at one `as_of` ({AS_OF}). Each side "
        "runs in its own process; time is measured around the feature computation (pandas's "
        "Parquet read is shown apart), peak memory is the process's peak RSS.",
        "",
    ]
    if reduced:
        lines += [f"**Reduced size** ({n:,} customers, not the 1M-customer target size).", ""]
    lines += [
        "| side | feature table (s) | process wall (s) | peak RSS (MiB) |",
        "|---|---:|---:|---:|",
        f"| custdyn, DuckDB | {cell('duckdb', 'seconds', '.1f')} | "
        f"{cell('duckdb', 'wall', '.1f')} | {cell('duckdb', 'rss', '.0f')} |",
        f"| pandas groupby (same table) | {cell('pandas', 'seconds', '.1f')} "
        f"(+{cell('pandas', 'load', '.1f')} read) | {cell('pandas', 'wall', '.1f')} | "
        f"{cell('pandas', 'rss', '.0f')} |",
        f"| custdyn, Spark local | {cell('spark', 'seconds', '.1f')} "
        f"(+{cell('spark', 'startup', '.1f')} start) | {cell('spark', 'wall', '.1f')} | "
        f"{cell('spark', 'rss', '.0f')} (driver only) |",
        "",
    ]
    if "duckdb" in res and "pandas" in res:
        ratio = fmt_ratio(res["duckdb"]["seconds"], res["pandas"]["seconds"])
        mem = res["duckdb"]["rss"] / res["pandas"]["rss"]
        lines.append(f"DuckDB against pandas: {ratio} (target: 3x faster or better); peak "
                     f"memory {mem:.0%} of pandas's (target: 50% or less).")
    if "snapshots" in res:
        lines += ["", _snapshot_lines(n, res)]
    if "snapshots" not in res:
        lines.append("\n24 monthly snapshots were not measured at this size; see the other "
                     "sizes below.")
    if "spark" not in res:
        lines.append("Spark local was not run at this size; see the other sizes below.")
    others = []
    for f in sorted(DATA.glob("features_ws_*/results.json")):
        size = int(f.parent.name.rsplit("_", 1)[1])
        if size == n:
            continue
        r = json.loads(f.read_text())
        for side, v in sorted(r.items()):
            others.append(f"| {size:,} | {side} | {v.get('seconds', float('nan')):.1f} | "
                          f"{v.get('wall', float('nan')):.1f} | {v.get('rss', float('nan')):.0f} |")
    if others:
        lines += ["", "Other sizes (customers; ten interactions each), last run of each side:", "",
                  "| customers | side | computation (s) | process wall (s) | peak RSS (MiB) |",
                  "|---:|---|---:|---:|---:|", *others]
    lines += ["", "The machine is shared with other jobs (load average from about 1 to 12 on its 2 "
              "cores during these runs), so times vary from run to run."]
    lines += ["", f"Machine: {machine()}. Spark {_spark_version()} in local mode "
              f"(`local[*]`), {os.cpu_count()} cores.", ""]
    update_section("features", "\n".join(lines))


def _snapshot_lines(n: int, res: dict[str, dict[str, Any]]) -> str:
    """The 24-snapshot sentence: the incremental method and the per-date method's last run."""
    from custdyn.features.api import ROWS_PER_PART, ROWS_PER_QUERY

    s = res["snapshots"]
    parts = max(1, -(-n * 24 // ROWS_PER_PART))
    text = (f"24 monthly snapshots ({SNAP_FROM} .. {SNAP_TO}), stored in the workspace, "
            f"incremental method ({parts} customer part{'s' if parts > 1 else ''}): "
            f"**{s['seconds']:.0f} s** wall")
    if "cpu" in s:
        text += f" ({s['cpu']:.0f} s of CPU)"
    text += f", {s['rows']:,} rows, peak RSS {s['rss']:.0f} MiB"
    if "load_start" in s:
        text += (f"; 1-minute load average {s['load_start']:.1f} at the start and "
                 f"{s['load_end']:.1f} at the end")
    text += (" (target: under 3 minutes). Rows equal to the per-date method's, column for "
             "column (`tests/test_features.py`).")
    old = res.get("snapshots_per_date")
    if old:
        per = max(1, ROWS_PER_QUERY // n)
        queries = "one query" if per >= 24 else f"{-(-24 // per)} queries of {per} dates"
        text += (f" The per-date method (every interaction joined to the dates, {queries}), "
                 f"last run: {old['seconds']:.0f} s, peak RSS {old['rss']:.0f} MiB; "
                 f"incremental / per-date time: {s['seconds'] / old['seconds']:.2f}.")
    return text


def _spark_version() -> str:
    try:
        import pyspark

        return str(pyspark.__version__)
    except ImportError:  # pragma: no cover
        return "(not installed)"


if __name__ == "__main__":
    main(sys.argv[1:])
