"""TreeSHAP contributions of a LightGBM booster, worked out once per distinct decision path.

Path-dependent TreeSHAP (Lundberg, Erion & Lee 2018, "Consistent individualized feature
attribution for tree ensembles") explains one row with one tree by walking the whole tree: at
each internal node the branch the row takes is followed as the "hot" one and the other as the
"cold" one, weighted by the training rows that went each way. The row's feature values enter
only through these branch decisions, so what one tree adds to a row's contributions is a
function of the row's decisions at that tree's internal nodes (at most ``num_leaves - 1``
bits), and many rows share the same bits.

So, tree by tree: LightGBM's split rules are reproduced with numpy (threshold, ``<=``, the
missing type, the default branch, NaN and near-zero values read as LightGBM reads them), each
row's decisions are packed into an integer code, and TreeSHAP runs once per distinct code,
vectorised over the codes, with LightGBM's own floating-point operations in LightGBM's order
(``ExtendPath``, ``UnwindPath``, ``UnwoundPathSum``, the leaves visited with the row's own
branch first). Its terms are then added to every row's running sums one by one, as LightGBM
adds them, so the result is bit for bit LightGBM's ``predict(X, pred_contrib=True)``. A few
rows are checked against LightGBM on every call; should a LightGBM build ever add up
differently, its own answer is returned.

Models this does not reproduce (categorical splits, linear trees, several trees per iteration,
averaged output, trees of more than 63 internal nodes) get ``None`` from
:meth:`TreeTables.from_booster`, and :func:`tree_contributions` then calls ``pred_contrib``.
"""

from __future__ import annotations

import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

__all__ = ["TreeTables", "tables_of", "tree_contributions"]

# LightGBM's kZeroThreshold (a float literal, 1e-35f): values at most this far from zero are
# dropped from a dense row before prediction (read as 0.0) and count as "zero" for
# missing_type Zero.
_ZERO = float(np.float32(1e-35))
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
# codes of trees up to this many internal nodes are grouped with a lookup table (2**bits
# entries) instead of a sort
_TABLE_BITS = 16
# the fewest rows a thread adds terms to
_MIN_ROWS_PER_JOB = 20_000
# rows whose contributions are checked against LightGBM's own on every call
_CHECK_ROWS = 8


@dataclass(frozen=True)
class _Tree:
    """One tree: its internal nodes in ``split_index`` order (split rule, children, training
    rows) and its leaves (value, training rows)."""

    feature: IntArray  # the split feature (the input column) of each internal node
    threshold: FloatArray
    default_left: NDArray[np.bool_]
    missing: NDArray[np.int8]  # 0 None, 1 Zero, 2 NaN
    used: IntArray  # the distinct split features, ascending
    left: IntArray  # children as LightGBM numbers them: >= 0 an internal node, ~leaf else
    right: IntArray
    count: FloatArray  # the training rows through each internal node
    leaf_value: FloatArray
    leaf_count: FloatArray
    root: int  # 0, or ~0 for a tree of one leaf

    def data_count(self, node: int) -> float:
        return float(self.count[node] if node >= 0 else self.leaf_count[~node])

    def n_leaves(self, node: int) -> int:
        if node < 0:
            return 1
        return self.n_leaves(int(self.left[node])) + self.n_leaves(int(self.right[node]))


