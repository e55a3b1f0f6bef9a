"""The demo world: files parse, truth is consistent, texts vary, the processes match their
parameters, and the same seed gives the same bytes."""

from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import json
import mailbox
import tomllib
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from custdyn.demo import SourceFile, World, write_world
from custdyn.schema import CHANNELS, DIRECTIONS, EMOTIONS, KINDS, SENTIMENTS

N = 1500


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return write_world(tmp_path_factory.mktemp("demo"), n_customers=N, seed=7)


@pytest.fixture(scope="module")
def truth(world: World) -> dict[str, pd.DataFrame]:
    return {name: pq.read_table(world.truth_dir / f"{name}.parquet").to_pandas()
            for name in ("customers", "messages", "threads")}


@pytest.fixture(scope="module")
def params(world: World) -> dict:
    return json.loads((world.truth_dir / "params.json").read_text(encoding="utf-8"))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _mails(path: Path) -> list[email.message.EmailMessage]:
    box = mailbox.mbox(str(path), factory=lambda f: email.message_from_binary_file(
        f, policy=email.policy.default))
    return list(box)


def _plain(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    assert part is not None
    return str(part.get_content())


# ---------------------------------------------------------------------------------------------
# API and files


def test_world_api(world: World) -> None:
    assert [f.path.name for f in world.files] == [
        "customers.csv", "orders.csv", "crm_activities.csv", "emails.mbox", "tickets.jsonl",
        "chat_feedback.jsonl"]
    assert all(isinstance(f, SourceFile) and f.path.exists() for f in world.files)
    assert world.files[0].table == "customers"
    assert {f.table for f in world.files[1:]} == {"interactions"}
    crm = world.files[2]
    assert crm.mapping is not None and crm.mapping.name == "crm_map.toml"
    assert all(f.mapping is None for f in world.files if f is not crm)
    s = world.settings
    assert s["timezone"] == "Europe/Oslo" and s["currency"] == "EUR"
    assert s["vendor_domains"] == ["lumora.example"]
    assert 3 <= len(s["competitors"]) <= 4
    aliases = [a for c in s["competitors"] for a in c["aliases"]]
    assert "Nordviks" in aliases and any(not a.isascii() for a in aliases)
    assert world.truth_dir == world.directory / "truth"
    for name in ("customers.parquet", "messages.parquet", "threads.parquet", "stages.parquet",
                 "params.json"):
        assert (world.truth_dir / name).exists()


def test_deterministic(tmp_path: Path) -> None:
    def digest(d: Path) -> dict[str, str]:
        return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(d.rglob("*")) if p.is_file()}

    a = write_world(tmp_path / "a", n_customers=150, seed=11)
    b = write_world(tmp_path / "b", n_customers=150, seed=11)
    c = write_world(tmp_path / "c", n_customers=150, seed=12)
    da, db, dc = digest(a.directory), digest(b.directory), digest(c.directory)
    assert len(da) == 12
    assert da == db
    assert da["orders.csv"] != dc["orders.csv"]


def test_customers_csv(world: World, truth: dict[str, pd.DataFrame]) -> None:
    rows = _read_csv(world.directory / "customers.csv")
    assert list(rows[0])[:7] == ["customer_id", "name", "email", "segment", "country",
                                 "language", "created_at"]
    assert len(rows) == N
    assert {r["language"] for r in rows} == {"en", "pt", "no", "tl"}
    for r in rows[:50]:
        assert datetime.fromisoformat(r["created_at"]).utcoffset() is not None
    assert len({r["email"] for r in rows}) == N
    prospects = set(truth["customers"].query("is_prospect").customer_id)
    assert prospects and {r["customer_id"] for r in rows if r["plan"] == ""} == prospects


def test_orders_csv(world: World, truth: dict[str, pd.DataFrame]) -> None:
    rows = _read_csv(world.directory / "orders.csv")
    assert list(rows[0]) == ["customer_id", "occurred_at", "channel", "kind", "direction",
                             "amount", "currency", "text", "order_no", "items"]
    kinds = {r["kind"] for r in rows}
    assert kinds == {"account_opened", "order", "order_issue", "return"}
    for r in rows:
        assert r["channel"] in ("web", "store", "phone") and r["direction"] == "inbound"
        assert datetime.fromisoformat(r["occurred_at"]).utcoffset() is not None
        if r["kind"] == "return":
            assert float(r["amount"]) < 0
        elif r["kind"] == "order":
            assert float(r["amount"]) > 0 and r["currency"] == "EUR"
        else:
            assert r["amount"] == ""
    opened = [r for r in rows if r["kind"] == "account_opened"]
    cust = truth["customers"]
    assert len(opened) == int((~cust.is_prospect).sum())
    prospects = set(cust.query("is_prospect").customer_id)
    assert not any(r["customer_id"] in prospects for r in rows)


