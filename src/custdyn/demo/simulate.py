"""The demo world's dynamics: who the customers are, when they buy, what goes wrong, how they feel.

Everything here is numbers: event tables as numpy arrays, time in weeks since ``start``. The
writers (:mod:`custdyn.demo.writers`) turn the events into messages and files.

The model, in one paragraph. Every customer who opens an account places a first order at
opening and then repeat orders from a Poisson process with rate ``lambda ~ Gamma(r, alpha)``
per week while alive (a Pareto/NBD purchase process). Order values follow the Gamma-Gamma
model: ``nu ~ Gamma(q, rate=v)``, each order ``~ Gamma(p, rate=nu)``. A latent satisfaction
``S`` in [0, 1] starts at a personal baseline and is moved each week by service experiences
(order problems, returns, slow or missing replies, reopened and escalated threads, long
resolutions, quick helpful answers) and pulled back towards the baseline. The hazard of
deciding to leave is ``mu0 * exp(kappa * (s_ref - S))`` with ``mu0 ~ Gamma(s, rate=beta)``; a
customer who decides winds down for some weeks (fewer orders, more complaints, competitor
mentions) and is then gone, unless the relationship recovers first. The purchase rate is damped
when S is low (``min(1, max(rate_floor, rate_offset + rate_slope * S))``). Two planted support
agents answer slowly, so their customers are less satisfied and leave more often.
Subscribers who leave send an explicit cancellation; some lapsed customers are won back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------------------------
# The cast

VENDOR_NAME = "Lumora"
VENDOR_DOMAIN = "lumora.example"

#: (agent_id = e-mail address, full name, role, speed) -- speed is "fast", "normal" or "slow".
AGENTS: tuple[tuple[str, str, str, str], ...] = (
    ("ingrid.berg@lumora.example", "Ingrid Berg", "sales", "normal"),
    ("joao.ferreira@lumora.example", "João Ferreira", "sales", "normal"),
    ("maria.santos@lumora.example", "Maria Santos", "sales", "normal"),
    ("tom.walker@lumora.example", "Tom Walker", "sales", "normal"),
    ("marta.lima@lumora.example", "Marta Lima", "support", "fast"),
    ("lars.haugen@lumora.example", "Lars Haugen", "support", "slow"),
    ("ana.reyes@lumora.example", "Ana Reyes", "support", "normal"),
    ("erik.solberg@lumora.example", "Erik Solberg", "support", "normal"),
    ("beatriz.costa@lumora.example", "Beatriz Costa", "support", "normal"),
    ("jose.bautista@lumora.example", "Jose Bautista", "support", "slow"),
    ("emma.clarke@lumora.example", "Emma Clarke", "support", "normal"),
    ("sigrid.nilsen@lumora.example", "Sigrid Nilsen", "support", "normal"),
)
SALES_AGENTS = tuple(a[0] for a in AGENTS if a[2] == "sales")
SUPPORT_AGENTS = tuple(a[0] for a in AGENTS if a[2] == "support")
SLOW_AGENTS = tuple(a[0] for a in AGENTS if a[3] == "slow")
PRAISED_AGENT = "marta.lima@lumora.example"

COMPETITORS: tuple[dict[str, Any], ...] = (
    {"name": "Nordvik", "aliases": ["Nordvik", "Nordviks", "nordvik.no"]},
    {"name": "BrightCart", "aliases": ["BrightCart", "Bright Cart", "brightcart.com"]},
    {"name": "Pérola Casa",
     "aliases": ["Pérola Casa", "Perola Casa", "Pérola", "perolacasa.pt"]},
    {"name": "Tindahan Plus", "aliases": ["Tindahan Plus", "TindahanPlus", "tindahanplus.ph"]},
)

THEMES: tuple[dict[str, str], ...] = (
    {"id": "late_delivery", "name": "Late deliveries",
     "description": "Orders arriving days after the promised date."},
    {"id": "damaged_goods", "name": "Damaged goods",
     "description": "Items arriving broken, dented or with missing parts."},
    {"id": "price", "name": "Prices too high",
     "description": "Prices and delivery fees seen as too high, often compared with rivals."},
    {"id": "missing_feature", "name": "Missing feature: recurring orders",
     "description": "Customers ask for scheduled recurring deliveries, which the shop lacks."},
    {"id": "app_bug", "name": "App bug at checkout",
     "description": "The mobile app crashes or freezes at checkout or payment."},
    {"id": "staff_praise", "name": "Praise for a staff member",
     "description": "Customers praise a named support agent, mostly Marta."},
)

#: country -> (language, share of customers, e-mail domains)
COUNTRIES: tuple[tuple[str, str, float], ...] = (
    ("NO", "no", 0.30),
    ("PT", "pt", 0.13),
    ("BR", "pt", 0.10),
    ("PH", "tl", 0.20),
    ("GB", "en", 0.12),
    ("IE", "en", 0.05),
    ("US", "en", 0.10),
)
SEGMENTS: tuple[tuple[str, float], ...] = (
    ("consumer", 0.6), ("small_business", 0.3), ("enterprise", 0.1))

# channels of support threads
THREAD_CHANNELS = ("ticket", "email", "chat")
# thread topics: themes plus generic questions
TOPICS = ("late_delivery", "damaged_goods", "app_bug", "missing_feature", "question", "price")


@dataclass(frozen=True)
class Params:
    """All the knobs of the world, saved in ``truth/params.json``. Time unit: weeks."""

    # Pareto/NBD purchase process (first order at account opening, then repeat orders)
    r: float = 0.75
    alpha: float = 7.5
    s: float = 1.5
    beta: float = 150.0
    # satisfaction -> dropout hazard and purchase rate
    kappa: float = 8.0
    s_ref: float = 0.65
    rate_offset: float = 0.2
    rate_slope: float = 1.2
    rate_floor: float = 0.3
    # Gamma-Gamma spend
    p: float = 6.0
    q: float = 4.0
    v: float = 60.0
    # population
    prospect_share: float = 0.12
    subscriber_share: float = 0.25
    # satisfaction dynamics
    s0_mean: float = 0.65
    s0_sd: float = 0.15
    reversion: float = 0.03
    noise_sd: float = 0.015
    d_issue: float = -0.10
    d_return: float = -0.04
    d_slow_reply: float = -0.10  # first reply later than 24 h
    d_very_slow_reply: float = -0.18  # first reply later than 72 h
    d_unanswered: float = -0.22
    d_reopened: float = -0.05
    d_escalated: float = -0.04
    d_long_resolution: float = -0.05  # resolved after more than 7 days
    d_good_service: float = 0.03  # answered within 8 h and resolved within 3 days
    d_order: float = 0.004
    # service
    issue_a: float = 2.0  # per-customer order-problem probability ~ Beta(a, b)
    issue_b: float = 26.0
    late_share: float = 0.6
    return_if_damaged: float = 0.7
    return_other: float = 0.03
    ticket_rate: float = 0.05  # spontaneous threads per week
    thread_if_issue: float = 0.65
    unanswered_normal: float = 0.03
    unanswered_slow: float = 0.18
    reply_median_h: float = 3.5
    reply_median_fast_h: float = 1.2
    reply_median_slow_h: float = 55.0
    reopen_normal: float = 0.08
    reopen_slow: float = 0.2
    escalate: float = 0.06
    # voice of the customer
    feedback_rate: float = 0.012
    feedback_rate_unhappy: float = 0.06  # extra per week at S = 0.3 (linear below 0.6)
    survey_after_thread: float = 0.2
    survey_quarterly: float = 0.2
    mention_unhappy: float = 0.04  # competitor mentions per week at S = 0.25 (linear below 0.45)
    mention_other: float = 0.001
    mention_leaving: float = 0.08  # extra competitor mentions per week while leaving
    # the leaving phase: decision (hazard above) -> weeks of winding down -> gone
    leave_min: float = 6.0
    leave_max: float = 20.0
    d_decide: float = -0.15
    recover_rate: float = 0.015  # per week while leaving
    leaving_rate_mult: float = 0.35
    feedback_rate_leaving: float = 0.06
    # lapse and return
    winback_share: float = 0.22


@dataclass
class Sim:
    """The simulated world in numbers (arrays per customer and per event table)."""

    params: Params
    seed: int
    horizon: float  # weeks from start to end
    cust: dict[str, np.ndarray]
    events: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    #: weeks of the stage snapshots (quarter ends and the end) and codes into STAGES,
    #: shape (snapshots, customers); -1 where the customer was not yet known
    stage_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stage_codes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int8))


STAGES = ("prospect", "onboarding", "active", "at_risk", "dormant", "lost", "won_back")
STAGES_ARR = np.array(STAGES + ("",), dtype=object)  # code -1 -> ""


def _stages(t: float, open_t: np.ndarray, first_contact: np.ndarray, alive: np.ndarray,
            ever: np.ndarray, S: np.ndarray, leaving: np.ndarray, won_back_at: np.ndarray,
            last_order: np.ndarray) -> np.ndarray:
    """Lifecycle stage codes (index into STAGES, -1 not yet known) at time t (weeks).

    prospect: no account yet; lost: had been a customer and is gone; onboarding: account
    opened in the last 8 weeks; won_back: alive after a win-back; at_risk: satisfaction below
    0.4 or in the leaving phase; dormant: no order in 26 weeks; active: everyone else.
    """
    code = np.full(open_t.shape, 2, dtype=np.int8)
    opened = np.nan_to_num(open_t, nan=np.inf) <= t
    code[alive & (t - last_order > 26.0)] = 4
    code[alive & ((S < 0.4) | leaving)] = 3
    code[alive & (won_back_at <= t)] = 6
    code[opened & (t - np.nan_to_num(open_t, nan=-np.inf) < 8.0) & (alive | ~ever)] = 1
    code[opened & ever & ~alive] = 5
    code[~opened] = 0
    code[first_contact > t] = -1
    return code


def _snap_daytime(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Move times to a plausible local daytime on the same day (weeks in, weeks out)."""
    day = np.floor(t * 7.0)
    # local hours 08-22, peak around midday and evening; times are UTC here (Oslo is +1/+2)
    hour = np.clip(rng.normal(13.0, 3.2, t.shape), 7.0, 21.5)
    return (day + hour / 24.0) / 7.0


