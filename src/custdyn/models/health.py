"""Health scorecards and the two sides of a relationship (loyalty and attention).

A scorecard maps each component linearly from its ``bad`` value (0) to its ``good`` value (1),
clipped to [0, 1], so the direction follows from ``good < bad`` (lower is better, e.g. days
since the last purchase) or ``good > bad``. A missing value scores ``missing`` (0.5 unless
configured). The score is ``100 * sum_k w_k c_k / sum_k w_k`` and each component's
contribution is its term of that sum, so the contributions add up to the score exactly.

The configured form is what ``custdyn.toml`` holds::

    [health]
    bands = { "at risk" = 0, "watch" = 40, "healthy" = 70 }
    [[health.components]]
    name = "recency_days"
    weight = 0.3
    good = 30
    bad = 180

:class:`LearnedScorecard` fits the weights instead, by non-negative penalised logistic
regression of later defection on the component values of past snapshots.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from custdyn.errors import DataWarning, InsufficientDataError, NotFittedError
from custdyn.models._columns import float_column as _to_float
from custdyn.models._params import SettingsMixin

FloatArray = NDArray[np.float64]

__all__ = [
    "ATTENTION_COMPONENTS",
    "DEFAULT_BANDS",
    "LOYALTY_COMPONENTS",
    "QUADRANTS",
    "Component",
    "LearnedScorecard",
    "RelationshipScores",
    "Scorecard",
    "align_previous",
    "plot_quadrants",
    "quadrants",
    "relationship_scores",
    "score_trend",
]

DEFAULT_BANDS: dict[str, float] = {"at risk": 0.0, "watch": 40.0, "healthy": 70.0}

QUADRANTS = ("both high", "loyal but neglected", "courted but cool", "both low")

#: Loyalty (customer towards vendor). ``column`` names the features-table column
#: (``custdyn.features``), except ``purchase_regularity`` (observed purchases in the window
#: divided by those the customer-base model expected) and ``survey_response_rate`` (share of
#: surveys and feedback requests answered), which the pipeline adds.
LOYALTY_COMPONENTS: tuple[dict[str, Any], ...] = (
    {"name": "purchase_regularity", "column": "purchase_regularity", "good": 1.2, "bad": 0.2},
    # share of the contacts of the last 365 days that the customer started
    {"name": "contacts_started", "column": "customer_started_share_365d", "good": 0.6, "bad": 0.1},
    # distinct channels the customer used in the last 365 days
    {"name": "channel_breadth", "column": "channel_breadth_365d", "good": 4, "bad": 1},
    {"name": "tenure", "column": "tenure_days", "good": 730, "bad": 30},
    # mean sentiment (-1..1) of the last 90 days minus that of the 90 days before
    {"name": "sentiment_trend", "column": "sentiment_trend_90d", "good": 0.2, "bad": -0.2},
    {"name": "feedback_engagement", "column": "survey_response_rate", "good": 0.5, "bad": 0.0},
)

#: Attention (vendor towards customer). ``relative_to_norm`` divides by the base's median.
ATTENTION_COMPONENTS: tuple[dict[str, Any], ...] = (
    {
        "name": "first_response",
        "column": "first_response_median_h",
        "good": 0.5,
        "bad": 2.0,
        "relative_to_norm": True,
    },
    # inbound messages never answered, per customer message
    {
        "name": "unanswered_inbound",
        "column": "unanswered_inbound",
        "denominator": "customer_turns",
        "good": 0.0,
        "bad": 0.3,
    },
    # vendor-initiated contacts in the last 90 days (6 = two a month)
    {"name": "proactive_outbound", "column": "vendor_contacts_90d", "good": 6.0, "bad": 0.0},
    {
        "name": "resolution_time",
        "column": "ticket_resolve_median_h",
        "good": 0.5,
        "bad": 2.0,
        "relative_to_norm": True,
    },
)


# ---------------------------------------------------------------------- tables


def _columns_of(X: Any) -> list[str]:
    if isinstance(X, Mapping):
        return [str(k) for k in X]
    if hasattr(X, "column_names"):  # pyarrow Table
        return [str(c) for c in X.column_names]
    if hasattr(X, "columns"):
        return [str(c) for c in X.columns]
    raise TypeError(f"expected a mapping of columns or a table, got {type(X).__name__}")


def _column(X: Any, name: str) -> FloatArray:
    cols = _columns_of(X)
    if name not in cols:
        near = difflib.get_close_matches(name, cols, n=3)
        hint = f"; did you mean {near}?" if near else ""
        raise ValueError(f"no column {name!r} in the table{hint} Columns are {cols}")
    return _to_float(X[name])


# ---------------------------------------------------------------------- scorecard


@dataclass(frozen=True)
class Component:
    """One scorecard component.

    Attributes
    ----------
    name : str
        Its name in reports and contributions.
    weight : float
        Relative weight, >= 0 (weights are normalised to sum to 1).
    good, bad : float
        Values mapped to 1 and 0 (linear between, clipped outside), in the column's unit.
    column : str
        The input column (default: ``name``).
    missing : float, default 0.5
        Component value (0-1) for a missing input.
    relative_to_norm : bool, default False
        Divide the input by the base's norm before mapping (``good``/``bad`` are then
        multiples of the norm).
    norm : float, optional
        The norm for ``relative_to_norm``; default the median of the rows being scored (pass
        the whole base's median when scoring a subset).
    denominator : str, optional
        A second column to divide by (``column / denominator``, e.g. unanswered messages per
        message received); a zero or missing denominator gives a missing value.
    """

    name: str
    weight: float
    good: float
    bad: float
    column: str = ""
    missing: float = 0.5
    relative_to_norm: bool = False
    norm: float | None = None
    denominator: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | Component) -> Component:
        """Build and validate from a configuration mapping (keys as the attributes, plus an
        optional ``direction``: ``"higher_is_better"`` or ``"lower_is_better"``)."""
        if isinstance(d, Component):
            return d
        known = {
            "name", "weight", "good", "bad", "column", "missing", "relative_to_norm", "norm", "denominator", "direction",
            "default",
        }
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"scorecard component {d.get('name')!r}: unknown keys {unknown}; allowed are {sorted(known)}")
        for key in ("name", "good", "bad"):
            if key not in d:
                raise ValueError(f"scorecard component {dict(d)!r} lacks {key!r}")
        name = str(d["name"])
        good, bad = float(d["good"]), float(d["bad"])
        weight = float(d.get("weight", 1.0))
        missing = float(d.get("missing", d.get("default", 0.5)))
        if not (math.isfinite(good) and math.isfinite(bad)) or good == bad:
            raise ValueError(f"component {name!r}: good ({good}) and bad ({bad}) must be finite and differ")
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"component {name!r}: weight must be >= 0, got {weight}")
        if not 0 <= missing <= 1:
            raise ValueError(f"component {name!r}: missing must be in [0, 1], got {missing}")
        direction = d.get("direction")
        if direction is not None:
            if direction not in ("higher_is_better", "lower_is_better"):
                raise ValueError(
                    f"component {name!r}: direction must be 'higher_is_better' or 'lower_is_better', got {direction!r}"
                )
            if (direction == "higher_is_better") != (good > bad):
                raise ValueError(
                    f"component {name!r}: direction {direction!r} contradicts good={good}, bad={bad}; "
                    f"swap good and bad or drop direction"
                )
        return cls(
            name=name,
            weight=weight,
            good=good,
            bad=bad,
            column=str(d.get("column", name)),
            missing=missing,
            relative_to_norm=bool(d.get("relative_to_norm", False)),
            norm=None if d.get("norm") is None else float(d["norm"]),
            denominator=str(d.get("denominator") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """The configuration mapping (round-trips through :meth:`from_dict`)."""
        out: dict[str, Any] = {"name": self.name, "weight": self.weight, "good": self.good, "bad": self.bad}
        if self.column and self.column != self.name:
            out["column"] = self.column
        if self.missing != 0.5:
            out["missing"] = self.missing
        if self.relative_to_norm:
            out["relative_to_norm"] = True
        if self.norm is not None:
            out["norm"] = self.norm
        if self.denominator:
            out["denominator"] = self.denominator
        return out

    def raw(self, X: Any) -> FloatArray:
        """The component's input from a table: its column, divided by ``denominator`` if set."""
        x = _column(X, self.column or self.name)
        if self.denominator:
            den = _column(X, self.denominator)
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.where(den > 0, x / den, np.nan)
        return x

    def value(self, x: ArrayLike) -> FloatArray:
        """Component value in [0, 1] for raw inputs ``x``, shape (n,)."""
        xa = _to_float(x)
        if self.relative_to_norm:
            finite = xa[np.isfinite(xa)]
            if self.norm is not None:
                norm = self.norm
            else:
                norm = float(np.median(finite)) if finite.size else math.nan
            xa = xa / norm if norm > 0 else np.full_like(xa, np.nan)
        with np.errstate(invalid="ignore", over="ignore"):  # over: good and bad very close
            c = np.clip((xa - self.bad) / (self.good - self.bad), 0.0, 1.0)
        return np.where(np.isfinite(xa), c, self.missing)


class Scorecard:
    """A configured health scorecard: weighted components, each mapped from bad to good.

    Parameters
    ----------
    components : sequence of mappings or Component
        ``{"name", "weight", "good", "bad"}`` and optionally ``column``, ``missing``
        (``default``), ``relative_to_norm``, ``direction``.
    bands : mapping of label to lower bound (0-100), optional
        Default ``{"at risk": 0, "watch": 40, "healthy": 70}``.

    Examples
    --------
    >>> card = Scorecard.from_config({"components": [
    ...     {"name": "recency_days", "weight": 3, "good": 30, "bad": 180},
    ...     {"name": "orders_90d", "weight": 1, "good": 3, "bad": 0}]})
    >>> card.score({"recency_days": [30, 105, 400], "orders_90d": [3, 0, None]}).round(1).tolist()
    [100.0, 37.5, 12.5]
    """

    def __init__(self, components: Sequence[Mapping[str, Any] | Component] = (), *, bands: Mapping[str, float] | None = None) -> None:
        self.components = components
        self.bands = bands

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Scorecard:
        """From the ``[health]`` table of ``custdyn.toml`` (``components`` and optional
        ``bands`` or ``thresholds``)."""
        if "components" not in config:
            raise ValueError(f"scorecard configuration needs a 'components' list; got keys {sorted(config)}")
        bands = config.get("bands", config.get("thresholds"))
        card = cls(list(config["components"]), bands=bands)
        card._parsed()
        return card

    def to_config(self) -> dict[str, Any]:
        """The configuration mapping, as :meth:`from_config` reads it."""
        comps, _, _ = self._parsed()
        return {"components": [c.to_dict() for c in comps], "bands": dict(self._bands())}

    def _parsed(self) -> tuple[list[Component], FloatArray, list[str]]:
        comps = [Component.from_dict(c) for c in self.components]
        if not comps:
            raise ValueError("a scorecard needs at least one component")
        names = [c.name for c in comps]
        # unique ignoring case: they name the parts of each score (the fields of a struct)
        folded = [n.casefold() for n in names]
        dup = sorted({n for n, f in zip(names, folded, strict=True) if folded.count(f) > 1})
        if dup:
            raise ValueError(f"component names must be unique (ignoring case); repeated: {dup}")
        if "" in names:
            raise ValueError("component names must not be empty")
        w = np.array([c.weight for c in comps], dtype=float)
        if w.sum() <= 0:
            raise ValueError("at least one component weight must be > 0")
        return comps, w / w.sum(), names

    def _bands(self) -> dict[str, float]:
        bands = dict(DEFAULT_BANDS if self.bands is None else self.bands)
        if not bands:
            raise ValueError("bands must name at least one band")
        return {str(k): float(v) for k, v in sorted(bands.items(), key=lambda kv: float(kv[1]))}

    @property
    def component_names(self) -> list[str]:
        """Names of the components, in order (the columns of :meth:`contributions`)."""
        return self._parsed()[2]

    @property
    def weights(self) -> FloatArray:
        """Normalised weights (sum to 1), shape (k,)."""
        return self._parsed()[1]

    def component_values(self, X: Any) -> FloatArray:
        """Each component's value in [0, 1].

        Parameters
        ----------
        X : mapping of column name to array, pandas DataFrame or pyarrow Table

        Returns
        -------
        ndarray of shape (n, k)
        """
        comps, _, _ = self._parsed()
        cols = [c.value(c.raw(X)) for c in comps]
        n = {len(c) for c in cols}
        if len(n) > 1:
            raise ValueError(f"columns differ in length: {sorted(n)}")
        return np.column_stack(cols)

    def contributions(self, X: Any) -> FloatArray:
        """Points each component adds to the score, ``100 * w_k c_k``.

        Returns
        -------
        ndarray of shape (n, k)
            Rows sum to :meth:`score`; column k is at most ``100 * w_k``.
        """
        _, w, _ = self._parsed()
        return 100.0 * self.component_values(X) * w

    def score(self, X: Any) -> FloatArray:
        """Health score 0-100, shape (n,): the sum of the contributions."""
        return np.asarray(self.contributions(X).sum(axis=1), dtype=float)

    def band(self, scores: ArrayLike) -> NDArray[np.str_]:
        """Band label of each score (the band with the highest lower bound <= score)."""
        bands = self._bands()
        labels = list(bands)
        lows = np.array(list(bands.values()))
        s = _to_float(scores)
        idx = np.searchsorted(lows, s, side="right") - 1
        return np.array([labels[max(i, 0)] for i in idx], dtype=str)

    def __repr__(self) -> str:
        try:
            comps, w, _ = self._parsed()
        except ValueError as exc:
            return f"<custdyn.models.Scorecard: invalid ({exc})>"
        parts = ", ".join(f"{c.name} {100 * wi:.0f}%" for c, wi in zip(comps, w, strict=True))
        return f"<custdyn.models.Scorecard: {parts}>"


# ---------------------------------------------------------------------- learned scorecard


class LearnedScorecard(SettingsMixin):
    """A scorecard whose weights are learned from past snapshots against later defection.

    Component values ``c_k`` (0 bad, 1 good) enter a logistic model of defection,
    ``P(defect) = expit(b0 - sum_k beta_k c_k)`` with ``beta_k >= 0`` and an L2 penalty
    ``penalizer / 2 * sum beta_k^2``, so a better component can only lower the risk. The
    weights are ``100 beta_k / sum beta`` and the score decomposes like :class:`Scorecard`'s.

    Parameters
    ----------
    components : sequence of str or mappings, optional
        Columns to use. A bare name (or a mapping without ``good``/``bad``) gets its mapping
        from the data: the direction from the sign of its correlation with defection, ``bad``
        and ``good`` at the ``quantiles`` (default 10th and 90th percentiles). Default: every
        column of X.
    penalizer : float, default 1.0
        L2 penalty on ``beta``.
    quantiles : (float, float), default (0.1, 0.9)
    bands : mapping, optional
        As for :class:`Scorecard`.
    min_rows : int, default 50
        Fewer rows raise :class:`~custdyn.errors.InsufficientDataError`.

    Attributes
    ----------
    scorecard_ : Scorecard
        The learned scorecard (weights sum to 100).
    weights_ : dict of str to float
        Learned weights (sum to 100).
    coef_ : ndarray of shape (k,)
        ``beta`` (log-odds of defection lost per unit of component value).
    intercept_ : float
        ``b0``.
    component_names_ : list of str
    n_samples_ : int
    """

    def __init__(
        self,
        *,
        components: Sequence[str | Mapping[str, Any]] | None = None,
        penalizer: float = 1.0,
        quantiles: tuple[float, float] = (0.1, 0.9),
        bands: Mapping[str, float] | None = None,
        min_rows: int = 50,
    ) -> None:
        self.components = components
        self.penalizer = penalizer
        self.quantiles = quantiles
        self.bands = bands
        self.min_rows = min_rows


    def fit(self, X: Any, y: ArrayLike, sample_weight: ArrayLike | None = None) -> LearnedScorecard:
        """Learn the component mappings (where not given) and the weights.

        Parameters
        ----------
        X : mapping of column name to array, DataFrame or pyarrow Table, n rows
            Snapshot features (rows of several past snapshots may be stacked).
        y : array-like of {0, 1}, shape (n,)
            1 if the customer defected within the horizon after the snapshot.
        sample_weight : array-like, shape (n,), optional

        Returns
        -------
        self
        """
        ya = _to_float(y)
        if not np.all(np.isin(ya, (0.0, 1.0))):
            raise ValueError("y must hold 0 (stayed) and 1 (defected) only")
        n = len(ya)
        w = np.ones(n) if sample_weight is None else _to_float(sample_weight)
        if w.shape != (n,) or np.any(w < 0):
            raise ValueError("sample_weight must be non-negative, one per row")
        if n < int(self.min_rows):
            raise InsufficientDataError(
                f"{n} rows are too few to learn scorecard weights (min_rows={self.min_rows}); "
                f"use the configured Scorecard"
            )
        if ya.min() == ya.max():
            raise InsufficientDataError("only one outcome in y; weights cannot be learned, use the configured Scorecard")
        specs = self.components if self.components is not None else _columns_of(X)
        qlo, qhi = (float(q) for q in self.quantiles)
        comps: list[Component] = []
        skipped: list[str] = []
        for spec in specs:
            d: dict[str, Any] = {"name": spec} if isinstance(spec, str) else dict(spec)
            col = str(d.get("column", d["name"]))
            x = Component(str(d["name"]), 1.0, 1.0, 0.0, col, denominator=str(d.get("denominator") or "")).raw(X)
            if len(x) != n:
                raise ValueError(f"column {col!r} has {len(x)} values for {n} outcomes")
            if "good" not in d or "bad" not in d:
                ok = np.isfinite(x)
                if ok.sum() < 2:
                    skipped.append(d["name"])
                    continue
                lo, hi = np.quantile(x[ok], [qlo, qhi])
                if not hi > lo:
                    skipped.append(d["name"])
                    continue
                xc = x[ok] - x[ok].mean()
                corr = float(xc @ (ya[ok] - ya[ok].mean()))
                d["good"], d["bad"] = (lo, hi) if corr > 0 else (hi, lo)
            d.setdefault("weight", 1.0)
            d.pop("direction", None)
            comps.append(Component.from_dict(d))
        if skipped:
            warnings.warn(
                f"skipped {len(skipped)} component(s) that are constant or all missing: {skipped}",
                DataWarning,
                stacklevel=2,
            )
        if not comps:
            raise InsufficientDataError("no usable component: every column is constant or all missing")
        C = np.column_stack([c.value(c.raw(X)) for c in comps])
        k = C.shape[1]
        lam = float(self.penalizer)

        def f(theta: FloatArray) -> tuple[float, FloatArray]:
            b0, beta = theta[0], theta[1:]
            z = b0 - C @ beta
            loss = float((w * (np.logaddexp(0, z) - ya * z)).sum()) + 0.5 * lam * float(beta @ beta)
            r = w * (special.expit(z) - ya)
            grad = np.empty(k + 1)
            grad[0] = r.sum()
            grad[1:] = -(C.T @ r) + lam * beta
            return loss, grad

        base = float((w * ya).sum() / w.sum())
        theta0 = np.r_[special.logit(min(max(base, 1e-6), 1 - 1e-6)), np.zeros(k)]
        res = optimize.minimize(
            f, theta0, jac=True, method="L-BFGS-B", bounds=[(None, None)] + [(0.0, None)] * k,
            options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
        )
        beta = np.asarray(res.x[1:], dtype=float)
        self.intercept_ = float(res.x[0])
        self.coef_ = beta
        if beta.sum() <= 1e-12:
            warnings.warn(
                "no component is associated with lower defection; the learned scorecard falls "
                "back to equal weights",
                DataWarning,
                stacklevel=2,
            )
            wts = np.full(k, 100.0 / k)
        else:
            wts = 100.0 * beta / beta.sum()
        comps = [
            Component(
                c.name, float(wk), c.good, c.bad, c.column, c.missing, c.relative_to_norm, c.norm, c.denominator
            )
            for c, wk in zip(comps, wts, strict=True)
        ]
        self.scorecard_ = Scorecard(comps, bands=self.bands)
        self.weights_ = {c.name: float(wk) for c, wk in zip(comps, wts, strict=True)}
        self.component_names_ = [c.name for c in comps]
        self.n_samples_ = n
        self.converged_ = bool(res.success)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "scorecard_"):
            raise NotFittedError("LearnedScorecard is not fitted yet; call fit(X, y) first")

    def score(self, X: Any) -> FloatArray:
        """Health score 0-100, shape (n,)."""
        self._check_fitted()
        return self.scorecard_.score(X)

    def contributions(self, X: Any) -> FloatArray:
        """Points per component, shape (n, k); rows sum to :meth:`score`."""
        self._check_fitted()
        return self.scorecard_.contributions(X)

    def predict_proba(self, X: Any) -> FloatArray:
        """Fitted probability of defection, shape (n,); decreasing in the score."""
        self._check_fitted()
        C = self.scorecard_.component_values(X)
        return np.asarray(special.expit(self.intercept_ - C @ self.coef_), dtype=float)

    def band(self, scores: ArrayLike) -> NDArray[np.str_]:
        """Band label of each score (see :meth:`Scorecard.band`)."""
        self._check_fitted()
        return self.scorecard_.band(scores)

    def to_config(self) -> dict[str, Any]:
        """The learned scorecard as a configuration mapping (for ``custdyn.toml``)."""
        self._check_fitted()
        return self.scorecard_.to_config()

    def __repr__(self) -> str:
        if not hasattr(self, "scorecard_"):
            return "<custdyn.models.LearnedScorecard: not fitted>"
        parts = ", ".join(f"{k} {v:.0f}" for k, v in self.weights_.items())
        return f"<custdyn.models.LearnedScorecard: fitted on {self.n_samples_:,} rows; weights {parts}>"


