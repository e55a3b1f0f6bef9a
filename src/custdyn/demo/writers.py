"""Turn the simulated world into real files (CSV, mbox, JSON Lines) and truth tables (Parquet).

:func:`write_world` is the entry point. Files land in ``directory``; the truth beside them in
``directory/truth``. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import binascii
import bisect
import csv
import html
import json
import mailbox
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from custdyn.demo import simulate as S
from custdyn.demo.texts import (
    FEMALE_NAMES,
    FIRST_NAMES,
    LAST_NAMES,
    MAIL_DOMAINS,
    THEME_EMOTIONS,
    Texts,
)

OSLO = ZoneInfo("Europe/Oslo")
WEEK_S = 7 * 24 * 3600
SUPPORT_ADDR = f"support@{S.VENDOR_DOMAIN}"
_PRAISABLE = tuple(f"{a}@{S.VENDOR_DOMAIN}" for a in (
    "marta.lima", "ana.reyes", "beatriz.costa", "emma.clarke", "sigrid.nilsen"))
FEEDBACK_ADDR = f"feedback@{S.VENDOR_DOMAIN}"

CRM_MAP = """\
# Column mapping for crm_activities.csv (a CRM export) onto the custdyn data contract.
[columns]            # source column -> contract field
"Activity ID" = "interaction_id"
Account = "customer_id"
Date = "occurred_at"
Type = "channel"
Direction = "direction"
Owner = "agent_id"
Notes = "text"

[values.channel]     # source value -> contract value (per field)
Call = "phone"
Meeting = "meeting"
Visit = "meeting"
Cancellation = "other"

[values.direction]
In = "inbound"
Out = "outbound"

[derive.kind]        # set a field from another source column's value
column = "Type"
map = { Call = "contact", Meeting = "contact", Visit = "contact", Cancellation = "cancellation" }

[dates]
format = "%d/%m/%Y %H:%M"
timezone = "Europe/Oslo"

