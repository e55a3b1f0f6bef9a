"""The log-only parts of analyze run in a second thread give what they give in line, and an
error there reaches the caller."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from custdyn.pipeline._background import Background
from custdyn.pipeline._common import _PurchaseModels, default_as_of
from custdyn.pipeline.analysis import _stage_tables
from custdyn.pipeline.health import _loyalty_counts
from custdyn.pipeline.risk import leaving_table


@pytest.fixture
def ws(small_demo_ws: Any) -> Any:
    return small_demo_ws


def test_background_results_equal_those_computed_in_line(ws: Any) -> None:
    import datetime as dt

    as_of = default_as_of(ws)
    dates = [as_of, as_of - dt.timedelta(days=30)]
    with Background(ws, as_of, None, dates, _stage_tables, leaving_at=as_of) as bg:
        # the main connection is used meanwhile, as the features step does
        assert ws.con.execute("SELECT count(*) FROM interactions").fetchone()[0] > 0
        got = bg.purchase()
        loyalty = bg.loyalty()
        gaps, cancelled = bg.stage_tables()
        leaving = bg.leaving()
    pm = _PurchaseModels(ws, as_of, [])
    assert pm.fit()
    want = pm.predict()
    assert got.pred is not None
    assert type(got.pm.model) is type(pm.model)
    assert list(got.pred["customer_id"]) == list(want["customer_id"])
    for k in ("p_alive", "expected_purchases_90d", "clv"):
        np.testing.assert_allclose(got.pred[k], want[k], rtol=1e-12)
    assert bg.warnings == pm.warnings
    ref = _loyalty_counts(ws, dates)
    for d in dates:
        assert loyalty[d].sort_by("customer_id").equals(ref[d].sort_by("customer_id"))
    g2, c2 = _stage_tables(ws, as_of)
    assert gaps.sort_by("customer_id").equals(g2.sort_by("customer_id"))
    assert cancelled.sort_by("customer_id").equals(c2.sort_by("customer_id"))
    want_leaving = leaving_table(ws, as_of)
    assert leaving.num_rows > 100
    assert leaving.sort_by("customer_id").equals(want_leaving.sort_by("customer_id"))
    # the cursor is closed with the helper; the workspace's own connection is not
    assert ws.con.execute("SELECT 1").fetchone()[0] == 1


def test_the_purchase_models_start_first_the_rest_when_asked(ws: Any) -> None:
    """The purchase models start with the helper (the analysis starts it before scoring the
    new messages); the parts that read the messages' signals start with ``rest``."""
    as_of = default_as_of(ws)
    with Background(ws, as_of, None) as bg:
        assert bg.purchase().pred is not None
        with pytest.raises(RuntimeError, match="rest"):
            bg.loyalty()
        bg.rest([as_of], _stage_tables)
        assert bg.loyalty()[as_of].sort_by("customer_id").equals(
            _loyalty_counts(ws, [as_of])[as_of].sort_by("customer_id"))


def test_an_error_in_the_second_thread_is_raised_where_its_result_is_taken(ws: Any) -> None:
    as_of = default_as_of(ws)

    def broken(w: Any, at: Any) -> Any:
        return w.con.execute("SELECT * FROM no_such_table").fetchall()

    with Background(ws, as_of, None, [as_of], broken) as bg:
        assert bg.purchase().pred is not None
        with pytest.raises(Exception, match="no_such_table"):
            bg.stage_tables()


def test_analyze_result_unchanged_by_the_second_thread(ws: Any) -> None:
    """analyze with the log-only parts in line (``[analysis] background = false``) writes
    the same scores as with them in the second thread: on a first run (models fitted) and
    on a run that scores with the models kept from it."""
    import datetime as dt

    from custdyn.pipeline import analyze

    def scores(at: Any) -> Any:
        return ws.con.execute("SELECT * EXCLUDE (run_id) FROM scores WHERE as_of = ? "
                              "ORDER BY customer_id", [at]).to_arrow_table()

    later = default_as_of(ws)
    early = later - dt.timedelta(days=7)
    runs: dict[str, list[Any]] = {"thread": [], "in line": []}
    for how in ("thread", "in line"):
        if how == "in line":
            ws.settings.extra.setdefault("analysis", {})["background"] = False
            # forget the runs (not their kept models' files): both are computed again
            ws.con.execute("DELETE FROM model_runs")
        fitted = analyze(ws, early)
        rescored = analyze(ws, later)
        assert fitted.models_from is None and not fitted.reused
        assert rescored.models_from == {"run_id": fitted.run_id, "as_of": early.isoformat()}
        runs[how] = [scores(early), scores(later), fitted.warnings, rescored.warnings]
    for a, b in zip(runs["thread"], runs["in line"], strict=True):
        if isinstance(a, list):
            assert a == b
        else:
            assert a.num_rows > 100 and a.equals(b)
