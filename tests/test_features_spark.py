"""The same feature expressions on Spark (local mode) and on DuckDB give the same tables.

Needs pyspark and Java 17; marked ``spark`` and ``slow`` (``make test`` runs them,
``make test-fast`` does not).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("pyspark")

import custdyn  # noqa: E402
import custdyn.features as cf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_features import (  # noqa: E402
    AS_OF,
    CUSTOMERS,
    FUTURE,
    PLANTED,
    SIGNALS,
    assert_frames_match,
    make_ws,
)

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Any:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = cf.spark_session({
        "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse")),
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.driver.memory": "1g",
    }, master="local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> custdyn.Workspace:
    """The planted log plus a small demo world, in one workspace."""
    from typer.testing import CliRunner

    from custdyn.cli import app

    d = tmp_path_factory.mktemp("sparkworld")
    r = CliRunner().invoke(app, ["demo", str(d / "demo"), "--customers", "120", "--seed", "5"])
    assert r.exit_code in (0, 1), r.output
    ws = make_ws(d / "ws", PLANTED + FUTURE, CUSTOMERS, SIGNALS)
    ws.con.execute(f"ATTACH '{d / 'demo' / 'custdyn.duckdb'}' AS demo (READ_ONLY)")
    ws.con.execute("INSERT INTO interactions SELECT * FROM demo.interactions")
    ws.con.execute("INSERT INTO customers SELECT * FROM demo.customers")
    ws.con.execute("DETACH demo")
    yield ws
    ws.close()


def _frame(t: Any) -> pd.DataFrame:
    return t.to_pandas()


@pytest.mark.parametrize("as_of", [AS_OF, "2025-03-17 06:30"])
def test_features_spark_equals_duckdb_and_pandas(world: custdyn.Workspace, spark: Any,
                                                  as_of: str) -> None:
    from benchmarks.bench_features import pandas_features

    duck = _frame(cf.features(cf.backend(world, "duckdb"), as_of))
    sb = cf.backend(world, "spark", spark=spark)
    assert sb.engine == "spark" and set(sb.tables) >= {"interactions", "customers"}
    got = _frame(cf.features(sb, as_of))
    assert len(got) > 50
    assert_frames_match(got, duck)
    it = world.query("SELECT * FROM interactions").to_pandas()
    cu = world.query("SELECT * FROM customers").to_pandas()
    ts = world.query("SELECT * FROM text_signals").to_pandas()
    assert_frames_match(got, pandas_features(it, as_of, customers=cu, text_signals=ts))


def test_snapshots_and_cohorts_on_spark(world: custdyn.Workspace, spark: Any) -> None:
    dates = ["2024-03-01", AS_OF]
    both = _frame(cf.backend(world, "spark", spark=spark).to_pyarrow(
        cf.feature_expr(cf.backend(world, "spark", spark=spark), dates).order_by(
            ["as_of", "customer_id"])))
    duck = _frame(cf.backend(world).to_pyarrow(
        cf.feature_expr(cf.backend(world), dates).order_by(["as_of", "customer_id"])))
    assert_frames_match(both, duck)
    # stored snapshots: the incremental method on Spark (window functions) equals the
    # per-date method on DuckDB, every column
    dates3 = [*dates, "2025-03-17 06:30"]
    n = cf.snapshots(world, dates3, engine="spark", table="spark_inc")
    assert n == cf.snapshots(world, dates3, table="duck_per_date", method="per_date")
    stored = [world.query(f"SELECT * FROM {t} ORDER BY as_of, customer_id").to_pandas()
              for t in ("spark_inc", "duck_per_date")]
    assert_frames_match(*stored)
    c_spark = _frame(cf.cohorts(cf.backend(world, "spark", spark=spark)))
    c_duck = _frame(cf.cohorts(world))
    assert len(c_duck) > 10
    pd.testing.assert_frame_equal(c_spark, c_duck, check_dtype=False)


def test_spark_reads_catalog_tables(world: custdyn.Workspace, spark: Any,
                                    tmp_path: Path) -> None:
    world.export(tmp_path, ["interactions"])
    spark.read.parquet(str(tmp_path / "interactions.parquet")).createOrReplaceTempView(
        "crm_interactions")
    b = cf.backend(None, "spark", spark=spark, tables={"interactions": "crm_interactions"})
    assert b.tables == {"interactions": "crm_interactions"}
    got = _frame(cf.features(b, AS_OF))
    only = cf.backend(tmp_path, "duckdb")
    assert_frames_match(got, _frame(cf.features(only, AS_OF)))
    assert got["sentiment_90d"].isna().all()  # no text_signals: nulls, not errors
