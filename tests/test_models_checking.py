"""Model checking on CDNOW: holdout table, tracking, P(alive) grid, comparison, figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custdyn.models import (
    BetaGeo,
    ModifiedBetaGeo,
    ParetoNBD,
    compare_models,
    cumulative_tracking,
    holdout_comparison,
    p_alive_matrix,
    plot_holdout_comparison,
    plot_p_alive,
    plot_tracking,
    rfm_summary,
)


def lifetimes_file(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the lifetimes package (test dependency, ships the CDNOW data) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / name


@pytest.fixture(scope="module")
def tx() -> pd.DataFrame:
    t = pd.read_csv(lifetimes_file("CDNOW_sample.txt"), sep=r"\s+", header=None,
                    names=["master_id", "id", "date", "cds", "amount"], dtype={"date": str})
    t["date"] = pd.to_datetime(t["date"], format="%Y%m%d")
    return t


@pytest.fixture(scope="module")
def summary(tx: pd.DataFrame) -> pd.DataFrame:
    return rfm_summary(tx, "id", "date", "amount", observation_end="1998-06-30", calibration_end="1997-09-30")


@pytest.fixture(scope="module")
def bg(summary: pd.DataFrame) -> BetaGeo:
    return BetaGeo().fit(summary["frequency"], summary["recency"], summary["T"])


def test_holdout_comparison(bg: BetaGeo, summary: pd.DataFrame) -> None:
    s = summary
    table = holdout_comparison(bg, s["frequency"], s["recency"], s["T"], s["frequency_holdout"], s["duration_holdout"])
    assert list(table["frequency"]) == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert table["customers"].sum() == 2357
    # actual means from an independent groupby
    grp = np.minimum(s["frequency"], 7)
    np.testing.assert_allclose(table["actual"], s.groupby(grp)["frequency_holdout"].mean().to_numpy())
    # Fader, Hardie & Lee (2005), Figure 4: customers without repeat purchases, BG/NBD predicts 0.23
    assert table["predicted"].iloc[0] == pytest.approx(0.226, abs=0.005)
    assert table["actual"].iloc[0] == pytest.approx(0.236, abs=0.001)
    fig = plot_holdout_comparison(table)
    assert [t.name for t in fig.data] == ["actual", "predicted"]


def test_cumulative_tracking(bg: BetaGeo, tx: pd.DataFrame, summary: pd.DataFrame) -> None:
    tr = cumulative_tracking(bg, tx, "id", "date", calibration_end="1997-09-30", observation_end="1998-06-30")
    assert np.all(np.diff(tr["actual"]) >= 0) and np.all(np.diff(tr["predicted"]) >= 0)
    days = tx.drop_duplicates(["id", "date"])
    total_repeat = len(days) - days["id"].nunique()
    assert tr["actual"].iloc[-1] == total_repeat
    # at the end of calibration the actual count equals the calibration frequencies
    cal_end_row = tr[tr["calibration"]].iloc[-1]
    assert cal_end_row["t"] == 38.0
    # the model's prediction over the whole period is close to the truth (FHL 2005, Figure 3)
    assert abs(tr["predicted"].iloc[-1] / tr["actual"].iloc[-1] - 1) < 0.06
    fig = plot_tracking(tr)
    assert len(fig.data) == 2


def test_p_alive_matrix_and_figure(bg: BetaGeo) -> None:
    f, r, p = p_alive_matrix(bg, T=38.86, max_frequency=10, recency_points=20)
    assert p.shape == (20, 11)
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(p[:, 0] == 1.0)
    assert np.all(np.diff(p[:, 5]) >= 0)  # more recent -> more likely alive
    fig = plot_p_alive(bg, 38.86)
    assert fig.data[0].type == "heatmap"


def test_compare_models(summary: pd.DataFrame, bg: BetaGeo) -> None:
    args = (summary["frequency"], summary["recency"], summary["T"])
    models = {"BG/NBD": bg, "MBG/NBD": ModifiedBetaGeo().fit(*args), "Pareto/NBD": ParetoNBD().fit(*args)}
    table = compare_models(models, summary)
    assert list(table.index) == ["BG/NBD", "MBG/NBD", "Pareto/NBD"]
    np.testing.assert_allclose(table["aic"], 8 - 2 * table["log_likelihood"])
    assert table.loc["BG/NBD", "log_likelihood"] == pytest.approx(-9582.4, abs=0.1)
    pred = bg.conditional_expected_purchases(39.0, *args)
    assert table.loc["BG/NBD", "holdout_mae"] == pytest.approx(np.mean(np.abs(pred - summary["frequency_holdout"])))
    assert np.all(table["holdout_rmse"] > table["holdout_mae"])