def test_crm_and_mapping(world: World) -> None:
    rows = _read_csv(world.directory / "crm_activities.csv")
    assert list(rows[0]) == ["Activity ID", "Account", "Date", "Type", "Direction", "Owner",
                             "Notes", "Outcome"]
    assert {r["Type"] for r in rows} == {"Call", "Meeting", "Visit", "Cancellation"}
    assert {r["Direction"] for r in rows} == {"In", "Out"}
    for r in rows:
        datetime.strptime(r["Date"], "%d/%m/%Y %H:%M")
    assert len({r["Activity ID"] for r in rows}) == len(rows)
    # agent ids are the agents' e-mail addresses in every source
    assert all(r["Owner"].endswith("@lumora.example") for r in rows)
    m = tomllib.loads((world.directory / "crm_map.toml").read_text(encoding="utf-8"))
    assert m["columns"]["Activity ID"] == "interaction_id"
    assert set(m["columns"].values()) <= {"interaction_id", "customer_id", "occurred_at",
                                          "channel", "direction", "agent_id", "text"}
    assert set(m["values"]["channel"].values()) <= set(CHANNELS)
    assert set(m["derive"]["kind"]["map"].values()) <= set(KINDS)
    assert m["dates"] == {"format": "%d/%m/%Y %H:%M", "timezone": "Europe/Oslo"}
    assert "defaults" in m


def test_mbox(world: World) -> None:
    msgs = _mails(world.directory / "emails.mbox")
    assert len(msgs) > 500
    ids = {m["Message-ID"] for m in msgs}
    assert len(ids) == len(msgs)
    types = {m.get_content_type() for m in msgs}
    assert {"text/plain", "multipart/alternative", "text/html"} <= types
    replies = [m for m in msgs if m["In-Reply-To"]]
    assert replies and all(m["In-Reply-To"] in ids for m in replies)
    assert all(m["References"].split()[-1] == m["In-Reply-To"] for m in replies)
    vendor = [m for m in msgs if str(m["From"]).endswith("@lumora.example>")]
    assert 0.2 < len(vendor) / len(msgs) < 0.8
    bodies = [_plain(m) for m in replies if m.get_content_type() == "text/plain"]
    assert any(" wrote:\n> " in b for b in bodies)
    assert any("skrev" in b and "\n> " in b for b in bodies)
    assert any("escreveu:\n> " in b for b in bodies)
    customers = {r["email"] for r in _read_csv(world.directory / "customers.csv")}
    senders = [m["From"].addresses[0].addr_spec for m in msgs if m not in vendor]
    known = sum(s in customers for s in senders) / len(senders)
    assert 0.95 < known < 1.0
    for m in msgs[:200]:
        assert m["Date"].datetime.utcoffset() is not None


def test_jsonl(world: World) -> None:
    tickets = _jsonl(world.directory / "tickets.jsonl")
    assert tickets
    for t in tickets:
        assert t["channel"] == "ticket" and t["kind"] == "support"
        assert t["direction"] in DIRECTIONS and t["thread_id"] and t["text"]
        assert t["attributes"]["status"] in ("opened", "replied", "reopened", "escalated",
                                             "resolved")
        assert (t["direction"] == "outbound") == ("agent_id" in t)
        assert t.get("agent_id", "x@lumora.example").endswith("@lumora.example")
        assert datetime.fromisoformat(t["occurred_at"]).utcoffset() is not None
    statuses = {t["attributes"]["status"] for t in tickets}
    assert statuses == {"opened", "replied", "reopened", "escalated", "resolved"}
    cf = _jsonl(world.directory / "chat_feedback.jsonl")
    kinds = {(r["channel"], r["kind"]) for r in cf}
    assert {("chat", "contact"), ("web", "feedback"), ("email", "feedback"),
            ("email", "survey"), ("web", "survey")} <= kinds
    for r in cf:
        if r["kind"] == "survey":
            assert 0 <= r["attributes"]["nps"] <= 10
        if r["kind"] in ("feedback", "survey"):
            assert r["direction"] == "inbound"
    ids = [r["interaction_id"] for r in tickets + cf]
    assert len(set(ids)) == len(ids)


