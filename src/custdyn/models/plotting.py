"""Plotly figures for model checking. Plotly is imported inside each function."""

from __future__ import annotations

from typing import Any

from custdyn.models._base import BaseModel
from custdyn.models.checking import p_alive_matrix

__all__ = ["plot_holdout_comparison", "plot_tracking", "plot_p_alive"]


def plot_holdout_comparison(table: Any, title: str = "Holdout: repeat purchases by calibration frequency") -> Any:
    """Grouped bars of actual vs predicted mean holdout purchases.

    Parameters
    ----------
    table : DataFrame from :func:`custdyn.models.checking.holdout_comparison`

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_bar(x=list(table["frequency"]), y=list(table["actual"]), name="actual")
    fig.add_bar(x=list(table["frequency"]), y=list(table["predicted"]), name="predicted")
    fig.update_layout(
        title=title,
        barmode="group",
        xaxis_title="repeat purchases in calibration",
        yaxis_title="mean purchases in holdout",
    )
    return fig


def plot_tracking(table: Any, title: str = "Cumulative repeat purchases") -> Any:
    """Actual vs predicted cumulative repeat purchases, with the calibration end marked.

    Parameters
    ----------
    table : DataFrame from :func:`custdyn.models.checking.cumulative_tracking`

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_scatter(x=list(table["t"]), y=list(table["actual"]), mode="lines", name="actual")
    fig.add_scatter(
        x=list(table["t"]), y=list(table["predicted"]), mode="lines", name="predicted", line={"dash": "dash"}
    )
    cal = table[table["calibration"]]
    if 0 < len(cal) < len(table):
        fig.add_vline(x=float(cal["t"].iloc[-1]), line_dash="dot", annotation_text="calibration end")
    fig.update_layout(title=title, xaxis_title="time", yaxis_title="cumulative repeat purchases")
    return fig


def plot_p_alive(model: BaseModel, T: float, max_frequency: int = 20, title: str | None = None) -> Any:
    """Heat map of P(alive) over frequency and recency for customers of age ``T``.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    freq, rec, p = p_alive_matrix(model, T, max_frequency)
    fig = go.Figure(
        go.Heatmap(x=freq.tolist(), y=rec.tolist(), z=p.tolist(), zmin=0, zmax=1, colorbar={"title": "P(alive)"})
    )
    fig.update_layout(
        title=title or f"P(alive) by frequency and recency ({type(model).__name__}, T = {T:g})",
        xaxis_title="frequency (repeat purchases)",
        yaxis_title="recency",
    )
    return fig