def _cat(chunks: list[np.ndarray], dtype: Any = float) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)


def simulate(n_customers: int, seed: int, horizon_weeks: float,
             params: Params | None = None) -> Sim:
    """Simulate the world: customers, orders, problems, threads, feedback, surveys, lapses."""
    P = params or Params()
    rng = np.random.default_rng(seed)
    n = int(n_customers)
    T = float(horizon_weeks)

    # ---- who the customers are
    c_names = np.array([c[0] for c in COUNTRIES])
    c_lang = np.array([c[1] for c in COUNTRIES])
    c_p = np.array([c[2] for c in COUNTRIES])
    ci = rng.choice(len(COUNTRIES), size=n, p=c_p / c_p.sum())
    seg_names = np.array([s[0] for s in SEGMENTS])
    seg_p = np.array([s[1] for s in SEGMENTS])
    segment = seg_names[rng.choice(len(SEGMENTS), size=n, p=seg_p)]
    is_prospect = rng.random(n) < P.prospect_share
    is_subscriber = ~is_prospect & (rng.random(n) < P.subscriber_share)
    # Filipino customers write Taglish part of the time
    taglish = (c_lang[ci] == "tl") & (rng.random(n) < 0.45)

    latest_open = max(T - 3.0, 3.0)
    open_t = np.where(is_prospect, np.nan, rng.uniform(2.0, latest_open, n))
    open_t = np.where(is_prospect, np.nan, _snap_daytime(rng, np.nan_to_num(open_t)))
    first_contact = np.where(
        is_prospect,
        rng.uniform(0.0, max(T - 4.0, 1.0), n),
        np.maximum(0.0, np.nan_to_num(open_t) - rng.uniform(1.0, 10.0, n)),
    )
    first_contact = np.minimum(_snap_daytime(rng, first_contact),
                               np.where(is_prospect, np.inf, np.nan_to_num(open_t) - 1e-3))
    first_order = open_t + rng.uniform(0.05, 3.0, n) / 7.0

    lam = rng.gamma(P.r, 1.0 / P.alpha, n)
    mu0 = rng.gamma(P.s, 1.0 / P.beta, n)
    nu = rng.gamma(P.q, 1.0 / P.v, n)
    spend_mean = P.p / nu
    s0 = np.clip(rng.normal(P.s0_mean, P.s0_sd, n), 0.2, 0.95)
    issue_p = rng.beta(P.issue_a, P.issue_b, n)
    ticket_rate = rng.gamma(2.0, P.ticket_rate / 2.0, n)
    support = np.array(SUPPORT_AGENTS)
    agent_idx = rng.integers(0, len(support), n)
    sales = np.array(SALES_AGENTS)
    rep_idx = rng.integers(0, len(sales), n)
    slow_set = {i for i, a in enumerate(support) if a in SLOW_AGENTS}
    fast_set = {i for i, a in enumerate(support) if a == PRAISED_AGENT}
    speed_of = np.array([2 if i in slow_set else (0 if i in fast_set else 1)
                         for i in range(len(support))])

    # ---- state
    S = s0.copy()
    alive = np.zeros(n, dtype=bool)
    alive_from = np.where(is_prospect, np.inf, first_order)
    ever = np.zeros(n, dtype=bool)  # has become alive once
    dropout_at = np.full(n, np.nan)
    death_at = np.full(n, np.nan)  # latest death
    revive_at = np.full(n, np.inf)
    won_back_at = np.full(n, np.nan)
    exposure = np.zeros(n)
    last_order = np.full(n, -np.inf)
    stage_times: list[float] = []
    stage_codes: list[np.ndarray] = []
    cum_hazard = np.zeros(n)
    decision_exposure = np.zeros(n)
    leaving = np.zeros(n, dtype=bool)
    leave_at = np.full(n, np.inf)
    decided_at = np.full(n, np.nan)
    n_decisions = np.zeros(n, dtype=np.int64)
    n_recovered = np.zeros(n, dtype=np.int64)
    eff_exposure = np.zeros(n)
    repeat_orders = np.zeros(n, dtype=np.int64)

    ev: dict[str, dict[str, list[np.ndarray]]] = {
        k: {} for k in ("orders", "issues", "returns", "threads", "feedback", "surveys",
                        "mentions", "winbacks", "cancellations")
    }

    def add(table: str, **cols: np.ndarray) -> None:
        for k, v in cols.items():
            ev[table].setdefault(k, []).append(np.asarray(v))

    n_weeks = int(np.ceil(T))
    for w in range(n_weeks):
        hi_w = min(w + 1.0, T)
        # revivals scheduled in this week
        rev = np.flatnonzero(~alive & (revive_at >= w) & (revive_at < hi_w))
        if rev.size:
            alive[rev] = True
            alive_from[rev] = revive_at[rev] + rng.uniform(0.1, 3.0, rev.size) / 7.0
            won_back_at[rev] = revive_at[rev]
            S[rev] = np.maximum(S[rev], 0.85 * s0[rev] + 0.1)
            add("winbacks", cust=rev, t=revive_at[rev])
            add("orders", cust=rev, t=alive_from[rev], first=np.ones(rev.size, bool))
            revive_at[rev] = np.inf
        # first orders this week
        starting = np.flatnonzero(~ever & (alive_from >= w) & (alive_from < hi_w))
        if starting.size:
            alive[starting] = True
            ever[starting] = True
            add("orders", cust=starting, t=alive_from[starting],
                first=np.ones(starting.size, bool))
        act = np.flatnonzero(alive & (alive_from < hi_w))
        if act.size == 0:
            continue
        lo = np.maximum(float(w), alive_from[act])
        expo = np.clip(hi_w - lo, 0.0, 1.0)
        Sa = S[act]
        lv = leaving[act]
        was_leaving = lv.copy()
        # the decision to leave: hazard driven by satisfaction; the customer leaves some weeks
        # later (the leaving phase), unless the relationship recovers first
        hazard = mu0[act] * np.exp(P.kappa * (P.s_ref - Sa))
        decide = ~lv & (rng.random(act.size) < -np.expm1(-hazard * expo))
        t_dec = lo + rng.random(act.size) * expo
        if decide.any():
            dc = act[decide]
            leaving[dc] = True
            decided_at[dc] = t_dec[decide]
            leave_at[dc] = t_dec[decide] + rng.uniform(P.leave_min, P.leave_max, dc.size)
            S[dc] = np.clip(S[dc] + P.d_decide, 0.0, 1.0)
            n_decisions[dc] += 1
        recover = lv & (rng.random(act.size) < P.recover_rate * expo)
        if recover.any():
            leaving[act[recover]] = False
            leave_at[act[recover]] = np.inf
            n_recovered[act[recover]] += 1
        lv = leaving[act]
        die = lv & (leave_at[act] < hi_w)
        t_die = np.where(die, np.maximum(leave_at[act], lo), np.inf)
        hi = np.where(die, t_die, hi_w)
        expo = np.maximum(hi - lo, 0.0)
        Sa = S[act]
        mult = np.clip(P.rate_offset + P.rate_slope * Sa, P.rate_floor, 1.0) \
            * np.where(lv, P.leaving_rate_mult, 1.0)
        exposure[act] += expo
        cum_hazard[act] += np.where(was_leaving, 0.0, hazard * expo)
        decision_exposure[act] += np.where(was_leaving, 0.0, expo)
        eff_exposure[act] += expo * mult

        # -- repeat orders
        k = rng.poisson(lam[act] * mult * expo)
        repeat_orders[act] += k
        oc = np.repeat(act, k)
        olo = np.repeat(lo, k)
        ohi = np.repeat(hi, k)
        ot = olo + rng.random(oc.size) * (ohi - olo)
        ot = np.clip(_snap_daytime(rng, ot), olo, ohi - 1e-5)
        add("orders", cust=oc, t=ot, first=np.zeros(oc.size, bool))
        np.maximum.at(last_order, oc, ot)
        if starting.size:
            last_order[starting] = np.maximum(last_order[starting], alive_from[starting])
        if rev.size:
            last_order[rev] = np.maximum(last_order[rev], alive_from[rev])
        dS = np.zeros(n)
        np.add.at(dS, oc, P.d_order)

        # orders placed this week (including first orders) can go wrong
        week_orders_c = np.concatenate([oc, starting, rev]) if (starting.size or rev.size) else oc
        week_orders_t = np.concatenate([ot, alive_from[starting], alive_from[rev]]) \
            if (starting.size or rev.size) else ot
        bad = rng.random(week_orders_c.size) < issue_p[week_orders_c]
        ic = week_orders_c[bad]
        iot = week_orders_t[bad]
        late = rng.random(ic.size) < P.late_share
        days_late = np.where(late, rng.integers(2, 15, ic.size), 0)
        it = iot + np.where(late, 3.0 + days_late, rng.uniform(2.0, 5.0, ic.size)) / 7.0
        it = _snap_daytime(rng, it)
        it = np.maximum(it, iot + 0.5 / 7.0)
        has_ret = ~late & (rng.random(ic.size) < P.return_if_damaged)
        add("issues", cust=ic, t=it, order_t=iot, late=late, days_late=days_late,
            returned=has_ret, S=S[ic])
        np.add.at(dS, ic, P.d_issue)
        # returns: after damage, or changed mind
        other_ret = rng.random(week_orders_c.size) < P.return_other
        rc = np.concatenate([ic[has_ret], week_orders_c[other_ret]])
        rot = np.concatenate([iot[has_ret], week_orders_t[other_ret]])
        rtt = np.concatenate([it[has_ret] + rng.uniform(1.0, 5.0, has_ret.sum()) / 7.0,
                              week_orders_t[other_ret]
                              + rng.uniform(4.0, 20.0, other_ret.sum()) / 7.0])
        rdam = np.concatenate([np.ones(has_ret.sum(), bool), np.zeros(other_ret.sum(), bool)])
        add("returns", cust=rc, t=_snap_daytime(rng, rtt), order_t=rot, damaged=rdam, S=S[rc])
        np.add.at(dS, rc, P.d_return)

        # -- support threads: triggered by problems and spontaneous
        trig = rng.random(ic.size) < P.thread_if_issue
        tc1 = ic[trig]
        tt1 = it[trig] + rng.uniform(0.5, 30.0, tc1.size) / 168.0
        top1 = np.where(late[trig], 0, 1)  # late_delivery / damaged_goods
        ks = rng.poisson(ticket_rate[act] * expo)
        tc2 = np.repeat(act, ks)
        tt2 = _snap_daytime(rng, np.repeat(lo, ks) + rng.random(tc2.size) * np.repeat(expo, ks))
        top2 = rng.choice([2, 3, 4, 5], size=tc2.size, p=[0.3, 0.2, 0.42, 0.08])
        tc = np.concatenate([tc1, tc2])
        tt = np.concatenate([tt1, tt2])
        top = np.concatenate([top1, top2])
        t_order = np.concatenate([iot[trig], np.full(tc2.size, np.nan)])
        t_days = np.concatenate([days_late[trig], np.zeros(tc2.size, days_late.dtype)])
        m = tc.size
        ch = rng.choice(3, size=m, p=[0.45, 0.33, 0.22])
        own = rng.random(m) < 0.8
        ag = np.where(own, agent_idx[tc], rng.integers(0, len(support), m))
        spd = speed_of[ag]
        slow = spd == 2
        unanswered = rng.random(m) < np.where(slow, P.unanswered_slow, P.unanswered_normal)
        med = np.select([spd == 0, spd == 1], [P.reply_median_fast_h, P.reply_median_h],
                        P.reply_median_slow_h)
        sig = np.where(slow, 0.55, 0.9)
        first_h = med * np.exp(sig * rng.standard_normal(m))
        first_h = np.where(ch == 2, first_h / 40.0, first_h)  # chat: minutes
        # agents answer tickets and e-mails in office hours (07-20 Oslo, about UTC+1)
        local = np.mod(tt * 168.0 + first_h + 1.0, 24.0)
        wait = np.where(local >= 20.0, 24.0 - local + 7.0,
                        np.where(local < 7.0, 7.0 - local, 0.0))
        first_h = first_h + np.where(ch == 2, 0.0, wait + rng.uniform(0.0, 2.0, m) * (wait > 0))
        first_h = np.where(unanswered, np.nan, first_h)
        reopened = ~unanswered & (rng.random(m) < np.where(slow, P.reopen_slow, P.reopen_normal))
        escalated = ~unanswered & (rng.random(m) < P.escalate + 0.25 * reopened)
        res_h = np.where(unanswered, np.nan,
                         first_h + 20.0 * np.exp(0.9 * rng.standard_normal(m))
                         + np.where(reopened, rng.uniform(24.0, 120.0, m), 0.0)
                         + np.where(escalated, rng.uniform(24.0, 96.0, m), 0.0))
        res_h = np.where(ch == 2, np.where(unanswered, np.nan, first_h + rng.uniform(0.05, 0.5, m)),
                         res_h)
        add("threads", cust=tc, t=tt, topic=top, channel=ch, agent=ag, first_h=first_h,
            unanswered=unanswered, reopened=reopened, escalated=escalated, res_h=res_h,
            S=S[tc], order_t=t_order, days_late=t_days)
        fh = np.nan_to_num(first_h, nan=0.0)
        rh = np.nan_to_num(res_h, nan=0.0)
        d = (np.where(unanswered, P.d_unanswered, 0.0)
             + np.where(fh > 72.0, P.d_very_slow_reply, np.where(fh > 24.0, P.d_slow_reply, 0.0))
             + np.where(reopened, P.d_reopened, 0.0) + np.where(escalated, P.d_escalated, 0.0)
             + np.where(rh > 168.0, P.d_long_resolution, 0.0)
             + np.where(~unanswered & (fh <= 8.0) & (rh <= 72.0), P.d_good_service, 0.0))
        np.add.at(dS, tc, d)
        # surveys after answered threads
        sv = ~unanswered & (rng.random(m) < P.survey_after_thread)
        sc = tc[sv]
        st = _snap_daytime(rng, tt[sv] + (rh[sv] + rng.uniform(24.0, 72.0, sv.sum())) / 168.0)
        add("surveys", cust=sc, t=st, kind=np.zeros(sc.size, np.int8), topic=top[sv],
            agent=ag[sv], thread_good=(fh[sv] <= 8.0) & (rh[sv] <= 72.0), S=S[sc])

        # -- feedback and quarterly surveys
        kf = rng.poisson((P.feedback_rate
                          + P.feedback_rate_unhappy * np.clip(0.6 - Sa, 0.0, 0.6) / 0.3
                          + P.feedback_rate_leaving * lv) * expo)
        fc = np.repeat(act, kf)
        ft = _snap_daytime(rng, np.repeat(lo, kf) + rng.random(fc.size) * np.repeat(expo, kf))
        add("feedback", cust=fc, t=ft, S=S[fc])
        if w % 13 == 6:
            qa = act[rng.random(act.size) < P.survey_quarterly]
            qt = _snap_daytime(rng, np.full(qa.size, w + rng.uniform(0.0, 0.9)))
            keep = (qt >= np.maximum(float(w), alive_from[qa])) & (qt < hi_w)
            add("surveys", cust=qa[keep], t=qt[keep], kind=np.ones(keep.sum(), np.int8),
                topic=np.full(keep.sum(), -1), agent=np.full(keep.sum(), -1),
                thread_good=np.zeros(keep.sum(), bool), S=S[qa[keep]])
        # -- competitor mentions
        pm = (P.mention_unhappy * np.clip((0.45 - Sa) / 0.2, 0.0, 1.5) + P.mention_other
              + P.mention_leaving * lv) * expo
        mm = rng.random(act.size) < pm
        mc = act[mm]
        mt = _snap_daytime(rng, lo[mm] + rng.random(mc.size) * expo[mm])
        mt = np.clip(mt, lo[mm], np.maximum(hi[mm] - 1e-4, lo[mm]))
        intent = ((Sa[mm] < 0.45) | lv[mm]) & (rng.random(mc.size) < 0.85)
        add("mentions", cust=mc, t=mt, intent=intent, before_leaving=lv[mm], S=Sa[mm])

        # -- satisfaction update
        Sn = S[act] + P.reversion * (s0[act] - S[act]) + dS[act] \
            + rng.normal(0.0, P.noise_sd, act.size)
        S[act] = np.clip(Sn, 0.0, 1.0)

        # -- deaths
        dead = act[die]
        td = t_die[die]
        if dead.size:
            alive[dead] = False
            leaving[dead] = False
            leave_at[dead] = np.inf
            first = np.isnan(dropout_at[dead])
            dropout_at[dead[first]] = td[first]
            death_at[dead] = td
            sub = is_subscriber[dead]
            add("cancellations", cust=dead[sub], t=td[sub], S=S[dead[sub]])
            # win-back of lapsed non-subscribers, once
            wb = (~sub & first & (rng.random(dead.size) < P.winback_share)
                  & (td < T - 20.0))
            rt = td[wb] + rng.uniform(10.0, 40.0, wb.sum())
            okw = rt < T - 2.0
            revive_at[dead[wb][okw]] = _snap_daytime(rng, rt[okw])
        # -- lifecycle stages at each quarter's end and at the end
        if (w + 1) % 13 == 0 or w == n_weeks - 1:
            stage_times.append(hi_w)
            stage_codes.append(_stages(hi_w, open_t, first_contact, alive, ever, S, leaving,
                                       won_back_at, last_order))

    events: dict[str, dict[str, np.ndarray]] = {}
    for name, cols in ev.items():
        events[name] = {k: np.concatenate(v) for k, v in cols.items()}

    cust = {
        "country": c_names[ci], "language": c_lang[ci], "segment": segment, "taglish": taglish,
        "is_prospect": is_prospect, "is_subscriber": is_subscriber,
        "first_contact": first_contact, "open_t": open_t, "first_order": first_order,
        "lambda": lam, "mu0": mu0, "nu": nu, "spend_mean": spend_mean, "s0": s0, "S_end": S,
        "issue_p": issue_p, "ticket_rate": ticket_rate,
        "agent": support[agent_idx], "rep": sales[rep_idx],
        "alive_end": alive, "dropout_at": dropout_at, "death_at": death_at,
        "won_back_at": won_back_at, "exposure": exposure, "cum_hazard": cum_hazard,
        "decision_exposure": decision_exposure,
        "leaving_end": leaving, "decided_at": decided_at, "n_decisions": n_decisions,
        "n_recovered": n_recovered, "stage_end": STAGES_ARR[stage_codes[-1]], "eff_exposure": eff_exposure,
        "repeat_orders": repeat_orders, "ever": ever,
    }
    sim = Sim(params=P, seed=seed, horizon=T, cust=cust, events=events,
              stage_times=np.array(stage_times), stage_codes=np.array(stage_codes))
    return sim