# ---------------------------------------------------------------------------------------------
# truth


def test_truth_joins_back(world: World, truth: dict[str, pd.DataFrame]) -> None:
    m = truth["messages"]
    assert set(m.sentiment) <= set(SENTIMENTS)
    assert set(m.emotion) <= set(EMOTIONS) | {"neutral"}
    assert set(m.language) == {"en", "pt", "no", "tl"}
    ids: set[str] = set()
    for r in _jsonl(world.directory / "tickets.jsonl"):
        ids.add(r["interaction_id"])
    for r in _jsonl(world.directory / "chat_feedback.jsonl"):
        ids.add(r["interaction_id"])
    for r in _read_csv(world.directory / "crm_activities.csv"):
        ids.add(r["Activity ID"])
    for msg in _mails(world.directory / "emails.mbox"):
        ids.add(msg["Message-ID"].strip("<>"))
    keyed = m[m.interaction_id.notna()]
    assert set(keyed.interaction_id) <= ids
    assert keyed.interaction_id.is_unique
    # every e-mail, ticket, chat and CRM row has a truth row
    assert len(ids - set(keyed.interaction_id)) == sum(
        r["kind"] == "survey" and not r["text"]
        for r in _jsonl(world.directory / "chat_feedback.jsonl"))
    # orders.csv rows join by (customer_id, occurred_at, kind, amount)
    rows = _read_csv(world.directory / "orders.csv")
    keys = {(r["customer_id"], pd.Timestamp(r["occurred_at"]).tz_convert("UTC"), r["kind"],
             None if r["amount"] == "" else round(float(r["amount"]), 2)) for r in rows}
    unkeyed = m[m.interaction_id.isna()]
    assert len(unkeyed) > 0 and set(unkeyed.source) == {"orders.csv"}
    for r in unkeyed.itertuples():
        amount = None if r.amount is None else round(float(r.amount), 2)
        assert (r.customer_id, r.occurred_at, r.kind, amount) in keys


def test_truth_customers(world: World, truth: dict[str, pd.DataFrame]) -> None:
    c = truth["customers"].set_index("customer_id")
    assert 0.05 < c.is_prospect.mean() < 0.25
    assert c[c.is_prospect].account_opened_at.isna().all()
    assert c[~c.is_prospect].account_opened_at.notna().all()
    assert (c.defected == c.defected_at.notna()).all()
    assert not c[c.is_prospect].defected.any()
    assert 0.2 < c[~c.is_prospect].defected.mean() < 0.6
    assert c.won_back.any() and (c.won_back == c.won_back_at.notna()).all()
    assert c.is_subscriber.any() and not c[~c.is_subscriber].cancelled_at.notna().any()
    assert set(c.stage_end) == {"prospect", "onboarding", "active", "at_risk", "dormant", "lost",
                                "won_back"}
    # subscribers who left sent a cancellation through the CRM
    crm = pd.DataFrame(_read_csv(world.directory / "crm_activities.csv"))
    cancelled = set(crm[crm.Type == "Cancellation"].Account)
    assert cancelled == set(c[c.cancelled_at.notna()].index)
    # no orders after the customer defected; won-back customers ordered again
    orders = pd.DataFrame(_read_csv(world.directory / "orders.csv"))
    orders = orders[orders.kind == "order"]
    orders["t"] = pd.to_datetime(orders.occurred_at, utc=True)
    last = orders.groupby("customer_id").t.max()
    gone = c[c.defected]
    assert (last.reindex(gone.index) <= gone.defected_at).all()
    won = c[c.won_back]
    assert (last.reindex(won.index) >= won.won_back_at).all()
    n_orders = orders.groupby("customer_id").size().reindex(c.index, fill_value=0)
    assert (n_orders == c.n_orders).all()


