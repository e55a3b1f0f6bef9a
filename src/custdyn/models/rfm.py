"""Recency / frequency / monetary summary of a transaction log, the input of the models.

Accepts a pandas or polars DataFrame, a pyarrow Table or a dict of columns; the summary itself
is computed with numpy only (sorting integer keys and segment reductions).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["rfm_summary", "TIME_UNITS"]

#: Length of each time unit in days.
TIME_UNITS: dict[str, float] = {"D": 1.0, "W": 7.0, "M": 365.25 / 12.0, "Y": 365.25, "H": 1.0 / 24.0}

_DAY_NS = 86_400 * 10**9


def _column(frame: Any, name: str) -> np.ndarray:
    """One column of a pandas/polars frame, Arrow table or dict, as a numpy array."""
    if isinstance(frame, dict):
        col = frame[name]
    else:
        try:
            col = frame[name]
        except (KeyError, TypeError) as exc:  # pragma: no cover - reported below
            raise KeyError(f"column {name!r} not found") from exc
    if getattr(getattr(col, "dtype", None), "tz", None) is not None and hasattr(col, "dt"):
        col = col.dt.tz_convert(None)  # pandas, time-zone aware: UTC wall time, datetime64
    if hasattr(col, "to_numpy"):
        try:
            return np.asarray(col.to_numpy())
        except TypeError:
            return np.asarray(col.to_numpy(zero_copy_only=False))
    return np.asarray(col)


def _to_days(values: np.ndarray) -> NDArray[np.float64]:
    """Datetimes (numpy/pandas/polars/arrow, or ISO strings) as float days since 1970-01-01."""
    ns = _to_ns(values)
    if ns is None:
        return values.astype(np.float64)  # already numeric days
    return ns / _DAY_NS


def _to_ns(values: np.ndarray) -> NDArray[np.int64] | None:
    """Datetimes as int64 nanoseconds since the epoch; None for numeric input (days)."""
    if values.dtype.kind not in "Mm":
        if values.dtype.kind in "iuf":
            return None
        import pandas as pd  # edge: parse strings / python objects

        # utc=True: aware values are converted to UTC, naive ones taken as they are
        return np.asarray(pd.DatetimeIndex(pd.to_datetime(values, utc=True)).asi8)
    return values.astype("datetime64[ns]", copy=False).view(np.int64)


def _scalar_days(value: Any) -> float:
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return float(_to_days(np.asarray([np.datetime64(value) if isinstance(value, str) else value]))[0])


def _factorize(ids: np.ndarray) -> tuple[NDArray[np.int64], np.ndarray]:
    """Codes 0..k-1 (in sorted id order) and the distinct ids."""
    if ids.dtype.kind in "iu" and len(ids):
        lo, hi = int(ids.min()), int(ids.max())
        if hi - lo <= 4 * len(ids) + 1024:  # dense integer ids: direct addressing, no hashing
            off = ids - lo if ids.dtype == np.int64 else ids.astype(np.int64) - lo
            seen = np.zeros(hi - lo + 1, dtype=bool)
            seen[off] = True
            code_of = np.cumsum(seen, dtype=np.int64) - 1
            return code_of[off], (np.flatnonzero(seen) + lo).astype(ids.dtype)
    import pandas as pd  # hashing factorizer; edge conversion only

    codes, uniques = pd.factorize(ids, sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def _sorted_arrow_codes(frame: Any, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes 0..k-1 and the distinct ids of an Arrow table's string id column whose rows are
    already in id order (a log read ordered by customer), from the runs of equal ids, without
    a Python string per row; None for other input. Arrow compares strings by their UTF-8
    bytes, which orders them as Python does: the codes are those of :func:`_factorize`."""
    if type(frame).__module__.split(".")[0] != "pyarrow":
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(frame, pa.Table) or name not in frame.column_names:
        return None
    col = frame.column(name)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) or col.null_count or len(col) < 2:
        return None
    col = col.combine_chunks()
    later, earlier = col.slice(1), col.slice(0, len(col) - 1)
    if not pc.all(pc.greater_equal(later, earlier)).as_py():
        return None
    starts = np.empty(len(col), dtype=bool)
    starts[0] = True
    starts[1:] = np.asarray(pc.not_equal(later, earlier).to_numpy(zero_copy_only=False))
    codes = np.cumsum(starts, dtype=np.int64) - 1
    return codes, np.asarray(col.filter(pa.array(starts)).to_numpy(zero_copy_only=False))