# ---------------------------------------------------------------------- loyalty and attention


@dataclass(frozen=True)
class RelationshipScores:
    """Loyalty and attention, 0-100 each, with per-component contributions.

    Attributes
    ----------
    loyalty, attention : ndarray of shape (n,)
    loyalty_contributions : ndarray of shape (n, k_l)
        Rows sum to ``loyalty``.
    attention_contributions : ndarray of shape (n, k_a)
        Rows sum to ``attention``.
    loyalty_components, attention_components : list of str
        Column names of the contribution matrices.
    """

    loyalty: FloatArray
    attention: FloatArray
    loyalty_contributions: FloatArray
    attention_contributions: FloatArray
    loyalty_components: list[str]
    attention_components: list[str]

    def to_frame(self) -> Any:
        """One row per customer: both scores and every contribution (pandas DataFrame)."""
        import pandas as pd

        data: dict[str, Any] = {"loyalty": self.loyalty, "attention": self.attention}
        for j, name in enumerate(self.loyalty_components):
            data[f"loyalty.{name}"] = self.loyalty_contributions[:, j]
        for j, name in enumerate(self.attention_components):
            data[f"attention.{name}"] = self.attention_contributions[:, j]
        return pd.DataFrame(data)


def _side(table: Any, specs: Sequence[Mapping[str, Any]], side: str) -> tuple[Scorecard, list[str]]:
    cols = set(_columns_of(table))
    present: list[Mapping[str, Any]] = []
    absent: list[str] = []
    for s in specs:
        col = str(s.get("column", s["name"]))
        if col in cols:
            present.append(s)
        else:
            absent.append(col)
    if not present:
        raise ValueError(
            f"none of the {side} columns {[str(s.get('column', s['name'])) for s in specs]} is in the table; "
            f"it has {sorted(cols)}. Pass {side}=[...] with the table's column names"
        )
    if absent:
        warnings.warn(
            f"{side}: columns {absent} are not in the table; their components are left out and the "
            f"others reweighted",
            DataWarning,
            stacklevel=3,
        )
    comps = [dict(s) | {"weight": s.get("weight", 1.0)} for s in present]
    card = Scorecard(comps)
    return card, card.component_names