def test_stages(world: World, truth: dict[str, pd.DataFrame], params: dict) -> None:
    st = pq.read_table(world.truth_dir / "stages.parquet").to_pandas()
    assert list(st.columns) == ["customer_id", "as_of", "stage"]
    assert set(st.stage) == set(params["stages"])
    assert st.as_of.nunique() >= 12
    c = truth["customers"].set_index("customer_id")
    last = st[st.as_of == st.as_of.max()].set_index("customer_id").stage
    assert (last.reindex(c.index) == c.stage_end).all()
    # prospects stay prospects; lost customers were customers before
    assert set(st[st.customer_id.isin(c[c.is_prospect].index)].stage) == {"prospect"}
    first_lost = st[st.stage == "lost"].groupby("customer_id").as_of.min()
    earlier = st.merge(first_lost.rename("lost_at"), left_on="customer_id", right_index=True)
    was_customer = earlier[earlier.as_of < earlier.lost_at].groupby("customer_id").stage.apply(
        lambda x: bool(set(x) - {"prospect"}))
    assert was_customer.mean() > 0.9
    # flows: customers move between stages over time
    moves = st.sort_values("as_of").groupby("customer_id").stage.nunique()
    assert (moves > 2).mean() > 0.2


def test_params(params: dict) -> None:
    assert params["seed"] == 7 and params["n_customers"] == N
    pp = params["purchase_process"]
    assert pp["model"] == "pareto_nbd" and params["time_unit"] == "weeks"
    assert {"r", "alpha", "s", "beta"} <= set(pp)
    assert {"p", "q", "v"} <= set(params["spend_process"])
    assert {t["id"] for t in params["themes"]} >= {"late_delivery", "price", "missing_feature",
                                                  "app_bug", "staff_praise"}
    assert len(params["slow_agents"]) == 2
    assert params["start"] == "2023-01-01" and params["end"] == "2025-12-31"


# ---------------------------------------------------------------------------------------------
# texts


def test_text_variety(truth: dict[str, pd.DataFrame], world: World) -> None:
    texts: list[str] = []
    themed = set(truth["messages"].query("theme_id.notna() and direction == 'inbound'")
                 .interaction_id.dropna())
    for path in ("tickets.jsonl", "chat_feedback.jsonl"):
        for r in _jsonl(world.directory / path):
            if r["interaction_id"] in themed:
                texts.append(r["text"])
    assert len(texts) > 1000
    assert len(set(texts)) / len(texts) > 0.8
    # the cores alone (no order numbers, names) still vary
    words = {w for t in texts for w in t.lower().split()}
    assert len(words) > 2000


def test_languages_and_themes(truth: dict[str, pd.DataFrame]) -> None:
    m = truth["messages"]
    share = m.language.value_counts(normalize=True)
    assert (share > 0.05).all()
    assert m[m.code_switched].language.eq("tl").all() and m.code_switched.sum() > 100
    themed = m[m.theme_id.notna()]
    by = themed.groupby(["theme_id", "language"]).size().unstack(fill_value=0)
    assert set(by.index) == {"late_delivery", "damaged_goods", "price", "missing_feature",
                             "app_bug", "staff_praise"}
    assert (by > 0).all().all()
    assert set(themed.query("theme_id == 'staff_praise'").sentiment) == {"positive"}
    assert set(themed.query("theme_id in ['late_delivery', 'app_bug']").sentiment) == {
        "negative"}
    assert set(m.emotion) == set(EMOTIONS) | {"neutral"}


def _shape(x: object) -> object:
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return "list"
    return type(x).__name__


def test_text_banks_share_keys_and_slots() -> None:
    from custdyn.demo.texts import BANKS, Texts

    shapes = {lang: _shape(b) for lang, b in BANKS.items()}
    assert all(s == shapes["en"] for s in shapes.values())
    texts = Texts(1, "Lumora")

    def walk(x: object, ctx: dict) -> int:
        if isinstance(x, dict):
            return sum(walk(v, ctx) for v in x.values())
        if isinstance(x, list):
            return sum(walk(v, ctx) for v in x)
        if isinstance(x, str):
            texts.fill(x, ctx)  # every slot is known
            return 1
        return 0

    for lang, bank in BANKS.items():
        ctx = texts.ctx(lang, name="Ana", agent="Marta", competitor="Nordvik")
        plain = {k: v for k, v in bank.items() if k not in ("quote", "date_fmt", "money")}
        assert walk(plain, ctx) > 300
        for key in ("late_delivery", "damaged_goods", "price", "missing_feature", "app_bug",
                    "staff_praise"):
            assert len(bank["theme"][key]) >= 6
        for emo in ("anger", "disgust", "fear", "sadness", "joy", "trust", "anticipation"):
            assert len(bank["emotion"][emo]) >= 4


