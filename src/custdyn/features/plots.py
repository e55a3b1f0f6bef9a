"""Cohort retention curves: one line per acquisition-month cohort, by months since acquisition.

>>> import custdyn, custdyn.features as cf                         # doctest: +SKIP
>>> ws = custdyn.Workspace.open("demo-workspace", read_only=True)  # doctest: +SKIP
>>> cf.cohort_figure(cf.cohorts(ws)).write_html("cohorts.html")    # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from custdyn.features.backend import FeatureError

__all__ = ["cohort_figure", "cohort_curves"]

#: The two panels: column of :func:`custdyn.features.cohorts` and its axis title.
PANELS = (("retention", "customers active (share of the cohort)"),
          ("revenue_retention", "revenue (share of month 0)"))


def cohort_figure(table: pa.Table, title: str = "Retention by acquisition-month cohort",
                  max_cohorts: int | None = None) -> Any:
    """Retention curves from a cohort table.

    Parameters
    ----------
    table : pyarrow.Table
        As :func:`custdyn.features.cohorts` returns it (``cohort``, ``months_since``,
        ``retention``, ``revenue_retention``, ``cohort_size``).
    title : str
        The figure's title.
    max_cohorts : int, optional
        Draw only the latest this many cohorts (default: all).

    Returns
    -------
    plotly.graph_objects.Figure
        Two panels side by side: the share of each cohort that purchased in each month since
        acquisition (month 0 = the acquisition month, always 1), and the revenue of that month
        as a share of the cohort's month-0 revenue. One line per cohort, the same colour in
        both panels; hovering shows the cohort's size. Months in which nobody of a cohort
        bought are drawn at 0.
    """
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale
    from plotly.subplots import make_subplots

    need = {"cohort", "months_since", "retention", "revenue_retention", "cohort_size"}
    missing = need - set(table.column_names)
    if missing:
        raise FeatureError(f"the cohort table lacks {sorted(missing)}; pass cf.cohorts(...)")
    rows = table.to_pylist()
    by: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["cohort"], []).append(r)
    cohorts = sorted(by)
    if max_cohorts is not None:
        cohorts = cohorts[-max_cohorts:]
    fig = make_subplots(rows=1, cols=2, subplot_titles=[t for _, t in PANELS],
                        horizontal_spacing=0.08)
    colours = sample_colorscale("Viridis", [i / max(1, len(cohorts) - 1)
                                            for i in range(len(cohorts))])
    last = max((int(r["months_since"]) for r in rows), default=0)
    for cohort, colour in zip(cohorts, colours, strict=True):
        cells = {int(r["months_since"]): r for r in by[cohort]}
        top = max(cells)
        months = list(range(0, top + 1))
        size = cells[0]["cohort_size"] if 0 in cells else None
        name = f"{cohort:%Y-%m}" if hasattr(cohort, "strftime") else str(cohort)
        for col, (metric, _) in enumerate(PANELS, start=1):
            y = [(cells[m][metric] if m in cells and cells[m][metric] is not None else 0.0)
                 for m in months]
            fig.add_trace(go.Scatter(
                x=months, y=y, mode="lines+markers", name=name, legendgroup=name,
                showlegend=col == 1, line={"color": colour}, marker={"size": 4},
                hovertemplate=(f"cohort {name} ({size} customers)<br>month %{{x}}: "
                               "%{y:.1%}<extra></extra>"),
            ), row=1, col=col)
    fig.update_xaxes(title_text="months since acquisition", range=[-0.3, last + 0.3])
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    fig.update_layout(title=title, legend_title_text="cohort", template="plotly_white",
                      height=480)
    return fig


def cohort_curves(source: Any, *, as_of: Any = None, engine: str | None = None,
                  purchase_kinds: list[str] | None = None,
                  max_cohorts: int | None = None) -> Any:
    """Retention curves of a workspace (or backend): :func:`cohorts` then
    :func:`cohort_figure`.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    from custdyn.features.api import cohorts

    t = cohorts(source, as_of=as_of, engine=engine, purchase_kinds=purchase_kinds)
    if t.num_rows == 0:
        raise FeatureError("no purchases before as_of: there are no cohorts to draw")
    return cohort_figure(t, max_cohorts=max_cohorts)