def relationship_scores(
    table: Any,
    *,
    loyalty: Sequence[Mapping[str, Any]] | None = None,
    attention: Sequence[Mapping[str, Any]] | None = None,
) -> RelationshipScores:
    """Both sides of each relationship: the customer's loyalty and the vendor's attention.

    Parameters
    ----------
    table : mapping of column name to array, DataFrame or pyarrow Table, n rows
        Per-customer features.
    loyalty, attention : sequence of component mappings, optional
        As for :class:`Scorecard` with a ``column`` each; default
        :data:`LOYALTY_COMPONENTS` and :data:`ATTENTION_COMPONENTS` (equal weights).
        Components whose column is not in the table are left out with a
        :class:`~custdyn.errors.DataWarning`.

    Returns
    -------
    RelationshipScores
    """
    lcard, lnames = _side(table, LOYALTY_COMPONENTS if loyalty is None else loyalty, "loyalty")
    acard, anames = _side(table, ATTENTION_COMPONENTS if attention is None else attention, "attention")
    lc = lcard.contributions(table)
    ac = acard.contributions(table)
    return RelationshipScores(
        loyalty=lc.sum(axis=1),
        attention=ac.sum(axis=1),
        loyalty_contributions=lc,
        attention_contributions=ac,
        loyalty_components=lnames,
        attention_components=anames,
    )