def test_staff_praise_names_the_agent(world: World, truth: dict[str, pd.DataFrame]) -> None:
    ids = set(truth["messages"].query("theme_id == 'staff_praise'").interaction_id.dropna())
    texts = [r["text"] for r in _jsonl(world.directory / "chat_feedback.jsonl")
             if r["interaction_id"] in ids]
    assert texts and sum("Marta" in t for t in texts) / len(texts) > 0.6


def test_competitor_mentions(world: World, truth: dict[str, pd.DataFrame],
                             params: dict) -> None:
    m = truth["messages"]
    ment = m[m.competitor.notna()]
    assert len(ment) > 30 and ment.intent_to_switch.any() and (~ment.intent_to_switch).any()
    assert set(ment.competitor) <= {c["name"] for c in params["competitors"]}
    aliases = {c["name"]: c["aliases"] + [c["name"]] for c in params["competitors"]}
    texts = {}
    for path in ("tickets.jsonl", "chat_feedback.jsonl"):
        for r in _jsonl(world.directory / path):
            texts[r["interaction_id"]] = r["text"]
    found = 0
    for r in ment.itertuples():
        if r.interaction_id in texts:
            t = texts[r.interaction_id].lower()
            assert any(a.lower() in t for a in aliases[r.competitor])
            found += 1
    assert found > 10
    c = truth["customers"]
    acct = c[~c.is_prospect]
    rate = acct.groupby("mentioned_competitor").defected.mean()
    assert rate[True] > rate[False] + 0.1
    # some customers mentioned a competitor shortly before leaving
    before = acct[acct.defected & acct.mentioned_competitor
                  & (acct.first_mention_at < acct.defected_at)]
    assert len(before) > 10


# ---------------------------------------------------------------------------------------------
# processes


def test_purchase_process_matches_parameters(truth: dict[str, pd.DataFrame],
                                             params: dict) -> None:
    c = truth["customers"]
    acct = c[~c.is_prospect]
    pp = params["purchase_process"]
    lam = acct.lambda_per_week.to_numpy()
    assert abs(lam.mean() / (pp["r"] / pp["alpha"]) - 1) < 0.12
    # repeat purchases while alive are Poisson(lambda * m(S)) over the effective exposure
    expected = float((acct.lambda_per_week * acct.effective_exposure_weeks).sum())
    observed = float(acct.n_repeat_orders.sum())
    assert abs(observed - expected) < 4 * np.sqrt(expected) + 0.02 * expected
    # and the buyers who buy more have higher rates
    hi = acct.lambda_per_week > acct.lambda_per_week.median()
    assert (acct[hi].n_repeat_orders / acct[hi].exposure_weeks.clip(lower=1)).mean() > \
        2 * (acct[~hi].n_repeat_orders / acct[~hi].exposure_weeks.clip(lower=1)).mean()


def test_spend_process_matches_parameters(world: World, params: dict,
                                          truth: dict[str, pd.DataFrame]) -> None:
    sp = params["spend_process"]
    rows = _read_csv(world.directory / "orders.csv")
    amounts = np.array([float(r["amount"]) for r in rows if r["kind"] == "order"])
    assert abs(amounts.mean() / (sp["p"] * sp["v"] / (sp["q"] - 1)) - 1) < 0.15
    c = truth["customers"]
    assert np.allclose(c.spend_mean, sp["p"] / c.spend_nu)


def test_slow_agents(truth: dict[str, pd.DataFrame], params: dict) -> None:
    th = truth["threads"]
    nonchat = th[th.channel != "chat"]
    med = nonchat.groupby("slow_agent").first_reply_hours.median()
    assert med[True] > 24 and med[False] < 8
    assert nonchat.groupby("slow_agent").unanswered.mean()[True] > 0.1
    assert set(th[th.slow_agent].agent_id) == set(params["slow_agents"])
    c = truth["customers"]
    acct = c[~c.is_prospect]
    assert acct.groupby("slow_agent").satisfaction_end.mean().diff().iloc[-1] < -0.03