def _segments(sorted_keys: np.ndarray) -> NDArray[np.intp]:
    """Start index of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.intp)
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def _events(
    codes: NDArray[np.int64],
    days: NDArray[np.float64],
    amount: NDArray[np.float64] | None,
    merge_same_day: bool,
    day: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64] | None]:
    """Sorted purchase events (customer code, time in days, amount); same-day purchases merged
    (``day``: the calendar day numbers, if already computed)."""
    if merge_same_day:
        if day is None:
            day = np.floor(days).astype(np.int64)
        dmin = int(day.min()) if len(day) else 0
        span = int(day.max()) - dmin + 1 if len(day) else 1
        n_codes = int(codes.max()) + 1 if len(codes) else 1
        if n_codes * span < 2**31 - 1:  # 32-bit keys sort about twice as fast
            key32 = codes.astype(np.int32) * np.int32(span) + (day - dmin).astype(np.int32)
            key32.sort()
            uk = key32[_segments(key32)].astype(np.int64)
        else:
            key = np.sort(codes * span + (day - dmin))
            uk = key[_segments(key)]
        # amounts are summed per customer by the caller (bincount), no argsort needed
        return uk // span, (uk % span + dmin).astype(np.float64), None
    order = np.lexsort((days, codes))
    return codes[order], days[order], None if amount is None else amount[order]


def _per_customer(
    ec: NDArray[np.int64], et: NDArray[np.float64], ea: NDArray[np.float64] | None, n_customers: int
) -> dict[str, np.ndarray]:
    """First/last time, count and repeat-spend mean per customer code (codes absent -> count 0)."""
    starts = _segments(ec)
    cust = ec[starts]
    ends = np.append(starts[1:], len(ec))[: len(starts)] - 1  # no events (an empty holdout): none
    count = np.zeros(n_customers)
    first = np.full(n_customers, np.nan)
    last = np.full(n_customers, np.nan)
    count[cust] = ends - starts + 1
    first[cust] = et[starts]
    last[cust] = et[ends]
    out: dict[str, np.ndarray] = {"count": count, "first": first, "last": last}
    if ea is not None:
        total = np.zeros(n_customers)
        first_amt = np.zeros(n_customers)
        if len(starts):
            total[cust] = np.add.reduceat(ea, starts)
            first_amt[cust] = ea[starts]
        out["total"] = total
        out["first_amount"] = first_amt
    return out


def rfm_summary(
    transactions: Any,
    customer_col: str,
    time_col: str,
    amount_col: str | None = None,
    observation_end: Any = None,
    calibration_end: Any = None,
    time_unit: str | float = "W",
    merge_same_day: bool = True,
) -> Any:
    """Summarise a transaction log into one row per customer.

    Parameters
    ----------
    transactions : pandas.DataFrame, polars.DataFrame, pyarrow.Table or dict of arrays
        One row per transaction.
    customer_col, time_col : str
        Customer identifier and transaction time (datetime, date, ISO string, or numeric days).
    amount_col : str, optional
        Transaction value; adds ``monetary_value`` (mean value of the repeat purchase periods,
        0 for customers without repeat purchases).
    observation_end : datetime-like, optional
        End of observation (default: the last transaction). Later transactions are dropped.
    calibration_end : datetime-like, optional
        End of the calibration period. The summary columns then describe the calibration period
        (customers whose first purchase is after it are left out) and holdout columns are added:
        ``frequency_holdout`` (purchase periods in ``(calibration_end, observation_end]``),
        ``duration_holdout`` and, with amounts, ``monetary_value_holdout``.
    time_unit : {"D", "W", "M", "Y", "H"} or float, default "W"
        Unit of recency and T ("M" is 365.25/12 days); a float is the unit's length in days.
    merge_same_day : bool, default True
        Count all purchases of a customer on one calendar day as one purchase (amounts summed).

    Returns
    -------
    Same kind of frame as the input (pandas for dict input), one row per customer:
        ``frequency`` (repeat purchase periods), ``recency`` (first to last purchase), ``T``
        (first purchase to the end of the period), optionally ``monetary_value`` and the holdout
        columns. pandas output is indexed by the customer id; polars and Arrow output carry it
        as the first column.
    """
    unit = TIME_UNITS[time_unit] if isinstance(time_unit, str) else float(time_unit)
    coded = _sorted_arrow_codes(transactions, customer_col)
    ids = _column(transactions, customer_col) if coded is None else np.empty(0)
    raw_time = _column(transactions, time_col)
    amount = None if amount_col is None else _column(transactions, amount_col).astype(np.float64, copy=False)
    if merge_same_day:
        return _merged_summary(
            transactions, customer_col, ids, raw_time, amount, observation_end, calibration_end, unit, coded
        )
    days = _to_days(raw_time)
    codes, uniques = _factorize(ids) if coded is None else coded
    n_cust = len(uniques)

    end = float(days.max()) if observation_end is None else _scalar_days(observation_end)
    if observation_end is not None:
        keep = days <= end
        if not np.all(keep):
            codes, days = codes[keep], days[keep]
            amount = None if amount is None else amount[keep]
    ec, et, ea = _events(codes, days, amount, False)
    cut = end if calibration_end is None else _scalar_days(calibration_end)
    hold = None
    if calibration_end is None:  # everything is calibration: no masking copies
        cal = _per_customer(ec, et, ea, n_cust)
    else:
        in_cal = et <= cut
        cal = _per_customer(ec[in_cal], et[in_cal], None if ea is None else ea[in_cal], n_cust)
        hold = _per_customer(ec[~in_cal], et[~in_cal], None if ea is None else ea[~in_cal], n_cust)
    return _summary_columns(transactions, customer_col, uniques, cal, hold, end, cut, unit, amount is not None)


def _summary_columns(
    like: Any,
    customer_col: str,
    uniques: np.ndarray,
    cal: dict[str, np.ndarray],
    hold: dict[str, np.ndarray] | None,
    end: float,
    cut: float,
    unit: float,
    with_amount: bool,
) -> Any:
    """The output columns from the per-customer calibration (and holdout) statistics."""
    present = cal["count"] > 0
    count = cal["count"][present].astype(np.float64)
    freq = count - 1.0
    first = cal["first"][present].astype(np.float64)
    cols: dict[str, np.ndarray] = {
        "frequency": freq,
        "recency": (cal["last"][present] - first) / unit,
        "T": (cut - first) / unit,
    }
    if with_amount:
        rep = cal["total"][present] - cal["first_amount"][present]
        with np.errstate(invalid="ignore", divide="ignore"):
            cols["monetary_value"] = np.where(freq > 0, rep / np.maximum(freq, 1.0), 0.0)
    if hold is not None:
        fh = hold["count"][present].astype(np.float64)
        cols["frequency_holdout"] = fh
        if with_amount:
            with np.errstate(invalid="ignore", divide="ignore"):
                cols["monetary_value_holdout"] = np.where(fh > 0, hold["total"][present] / np.maximum(fh, 1.0), 0.0)
        cols["duration_holdout"] = np.full(len(fh), (end - cut) / unit)
    return _output(like, customer_col, uniques[present], cols)


def _day_numbers(values: np.ndarray) -> NDArray[np.signedinteger[Any]]:
    """Calendar day numbers (days since 1970-01-01, floored) of datetimes or numeric days."""
    if values.dtype.kind in "Mf" and not np.all(np.isfinite(values)):
        raise ValueError("the time column has missing (NaT/NaN) or infinite values")
    if values.dtype.kind == "M":
        unit, count = np.datetime_data(values.dtype)
        per_day = {"D": 1, "h": 24, "m": 1440, "s": 86_400, "ms": 86_400_000, "us": 86_400 * 10**6, "ns": _DAY_NS}
        if unit in per_day and count == 1:
            v = values.view(np.int64)
            if unit == "D":
                return v
            # datetime64 day numbers fit 32 bits; written directly, no 64-bit temporary
            out = np.empty(len(v), dtype=np.int32)
            np.floor_divide(v, per_day[unit], out=out, casting="unsafe")
            return out
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if values.dtype.kind == "f":
        return np.floor(values).astype(np.int64)
    ns = _to_ns(values)
    assert ns is not None
    if np.any(ns == np.iinfo(np.int64).min):
        raise ValueError("the time column has missing (NaT) values")
    return ns // _DAY_NS


def _dense_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For integer ids in a narrow range: codes ``id - min`` (int32 where they fit) and every
    id of the range (absent ids are dropped later as customers without purchases); else None."""
    if ids.dtype.kind not in "iu" or not len(ids):
        return None
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo > 4 * len(ids) + 1024:
        return None
    off: np.ndarray
    if hi - lo < 2**31 - 1:
        off = np.empty(len(ids), dtype=np.int32)  # written directly: no 64-bit temporary
        np.subtract(ids, ids.dtype.type(lo), out=off, casting="unsafe")
    else:  # pragma: no cover - needs billions of rows
        off = ids.astype(np.int64) - lo
    return off, np.arange(lo, hi + 1, dtype=ids.dtype)