@dataclass(frozen=True)
class Quadrants:
    """Quadrant of each customer and the totals per quadrant.

    Attributes
    ----------
    labels : ndarray of str, shape (n,)
        One of :data:`QUADRANTS` (or ``"unknown"`` where a score is missing).
    table : pandas.DataFrame
        One row per quadrant (all four, in :data:`QUADRANTS` order): ``quadrant``,
        ``customers``, ``value``, ``value_share``.
    """

    labels: NDArray[np.str_]
    table: Any


def quadrants(
    loyalty: ArrayLike, attention: ArrayLike, value: ArrayLike | None = None, threshold: float = 50.0
) -> Quadrants:
    """Place each customer in one of four quadrants of loyalty against attention.

    "both high" (loyalty and attention >= threshold), "loyal but neglected" (loyalty high,
    attention low), "courted but cool" (attention high, loyalty low), "both low".

    Parameters
    ----------
    loyalty, attention : array-like, shape (n,), 0-100
    value : array-like, shape (n,), optional
        What each customer is worth (e.g. CLV, currency units); missing counts as 0.
    threshold : float, default 50

    Returns
    -------
    Quadrants
    """
    import pandas as pd

    lo, at = _to_float(loyalty), _to_float(attention)
    if lo.shape != at.shape:
        raise ValueError(f"loyalty ({lo.size}) and attention ({at.size}) differ in length")
    val = np.zeros_like(lo) if value is None else np.nan_to_num(_to_float(value), nan=0.0)
    if val.shape != lo.shape:
        raise ValueError(f"value has {val.size} entries for {lo.size} customers")
    hl, ha = lo >= threshold, at >= threshold
    labels = np.where(hl & ha, QUADRANTS[0], np.where(hl, QUADRANTS[1], np.where(ha, QUADRANTS[2], QUADRANTS[3])))
    labels = np.where(np.isfinite(lo) & np.isfinite(at), labels, "unknown").astype(str)
    names = list(QUADRANTS) + (["unknown"] if np.any(labels == "unknown") else [])
    total = float(val.sum())
    rows = []
    for q in names:
        m = labels == q
        v = float(val[m].sum())
        rows.append({"quadrant": q, "customers": int(m.sum()), "value": v, "value_share": v / total if total else math.nan})
    return Quadrants(labels=labels, table=pd.DataFrame(rows))


