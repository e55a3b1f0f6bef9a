"""Relationship features and cohorts: one set of Ibis expressions for DuckDB and Spark.

>>> import custdyn, custdyn.features as cf                       # doctest: +SKIP
>>> ws = custdyn.Workspace.open("demo-workspace", read_only=True)  # doctest: +SKIP
>>> cf.features(ws, "2025-06-30").num_rows                        # doctest: +SKIP
1873

:func:`features` returns the feature table at one ``as_of`` as a ``pyarrow.Table``;
:func:`snapshots` computes it for a series of dates (incrementally: each event placed once
on the date axis) and stores it in the workspace's ``snapshots`` table; :func:`cohorts` gives
acquisition-month retention and :func:`cohort_curves` draws it. The backend
(the workspace's DuckDB file, or Spark reading the same contract from Parquet or the Spark
catalog) is chosen once, by :func:`backend`. Definitions and units: ``docs/features.md``.
"""

from __future__ import annotations

from custdyn.features.api import (
    cohorts,
    cohorts_expr,
    feature_tables,
    features,
    snapshot_dates,
    snapshots,
)
from custdyn.features.backend import ENGINES, Backend, FeatureError, backend, spark_session
from custdyn.features.build import (
    NON_CONTACT_KINDS,
    WINDOWS_DAYS,
    as_of_table,
    feature_columns,
    feature_expr,
)
from custdyn.features.plots import cohort_curves, cohort_figure

__all__ = [
    "ENGINES",
    "NON_CONTACT_KINDS",
    "WINDOWS_DAYS",
    "Backend",
    "FeatureError",
    "as_of_table",
    "backend",
    "cohort_curves",
    "cohort_figure",
    "cohorts",
    "cohorts_expr",
    "feature_columns",
    "feature_expr",
    "features",
    "snapshot_dates",
    "snapshots",
    "feature_tables",
    "spark_session",
]