@dataclass(frozen=True)
class TreeTables:
    """The split rules of every tree of a single-output LightGBM booster."""

    trees: tuple[_Tree, ...]
    n_features: int

    @classmethod
    def from_booster(cls, booster: Any) -> TreeTables | None:
        """The booster's trees, or ``None`` when it has something not reproduced here."""
        d = booster.dump_model()
        if int(d.get("num_tree_per_iteration", 1)) != 1 or d.get("average_output", False):
            return None
        trees = []
        for info in d["tree_info"]:
            nodes: dict[int, dict[str, Any]] = {}
            leaves: dict[int, dict[str, Any]] = {}
            stack = [info["tree_structure"]]
            while stack:
                node = stack.pop()
                if "leaf_coeff" in node or "leaf_features" in node:  # a linear tree
                    return None
                if "split_index" not in node:
                    leaves[int(node.get("leaf_index", 0))] = node
                    continue
                if (node.get("decision_type") != "<="  # categorical split ("==")
                        or str(node.get("missing_type")) not in _MISSING):
                    return None
                nodes[int(node["split_index"])] = node
                stack.extend((node["left_child"], node["right_child"]))
            k = len(nodes)
            if (k > 63 or sorted(nodes) != list(range(k))
                    or sorted(leaves) != list(range(k + 1))):
                return None

            def ref(child: dict[str, Any]) -> int:
                return (int(child["split_index"]) if "split_index" in child
                        else ~int(child.get("leaf_index", 0)))

            order = [nodes[i] for i in range(k)]
            feature = np.array([int(n["split_feature"]) for n in order], dtype=np.intp)
            trees.append(_Tree(
                feature=feature,
                threshold=np.array([float(n["threshold"]) for n in order], dtype=float),
                default_left=np.array([bool(n["default_left"]) for n in order], dtype=bool),
                missing=np.array([_MISSING[str(n["missing_type"])] for n in order],
                                 dtype=np.int8),
                used=np.unique(feature),
                left=np.array([ref(n["left_child"]) for n in order], dtype=np.intp),
                right=np.array([ref(n["right_child"]) for n in order], dtype=np.intp),
                count=np.array([float(n["internal_count"]) for n in order], dtype=float),
                leaf_value=np.array([float(leaves[i]["leaf_value"]) for i in range(k + 1)],
                                    dtype=float),
                leaf_count=np.array([float(leaves[i].get("leaf_count", 0))
                                     for i in range(k + 1)], dtype=float),
                root=0 if k else ~0,
            ))
        return cls(tuple(trees), int(d["max_feature_idx"]) + 1)

    @property
    def used_features(self) -> IntArray:
        """The input columns that some tree splits on, ascending (the others' contributions
        are always 0)."""
        parts = [t.used for t in self.trees]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.intp)

    def codes(self, columns: _Columns, t: int) -> NDArray[np.integer[Any]]:
        """Each row's branch decisions in tree ``t`` (bit ``k`` set: left at internal node
        ``k``), by LightGBM's rule for numerical splits."""
        tree = self.trees[t]
        bits = tree.feature.shape[0]
        kind: type[np.integer[Any]] = np.uint16 if bits <= 16 else np.int64
        code: NDArray[np.integer[Any]] = np.zeros(columns.n, dtype=kind)
        left = np.empty(columns.n, dtype=bool)
        bit = np.empty(columns.n, dtype=kind)
        for k in range(bits):
            columns.goes_left(int(tree.feature[k]), float(tree.threshold[k]),
                              bool(tree.default_left[k]), int(tree.missing[k]), left)
            np.left_shift(left.view(np.uint8), k, out=bit, dtype=kind)
            np.bitwise_or(code, bit, out=code)
        return code


class _Columns:
    """The split features' columns of X as LightGBM's trees read them, one contiguous array
    each: values within 1e-35 of 0 read as 0.0 (LightGBM's dense-row reader drops them), and
    NaN read as 0.0 where a split does not treat NaN as missing."""

    def __init__(self, X: FloatArray, features: IntArray) -> None:
        self.n = X.shape[0]
        self._pos = {int(j): i for i, j in enumerate(features.tolist())}
        raw = np.ascontiguousarray(X[:, features].T)
        raw[np.abs(raw) <= _ZERO] = 0.0  # False for NaN
        self.nan = np.isnan(raw)
        self.raw = raw  # NaN kept
        self.filled = np.where(self.nan, 0.0, raw)  # NaN read as 0
        self.zero = self.filled == 0.0

    def goes_left(self, feature: int, threshold: float, default_left: bool, missing: int,
                  out: NDArray[np.bool_]) -> None:
        """LightGBM's ``Tree::NumericalDecision``, written into ``out``."""
        i = self._pos[feature]
        if missing == 2:  # NaN: NaN takes the default branch, the rest compare
            np.less_equal(self.raw[i], threshold, out=out)  # False for NaN
            if default_left:
                out |= self.nan[i]
        elif missing == 1:  # Zero: NaN is read as 0; zero takes the default branch
            np.less_equal(self.filled[i], threshold, out=out)
            if default_left:
                out |= self.zero[i]
            else:
                out &= ~self.zero[i]
        else:  # None: NaN is read as 0
            np.less_equal(self.filled[i], threshold, out=out)