[defaults]           # constants for fields the source lacks
"""


@dataclass(frozen=True)
class SourceFile:
    """One file of the demo world and the table it loads into."""

    path: Path
    table: str  # "customers" or "interactions"
    mapping: Path | None
    description: str


@dataclass
class World:
    """What :func:`write_world` wrote: files in ingest order, workspace settings, truth."""

    directory: Path
    files: list[SourceFile]
    settings: dict[str, Any]
    truth_dir: Path
    n_customers: int = 0
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------


def _ascii(s: str) -> str:
    s = unicodedata.normalize("NFKD", s)
    return "".join(ch for ch in s if ch.isascii() and (ch.isalnum() or ch in ".-")).lower()


def _header(s: str) -> str:
    """A header value, RFC 2047-encoded when it is not plain ASCII."""
    return s if s.isascii() else Header(s, "utf-8").encode()


def _part(subtype: str, text: str, with_headers: bool = True) -> tuple[list[str], str]:
    """MIME headers and quoted-printable UTF-8 body of one text part."""
    body = binascii.b2a_qp(text.encode("utf-8")).decode("ascii")
    return ([f'Content-Type: text/{subtype}; charset="utf-8"',
             "Content-Transfer-Encoding: quoted-printable"], body)


def _addr(name: str, addr: str) -> str:
    return formataddr((name, addr), charset="utf-8")


def _parse_day(s: str | date | datetime) -> datetime:
    if isinstance(s, datetime):
        return s if s.tzinfo else s.replace(tzinfo=UTC)
    if isinstance(s, date):
        return datetime(s.year, s.month, s.day, tzinfo=UTC)
    d = date.fromisoformat(str(s))
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


class _Truth:
    """Accumulates one truth row per text-bearing interaction."""

    COLS = ("interaction_id", "source", "customer_id", "occurred_at", "channel", "kind",
            "direction", "amount", "agent_id", "thread_id", "language", "code_switched",
            "sentiment", "emotion", "theme_id", "competitor", "intent_to_switch", "nps",
            "sender_known")

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {c: [] for c in self.COLS}

    def add(self, **kw: Any) -> dict[str, Any]:
        row = {c: kw.get(c) for c in self.COLS}
        if row["code_switched"] is None:
            row["code_switched"] = False
        if row["intent_to_switch"] is None:
            row["intent_to_switch"] = False
        if row["sender_known"] is None:
            row["sender_known"] = True
        for c in self.COLS:
            self.rows[c].append(row[c])
        return row

    def set_id(self, k: int, value: str) -> None:
        self.rows["interaction_id"][k] = value

    def __len__(self) -> int:
        return len(self.rows["customer_id"])


class _Builder:
    def __init__(self, sim: S.Sim, start: datetime, seed: int) -> None:
        self.sim = sim
        self.start = start
        self.T = sim.horizon
        self.c = sim.cust
        self.n = len(self.c["language"])
        self.texts = Texts(seed * 7919 + 17, S.VENDOR_NAME)
        self.r = self.texts.r
        self.rng = np.random.default_rng([seed, 101])
        self.truth = _Truth()
        self.orders_rows: list[dict[str, Any]] = []
        self.crm_rows: list[dict[str, Any]] = []
        self.emails: list[dict[str, Any]] = []
        self.tickets: list[dict[str, Any]] = []
        self.chat_fb: list[dict[str, Any]] = []
        self.threads: dict[str, list[Any]] = {k: [] for k in (
            "thread_id", "customer_id", "channel", "topic", "agent_id", "slow_agent",
            "opened_at", "first_reply_at", "first_reply_hours", "unanswered", "reopened",
            "escalated", "resolved_at", "resolution_hours", "n_messages")}
        self.n_ticket = 0
        self.n_chat = 0
        self.n_fb = 0
        self.n_sv = 0
        self.agent_names = {a[0]: a[1] for a in S.AGENTS}
        self.agent_speed = {a[0]: a[3] for a in S.AGENTS}
        self._people()

    # ---- time
    def dt(self, t: float) -> datetime:
        return self.start + timedelta(seconds=int(round(float(t) * WEEK_S)))

    @staticmethod
    def iso(d: datetime) -> str:
        return d.astimezone(OSLO).isoformat()

    # ---- people
    def _people(self) -> None:
        n = self.n
        self.ids = [f"C{i + 1:06d}" for i in range(n)]
        self.first: list[str] = []
        self.names: list[str] = []
        self.emails_of: list[str] = []
        seen: set[str] = set()
        for i in range(n):
            lang = str(self.c["language"][i])
            fn = self.texts.pick(FIRST_NAMES[lang])
            ln = self.texts.pick(LAST_NAMES[lang])
            self.first.append(fn)
            self.names.append(f"{fn} {ln}")
            base = f"{_ascii(fn.replace(' ', ''))}.{_ascii(ln.replace(' ', ''))}"
            dom = self.texts.pick(MAIL_DOMAINS[lang])
            addr = f"{base}@{dom}"
            k = 1
            while addr in seen:
                k += 1
                addr = f"{base}{self.r.randint(2, 999)}@{dom}"
            seen.add(addr)
            self.emails_of.append(addr)
        # per-customer sorted order times/numbers, filled by orders()
        self.order_times: list[list[float]] = [[] for _ in range(n)]
        self.order_nos: list[list[str]] = [[] for _ in range(n)]

    def mlang(self, i: int) -> tuple[str, str, bool]:
        """(bank, truth language, code_switched) for a message by customer i."""
        base = str(self.c["language"][i])
        u = self.r.random()
        if base == "tl":
            if bool(self.c["taglish"][i]):
                if u < 0.6:
                    return "taglish", "tl", True
                return ("tl", "tl", False) if u < 0.85 else ("en", "en", False)
            return ("tl", "tl", False) if u < 0.82 else ("en", "en", False)
        if base in ("pt", "no"):
            return (base, base, False) if u < 0.93 else ("en", "en", False)
        return "en", "en", False

    def o(self, i: int) -> str:
        """Portuguese gender ending for customer i."""
        return "a" if self.first[i] in FEMALE_NAMES else "o"

    def staff_for(self, i: int) -> str:
        """The staff member a happy customer praises: mostly Marta, else their own agent."""
        a = str(self.c["agent"][i])
        # the praise templates speak of her ("she", "a {staff}", "hun")
        if self.r.random() < 0.75 or self.agent_speed[a] == "slow" or a not in _PRAISABLE:
            return self.agent_names[S.PRAISED_AGENT].split()[0]
        return self.agent_names[a].split()[0]

    def last_order(self, i: int, t: float) -> str | None:
        k = bisect.bisect_right(self.order_times[i], t) - 1
        return self.order_nos[i][k] if k >= 0 else None

    def order_no_at(self, i: int, t: float) -> str | None:
        k = bisect.bisect_left(self.order_times[i], t)
        if k < len(self.order_times[i]) and self.order_times[i][k] == t:
            return self.order_nos[i][k]
        return self.last_order(i, t)

    # ---- building blocks
    def crm(self, i: int, t: float, typ: str, direction: str, owner: str, notes: str,
            outcome: str, lang: tuple[str, str, bool], sentiment: str = "neutral",
            emotion: str = "neutral", theme: str | None = None) -> None:
        local = self.dt(t).astimezone(OSLO).replace(second=0, microsecond=0)
        channel = {"Call": "phone", "Meeting": "meeting", "Visit": "meeting",
                   "Cancellation": "other"}[typ]
        kind = "cancellation" if typ == "Cancellation" else "contact"
        tr = self.truth.add(source="crm_activities.csv", customer_id=self.ids[i],
                            occurred_at=local.astimezone(UTC), channel=channel, kind=kind,
                            direction="inbound" if direction == "In" else "outbound",
                            agent_id=owner, language=lang[1], code_switched=lang[2],
                            sentiment=sentiment, emotion=emotion, theme_id=theme)
        self.crm_rows.append({"_k": len(self.truth) - 1, "_t": local, "Account": self.ids[i],
                              "Date": local.strftime("%d/%m/%Y %H:%M"), "Type": typ,
                              "Direction": direction, "Owner": owner, "Notes": notes,
                              "Outcome": outcome, "_tr": tr})

    def new_msgid(self, domain: str) -> str:
        return f"{self.r.getrandbits(64):016x}.{len(self.emails):07d}@{domain}"

    def email(self, i: int, t: float, *, outbound: bool, agent: str | None, subject: str,
              body: str, lang: tuple[str, str, bool], parent: dict[str, Any] | None,
              sentiment: str, emotion: str, theme: str | None = None, kind: str = "contact",
              competitor: str | None = None, intent: bool = False) -> dict[str, Any]:
        d = self.dt(t)
        cust_addr = self.emails_of[i]
        known = True
        if not outbound and self.r.random() < 0.015:
            cust_addr = f"{_ascii(self.first[i].replace(' ', ''))}@work-{i % 37}.example"
            known = False
        if outbound:
            assert agent is not None
            frm = _addr(f"{self.agent_names[agent]} ({S.VENDOR_NAME})",
                        agent)
            to = _addr(self.names[i], self.emails_of[i])
            mid = self.new_msgid(S.VENDOR_DOMAIN)
        else:
            frm = _addr(self.names[i], cust_addr)
            to = SUPPORT_ADDR if agent is None or parent is None else \
                _addr(self.agent_names[agent], agent)
            mid = self.new_msgid(cust_addr.split("@")[1])
        rec: dict[str, Any] = {"dt": d, "from": frm, "to": to, "subject": subject, "body": body,
                               "msgid": mid, "lang": lang[0], "outbound": outbound,
                               "sender": self.agent_names[agent] if outbound and agent else
                               self.names[i]}
        if parent is not None:
            rec["in_reply_to"] = parent["msgid"]
            rec["references"] = parent.get("references", []) + [parent["msgid"]]
            rec["quote"] = (self.texts.quote_header(lang[0], parent["dt"].astimezone(OSLO),
                                                    parent["sender"]), parent["body"])
            root = rec["references"][0]
        else:
            rec["references"] = []
            root = mid
        u = self.r.random()
        rec["mode"] = ("alt" if u < (0.45 if outbound else 0.1) else
                       "html" if u > (0.97 if outbound else 0.94) else "plain")
        self.truth.add(interaction_id=mid, source="emails.mbox", customer_id=self.ids[i],
                       occurred_at=d, channel="email", kind=kind,
                       direction="outbound" if outbound else "inbound",
                       agent_id=agent if outbound else None, thread_id=root,
                       language=lang[1], code_switched=lang[2], sentiment=sentiment,
                       emotion=emotion, theme_id=theme, competitor=competitor,
                       intent_to_switch=intent, sender_known=known)
        self.emails.append(rec)
        return rec

    def jsonl(self, target: list[dict[str, Any]], source: str, i: int, t: float, *,
              iid: str, channel: str, kind: str, direction: str, text: str,
              thread_id: str | None = None, agent: str | None = None,
              subject: str | None = None, attributes: dict[str, Any] | None = None,
              lang: tuple[str, str, bool], sentiment: str, emotion: str,
              theme: str | None = None, competitor: str | None = None, intent: bool = False,
              nps: int | None = None, truth: bool = True) -> None:
        d = self.dt(t)
        obj: dict[str, Any] = {"interaction_id": iid, "customer_id": self.ids[i],
                               "occurred_at": self.iso(d), "channel": channel, "kind": kind,
                               "direction": direction}
        if thread_id is not None:
            obj["thread_id"] = thread_id
        if agent is not None:
            obj["agent_id"] = agent
        if subject is not None:
            obj["subject"] = subject
        obj["text"] = text
        obj["attributes"] = attributes or {}
        target.append({"_t": d, "_id": iid, "obj": obj})
        if truth:
            self.truth.add(interaction_id=iid, source=source, customer_id=self.ids[i],
                           occurred_at=d, channel=channel, kind=kind, direction=direction,
                           agent_id=agent, thread_id=thread_id, language=lang[1],
                           code_switched=lang[2], sentiment=sentiment, emotion=emotion,
                           theme_id=theme, competitor=competitor, intent_to_switch=intent,
                           nps=nps)

    # ---- sections
    def sales(self) -> None:
        c = self.c
        T = self.T
        seg = c["segment"]
        for i in range(self.n):
            prospect = bool(c["is_prospect"][i])
            t0 = float(c["first_contact"][i])
            if t0 >= T:
                continue
            t_end = min(t0 + self.r.uniform(2.0, 10.0), T - 0.01) if prospect \
                else float(c["open_t"][i]) - 0.02
            business = seg[i] != "consumer"
            k = 1 + int(self.rng.poisson(1.6 if business else 1.0))
            times = sorted([t0] + [self.r.uniform(t0, max(t_end, t0 + 1e-3))
                                   for _ in range(k - 1)])
            rep = str(c["rep"][i])
            for j, t in enumerate(times):
                t = (np.floor(t * 7.0) + self.r.uniform(8.0, 16.5) / 24.0) / 7.0
                if not prospect:
                    t = min(t, float(c["open_t"][i]) - 0.01)
                if t >= T:
                    continue
                lang = self.mlang(i)
                ctx = self.texts.ctx(lang[0], name=self.first[i], o=self.o(i),
                                     agent=self.agent_names[rep].split()[0])
                last = j == len(times) - 1
                u = self.r.random()
                if u < (0.3 if business else 0.5):
                    subj = self.texts.line(lang[0], "sales_subject", ctx)
                    body = "\n\n".join([self.texts.line(lang[0], "agent_greet", ctx),
                                        self.texts.line(lang[0], "sales_pitch", ctx),
                                        f"{self.agent_names[rep]}\n{S.VENDOR_NAME}"])
                    pitch = self.email(i, t, outbound=True, agent=rep, subject=subj, body=body,
                                       lang=lang, parent=None, sentiment="neutral",
                                       emotion="neutral")
                    if self.r.random() < 0.6:
                        tr = t + self.r.uniform(2.0, 48.0) / 168.0
                        if tr < T and (prospect or tr < float(c["open_t"][i])):
                            rl = self.mlang(i)
                            rc = self.texts.ctx(rl[0], name=self.first[i], o=self.o(i))
                            rbody = self.texts.generic(rl[0], "sales_reply", "neutral",
                                                       "neutral", rc)
                            self.email(i, tr, outbound=False, agent=rep,
                                       subject=f"{self.texts.bank(rl[0])['re']} {subj}",
                                       body=rbody, lang=rl, parent=pitch,
                                       sentiment="neutral", emotion="neutral")
                    continue
                if business and u > 0.85:
                    typ, key = "Visit", "crm_visit"
                elif business and u > 0.65:
                    typ, key = "Meeting", "crm_meeting"
                else:
                    typ, key = "Call", "crm_call"
                if prospect and last and self.r.random() < 0.6:
                    notes, outcome = self.texts.line(lang[0], "crm_lost", ctx), "Lost"
                else:
                    notes = self.texts.line(lang[0], key, ctx)
                    outcome = "Won" if (last and not prospect) else self.r.choice(
                        ["Interested", "Follow-up", "Quote sent", "No answer"])
                direction = "In" if (typ == "Call" and self.r.random() < 0.2) else "Out"
                self.crm(i, t, typ, direction, rep, notes, outcome, lang)
            if not prospect and business:
                t = float(c["open_t"][i]) + self.r.uniform(1.0, 10.0) / 7.0
                t = (np.floor(t * 7.0) + self.r.uniform(8.0, 15.0) / 24.0) / 7.0
                if t < T:
                    lang = self.mlang(i)
                    ctx = self.texts.ctx(lang[0], name=self.first[i], o=self.o(i))
                    self.crm(i, t, "Call", "Out", rep,
                             self.texts.line(lang[0], "crm_onboarding", ctx), "Onboarded", lang)

    def orders(self) -> None:
        c = self.c
        T = self.T
        P = self.sim.params
        # account openings
        for ci in np.flatnonzero(~c["is_prospect"]).tolist():
            t = float(c["open_t"][ci])
            if t < T:
                self.orders_rows.append({
                    "_t": self.dt(t), "customer_id": self.ids[ci], "channel": "web",
                    "kind": "account_opened", "direction": "inbound", "amount": "",
                    "currency": "", "text": "", "order_no": "", "items": ""})
        o = self.sim.events.get("orders", {})
        oc = o.get("cust", np.zeros(0, int))
        ot = o.get("t", np.zeros(0))
        keep = ot < T
        oc, ot = oc[keep], ot[keep]
        order = np.lexsort((oc, ot))
        oc, ot = oc[order], ot[order]
        amounts = np.maximum(np.round(self.rng.gamma(P.p, 1.0 / c["nu"][oc]), 2), 1.0)
        ch = self.rng.choice(np.array(["web", "store", "phone"]), size=oc.size,
                             p=[0.7, 0.2, 0.1])
        items = 1 + self.rng.poisson(1.2, oc.size)
        self.amount_of: dict[tuple[int, float], float] = {}
        self.last_order_t = np.full(self.n, np.nan)
        for k in range(oc.size):
            i = int(oc[k])
            t = float(ot[k])
            order_no = f"LU-{100001 + k}"
            self.order_times[i].append(t)
            self.order_nos[i].append(order_no)
            self.amount_of[(i, t)] = float(amounts[k])
            self.last_order_t[i] = t
            text = ""
            d = self.dt(t)
            if self.r.random() < 0.12:
                lang = self.mlang(i)
                text = self.texts.line(lang[0], "order_note", self.texts.ctx(lang[0]))
                self.truth.add(source="orders.csv", customer_id=self.ids[i], occurred_at=d,
                               channel=str(ch[k]), kind="order", direction="inbound",
                               amount=float(amounts[k]), language=lang[1],
                               code_switched=lang[2], sentiment="neutral", emotion="neutral")
            self.orders_rows.append({
                "_t": d, "customer_id": self.ids[i], "channel": str(ch[k]), "kind": "order",
                "direction": "inbound", "amount": f"{amounts[k]:.2f}", "currency": "EUR",
                "text": text, "order_no": order_no, "items": str(int(items[k]))})
        self.n_orders = int(oc.size)
        # problems
        iss = self.sim.events.get("issues", {})
        for k in range(len(iss.get("cust", []))):
            t = float(iss["t"][k])
            if t >= T:
                continue
            i = int(iss["cust"][k])
            late = bool(iss["late"][k])
            issue_theme = "late_delivery" if late else "damaged_goods"
            theme: str | None = issue_theme
            lang = self.mlang(i)
            sentiment, emotion = self.texts.sample_emotion(issue_theme, float(iss["S"][k]))
            no = self.order_no_at(i, float(iss["order_t"][k]))
            ctx = self.texts.ctx(lang[0], o=self.o(i), order_no=no,
                                 days=int(iss["days_late"][k]) or None)
            text = self.texts.themed(lang[0], issue_theme, sentiment, emotion, ctx,
                                     letter=False, detail=0.3, emotion_p=0.6)
            chan = "web" if self.r.random() < 0.8 else "phone"
            d = self.dt(t)
            self.truth.add(source="orders.csv", customer_id=self.ids[i], occurred_at=d,
                           channel=chan, kind="order_issue", direction="inbound",
                           language=lang[1], code_switched=lang[2], sentiment=sentiment,
                           emotion=emotion, theme_id=theme)
            self.orders_rows.append({
                "_t": d, "customer_id": self.ids[i], "channel": chan, "kind": "order_issue",
                "direction": "inbound", "amount": "", "currency": "", "text": text,
                "order_no": no or "", "items": ""})
        ret = self.sim.events.get("returns", {})
        for k in range(len(ret.get("cust", []))):
            t = float(ret["t"][k])
            if t >= T:
                continue
            i = int(ret["cust"][k])
            ot_k = float(ret["order_t"][k])
            full = self.amount_of.get((i, ot_k), 50.0)
            damaged = bool(ret["damaged"][k])
            amount = full if (damaged or self.r.random() < 0.6) else \
                round(full * self.r.uniform(0.2, 0.7), 2)
            amount = max(amount, 1.0)
            lang = self.mlang(i)
            ctx = self.texts.ctx(lang[0])
            if damaged:
                text = self.texts.line(lang[0], "return_damaged", ctx)
                sentiment, emotion, theme = "negative", self.r.choice(
                    ["sadness", "disgust", "anger"]), "damaged_goods"
            else:
                text = self.texts.line(lang[0], "return_other", ctx)
                sentiment, emotion, theme = "neutral", "neutral", None
            chan = "web" if self.r.random() < 0.75 else "store"
            d = self.dt(t)
            self.truth.add(source="orders.csv", customer_id=self.ids[i], occurred_at=d,
                           channel=chan, kind="return", direction="inbound", amount=-amount,
                           language=lang[1], code_switched=lang[2], sentiment=sentiment,
                           emotion=emotion, theme_id=theme)
            self.orders_rows.append({
                "_t": d, "customer_id": self.ids[i], "channel": chan, "kind": "return",
                "direction": "inbound", "amount": f"{-amount:.2f}", "currency": "EUR",
                "text": text, "order_no": self.order_no_at(i, ot_k) or "", "items": "1"})

    def _reply_hours(self, agent: str) -> float:
        P = self.sim.params
        sp = self.agent_speed[agent]
        med = (P.reply_median_fast_h if sp == "fast" else
               P.reply_median_slow_h if sp == "slow" else P.reply_median_h)
        return float(med * np.exp((0.55 if sp == "slow" else 0.9) * self.rng.standard_normal()))

    def support(self) -> None:
        th = self.sim.events.get("threads", {})
        T = self.T
        support_agents = S.SUPPORT_AGENTS
        for k in range(len(th.get("cust", []))):
            t0 = float(th["t"][k])
            if t0 >= T:
                continue
            i = int(th["cust"][k])
            topic = S.TOPICS[int(th["topic"][k])]
            channel = S.THREAD_CHANNELS[int(th["channel"][k])]
            agent = support_agents[int(th["agent"][k])]
            s = float(th["S"][k])
            unanswered = bool(th["unanswered"][k])
            first_h = float(th["first_h"][k])
            res_h = float(th["res_h"][k])
            reopened = bool(th["reopened"][k])
            escalated = bool(th["escalated"][k])
            lang = self.mlang(i)
            order_t = float(th["order_t"][k])
            no = self.order_no_at(i, order_t) if np.isfinite(order_t) else \
                self.last_order(i, t0)
            ctx = self.texts.ctx(lang[0], name=self.first[i], o=self.o(i),
                                 agent=self.agent_names[agent].split()[0], order_no=no,
                                 days=int(th["days_late"][k]) or None)
            theme = None if topic == "question" else topic
            # the customer's first message
            if theme is not None:
                sentiment, emotion = self.texts.sample_emotion(theme, s)
            elif self.r.random() < min(max((0.5 - s) * 2.5, 0.0), 0.85):
                sentiment, emotion = "negative", self.r.choice(["anger", "sadness"])
            else:
                sentiment, emotion = "neutral", "neutral"
            letter = channel != "chat"
            if theme is not None:
                first_text = self.texts.themed(lang[0], theme, sentiment, emotion, ctx,
                                               letter=letter)
            else:
                first_text = self.texts.generic(lang[0], "question", sentiment, emotion, ctx,
                                                letter=letter)
            subject = self.texts.subject(lang[0], topic, ctx)
            # the thread as (t, outbound, text, status, sentiment, emotion, theme)
            msgs: list[tuple[float, bool, str, str, str, str, str | None]] = [
                (t0, False, first_text, "opened", sentiment, emotion, theme)]
            first_at: float | None = None
            resolved_at: float | None = None
            if unanswered:
                if self.r.random() < 0.6:
                    tf = t0 + self.r.uniform(2.0, 6.0) / 7.0
                    e = self.r.choice(["anger", "sadness"])
                    msgs.append((tf, False, self.texts.generic(lang[0], "followup", "negative",
                                                               e, ctx, letter=letter),
                                 "opened", "negative", e, None))
            else:
                t1 = t0 + first_h / 168.0
                first_at = t1
                if channel == "chat":
                    txt = self.texts.line(lang[0], "chat_out", ctx) + " " + \
                        self.texts.agent_reply(lang[0], topic, ctx, letter=False, first=False,
                                               escalate=escalated)
                else:
                    txt = self.texts.agent_reply(lang[0], topic, ctx)
                msgs.append((t1, True, txt, "replied", "neutral", "neutral", None))
                tl = t1
                if reopened and channel != "chat":
                    t2 = t1 + self.r.uniform(1.0, 4.0) / 7.0
                    e = self.r.choice(["anger", "sadness", "anger"])
                    msgs.append((t2, False, self.texts.generic(lang[0], "reopen", "negative", e,
                                                               ctx, letter=letter),
                                 "reopened", "negative", e, theme))
                    t3 = t2 + self._reply_hours(agent) / 168.0
                    msgs.append((t3, True, self.texts.agent_reply(lang[0], topic, ctx,
                                                                  first=False),
                                 "replied", "neutral", "neutral", None))
                    tl = t3
                if escalated and channel != "chat":
                    te = tl + self.r.uniform(2.0, 24.0) / 168.0
                    msgs.append((te, True, self.texts.agent_reply(lang[0], topic, ctx,
                                                                  escalate=True, first=False),
                                 "escalated", "neutral", "neutral", None))
                    tl = te
                tr = max(t0 + res_h / 168.0, tl + 0.5 / 168.0)
                resolved_at = tr
                if channel != "chat":
                    msgs.append((tr, True, self.texts.agent_reply(lang[0], topic, ctx,
                                                                  first=False),
                                 "resolved", "neutral", "neutral", None))
                if res_h <= 72.0 and self.r.random() < 0.1 + 0.4 * s:
                    e = self.r.choice(["joy", "trust"])
                    msgs.append((tr + self.r.uniform(0.02, 0.5) / 7.0, False,
                                 self.texts.generic(lang[0], "thanks", "positive", e, ctx,
                                                    letter=False),
                                 "resolved", "positive", e, None))
            msgs = [m for m in msgs if m[0] < T]
            tid = self._emit_thread(i, channel, agent, subject, msgs, lang, topic)
            th_fa = first_at if first_at is not None and first_at < T else None
            th_ra = resolved_at if resolved_at is not None and resolved_at < T else None
            self.threads["thread_id"].append(tid)
            self.threads["customer_id"].append(self.ids[i])
            self.threads["channel"].append(channel)
            self.threads["topic"].append(topic)
            self.threads["agent_id"].append(agent)
            self.threads["slow_agent"].append(agent in S.SLOW_AGENTS)
            self.threads["opened_at"].append(self.dt(t0))
            self.threads["first_reply_at"].append(self.dt(th_fa) if th_fa is not None else None)
            self.threads["first_reply_hours"].append(
                (th_fa - t0) * 168.0 if th_fa is not None else None)
            self.threads["unanswered"].append(th_fa is None)
            self.threads["reopened"].append(reopened)
            self.threads["escalated"].append(escalated)
            self.threads["resolved_at"].append(self.dt(th_ra) if th_ra is not None else None)
            self.threads["resolution_hours"].append(
                (th_ra - t0) * 168.0 if th_ra is not None else None)
            self.threads["n_messages"].append(len(msgs))

    def _emit_thread(self, i: int, channel: str, agent: str, subject: str,
                     msgs: list[tuple[float, bool, str, str, str, str, str | None]],
                     lang: tuple[str, str, bool], topic: str,
                     competitor: str | None = None, intent: bool = False) -> str:
        if channel == "ticket":
            self.n_ticket += 1
            tid = f"TK-{self.n_ticket:06d}"
            escalated = any(m[3] == "escalated" for m in msgs)
            priority = ("high" if escalated else "urgent" if topic == "app_bug" and
                        self.r.random() < 0.3 else "low" if topic in (
                            "missing_feature", "question") else "normal")
            for j, (t, out, text, status, sen, emo, theme) in enumerate(msgs):
                self.jsonl(self.tickets, "tickets.jsonl", i, t, iid=f"{tid}-{j + 1}",
                           channel="ticket", kind="support",
                           direction="outbound" if out else "inbound", text=text,
                           thread_id=tid, agent=agent if out else None, subject=subject,
                           attributes={"ticket_id": tid, "status": status,
                                       "priority": priority, "assignee": agent},
                           lang=lang, sentiment=sen, emotion=emo, theme=theme,
                           competitor=competitor if j == 0 else None,
                           intent=intent if j == 0 else False)
            return tid
        if channel == "chat":
            self.n_chat += 1
            tid = f"CH-{self.n_chat:06d}"
            for j, (t, out, text, _status, sen, emo, theme) in enumerate(msgs):
                self.jsonl(self.chat_fb, "chat_feedback.jsonl", i, t, iid=f"{tid}-{j + 1}",
                           channel="chat", kind="contact",
                           direction="outbound" if out else "inbound", text=text,
                           thread_id=tid, agent=agent if out else None,
                           attributes={"session": tid}, lang=lang, sentiment=sen,
                           emotion=emo, theme=theme,
                           competitor=competitor if j == 0 else None,
                           intent=intent if j == 0 else False)
            return tid
        parent: dict[str, Any] | None = None
        root = ""
        re = self.texts.bank(lang[0])["re"]
        for j, (t, out, text, _status, sen, emo, theme) in enumerate(msgs):
            subj = subject if j == 0 else f"{re} {subject}"
            parent = self.email(i, t, outbound=out, agent=agent, subject=subj, body=text,
                                lang=lang, parent=parent, sentiment=sen, emotion=emo,
                                theme=theme, competitor=competitor if j == 0 else None,
                                intent=intent if j == 0 else False)
            if j == 0:
                root = parent["msgid"]
        return root

    def voice(self) -> None:
        """Feedback, surveys and competitor mentions."""
        T = self.T
        fb = self.sim.events.get("feedback", {})
        for k in range(len(fb.get("cust", []))):
            t = float(fb["t"][k])
            if t >= T:
                continue
            i = int(fb["cust"][k])
            s = float(fb["S"][k])
            if s >= 0.6:
                opts, w = ["staff_praise", "positive", "missing_feature", "app_bug", "price",
                           "neutral"], [0.3, 0.4, 0.14, 0.05, 0.05, 0.06]
            elif s >= 0.4:
                opts, w = ["price", "late_delivery", "missing_feature", "app_bug", "positive",
                           "neutral", "staff_praise"], [0.24, 0.18, 0.2, 0.15, 0.08, 0.1, 0.05]
            else:
                opts, w = ["price", "late_delivery", "app_bug", "damaged_goods",
                           "missing_feature"], [0.3, 0.25, 0.2, 0.1, 0.15]
            what = self.r.choices(opts, weights=w)[0]
            lang = self.mlang(i)
            channel = "web" if self.r.random() < 0.75 else "email"
            ctx = self.texts.ctx(lang[0], name=self.first[i], o=self.o(i),
                                 staff=self.staff_for(i),
                                 order_no=self.last_order(i, t))
            letter = channel == "email" or self.r.random() < 0.3
            theme: str | None
            if what == "positive":
                theme, sentiment = None, "positive"
                emotion = self.r.choice(["joy", "trust", "joy"])
                text = self.texts.generic(lang[0], "positive", sentiment, emotion, ctx,
                                          letter=letter, n=self.r.choice([1, 2]))
            elif what == "neutral":
                theme, sentiment, emotion = None, "neutral", "neutral"
                text = self.texts.generic(lang[0], "neutral_feedback", sentiment, emotion, ctx,
                                          letter=letter)
            else:
                theme = what
                sentiment, emotion = self.texts.sample_emotion(theme, s)
                text = self.texts.themed(lang[0], theme, sentiment, emotion, ctx,
                                         letter=letter)
            self.n_fb += 1
            self.jsonl(self.chat_fb, "chat_feedback.jsonl", i, t, iid=f"FB-{self.n_fb:06d}",
                       channel=channel, kind="feedback", direction="inbound", text=text,
                       subject=self.texts.subject(lang[0], "feedback", ctx),
                       attributes={"form": "contact_form" if channel == "web"
                                   else "feedback_mail"},
                       lang=lang, sentiment=sentiment, emotion=emotion, theme=theme)
        sv = self.sim.events.get("surveys", {})
        for k in range(len(sv.get("cust", []))):
            t = float(sv["t"][k])
            if t >= T:
                continue
            i = int(sv["cust"][k])
            s = float(sv["S"][k])
            post = int(sv["kind"][k]) == 0
            good = bool(sv["thread_good"][k])
            nps = int(np.clip(np.round(10.0 * s + 1.0 + self.rng.normal(0.0, 1.0)
                                       + (0.8 if post and good else -0.8 if post else 0.0)),
                              0, 10))
            sentiment = "positive" if nps >= 9 else "neutral" if nps >= 7 else "negative"
            lang = self.mlang(i)
            text = ""
            theme = None
            emotion = "neutral"
            has_text = self.r.random() < 0.55
            if has_text:
                topic = int(sv["topic"][k])
                if sentiment == "negative":
                    cand = S.TOPICS[topic] if topic >= 0 else self.r.choice(
                        ["price", "late_delivery", "app_bug"])
                    theme = cand if cand in THEME_EMOTIONS and cand != "missing_feature" \
                        else None
                    emotion = self.r.choice(["anger", "sadness", "disgust"]) if theme is None \
                        else self.texts.sample_emotion(theme, s)[1]
                elif sentiment == "positive":
                    emotion = self.r.choice(["joy", "trust"])
                ctx = self.texts.ctx(lang[0], o=self.o(i), order_no=self.last_order(i, t))
                text = self.texts.survey_comment(lang[0], sentiment, theme, ctx)
            self.n_sv += 1
            self.jsonl(self.chat_fb, "chat_feedback.jsonl", i, t, iid=f"SV-{self.n_sv:06d}",
                       channel="email" if post else "web", kind="survey", direction="inbound",
                       text=text, attributes={"nps": nps, "survey": "post_contact" if post
                                              else "relationship"},
                       lang=lang, sentiment=sentiment, emotion=emotion, theme=theme, nps=nps,
                       truth=has_text)
        self._mentions()

    def _competitor(self, i: int) -> tuple[str, str]:
        country = str(self.c["country"][i])
        home = {"NO": 0, "PT": 2, "BR": 2, "PH": 3}.get(country, 1)
        j = home if self.r.random() < 0.6 else self.r.randrange(len(S.COMPETITORS))
        comp = S.COMPETITORS[j]
        aliases = list(comp["aliases"])
        alias = str(comp["name"]) if self.r.random() < 0.45 else self.r.choice(aliases)
        return str(comp["name"]), alias

    def _mentions(self) -> None:
        T = self.T
        me = self.sim.events.get("mentions", {})
        self.mention_first: dict[int, tuple[float, str]] = {}
        for k in range(len(me.get("cust", []))):
            t = float(me["t"][k])
            if t >= T:
                continue
            i = int(me["cust"][k])
            intent = bool(me["intent"][k])
            name, alias = self._competitor(i)
            if i not in self.mention_first or t < self.mention_first[i][0]:
                self.mention_first[i] = (t, name)
            lang = self.mlang(i)
            ctx = self.texts.ctx(lang[0], name=self.first[i], o=self.o(i), competitor=alias,
                                 agent=self.agent_names[str(self.c["agent"][i])].split()[0])
            theme = "price" if self.r.random() < (0.45 if intent else 0.3) else None
            if intent:
                sentiment = "negative"
                emotion = self.r.choice(["anger", "disgust", "sadness"])
            elif self.r.random() < 0.6:
                sentiment, emotion = "neutral", "neutral"
            else:
                sentiment, emotion = "negative", "disgust"
            if theme == "price" and sentiment == "neutral":
                sentiment, emotion = "negative", "disgust"
            u = self.r.random()
            channel = "feedback" if u < 0.4 else "chat" if u < 0.7 else "email"
            letter = channel == "email"
            text = self.texts.mention(lang[0], intent, sentiment, emotion, ctx, theme=theme,
                                      letter=letter)
            if channel == "feedback":
                self.n_fb += 1
                self.jsonl(self.chat_fb, "chat_feedback.jsonl", i, t,
                           iid=f"FB-{self.n_fb:06d}", channel="web", kind="feedback",
                           direction="inbound", text=text,
                           subject=self.texts.subject(lang[0], "switch", ctx),
                           attributes={"form": "contact_form"}, lang=lang,
                           sentiment=sentiment, emotion=emotion, theme=theme, competitor=name,
                           intent=intent)
                continue
            agent = str(self.c["agent"][i])
            msgs: list[tuple[float, bool, str, str, str, str, str | None]] = [
                (t, False, text, "opened", sentiment, emotion, theme)]
            if channel == "chat":
                tr = t + self.r.uniform(1.0, 8.0) / 1440.0 / 7.0
                reply = self.texts.line(lang[0], "chat_out", ctx) + " " + \
                    self.texts.agent_reply(lang[0], "price", ctx, letter=False, first=False)
            else:
                tr = t + self._reply_hours(agent) / 168.0
                reply = self.texts.agent_reply(lang[0], "price", ctx)
            if self.r.random() < 0.9:
                msgs.append((tr, True, reply, "replied", "neutral", "neutral", None))
            msgs = [m for m in msgs if m[0] < T]
            self._emit_thread(i, channel, agent, self.texts.subject(lang[0], "switch", ctx),
                              msgs, lang, "price", competitor=name, intent=intent)

    def lifecycle(self) -> None:
        """Win-back calls and subscription cancellations (CRM)."""
        T = self.T
        c = self.c
        wb = self.sim.events.get("winbacks", {})
        for k in range(len(wb.get("cust", []))):
            t = float(wb["t"][k])
            if t >= T:
                continue
            i = int(wb["cust"][k])
            lang = self.mlang(i)
            ctx = self.texts.ctx(lang[0], name=self.first[i], o=self.o(i))
            self.crm(i, t, "Call", "Out", str(c["rep"][i]),
                     self.texts.line(lang[0], "crm_winback", ctx), "Won back", lang)
        ca = self.sim.events.get("cancellations", {})
        self.cancelled_at: dict[int, datetime] = {}
        reasons_theme = ["price", None, "late_delivery", None, "app_bug"]
        for k in range(len(ca.get("cust", []))):
            td = float(ca["t"][k])
            if td >= T:
                continue
            i = int(ca["cust"][k])
            s = float(ca["S"][k])
            t = (np.floor(td * 7.0) + self.r.uniform(8.0, 15.0) / 24.0) / 7.0
            if t >= T:
                t = td
            m = self.mention_first.get(i)
            if m is not None and m[0] > td - 12.0:
                ri = 1
            elif s < 0.45:
                ri = self.r.choice([0, 2, 4, 0])
            else:
                ri = self.r.choice([3, 0, 3])
            lang = self.mlang(i)
            reason = self.texts.bank(lang[0])["cancel_reason"][ri]
            ctx = self.texts.ctx(lang[0], reason=reason)
            self.crm(i, t, "Cancellation", "In", str(c["rep"][i]),
                     self.texts.line(lang[0], "crm_cancel", ctx), "Cancelled", lang,
                     sentiment="negative", emotion="neutral", theme=reasons_theme[ri])
            self.cancelled_at[i] = self.crm_rows[-1]["_t"].astimezone(UTC)

    # ---- files
    def write(self, directory: Path) -> dict[str, int]:
        counts: dict[str, int] = {}
        # customers.csv
        c = self.c
        with open(directory / "customers.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["customer_id", "name", "email", "segment", "country", "language",
                        "created_at", "plan"])
            for i in range(self.n):
                plan = "" if c["is_prospect"][i] else (
                    "subscription" if c["is_subscriber"][i] else "standard")
                w.writerow([self.ids[i], self.names[i], self.emails_of[i], c["segment"][i],
                            c["country"][i], c["language"][i],
                            self.iso(self.dt(float(c["first_contact"][i]))), plan])
        counts["customers.csv"] = self.n
        # orders.csv
        rows = sorted(self.orders_rows, key=lambda r: (r["_t"], r["customer_id"], r["kind"]))
        cols = ["customer_id", "occurred_at", "channel", "kind", "direction", "amount",
                "currency", "text", "order_no", "items"]
        with open(directory / "orders.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in rows:
                r["occurred_at"] = self.iso(r["_t"])
                w.writerow([r[k] for k in cols])
        counts["orders.csv"] = len(rows)
        # crm
        crm = sorted(self.crm_rows, key=lambda r: (r["_t"], r["Account"], r["_k"]))
        cols = ["Activity ID", "Account", "Date", "Type", "Direction", "Owner", "Notes",
                "Outcome"]
        with open(directory / "crm_activities.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for n, r in enumerate(crm, 1):
                r["Activity ID"] = f"ACT-{n:06d}"
                self.truth.set_id(r["_k"], r["Activity ID"])
                w.writerow([r[k] for k in cols])
        (directory / "crm_map.toml").write_text(CRM_MAP, encoding="utf-8")
        counts["crm_activities.csv"] = len(crm)
        # jsonl
        for name, items in (("tickets.jsonl", self.tickets),
                            ("chat_feedback.jsonl", self.chat_fb)):
            items.sort(key=lambda r: (r["_t"], r["_id"]))
            with open(directory / name, "w", encoding="utf-8") as fh:
                for r in items:
                    fh.write(json.dumps(r["obj"], ensure_ascii=False) + "\n")
            counts[name] = len(items)
        counts["emails.mbox"] = self._write_mbox(directory / "emails.mbox")
        return counts

    def _write_mbox(self, path: Path) -> int:
        """Write the e-mails to a real mbox (``mailbox``); bodies are UTF-8, quoted-printable."""
        if path.exists():
            path.unlink()
        box = mailbox.mbox(str(path), create=True)
        box.lock()
        try:
            for n, e in enumerate(sorted(self.emails, key=lambda e: (e["dt"], e["msgid"]))):
                text = e["body"]
                quote = e.get("quote")
                if quote is not None:
                    quoted = "\n".join("> " + ln if ln else ">" for ln in quote[1].splitlines())
                    text = f"{text}\n\n{quote[0]}\n{quoted}"
                addr = e["from"].rsplit("<", 1)[-1].rstrip(">")
                head = [
                    f"From {addr} {time.asctime(time.gmtime(e['dt'].timestamp()))}",
                    f"From: {e['from']}",
                    f"To: {e['to']}",
                    f"Subject: {_header(e['subject'])}",
                    f"Date: {format_datetime(e['dt'].astimezone(OSLO))}",
                    f"Message-ID: <{e['msgid']}>",
                ]
                if "in_reply_to" in e:
                    head.append(f"In-Reply-To: <{e['in_reply_to']}>")
                    head.append("References: " + "\n ".join(f"<{m}>" for m in e["references"]))
                head.append("MIME-Version: 1.0")
                if e["mode"] == "plain":
                    body = _part("plain", text, with_headers=False)
                    head.extend(body[0])
                    parts = [body[1]]
                elif e["mode"] == "html":
                    body = _part("html", self._html(e["body"], quote), with_headers=False)
                    head.extend(body[0])
                    parts = [body[1]]
                else:
                    bnd = f"=_lumora_{n:08d}_alt"
                    head.append(f'Content-Type: multipart/alternative; boundary="{bnd}"')
                    p1 = _part("plain", text)
                    p2 = _part("html", self._html(e["body"], quote))
                    parts = [f"--{bnd}", *p1[0], "", p1[1], f"--{bnd}", *p2[0], "", p2[1],
                             f"--{bnd}--", ""]
                raw = "\n".join(head) + "\n\n" + "\n".join(parts)
                box.add(raw.encode("ascii"))
            box.flush()
        finally:
            box.unlock()
            box.close()
        return len(self.emails)

    @staticmethod
    def _html(body: str, quote: tuple[str, str] | None) -> str:
        paras = "".join(f"<p>{html.escape(p, quote=False).replace(chr(10), '<br>')}</p>"
                        for p in body.split("\n\n"))
        if quote is not None:
            q = html.escape(quote[1], quote=False).replace("\n", "<br>")
            paras += (f"<div class=\"quote\">{html.escape(quote[0])}<blockquote>{q}"
                      f"</blockquote></div>")
        return f"<html><body>{paras}</body></html>"

    # ---- truth
    def write_truth(self, tdir: Path, params: dict[str, Any]) -> None:
        from custdyn.schema import AMOUNT

        c = self.c
        T = self.T
        n = self.n
        ts = pa.timestamp("us", tz="UTC")

        def tcol(arr: np.ndarray) -> list[datetime | None]:
            return [self.dt(float(v)) if np.isfinite(v) and v < T else None for v in arr]

        alive = c["alive_end"]
        prospect = c["is_prospect"]
        opened = ~prospect & (c["open_t"] < T)
        defected = opened & ~alive & np.isfinite(c["death_at"])
        won = np.isfinite(c["won_back_at"])
        last_o = self.last_order_t
        S_end = c["S_end"]
        stage = c["stage_end"]
        ment = getattr(self, "mention_first", {})
        n_orders = np.zeros(n, dtype=np.int64)
        for i in range(n):
            n_orders[i] = len(self.order_times[i])
        cancelled = getattr(self, "cancelled_at", {})
        cust = pa.table({
            "customer_id": self.ids,
            "name": self.names,
            "email": self.emails_of,
            "segment": c["segment"].tolist(),
            "country": c["country"].tolist(),
            "language": c["language"].tolist(),
            "taglish": c["taglish"].tolist(),
            "is_prospect": prospect.tolist(),
            "first_contact_at": pa.array(tcol(c["first_contact"]), ts),
            "account_opened_at": pa.array(tcol(c["open_t"]), ts),
            "first_order_at": pa.array(tcol(c["first_order"]), ts),
            "is_subscriber": c["is_subscriber"].tolist(),
            "lambda_per_week": c["lambda"].tolist(),
            "mu0_per_week": c["mu0"].tolist(),
            "decided_to_leave_at": pa.array(tcol(c["decided_at"]), ts),
            "n_leave_decisions": c["n_decisions"].tolist(),
            "n_recoveries": c["n_recovered"].tolist(),
            "leaving_at_end": c["leaving_end"].tolist(),
            "dropout_at": pa.array(tcol(c["dropout_at"]), ts),
            "defected": defected.tolist(),
            "defected_at": pa.array([self.dt(float(c["death_at"][i])) if defected[i] else None
                                     for i in range(n)], ts),
            "cancelled_at": pa.array([cancelled.get(i) for i in range(n)], ts),
            "won_back": won.tolist(),
            "won_back_at": pa.array(tcol(c["won_back_at"]), ts),
            "satisfaction_start": c["s0"].tolist(),
            "satisfaction_end": S_end.tolist(),
            "mentioned_competitor": [i in ment for i in range(n)],
            "competitor": [ment[i][1] if i in ment else None for i in range(n)],
            "first_mention_at": pa.array([self.dt(ment[i][0]) if i in ment else None
                                          for i in range(n)], ts),
            "assigned_agent": c["agent"].tolist(),
            "slow_agent": np.isin(c["agent"], S.SLOW_AGENTS).tolist(),
            "sales_rep": c["rep"].tolist(),
            "order_problem_p": c["issue_p"].tolist(),
            "spend_nu": c["nu"].tolist(),
            "spend_mean": c["spend_mean"].tolist(),
            "n_orders": n_orders.tolist(),
            "n_repeat_orders": c["repeat_orders"].tolist(),
            "exposure_weeks": c["exposure"].tolist(),
            "effective_exposure_weeks": c["eff_exposure"].tolist(),
            "last_order_at": pa.array(tcol(np.nan_to_num(last_o, nan=np.inf)), ts),
            "stage_end": stage.tolist(),
        })
        pq.write_table(cust, tdir / "customers.parquet")
        tr = self.truth.rows
        amounts = [None if a is None else round(float(a), 2) for a in tr["amount"]]
        from decimal import Decimal

        msgs = pa.table({
            "interaction_id": pa.array(tr["interaction_id"], pa.string()),
            "source": tr["source"],
            "customer_id": tr["customer_id"],
            "occurred_at": pa.array(tr["occurred_at"], ts),
            "channel": tr["channel"],
            "kind": tr["kind"],
            "direction": tr["direction"],
            "amount": pa.array([None if a is None else Decimal(f"{a:.2f}") for a in amounts],
                               AMOUNT),
            "agent_id": pa.array(tr["agent_id"], pa.string()),
            "thread_id": pa.array(tr["thread_id"], pa.string()),
            "language": tr["language"],
            "code_switched": tr["code_switched"],
            "sentiment": tr["sentiment"],
            "emotion": tr["emotion"],
            "theme_id": pa.array(tr["theme_id"], pa.string()),
            "competitor": pa.array(tr["competitor"], pa.string()),
            "intent_to_switch": tr["intent_to_switch"],
            "nps": pa.array(tr["nps"], pa.int8()),
            "sender_known": tr["sender_known"],
        })
        order = np.lexsort((np.array(tr["customer_id"]),
                            msgs.column("occurred_at").cast(pa.int64()).to_numpy()))
        pq.write_table(msgs.take(pa.array(order)), tdir / "messages.parquet")
        codes = self.sim.stage_codes
        if codes.size:
            snap, who = np.nonzero(codes >= 0)
            ids = np.array(self.ids, dtype=object)
            pq.write_table(pa.table({
                "customer_id": pa.array(ids[who], pa.string()),
                "as_of": pa.array([self.dt(float(t)) for t in self.sim.stage_times],
                                  ts).take(pa.array(snap)),
                "stage": pa.array(S.STAGES_ARR[codes[snap, who]], pa.string()),
            }), tdir / "stages.parquet")
        thr = self.threads
        pq.write_table(pa.table({
            "thread_id": thr["thread_id"], "customer_id": thr["customer_id"],
            "channel": thr["channel"], "topic": thr["topic"], "agent_id": thr["agent_id"],
            "slow_agent": thr["slow_agent"],
            "opened_at": pa.array(thr["opened_at"], ts),
            "first_reply_at": pa.array(thr["first_reply_at"], ts),
            "first_reply_hours": pa.array(thr["first_reply_hours"], pa.float64()),
            "unanswered": thr["unanswered"], "reopened": thr["reopened"],
            "escalated": thr["escalated"],
            "resolved_at": pa.array(thr["resolved_at"], ts),
            "resolution_hours": pa.array(thr["resolution_hours"], pa.float64()),
            "n_messages": pa.array(thr["n_messages"], pa.int32()),
        }), tdir / "threads.parquet")
        (tdir / "params.json").write_text(json.dumps(params, indent=2, ensure_ascii=False),
                                          encoding="utf-8")


def _params_doc(sim: S.Sim, n: int, seed: int, start: datetime, end: datetime) -> dict[str, Any]:
    P = sim.params
    return {
        "seed": seed,
        "n_customers": n,
        "start": start.date().isoformat(),
        "end": end.date().isoformat(),
        "horizon_weeks": sim.horizon,
        "time_unit": "weeks",
        "vendor": {"name": S.VENDOR_NAME, "domain": S.VENDOR_DOMAIN},
        "purchase_process": {
            "model": "pareto_nbd",
            "description": "First order at account opening (+0-3 days), then repeat orders "
                           "Poisson(lambda * m(S)) per week while alive; lambda ~ Gamma(r, "
                           "rate=alpha); baseline rate of deciding to leave mu0 ~ Gamma(s, "
                           "rate=beta); hazard = mu0 * exp(kappa * (s_ref - S)); after the "
                           "decision a leaving phase of leave_min..leave_max weeks (orders "
                           "times leaving_rate_mult, recovery at recover_rate per week), then "
                           "gone; m(S) = min(1, max(rate_floor, rate_offset + rate_slope * S)).",
            "leave_min": P.leave_min, "leave_max": P.leave_max,
            "leaving_rate_mult": P.leaving_rate_mult, "recover_rate": P.recover_rate,
            "r": P.r, "alpha": P.alpha, "s": P.s, "beta": P.beta,
            "kappa": P.kappa, "s_ref": P.s_ref, "rate_offset": P.rate_offset,
            "rate_slope": P.rate_slope,
            "rate_floor": P.rate_floor,
            "mean_lambda_per_week": P.r / P.alpha,
        },
        "spend_process": {
            "model": "gamma_gamma",
            "description": "nu ~ Gamma(q, rate=v); each order value ~ Gamma(p, rate=nu), "
                           "rounded to cents, at least 1.00 EUR; customer mean = p / nu.",
            "p": P.p, "q": P.q, "v": P.v, "mean_order_value": P.p * P.v / (P.q - 1.0),
        },
        "satisfaction_model": {
            "description": "S in [0, 1], baseline s0 ~ N(s0_mean, s0_sd) clipped to "
                           "[0.2, 0.95]; each week S += reversion * (s0 - S) + sum of service "
                           "effects + N(0, noise_sd); message tone and the dropout hazard "
                           "follow S.",
            **{k: v for k, v in asdict(P).items() if k.startswith(("s0_", "reversion", "noise",
                                                                    "d_"))},
        },
        "params": asdict(P),
        "themes": list(S.THEMES),
        "competitors": list(S.COMPETITORS),
        "agents": [{"agent_id": a[0], "name": a[1], "role": a[2], "speed": a[3]}
                   for a in S.AGENTS],
        "slow_agents": list(S.SLOW_AGENTS),
        "praised_agent": S.PRAISED_AGENT,
        "languages": ["en", "pt", "no", "tl"],
        "stages": list(S.STAGES),
        "stage_rules": {
            "prospect": "no account (yet)",
            "lost": "had been a customer and is gone",
            "onboarding": "account opened in the last 8 weeks (and not gone)",
            "won_back": "alive after a win-back",
            "at_risk": "alive, satisfaction below 0.4 or in the leaving phase",
            "dormant": "alive, no order in the last 26 weeks",
            "active": "everyone else who is alive",
            "precedence": "prospect > lost > onboarding > won_back > at_risk > dormant > active",
        },
    }


def write_world(directory: str | Path, n_customers: int = 2000, seed: int = 7,
                start: str | date = "2023-01-01", end: str | date = "2025-12-31") -> World:
    """Simulate the demo world and write it to ``directory`` (created if missing).

    Writes customers.csv, orders.csv, crm_activities.csv + crm_map.toml, emails.mbox,
    tickets.jsonl, chat_feedback.jsonl and the truth (``truth/``: customers.parquet,
    messages.parquet, threads.parquet, params.json). ``end`` is inclusive. Deterministic:
    the same arguments give byte-identical files.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tdir = directory / "truth"
    tdir.mkdir(exist_ok=True)
    t0 = _parse_day(start)
    t1 = _parse_day(end) + timedelta(days=1)
    if t1 <= t0 + timedelta(days=84):
        raise ValueError("the demo world needs at least 12 weeks between start and end")
    if n_customers < 1:
        raise ValueError("n_customers must be at least 1")
    horizon = (t1 - t0).total_seconds() / WEEK_S
    sim = S.simulate(n_customers, seed, horizon)
    b = _Builder(sim, t0, seed)
    b.sales()
    b.orders()
    b.support()
    b.voice()
    b.lifecycle()
    counts = b.write(directory)
    b.write_truth(tdir, _params_doc(sim, n_customers, seed, t0, t1 - timedelta(days=1)))
    files = [
        SourceFile(directory / "customers.csv", "customers", None,
                   "customers and prospects (extra column: plan)"),
        SourceFile(directory / "orders.csv", "interactions", None,
                   "account openings, orders, order problems and returns"),
        SourceFile(directory / "crm_activities.csv", "interactions",
                   directory / "crm_map.toml",
                   "CRM export: sales calls, meetings, visits, win-backs, cancellations"),
        SourceFile(directory / "emails.mbox", "interactions", None,
                   "e-mails between customers and the vendor"),
        SourceFile(directory / "tickets.jsonl", "interactions", None,
                   "support tickets as threads"),
        SourceFile(directory / "chat_feedback.jsonl", "interactions", None,
                   "chats, feedback forms and surveys"),
    ]
    settings = {
        "timezone": "Europe/Oslo",
        "currency": "EUR",
        "vendor_domains": [S.VENDOR_DOMAIN],
        "competitors": [{"name": c["name"], "aliases": list(c["aliases"])}
                        for c in S.COMPETITORS],
    }
    return World(directory=directory, files=files, settings=settings, truth_dir=tdir,
                 n_customers=n_customers, seed=seed, counts=counts)
