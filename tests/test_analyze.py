"""analyze on the demo world: scores with their parts, reuse, thin and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("lightgbm")

from custdyn.dynamics import STAGES  # noqa: E402
from custdyn.errors import CustdynError  # noqa: E402
from custdyn.store import Workspace  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from custdyn.cli import app

    d = tmp_path_factory.mktemp("analyze") / "demo"
    r = CliRunner().invoke(app, ["demo", str(d), "--customers", "600", "--seed", "5"])
    assert r.exit_code == 0, r.output
    return d


@pytest.fixture(scope="module")
def analysed(demo: Path):
    from custdyn.pipeline import analyze

    with Workspace.open(demo) as ws:
        result = analyze(ws)
        scores = ws.query("SELECT * FROM scores").to_pylist()
        runs = ws.query("SELECT * FROM model_runs").to_pylist()
    return result, scores, runs


def test_every_customer_gets_scores_whose_parts_sum(analysed):
    result, scores, runs = analysed
    assert len(scores) == result.n_customers > 500
    assert {s["stage"] for s in scores} <= set(STAGES)
    assert {"active", "lost", "prospect"} <= {s["stage"] for s in scores}
    for s in scores[:200]:
        parts = s["contributions"]
        for side in ("health", "loyalty", "attention"):
            total = sum(v for v in parts[side].values() if v is not None)
            assert total == pytest.approx(s[side], abs=1e-6)
            assert 0 <= s[side] <= 100
        if s["p_alive"] is not None:
            assert 0 <= s["p_alive"] <= 1 and s["clv"] >= 0
            assert s["clv_lower"] <= s["clv"] + 1e-9 <= s["clv_upper"] + 2e-9
    kinds = {r["kind"] for r in runs}
    assert {"purchase", "analysis"} <= kinds
    assert result.purchase_model in ("BetaGeo", "ModifiedBetaGeo", "ParetoNBD")
    assert len(result.model_comparison) == 3


def test_backtest_beats_both_baselines(analysed):
    result, _scores, _runs = analysed
    auc = {b["scorer"]: b["roc_auc"] for b in result.backtest}
    assert set(auc) == {"model", "days since last purchase", "1 - P(alive)"}
    assert auc["model"] > max(auc["days since last purchase"], auc["1 - P(alive)"])
    assert auc["model"] >= 0.75


def test_risk_against_the_hidden_truth_beats_both_baselines(demo, analysed):
    """Scored as in production (labels read from the data before as_of only), the model
    ranks who truly left within the horizon above both baselines."""
    from custdyn.pipeline import risk_truth_check

    with Workspace.open(demo, read_only=True) as ws:
        res = risk_truth_check(ws, demo / "sources" / "truth", horizon_days=90)
    got = {m["scorer"]: m for m in res["metrics"]}
    assert {"model", "days since last purchase", "1 - P(alive)"} <= set(got)
    assert set(got) - {"model", "days since last purchase", "1 - P(alive)"} <= {
        "contractual: survival model", "contractual: trees"}
    assert res["positives"] >= 10 and res["n"] <= res["n_scored"]
    base = max(got["days since last purchase"]["roc_auc"], got["1 - P(alive)"]["roc_auc"])
    assert got["model"]["roc_auc"] > base + 0.05
    assert got["model"]["roc_auc"] >= 0.7 and got["model"]["lift_top_decile"] >= 2
    assert 0 <= got["model"]["ece"] <= 1


def test_contractual_customers_get_the_survival_model(demo, analysed):
    """Subscribers (plan = subscription in the demo's customers.csv) leave with a
    cancellation; their risk comes from the landmark Cox model, whose covariates are their
    reasons."""
    from custdyn.pipeline import CONTRACT_COVARIATES, contractual_customers

    _result, scores, _runs = analysed
    with Workspace.open(demo, read_only=True) as ws:
        contract = contractual_customers(ws)
        subscribers = {r[0] for r in ws.con.execute(
            "SELECT customer_id FROM customers WHERE attributes->>'plan' = 'subscription'"
        ).fetchall()}
    assert subscribers and subscribers <= contract
    tree_features = set()
    cox_features = set()
    for s in scores:
        feats = {r["feature"] for r in json.loads(s["reasons"])}
        (cox_features if s["customer_id"] in contract else tree_features).update(feats)
    assert cox_features and cox_features <= set(CONTRACT_COVARIATES)
    assert tree_features - set(CONTRACT_COVARIATES)  # the others: the trees' features


def test_high_risk_customers_have_reasons(analysed):
    _result, scores, _runs = analysed
    risky = [s for s in scores if (s["defection_risk"] or 0) > 0.7 and s["stage"] != "lost"]
    assert risky
    assert any(json.loads(s["reasons"]) for s in risky)


def test_rerun_with_no_new_data_reuses(demo, analysed):
    from custdyn.pipeline import analyze

    with Workspace.open(demo) as ws:
        again = analyze(ws)
    assert again.reused and again.run_id == analysed[0].run_id


def test_as_of_before_any_data_is_a_clear_error(demo):
    from custdyn.pipeline import analyze

    with Workspace.open(demo) as ws, pytest.raises(CustdynError, match="before any data"):
        analyze(ws, "1999-01-01")


def test_workspace_without_orders_still_scores(tmp_path):
    from custdyn.pipeline import analyze

    p = tmp_path / "contacts.csv"
    rows = ["customer_id,occurred_at,channel,kind,direction,text"]
    rng = np.random.default_rng(0)
    for i in range(30):
        for k in range(3):
            day = 1 + int(rng.integers(0, 27))
            rows.append(f"C{i},2024-0{1 + k}-{day:02d}T10:00:00Z,email,contact,inbound,hello")
    p.write_text("\n".join(rows) + "\n")
    with Workspace.create(tmp_path / "w") as ws:
        ws.ingest(p)
        r = analyze(ws)
        assert any("no purchases" in w for w in r.warnings)
        assert any("only 30 customers" in w for w in r.warnings)
        got = ws.query("SELECT health, stage FROM scores").to_pylist()
        assert len(got) == 30 and all(g["health"] is not None for g in got)


def test_counter_offer_alerts_find_the_planted_mentions(demo, analysed):
    import pyarrow.parquet as pq

    from custdyn.pipeline import counter_offer_alerts

    result, _scores, _runs = analysed
    truth = pq.read_table(demo / "sources" / "truth" / "messages.parquet").to_pylist()
    planted = {m["customer_id"] for m in truth if m["competitor"] and m["occurred_at"]
               and (result.as_of - m["occurred_at"]).days < 365 and m["direction"] == "inbound"}
    with Workspace.open(demo, read_only=True) as ws:
        t = counter_offer_alerts(ws, result.as_of, days=365, limit=10_000)
    found = set(t.column("customer_id").to_pylist())
    assert planted, "the demo world plants competitor mentions"
    assert len(found & planted) / len(planted) >= 0.8
    vals = [v for v in t.column("value_at_risk").to_pylist() if v is not None]
    assert vals == sorted(vals, reverse=True)
    from typer.testing import CliRunner

    from custdyn.cli import app

    r = CliRunner().invoke(app, ["-w", str(demo), "alerts", "--days", "365", "--limit", "5"])
    lines = r.stdout.splitlines()  # the terminal's view fits 80 columns, switchers marked
    assert r.exit_code == 0 and max(len(line) for line in lines) <= 80, r.stdout
    assert "6 of the 9 columns" in " ".join(r.stdout.split())
    first = t.slice(0, 5).to_pylist()
    for row in first:
        assert row["customer_id"] in r.stdout and row["occurred_at"].date().isoformat() in r.stdout
    marked = sum(" yes " in line for line in lines)
    assert marked == sum(bool(row["intent_to_switch"]) for row in first)


def test_procedures_find_the_planted_slow_replies(demo, analysed):
    from custdyn.pipeline import procedures

    with Workspace.open(demo, read_only=True) as ws:
        rows = {r["name"]: r for r in procedures(ws, analysed[0].as_of)}
    slow = rows["slow_first_reply"]
    assert slow["hazard_ratio"] > 1.0 and slow["n_with"] > 0
    assert all("observational" in r["sentence"] for r in rows.values())
    for r in rows.values():
        assert r["lower_95"] <= r["hazard_ratio"] <= r["upper_95"]


def test_flows_between_two_analyses_and_backtest_command(demo, analysed, tmp_path):
    import datetime as dt

    from typer.testing import CliRunner

    from custdyn.cli import app
    from custdyn.pipeline import analyze, plot_flows, stage_flow_table

    result = analysed[0]
    with Workspace.open(demo) as ws:
        analyze(ws, result.as_of - dt.timedelta(days=90))
        flows = stage_flow_table(ws)
        n_now = ws.con.execute("SELECT count(*) FROM scores WHERE as_of = ?",
                               [result.as_of]).fetchone()[0]
    assert sum(flows.column("customers").to_pylist()) == n_now
    assert {"new"} <= set(flows.column("from_stage").to_pylist()) or n_now
    fig = plot_flows(flows)
    assert sum(fig.data[0].link.value) == n_now
    r = CliRunner().invoke(app, ["-w", str(demo), "backtest", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert {x["scorer"] for x in rows} == {"model", "days since last purchase", "1 - P(alive)"}


def _orders_workspace(tmp_path: Path, rows: list[str]) -> Workspace:
    p = tmp_path / "orders.csv"
    p.write_text("customer_id,occurred_at,channel,kind,direction,amount\n" + "\n".join(rows)
                 + "\n")
    ws = Workspace.create(tmp_path / "w")
    ws.ingest(p)
    return ws


def test_one_interaction_customers_fall_back_with_a_warning(tmp_path):
    """Every customer bought once: no repeat behaviour to learn from; analyze still scores
    everyone (P(alive) and the scorecard) and says what it skipped."""
    import datetime as dt

    from custdyn.pipeline import analyze

    start = dt.date(2023, 1, 1)
    rows = [f"C{i},{start + dt.timedelta(days=5 * i)}T12:00:00Z,web,order,inbound,{20 + i}"
            for i in range(120)]
    with _orders_workspace(tmp_path, rows) as ws:
        r = analyze(ws)
        got = ws.query("SELECT defection_risk, health, contributions FROM scores").to_pylist()
    assert r.n_customers == 120 and len(got) == 120
    assert r.warnings, "a thin base is worth a warning"
    assert all(g["health"] is not None and 0 <= g["health"] <= 100 for g in got)
    assert all(g["defection_risk"] is None or 0 <= g["defection_risk"] <= 1 for g in got)


def test_identical_customers_fall_back_with_a_warning(tmp_path):
    """Constant features (every customer the same history): the supervised model cannot
    learn; risk falls back to 1 - P(alive) with a warning, health to the scorecard."""
    import datetime as dt

    from custdyn.pipeline import analyze

    start = dt.date(2023, 1, 2)
    rows = [f"C{i},{start + dt.timedelta(days=30 * k)}T12:00:00Z,web,order,inbound,25"
            for i in range(60) for k in range(20)]
    with _orders_workspace(tmp_path, rows) as ws:
        r = analyze(ws)
        got = ws.query("SELECT defection_risk, health FROM scores").to_pylist()
    assert len(got) == 60
    assert any("risk" in w for w in r.warnings)
    assert len({round(g["health"], 9) for g in got}) == 1  # the same history, the same health


def test_learned_health_and_trend(demo, analysed, tmp_path):
    """[health] mode = "learned": weights fitted on past snapshots against later defection,
    parts still sum to the score, and the trend over 30 and 90 days is stored."""
    import shutil

    from custdyn.pipeline import DEFAULT_HEALTH, analyze
    from custdyn.settings import Settings

    d = tmp_path / "learned"
    shutil.copytree(demo, d, ignore=shutil.ignore_patterns("custdyn.lock"))
    s = Settings.load(d)
    s.extra["health"] = {"mode": "learned"}
    s.save(d)
    with Workspace.open(d) as ws:
        r = analyze(ws, analysed[0].as_of)
        runs = ws.query("SELECT model, params FROM model_runs WHERE kind = 'health' AND "
                        "run_id = ?", [r.run_id + "-health"]).to_pylist()
        scores = ws.query("SELECT health, contributions FROM scores WHERE as_of = ?",
                          [r.as_of]).to_pylist()
    assert not any("learned health weights skipped" in w for w in r.warnings)
    assert runs and runs[0]["model"] == "Scorecard (learned)"
    learned = {c["name"]: c["weight"] for c in json.loads(runs[0]["params"])["components"]}
    configured = {c["name"]: c["weight"] for c in DEFAULT_HEALTH["components"]}
    assert set(learned) <= set(configured)
    assert sum(learned.values()) == pytest.approx(100.0)
    assert learned != {k: 100 * v for k, v in configured.items()}
    assert learned["p_alive"] > 0  # the customer-base model's P(alive) carries signal
    changes = {"30d": [], "90d": []}
    for row in scores:
        parts = row["contributions"]
        assert sum(v for v in parts["health"].values() if v is not None) == pytest.approx(
            row["health"], abs=1e-6)
        for k in changes:
            if parts["health_trend"][k] is not None:
                changes[k].append(parts["health_trend"][k])
    assert len(changes["30d"]) > 0.8 * len(scores) and len(changes["90d"]) > 0.7 * len(scores)
    assert any(abs(x) > 1 for x in changes["90d"])
    assert all(-100 <= x <= 100 for k in changes for x in changes[k])


def test_risk_history_on_a_sample_of_a_large_base(demo, analysed):
    """On a base larger than [risk] training_customers the history is computed on a fixed
    random sample (the same customers every time), and today's scores still cover everyone."""
    import datetime as dt

    from custdyn.pipeline import RiskHistory, default_as_of, fit_risk_model

    with Workspace.open(demo, read_only=True) as ws:
        as_of = default_as_of(ws)
        whole = RiskHistory(ws, sample_customers=0)
        part = RiskHistory(ws, sample_customers=250)
        again = RiskHistory(ws, sample_customers=250)
        assert whole.sample_customers is None and whole.ws is ws
        assert 150 < part.sample_customers < 350  # about the asked size, drawn by hash
        at = as_of - dt.timedelta(days=200)
        full_ids = set(whole.snapshot(at).ids)
        sample_ids = part.snapshot(at).ids
        assert set(sample_ids) < full_ids and len(sample_ids) < 0.7 * len(full_ids)
        assert sample_ids == again.snapshot(at).ids
        # the sample's rows are the whole base's rows for the same customers
        w = whole.snapshot(at)
        rows = {c: i for i, c in enumerate(w.ids)}
        k = w.names.index("n_orders")
        assert np.array_equal(part.snapshot(at).X[:, k],
                              w.X[[rows[c] for c in sample_ids], k])
        model = fit_risk_model(part, as_of, 90.0)
        import custdyn.features as cf

        snap = part.score_snapshot(as_of, cf.features(ws, as_of))
        assert set(snap.ids) == set(whole.score_snapshot(as_of, cf.features(ws, as_of)).ids)
        assert len(model.predict_proba(snap.X)) == len(snap.ids)
        part.close()
        assert part.ws is ws
        assert ws.con.execute("SELECT count(DISTINCT customer_id) FROM interactions"
                              ).fetchone()[0] > 500


def test_history_prefetched_in_one_pass_equals_per_date(demo, analysed, tmp_path):
    """The history's snapshots computed in one incremental pass hold the same rows as one
    feature query per date."""
    import datetime as dt
    import shutil

    from custdyn.pipeline import _SNAPSHOT_CACHE, RiskHistory, default_as_of

    copy = tmp_path / "ws"
    shutil.copytree(demo, copy)
    with Workspace.open(copy) as ws:
        as_of = default_as_of(ws)
        dates = [as_of - dt.timedelta(days=180 + 30 * k) for k in range(4)]
        for sample in (0, 300):
            _SNAPSHOT_CACHE.clear()
            one = RiskHistory(ws, sample_customers=sample)
            one.prefetch(dates)
            assert set(dates) <= set(one.snaps)
            _SNAPSHOT_CACHE.clear()
            each = RiskHistory(ws, sample_customers=sample)
            for d in dates:
                a, b = one.snapshot(d), each.snapshot(d)
                assert a.ids == b.ids and a.names == b.names and len(a.ids) > 50
                np.testing.assert_allclose(a.X, b.X, rtol=1e-9, atol=1e-9, equal_nan=True)
            one.close()
            each.close()
        assert "_custdyn_risk_features" not in {
            r[0] for r in ws.con.execute("SELECT table_name FROM information_schema.tables"
                                         ).fetchall()}


def test_models_are_kept_for_refit_every_days(demo, analysed, tmp_path):
    """A later analysis within [analysis] refit_every_days scores with the models the first
    one fitted (same parameters, same backtest) and says so; later than that, or forced,
    it fits them again."""
    import datetime as dt
    import shutil

    from custdyn.pipeline import FITTED_DIR, analyze

    first = analysed[0]
    d = tmp_path / "kept"
    shutil.copytree(demo, d, ignore=shutil.ignore_patterns("custdyn.lock"))
    assert (d / FITTED_DIR / f"{first.run_id}.pkl").exists()

    def params(ws: Workspace, run_id: str) -> dict:
        row = ws.con.execute("SELECT params FROM model_runs WHERE run_id = ?",
                             [run_id + "-purchase"]).fetchone()
        return json.loads(row[0])

    with Workspace.open(d) as ws:
        week = analyze(ws, first.as_of + dt.timedelta(days=7))
        assert week.models_from == {"run_id": first.run_id,
                                    "as_of": first.as_of.isoformat()}
        assert week.step_seconds and "purchase models (kept)" in week.step_seconds
        assert params(ws, week.run_id) == params(ws, first.run_id)
        assert week.backtest == first.backtest
        assert week.purchase_model == first.purchase_model
        moved = ws.con.execute(
            "SELECT count(*) FROM scores a JOIN scores b USING (customer_id) "
            "WHERE a.as_of = ? AND b.as_of = ? AND a.p_alive <> b.p_alive",
            [first.as_of, week.as_of]).fetchone()[0]
        assert moved > 100  # the same model, a week more of silence: P(alive) moves
        late = analyze(ws, first.as_of + dt.timedelta(days=45))
        assert late.models_from is None and "fitting purchase models" in late.step_seconds
        forced = analyze(ws, first.as_of + dt.timedelta(days=50), force=True)
        assert forced.models_from is None
        # the run at +50 days reuses the models fitted at +45, not the first run's
        again = analyze(ws, first.as_of + dt.timedelta(days=60))
        assert again.models_from is not None
        assert again.models_from["run_id"] == forced.run_id