class _Element(NamedTuple):
    """One element of TreeSHAP's unique path; ``one`` and ``weight`` hold a value per code."""

    feature: int
    zero: float
    one: FloatArray


def _extend(path: list[_Element], weights: list[FloatArray], zero: float, one: FloatArray,
            feature: int) -> tuple[list[_Element], list[FloatArray]]:
    """LightGBM's ``Tree::ExtendPath`` on copies, operation for operation."""
    depth = len(path)
    path = [*path, _Element(feature, zero, one)]
    w = [*weights, np.full(one.shape[0], 1.0 if depth == 0 else 0.0)]
    d = float(depth + 1)
    for i in range(depth - 1, -1, -1):
        w[i + 1] = w[i + 1] + ((one * w[i]) * float(i + 1)) / d
        w[i] = ((zero * w[i]) * float(depth - i)) / d
    return path, w


def _unwind(path: list[_Element], weights: list[FloatArray], index: int
            ) -> tuple[list[_Element], list[FloatArray]]:
    """LightGBM's ``Tree::UnwindPath`` on copies: the element at ``index`` is taken out (the
    weights stay where they are, as there)."""
    depth = len(path) - 1
    one, zero = path[index].one, path[index].zero
    hot = one != 0
    w = list(weights)
    nxt = w[depth]
    d = float(depth + 1)
    for i in range(depth - 1, -1, -1):
        tmp = w[i]
        if_hot = (nxt * d) / (float(i + 1) * one)
        if_cold = (w[i] * d) / (zero * float(depth - i))
        nxt = np.where(hot, tmp - (((if_hot * zero) * float(depth - i)) / d), nxt)
        w[i] = np.where(hot, if_hot, if_cold)
    return path[:index] + path[index + 1:], w[:depth]


def _unwound_sums(path: list[_Element], weights: list[FloatArray]) -> FloatArray:
    """LightGBM's ``Tree::UnwoundPathSum`` for every element after the first at once, shape
    (len(path) - 1, n_codes): the same operations in the same order, on rows."""
    depth = len(path) - 1
    one = np.stack([el.one for el in path[1:]])
    zero = np.array([el.zero for el in path[1:]])[:, None]
    hot = one != 0
    nxt = np.broadcast_to(weights[depth], one.shape)
    total = np.zeros(one.shape)
    d = float(depth + 1)
    for i in range(depth - 1, -1, -1):
        frac = float(depth - i) / d
        tmp = (nxt * d) / (float(i + 1) * one)
        if_cold = total + ((weights[i] / zero) / frac)
        total = np.where(hot, total + tmp, if_cold)
        nxt = weights[i] - ((tmp * zero) * frac)
    return total


