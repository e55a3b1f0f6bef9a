"""The demo world's hidden truth, read back for checking models.

:func:`defection_truth` answers, for customers and a moment ``as_of``: who was truly still a
customer then (between the first order and the true departure, or back after a win-back), and
who of those truly left within the next ``horizon_days``. These are the simulator's own
departure times (``dropout_at``, ``won_back_at``, ``defected_at`` in ``truth/customers.parquet``),
not anything a model could observe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["DefectionTruth", "defection_truth", "truth_end"]


class DefectionTruth(NamedTuple):
    """Per customer (in the order asked): ``alive`` (truly a customer at ``as_of``),
    ``defected`` (alive and truly gone within the horizon) and ``known`` (in the truth file)."""

    alive: NDArray[np.bool_]
    defected: NDArray[np.bool_]
    known: NDArray[np.bool_]


def _read(truth: Any) -> dict[str, list[Any]]:
    if isinstance(truth, str | Path):
        import pyarrow.parquet as pq

        p = Path(truth)
        truth = pq.read_table(p / "customers.parquet" if p.is_dir() else p)
    cols = ("customer_id", "first_order_at", "dropout_at", "won_back_at", "defected_at")
    return {c: truth.column(c).to_pylist() for c in cols}


def truth_end(truth_dir: str | Path) -> dt.datetime:
    """The end of the simulated period (midnight UTC after ``end`` in ``params.json``)."""
    import json

    p = json.loads((Path(truth_dir) / "params.json").read_text(encoding="utf-8"))
    d = dt.date.fromisoformat(p["end"]) + dt.timedelta(days=1)
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)


def defection_truth(truth: Any, ids: Sequence[str], as_of: dt.datetime,
                    horizon_days: float) -> DefectionTruth:
    """Who was truly a customer at ``as_of`` and who of them truly left within the horizon.

    Parameters
    ----------
    truth : the ``truth`` folder, its ``customers.parquet``, or that table (pyarrow)
    ids : customer ids to answer for
    as_of : timezone-aware datetime
    horizon_days : the window ``(as_of, as_of + horizon_days]``

    A customer is alive from the first order until ``dropout_at``, and again from
    ``won_back_at`` until ``defected_at`` (the last departure) after a win-back.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    t = _read(truth)
    end = as_of + dt.timedelta(days=float(horizon_days))
    rows = {c: i for i, c in enumerate(t["customer_id"])}
    n = len(ids)
    alive = np.zeros(n, dtype=bool)
    defected = np.zeros(n, dtype=bool)
    known = np.zeros(n, dtype=bool)
    for k, cid in enumerate(ids):
        i = rows.get(str(cid))
        if i is None:
            continue
        known[k] = True
        first, drop, back, gone = (t[c][i] for c in (
            "first_order_at", "dropout_at", "won_back_at", "defected_at"))
        if first is None or first > as_of:
            continue
        lapsed = drop is not None and drop <= as_of and (back is None or as_of < back)
        left = gone is not None and gone <= as_of
        if lapsed or left:
            continue
        alive[k] = True
        defected[k] = any(x is not None and as_of < x <= end for x in (drop, gone))
    return DefectionTruth(alive, defected, known)
