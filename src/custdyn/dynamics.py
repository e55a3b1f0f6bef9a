"""Lifecycle stages: one label per customer per ``as_of``, from documented, settable rules.

Rules, checked in this order (the first that holds wins); every threshold is a setting under
``[stages]`` in ``custdyn.toml``:

| stage | rule |
|---|---|
| prospect | no account opened and no purchase before ``as_of`` |
| lost | cancelled, or P(alive) < ``lost_p_alive`` (0.1), or no activity from the customer for ``lost_days`` (365) |
| onboarding | account opened or first purchase less than ``onboarding_days`` (90) ago, at most one purchase |
| won back | a purchase in the last ``won_back_recent_days`` (90) after a gap of at least ``won_back_gap_days`` (180) between purchases |
| dormant | no purchase for ``dormant_days`` (180) and no contact from the customer for ``dormant_contact_days`` (90) |
| at risk | defection risk >= ``at_risk_risk`` (0.5), or P(alive) < ``at_risk_p_alive`` (0.5) |
| active | everything else |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

STAGES = ("prospect", "onboarding", "active", "at risk", "dormant", "lost", "won back")

DEFAULT_RULES: dict[str, float] = {
    "lost_p_alive": 0.1,
    "lost_days": 365.0,
    "onboarding_days": 90.0,
    "won_back_recent_days": 90.0,
    "won_back_gap_days": 180.0,
    "dormant_days": 180.0,
    "dormant_contact_days": 90.0,
    "at_risk_risk": 0.5,
    "at_risk_p_alive": 0.5,
}


def _f(x: Any, n: int) -> NDArray[np.float64]:
    if x is None:
        return np.full(n, np.nan)
    return np.asarray(x, dtype=float).reshape(-1)


def assign_stages(
    *,
    n_orders: Any,
    has_account: Any,
    days_since_account: Any,
    days_since_first_order: Any,
    days_since_last_order: Any,
    days_since_customer_contact: Any,
    p_alive: Any,
    defection_risk: Any,
    cancelled: Any,
    max_gap_days: Any,
    rules: Mapping[str, float] | None = None,
) -> NDArray[np.str_]:
    """Stage of each customer. Every input is an array of shape (n,); days in days; NaN for
    unknown. Returns an array of stage names (see :data:`STAGES`)."""
    r = {**DEFAULT_RULES, **(rules or {})}
    orders = np.nan_to_num(_f(n_orders, len(np.atleast_1d(n_orders))), nan=0.0)
    n = orders.size
    acct = np.asarray(has_account, dtype=bool).reshape(-1)
    d_acct, d_first = _f(days_since_account, n), _f(days_since_first_order, n)
    d_last, d_contact = _f(days_since_last_order, n), _f(days_since_customer_contact, n)
    pa_, risk = _f(p_alive, n), _f(defection_risk, n)
    cancel = np.asarray(cancelled, dtype=bool).reshape(-1)
    gap = _f(max_gap_days, n)

    def lt(a: NDArray[np.float64], v: float) -> NDArray[np.bool_]:
        return np.isfinite(a) & (a < v)

    def ge(a: NDArray[np.float64], v: float) -> NDArray[np.bool_]:
        return np.isfinite(a) & (a >= v)

    quiet = ~np.isfinite(d_contact) | (d_contact >= r["lost_days"])
    no_recent_order = ~np.isfinite(d_last) | (d_last >= r["lost_days"])
    conditions = [
        ("prospect", ~acct & (orders == 0)),
        ("lost", cancel | lt(pa_, r["lost_p_alive"]) | (quiet & no_recent_order)),
        ("onboarding", (orders <= 1) & (lt(d_acct, r["onboarding_days"])
                                        | lt(d_first, r["onboarding_days"]))),
        ("won back", lt(d_last, r["won_back_recent_days"]) & ge(gap, r["won_back_gap_days"])),
        ("dormant", (~np.isfinite(d_last) | (d_last >= r["dormant_days"]))
         & (~np.isfinite(d_contact) | (d_contact >= r["dormant_contact_days"]))),
        ("at risk", ge(risk, r["at_risk_risk"]) | lt(pa_, r["at_risk_p_alive"])),
    ]
    out = np.full(n, "active", dtype=object)
    done = np.zeros(n, dtype=bool)
    for name, cond in conditions:
        hit = cond & ~done
        out[hit] = name
        done |= hit
    return out.astype(str)


def stage_flows(previous: Mapping[str, str], current: Mapping[str, str],
                value: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Counts (and value) of customers moving from one stage to another between two snapshots.

    ``previous`` and ``current`` map customer id to stage; customers new in ``current`` come
    from ``"new"``.
    """
    agg: dict[tuple[str, str], list[float]] = {}
    for cid, stage in current.items():
        src = previous.get(cid, "new")
        k = (src, stage)
        cell = agg.setdefault(k, [0.0, 0.0])
        cell[0] += 1
        cell[1] += float((value or {}).get(cid, 0.0) or 0.0)
    return [
        {"from_stage": a, "to_stage": b, "customers": int(c), "value": v}
        for (a, b), (c, v) in sorted(agg.items())
    ]