def _tree_terms(tree: _Tree, hot_left: NDArray[np.bool_]) -> dict[int, FloatArray]:
    """Path-dependent TreeSHAP of one tree (LightGBM's ``Tree::TreeSHAP``, with the same
    floating-point operations in the same order) for each code, kept term by term.

    ``hot_left[k, g]``: code ``g`` goes left at internal node ``k``. Returns, for each split
    feature, an array ``(n_terms, n_codes)``: the terms LightGBM adds to that feature's
    contribution, in the order it adds them (leaf by leaf, the row's own branch first).
    """
    u = hot_left.shape[1]
    found: dict[int, list[tuple[IntArray, FloatArray]]] = {}

    def walk(node: int, path: list[_Element], weights: list[FloatArray], zero: float,
             one: FloatArray, feature: int, first: IntArray) -> None:
        path, weights = _extend(path, weights, zero, one, feature)
        if node < 0:
            if len(path) > 1:
                value = float(tree.leaf_value[~node])
                w = _unwound_sums(path, weights)
                for i, el in enumerate(path[1:]):
                    found.setdefault(el.feature, []).append(
                        (first, (w[i] * (el.one - el.zero)) * value))
            return
        split = int(tree.feature[node])
        left, right = int(tree.left[node]), int(tree.right[node])
        w_node = tree.data_count(node)
        in_zero, in_one = 1.0, np.ones(u)
        for i, el in enumerate(path):
            if el.feature == split:  # split on before: undo it, redo it here
                in_zero, in_one = el.zero, el.one
                path, weights = _unwind(path, weights, i)
                break
        go = hot_left[node]
        # the order of the leaves as LightGBM visits them: the row's own branch first
        n_left, n_right = tree.n_leaves(left), tree.n_leaves(right)
        walk(left, path, weights, (tree.data_count(left) / w_node) * in_zero,
             np.where(go, in_one, 0.0), split, np.where(go, first, first + n_right))
        walk(right, path, weights, (tree.data_count(right) / w_node) * in_zero,
             np.where(go, 0.0, in_one), split, np.where(go, first + n_left, first))

    if tree.root >= 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            walk(tree.root, [], [], 1.0, np.ones(u), -1, np.zeros(u, dtype=np.intp))
    terms: dict[int, FloatArray] = {}
    for feature, parts in found.items():
        rank = np.stack([r for r, _ in parts])
        vals = np.stack([v for _, v in parts])
        terms[feature] = np.take_along_axis(vals, np.argsort(rank, axis=0), axis=0)
    return terms


# (number of trees, tables) of each booster seen, kept while the booster lives
_TABLES: weakref.WeakKeyDictionary[Any, tuple[int, TreeTables | None]] = (
    weakref.WeakKeyDictionary())


def tables_of(booster: Any) -> TreeTables | None:
    """:meth:`TreeTables.from_booster`, read once per booster and number of trees."""
    n_trees = int(booster.num_trees())
    try:
        seen = _TABLES.get(booster)
    except TypeError:  # not weakly referenceable
        return TreeTables.from_booster(booster)
    if seen is not None and seen[0] == n_trees:
        return seen[1]
    tables = TreeTables.from_booster(booster)
    _TABLES[booster] = (n_trees, tables)
    return tables


def _group(code: NDArray[np.integer[Any]], bits: int) -> tuple[IntArray, IntArray]:
    """(one representative row per distinct code, each row's group number)."""
    n = code.shape[0]
    if bits <= _TABLE_BITS:
        size = 1 << bits
        rep_of = np.full(size, -1, dtype=np.intp)
        rep_of[code[::-1]] = np.arange(n - 1, -1, -1, dtype=np.intp)  # any row would do
        present = np.flatnonzero(rep_of >= 0)
        group_of = np.empty(size, dtype=np.intp)
        group_of[present] = np.arange(present.shape[0], dtype=np.intp)
        return rep_of[present], group_of[code]
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    return first.astype(np.intp), inverse.reshape(-1).astype(np.intp)


def _plain(booster: Any, X: FloatArray, cols: IntArray | None) -> FloatArray:
    """LightGBM's ``pred_contrib`` on every row, the requested columns and the last."""
    full = np.asarray(booster.predict(X, pred_contrib=True), dtype=float)
    full = full.reshape(X.shape[0], -1)
    cols = np.arange(full.shape[1] - 1) if cols is None else cols
    return np.ascontiguousarray(full[:, [*cols.tolist(), full.shape[1] - 1]])