def plot_quadrants(
    loyalty: ArrayLike,
    attention: ArrayLike,
    value: ArrayLike | None = None,
    threshold: float = 50.0,
    title: str = "Loyalty and attention",
) -> Any:
    """Scatter of loyalty (x) against attention (y), one colour per quadrant, point size by
    value, with the threshold lines.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    lo, at = _to_float(loyalty), _to_float(attention)
    q = quadrants(lo, at, value, threshold)
    val = np.zeros_like(lo) if value is None else np.nan_to_num(_to_float(value), nan=0.0)
    top = float(np.max(np.abs(val))) if val.size and np.any(val) else 0.0
    size = 5 + 15 * np.sqrt(np.abs(val) / top) if top > 0 else np.full(lo.shape, 6.0)
    fig = go.Figure()
    for name in QUADRANTS:
        m = q.labels == name
        fig.add_scatter(
            x=lo[m].tolist(), y=at[m].tolist(), mode="markers", name=f"{name} ({int(m.sum())})",
            marker={"size": size[m].tolist()},
        )
    fig.add_vline(x=threshold, line_dash="dot", line_color="gray")
    fig.add_hline(y=threshold, line_dash="dot", line_color="gray")
    fig.update_layout(
        title=title,
        xaxis={"title": "loyalty (customer towards vendor)", "range": [0, 100]},
        yaxis={"title": "attention (vendor towards customer)", "range": [0, 100]},
    )
    return fig


def align_previous(ids_now: ArrayLike, ids_then: ArrayLike, values_then: ArrayLike) -> FloatArray:
    """Values of an earlier snapshot, lined up with the customers of the current one.

    Parameters
    ----------
    ids_now : array-like, shape (n,)
        Customer ids of the current snapshot.
    ids_then, values_then : array-like, shape (m,)
        Customer ids and values (e.g. health scores) of the earlier snapshot; ids unique.

    Returns
    -------
    ndarray of shape (n,)
        The earlier value of each current customer, NaN for customers not in it.
    """
    now = np.asarray(ids_now).reshape(-1)
    then = np.asarray(ids_then).reshape(-1)
    vals = _to_float(values_then)
    if then.shape != vals.shape:
        raise ValueError(f"ids_then ({then.size}) and values_then ({vals.size}) differ in length")
    if len(np.unique(then)) != len(then):
        raise ValueError("ids_then must be unique (one row per customer)")
    order = np.argsort(then, kind="stable")
    st = then[order]
    pos = np.searchsorted(st, now)
    pos_c = np.clip(pos, 0, max(len(st) - 1, 0))
    found = (pos < len(st)) & (st[pos_c] == now) if len(st) else np.zeros(len(now), dtype=bool)
    out = np.full(len(now), np.nan)
    out[found] = vals[order][pos_c[found]]
    return out


def score_trend(
    ids_now: ArrayLike,
    scores_now: ArrayLike,
    earlier: Mapping[Any, tuple[ArrayLike, ArrayLike]],
) -> dict[Any, FloatArray]:
    """Change of each customer's score against earlier snapshots (e.g. 30 and 90 days ago).

    Parameters
    ----------
    ids_now, scores_now : array-like, shape (n,)
    earlier : mapping of a label (e.g. ``30``, ``90`` days) to ``(ids, scores)`` of that
        snapshot. Contribution matrices work too (pass one column at a time), so a change
        in the score splits into the changes of its contributions.

    Returns
    -------
    dict of label to ndarray of shape (n,)
        ``score_now - score_then``; NaN where the customer was not in the earlier snapshot.
    """
    now = _to_float(scores_now)
    return {k: now - align_previous(ids_now, ids, vals) for k, (ids, vals) in earlier.items()}
