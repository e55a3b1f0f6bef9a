"""Row positions of customer ids in another list of ids, fast for the ids custdyn meets.

``pyarrow.compute.index_in`` hashes the whole value set on each call (about 0.4 s for a
million ids); ids of one byte length that vary in a few places (``C00012345``) are turned
into integer keys instead and found by direct addressing or sorting. Used by the feature
state's roll-forward and by the analysis (low level: imports nothing of custdyn).
"""

from __future__ import annotations

from typing import Any


def _fixed_width(values: Any) -> Any:
    """The strings of an Arrow string array as a numpy ``S<width>`` view of its data (no
    copy) when they all have the same byte length (and none is null); else None."""
    import numpy as np
    import pyarrow as pa

    if not pa.types.is_string(values.type) or len(values) == 0 or values.null_count:
        return None
    bufs = values.buffers()
    off = np.frombuffer(bufs[1], dtype=np.int32, count=len(values) + 1,
                        offset=values.offset * 4)
    width = int(off[1] - off[0])
    if width <= 0 or not np.all(np.diff(off) == width):
        return None
    return np.frombuffer(bufs[2], dtype=f"S{width}", count=len(values), offset=int(off[0]))


def _packed_keys(a: Any, b: Any) -> tuple[Any, Any] | None:
    """Equal-width byte strings of two arrays as order-preserving ``int64`` keys, or None:
    the byte positions where any of them differs (at most eight), read as decimal digits
    when they all are digits (ids such as ``C00012345`` become 12345, so a range of
    numbered ids is a narrow range of keys), else as big-endian bytes (at most seven)."""
    import numpy as np

    width = a.dtype.itemsize
    ab = a.view(np.uint8).reshape(-1, width)
    bb = b.view(np.uint8).reshape(-1, width)
    # one byte position at a time (a reduction over rows of a few bytes each runs a tiny
    # inner loop per row: several times slower)
    varying: list[int] = []
    digits = True
    for j in range(width):
        lo = min(int(ab[:, j].min()), int(bb[:, j].min()))
        hi = max(int(ab[:, j].max()), int(bb[:, j].max()))
        if lo != hi:
            varying.append(j)
            digits = digits and lo >= 48 and hi <= 57
            if len(varying) > 8:
                return None
    if not digits and len(varying) > 7:
        return None
    base, zero = (10, 48) if digits else (256, 0)
    out = []
    for m in (ab, bb):
        k = np.zeros(len(m), dtype=np.int64)
        for j in varying:
            k *= base
            k += m[:, j]
            if zero:
                k -= zero
        out.append(k)
    return out[0], out[1]


def _merged_order(ordered: Any, added: Any) -> Any:
    """The indices that sort the concatenation of ``ordered`` (Arrow string ids, already in
    ascending byte order) and ``added`` (others): ``pyarrow.compute.sort_indices`` of
    ``concat([ordered, added])``, found by binary search of the few added ids in the ordered
    ones when both hold ids of one byte length (else by sorting everything)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    a, b = _fixed_width(ordered), _fixed_width(added)
    if a is None or b is None or a.dtype != b.dtype:
        return np.asarray(pc.sort_indices(pa.concat_arrays([ordered, added])), np.int64)
    n = len(a)
    border = np.argsort(b, kind="stable")
    at = np.searchsorted(a, b[border], side="right")  # after equal ids, as a stable sort
    return np.insert(np.arange(n, dtype=np.int64), at, n + border.astype(np.int64))


def _positions(keys: Any, value_set: Any) -> Any:
    """For each of ``keys`` (an Arrow string array) the index of its first occurrence in
    ``value_set`` (another), -1 where it has none: ``pyarrow.compute.index_in``, on integer
    keys when both hold ids of one byte length that vary in at most eight places (by
    direct addressing for numbered ids, else by sorting; the same ids in the same order,
    the common case, cost one comparison)."""
    import numpy as np
    import pyarrow.compute as pc

    ka, va = _fixed_width(keys), _fixed_width(value_set)
    packed = (None if ka is None or va is None or ka.dtype != va.dtype
              else _packed_keys(ka, va))
    if packed is None:
        return np.asarray(pc.index_in(keys, value_set=value_set).fill_null(-1)
                          .to_numpy(zero_copy_only=False), dtype=np.int64)
    k, v = packed
    if len(k) == len(v) and np.array_equal(k, v) and bool(np.all(v[1:] > v[:-1])):
        return np.arange(len(k), dtype=np.int64)  # the same distinct ids in the same order
    lo = int(min(k.min(), v.min()))
    span = int(max(k.max(), v.max())) - lo + 1
    if span <= 4 * (len(k) + len(v)) + 1024:  # numbered ids: a table of every number
        table = np.full(span, -1, dtype=np.int64)
        table[v - lo] = np.arange(len(v))
        if int(np.count_nonzero(table >= 0)) == len(v):  # distinct ids (else: sort below)
            return table[k - lo]
    order = np.argsort(v, kind="stable")  # stable: the first of equal ids comes first
    sv = v[order]
    korder = np.argsort(k)  # sorted queries: each search starts where the last ended
    at = np.empty(len(k), dtype=np.int64)
    at[korder] = np.searchsorted(sv, k[korder], side="left")
    at = np.minimum(at, len(sv) - 1)
    return np.where(sv[at] == k, order[at], -1).astype(np.int64)