def tree_contributions(booster: Any, X: Any, features: Any = None,
                       tables: TreeTables | None = None, n_jobs: int = 1) -> FloatArray:
    """LightGBM's ``booster.predict(X, pred_contrib=True)``, computed per distinct path.

    Parameters
    ----------
    booster : lightgbm.Booster
        A single-output booster (binary, regression). One with something not reproduced
        here (see the module's notes) gets ``pred_contrib`` on every row.
    X : array-like of shape (n_samples, n_features)
        What ``booster.predict`` takes, as float64.
    features : sequence of int, optional
        Only these columns of the result (in this order) and then the expected value;
        default all features.
    tables : TreeTables, optional
        The booster's split rules (default: :func:`tables_of` the booster).
    n_jobs : int, default 1
        Threads adding the terms to the rows (each takes a block of at least 20,000 rows);
        the result does not depend on it.

    Returns
    -------
    ndarray of shape (n_samples, len(features) + 1)
        The contributions of the requested features and, last, the expected value.
    """
    if int(booster.num_model_per_iteration()) != 1:
        raise ValueError("tree_contributions explains single-output boosters (binary, "
                         "regression); use booster.predict(X, pred_contrib=True)")
    X = np.ascontiguousarray(X, dtype=float)
    tables = tables_of(booster) if tables is None else tables
    if tables is None or X.shape[0] == 0:
        return _plain(booster, X, None if features is None
                      else np.asarray(features, dtype=np.intp))
    p = tables.n_features
    if X.ndim != 2 or X.shape[1] != p:
        raise ValueError(f"X must have shape (n, {p}); got {X.shape}")
    cols = np.arange(p) if features is None else np.asarray(features, dtype=np.intp)
    where = np.full(p + 1, -1, dtype=np.intp)  # the output column of each input column
    where[cols] = np.arange(cols.shape[0])
    where[p] = cols.shape[0]
    n = X.shape[0]
    columns = _Columns(X, tables.used_features)
    out = np.zeros((cols.shape[0] + 1, n))  # by column: each add is one contiguous row
    started = np.zeros(p, dtype=bool)  # whether a feature's sums have a term yet
    # the rows in one contiguous block per thread; each block's adds run on a thread of its
    # own, in tree order, while the next tree's codes and terms are worked out here
    jobs = max(1, min(int(n_jobs), n // _MIN_ROWS_PER_JOB))
    edges = np.linspace(0, n, jobs + 1).astype(np.intp)
    blocks = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
    buffers = [np.empty(b - a) for a, b in blocks]

    def add(block: int, group: IntArray, work: list[tuple[int, bool, FloatArray]]) -> None:
        a, b = blocks[block]
        g, tmp = group[a:b], buffers[block]
        for r, fresh, steps in work:
            row = out[r, a:b]
            if fresh:  # the row's sums are all 0 yet: the steps were added up per code
                np.take(steps[0], g, out=row, mode="clip")  # (valid: the fast mode)
                continue
            for step in steps:  # one add per term, in LightGBM's order
                np.take(step, g, out=tmp, mode="clip")
                np.add(row, tmp, out=row)

    pools = [ThreadPoolExecutor(max_workers=1) for _ in blocks] if jobs > 1 else []
    pending: list[list[Future[None]]] = []
    try:
        for t, tree in enumerate(tables.trees):
            bits = tree.feature.shape[0]
            if bits == 0:
                continue
            code = tables.codes(columns, t)
            rep, group = _group(code, bits)
            rep_code = code[rep]
            hot_left = ((rep_code[None, :] >> np.arange(bits)[:, None]) & 1).astype(bool)
            work: list[tuple[int, bool, FloatArray]] = []
            for j, steps in _tree_terms(tree, hot_left).items():
                if where[j] < 0:
                    continue
                if not started[j]:  # from 0 for every row: add the terms up per code
                    started[j] = True
                    first = np.zeros(steps.shape[1])
                    for step in steps:
                        first += step
                    work.append((int(where[j]), True, first[None, :]))
                else:
                    work.append((int(where[j]), False, steps))
            if not pools:
                add(0, group, work)
                continue
            if len(pending) >= 2:  # at most two trees queued (their row groups in memory)
                for f in pending.pop(0):
                    f.result()
            pending.append([pool.submit(add, i, group, work) for i, pool in enumerate(pools)])
        for fs in pending:
            for f in fs:
                f.result()
    finally:
        for pool in pools:
            pool.shutdown(wait=True)
    # LightGBM's own answer for a few rows: the expected value (the same for every row) and
    # a check that this build of LightGBM adds up as reproduced here; if not, its answer
    sample = np.unique(np.linspace(0, n - 1, min(n, _CHECK_ROWS)).astype(np.intp))
    ref = np.asarray(booster.predict(X[sample], pred_contrib=True),
                     dtype=float).reshape(sample.shape[0], -1)
    out[-1] = ref[0, -1]
    if not np.array_equal(out[:, sample].T, ref[:, [*cols.tolist(), p]], equal_nan=True):
        return _plain(booster, X, cols)
    return out.T.copy()