def _distinct_sorted(sorted_keys: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array, in order."""
    if len(sorted_keys) == 0:
        return sorted_keys
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return sorted_keys[change]


def _day_stats(ucode: np.ndarray, uday: np.ndarray, n_codes: int) -> dict[str, np.ndarray]:
    """Count, first and last day per code of distinct (code, day) events sorted by code, day
    (codes without events: count 0, days -1)."""
    starts = _segments(ucode)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    if len(ends):
        ends[-1] = len(ucode) - 1
    cust = ucode[starts]
    count = np.zeros(n_codes, dtype=np.int64)
    first = np.full(n_codes, -1, dtype=uday.dtype)
    last = np.full(n_codes, -1, dtype=uday.dtype)
    count[cust] = ends - starts + 1
    first[cust] = uday[starts]
    last[cust] = uday[ends]
    return {"count": count, "first": first, "last": last}


def _merged_summary(
    like: Any,
    customer_col: str,
    ids: np.ndarray,
    raw_time: np.ndarray,
    amount: NDArray[np.float64] | None,
    observation_end: Any,
    calibration_end: Any,
    unit: float,
    coded: tuple[np.ndarray, np.ndarray] | None = None,
) -> Any:
    """rfm_summary with same-day purchases merged: one sort of 32-bit (customer, day) keys,
    per-customer statistics with bincount, amounts summed straight from the rows
    (``coded``: the customer codes and distinct ids when already known)."""
    day = _day_numbers(raw_time)
    dense = _dense_codes(ids) if coded is None else coded
    if dense is not None:
        codes, uniques = dense
    else:
        codes, uniques = _factorize(ids)
    n_codes = len(uniques)
    end_day = int(day.max()) if observation_end is None else math.floor(_scalar_days(observation_end))
    if observation_end is not None:
        keep = day <= end_day
        if not np.all(keep):
            codes, day = codes[keep], day[keep]
            amount = None if amount is None else amount[keep]
    cut_day = end_day if calibration_end is None else math.floor(_scalar_days(calibration_end))
    dmin = int(day.min()) if len(day) else 0
    dmax = int(day.max()) if len(day) else 0
    span = dmax - dmin + 1
    dd: np.ndarray
    key: np.ndarray
    if n_codes * span < 2**31 - 1 and -(2**31) < dmin and dmax < 2**31 - 1:
        # 32-bit keys sort about three times as fast as 64-bit ones
        dd = np.empty(len(day), dtype=np.int32)
        np.subtract(day, dmin, out=dd, casting="unsafe")
        key = np.empty(len(day), dtype=np.int32)
        np.multiply(codes, np.int32(span), out=key, casting="unsafe")
        key += dd
    else:
        dd = day - dmin
        key = codes.astype(np.int64) * span + dd
    key.sort()
    uk = _distinct_sorted(key)
    ucode = uk // key.dtype.type(span)
    uday = uk % key.dtype.type(span)
    hold = None
    if calibration_end is None:
        cal = _day_stats(ucode, uday, n_codes)
    else:
        in_cal = uday <= cut_day - dmin
        cal = _day_stats(ucode[in_cal], uday[in_cal], n_codes)
        hold = _day_stats(ucode[~in_cal], uday[~in_cal], n_codes)
    if amount is not None:
        icodes = codes.astype(np.intp)  # bincount and gathers want native indices
        if calibration_end is None:
            cal["total"] = np.bincount(icodes, weights=amount, minlength=n_codes)
        else:
            row_cal = dd <= cut_day - dmin
            cal["total"] = np.bincount(icodes[row_cal], weights=amount[row_cal], minlength=n_codes)
            hold["total"] = np.bincount(icodes[~row_cal], weights=amount[~row_cal], minlength=n_codes)  # type: ignore[index]
        # rows on the customer's first calibration day (always a calibration day)
        is_first = dd == cal["first"][icodes]
        cal["first_amount"] = np.bincount(icodes[is_first], weights=amount[is_first], minlength=n_codes)
    for stats in (cal, hold):
        if stats is not None:
            stats["first"] = stats["first"].astype(np.float64) + dmin
            stats["last"] = stats["last"].astype(np.float64) + dmin
    return _summary_columns(like, customer_col, uniques, cal, hold, float(end_day), float(cut_day), unit, amount is not None)


def _output(like: Any, customer_col: str, ids: np.ndarray, cols: dict[str, np.ndarray]) -> Any:
    mod = type(like).__module__.split(".")[0]
    if mod == "polars":
        import polars as pl

        return pl.DataFrame({customer_col: ids, **cols})
    if mod == "pyarrow":
        import pyarrow as pa

        return pa.table({customer_col: ids, **cols})
    import pandas as pd

    return pd.DataFrame(cols, index=pd.Index(ids, name=customer_col))