def test_defection_is_predictable_but_not_trivial(truth: dict[str, pd.DataFrame]) -> None:
    """Observable service history carries signal: mean inbound sentiment and service failures
    separate those who left from those who stayed."""
    c = truth["customers"]
    m = truth["messages"]
    acct = c[~c.is_prospect].set_index("customer_id")
    inbound = m[m.direction == "inbound"]
    neg = inbound.assign(neg=inbound.sentiment.eq("negative")).groupby("customer_id").neg.mean()
    score = neg.reindex(acct.index).fillna(0.0)
    y = acct.defected.to_numpy()
    s = score.to_numpy()
    # AUC by ranks
    ranks = pd.Series(s).rank().to_numpy()
    auc = (ranks[y].sum() - y.sum() * (y.sum() + 1) / 2) / (y.sum() * (~y).sum())
    assert 0.55 < auc < 0.95


def test_small_and_short_worlds(tmp_path: Path) -> None:
    tiny = write_world(tmp_path / "tiny", n_customers=1, seed=1)
    assert tiny.counts["customers.csv"] == 1
    short = write_world(tmp_path / "short", n_customers=40, seed=2, start="2024-01-01",
                        end="2024-06-30")
    rows = _read_csv(short.directory / "orders.csv")
    lo, hi = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-07-01", tz="UTC")
    assert rows and all(lo <= pd.Timestamp(r["occurred_at"]) < hi for r in rows)
    with pytest.raises(ValueError):
        write_world(tmp_path / "bad", n_customers=10, start="2024-01-01", end="2024-02-01")
    with pytest.raises(ValueError):
        write_world(tmp_path / "bad", n_customers=0)


def test_defection_truth_follows_the_departures(world: World,
                                                truth: dict[str, pd.DataFrame]) -> None:
    """defection_truth: alive between the first order and the departure (and again after a
    win-back), defected when a departure falls in (as_of, as_of + H]."""
    from datetime import UTC, timedelta

    from custdyn.demo.truth import defection_truth, truth_end

    c = truth["customers"]
    ids = c.customer_id.tolist()
    end = truth_end(world.truth_dir)
    assert end == datetime(2026, 1, 1, tzinfo=UTC)
    as_of = end - timedelta(days=365)
    got = defection_truth(world.truth_dir, ids + ["nobody"], as_of, 90)
    assert got.known[:-1].all() and not got.known[-1] and not got.alive[-1]
    assert not (got.defected & ~got.alive).any()
    at = pd.Timestamp(as_of)
    hi = at + pd.Timedelta(days=90)
    for i, r in enumerate(c.itertuples()):
        started = pd.notna(r.first_order_at) and r.first_order_at <= at
        lapsed = pd.notna(r.dropout_at) and r.dropout_at <= at and not (
            pd.notna(r.won_back_at) and r.won_back_at <= at)
        gone = pd.notna(r.defected_at) and r.defected_at <= at
        assert got.alive[i] == (started and not lapsed and not gone), r.customer_id
        leaves = any(pd.notna(x) and at < x <= hi for x in (r.dropout_at, r.defected_at))
        assert got.defected[i] == (got.alive[i] and leaves), r.customer_id
    assert 0 < got.defected.sum() < got.alive.sum()
    # tiling the last two years with 90-day windows finds each first departure of the
    # customers already there at the start exactly once
    start = pd.Timestamp(end - timedelta(days=720))
    first_left = c.dropout_at.notna() & (c.dropout_at > start) & (c.first_order_at <= start)
    found = np.zeros(len(c), dtype=int)
    for k in range(8):
        at_k = end - timedelta(days=720) + timedelta(days=90 * k)
        t = defection_truth(world.truth_dir, ids, at_k, 90)
        found += (t.defected & c.dropout_at.between(pd.Timestamp(at_k), pd.Timestamp(
            at_k + timedelta(days=90)), inclusive="right").to_numpy())
    assert (found[first_left.to_numpy()] == 1).all()
    with pytest.raises(ValueError, match="timezone"):
        defection_truth(world.truth_dir, ids, datetime(2025, 1, 1), 90)
