"""Ranked actions from an analysed workspace: customers worth saving, the feedback backlog
and how responsive each agent is.

Everything here reads what ``analyze`` wrote (``scores``), the scored text (``text_signals``)
and the raw ``interactions``, and returns Arrow tables ranked so that the first row is the
first thing to act on:

* :func:`worth_saving`: expected value of acting on a customer = CLV x defection risk x uplift,
  with each customer's top risk reasons and last interactions;
* :func:`feedback_backlog`: feedback themes (found across languages) with their customers,
  CLV, CLV at risk, sentiment, trend and example quotes, ranked by CLV at risk;
* :func:`responders`: per agent first-reply times, unanswered messages and the value at risk
  of the customers they serve, with slow agents flagged against the base's norm.

Definitions and how to read each list: ``docs/actions.md``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from custdyn.errors import CustdynError
from custdyn.features.backend import as_utc
from custdyn.store import Workspace

__all__ = [
    "DEFAULT_UPLIFT",
    "ThemeSet",
    "backlog_themes",
    "feedback_backlog",
    "fit_themes",
    "responders",
    "scores_as_of",
    "uplift_setting",
    "worth_saving",
]

#: Share of the value at risk (CLV x defection risk) that acting on a customer wins back,
#: when ``custdyn.toml`` has no ``[insights] uplift``.
DEFAULT_UPLIFT = 0.1
#: An agent whose typical first reply is this many times the base's norm is flagged slow.
DEFAULT_SLOW_FACTOR = 2.0
#: Hours after which an inbound message without a reply counts as unanswered (as in features).
DEFAULT_UNANSWERED_HOURS = 48.0


# =========================================================================== shared helpers


def _insights_settings(ws: Workspace) -> dict[str, Any]:
    got = ws.settings.extra.get("insights", {})
    return got if isinstance(got, dict) else {}


def uplift_setting(ws: Workspace, uplift: float | None = None) -> float:
    """The uplift to use: ``uplift`` if given, else ``[insights] uplift``, else 0.1.

    The uplift is the share of a customer's value at risk that acting on them wins back
    (0.1: one in ten euros at risk is saved). It must lie in (0, 1].
    """
    value = uplift if uplift is not None else _insights_settings(ws).get("uplift", DEFAULT_UPLIFT)
    try:
        u = float(value)
    except (TypeError, ValueError):
        raise CustdynError(f"[insights] uplift = {value!r} is not a number") from None
    if not 0.0 < u <= 1.0:
        raise CustdynError(f"uplift must lie in (0, 1] (the share of the value at risk an action "
                           f"wins back); got {u}")
    return u


def scores_as_of(ws: Workspace, as_of: Any = None) -> dt.datetime:
    """``as_of`` as UTC, checked to have scores; default the latest analysis."""
    if as_of is None:
        row = ws.con.execute("SELECT max(as_of) FROM scores").fetchone()
        if row is None or row[0] is None:
            raise CustdynError("no scores yet; run `custdyn analyze` first")
        return as_utc(row[0])
    at = as_utc(as_of)
    n = ws.con.execute("SELECT count(*) FROM scores WHERE as_of = ?", [at]).fetchone()
    if not n or not n[0]:
        have = [r[0] for r in ws.con.execute(
            "SELECT DISTINCT as_of FROM scores ORDER BY 1").fetchall()]
        hint = (", ".join(str(as_utc(d).date()) for d in have[-5:])
                if have else "none; run `custdyn analyze` first")
        raise CustdynError(f"no scores at {at.date()}; analyses available: {hint}")
    return at


def _snippet(text: str | None, width: int = 120) -> str | None:
    if text is None:
        return None
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "…"


# =========================================================================== worth saving
def worth_saving(
    ws: Workspace,
    as_of: Any = None,
    uplift: float | None = None,
    top: int | None = None,
    *,
    last: int = 3,
    include_lost: bool = False,
) -> pa.Table:
    """Customers ranked by the expected value of acting on them.

    ``expected_value = clv x defection_risk x uplift``: the value the customer is expected to
    bring (CLV at ``as_of``), times the chance they leave, times the share of that value an
    action wins back (``uplift``; default ``[insights] uplift`` or 0.1). Prospects (no CLV)
    and, unless ``include_lost``, customers already in the ``lost`` stage are left out.

    Returns one row per customer, best first: rank, customer_id, stage, clv, defection_risk,
    value_at_risk (clv x risk), uplift, expected_value, reasons (the model's top reasons for
    the risk: feature, value, contribution in log-odds) and last_interactions (the ``last``
    most recent before ``as_of``: occurred_at, channel, kind, direction, snippet).
    """
    at = scores_as_of(ws, as_of)
    u = uplift_setting(ws, uplift)
    stages = "('prospect')" if include_lost else "('prospect', 'lost')"
    limit = f"LIMIT {int(top)}" if top else ""
    rows = ws.con.execute(
        f"""SELECT customer_id, stage, clv, defection_risk, clv * defection_risk AS var, reasons
            FROM scores
            WHERE as_of = ? AND coalesce(stage, '') NOT IN {stages}
              AND clv IS NOT NULL AND defection_risk IS NOT NULL AND clv > 0
            ORDER BY var DESC, customer_id {limit}""", [at]).fetchall()
    ids = [r[0] for r in rows]
    recent: dict[str, list[dict[str, Any]]] = {c: [] for c in ids}
    if ids and last > 0:
        for cid, when, channel, kind, direction, subject, text in ws.con.execute(
                """SELECT customer_id, occurred_at, channel, kind, direction, subject, text
                   FROM (SELECT *, row_number() OVER (PARTITION BY customer_id
                                ORDER BY occurred_at DESC, interaction_id) AS k
                         FROM interactions
                         WHERE occurred_at < ? AND customer_id IN (SELECT unnest(?::VARCHAR[])))
                   WHERE k <= ? ORDER BY customer_id, occurred_at DESC""",
                [at, ids, int(last)]).fetchall():
            what = text if text else subject
            recent[cid].append({"occurred_at": when, "channel": channel, "kind": kind,
                                "direction": direction,
                                "snippet": _snippet(what) if what else None})
    out = []
    for rank, (cid, stage, clv, risk, var, reasons) in enumerate(rows, start=1):
        rs = json.loads(reasons or "[]")
        out.append({
            "rank": rank, "customer_id": cid, "stage": stage, "clv": float(clv),
            "defection_risk": float(risk), "value_at_risk": float(var), "uplift": u,
            "expected_value": float(clv) * float(risk) * u,
            "reasons": [{"feature": str(r.get("feature")), "value": r.get("value"),
                         "contribution": r.get("contribution")} for r in rs],
            "last_interactions": recent.get(cid, []),
        })
    schema = pa.schema([
        ("rank", pa.int64()), ("customer_id", pa.string()), ("stage", pa.string()),
        ("clv", pa.float64()), ("defection_risk", pa.float64()),
        ("value_at_risk", pa.float64()), ("uplift", pa.float64()),
        ("expected_value", pa.float64()),
        ("reasons", pa.list_(pa.struct([("feature", pa.string()), ("value", pa.float64()),
                                        ("contribution", pa.float64())]))),
        ("last_interactions", pa.list_(pa.struct([
            ("occurred_at", pa.timestamp("us", tz="UTC")), ("channel", pa.string()),
            ("kind", pa.string()), ("direction", pa.string()), ("snippet", pa.string())]))),
    ])
    return pa.Table.from_pylist(out, schema=schema)


# =========================================================================== responders
_TURNS = """
WITH th AS (
    SELECT interaction_id, customer_id, thread_id, channel, direction, agent_id, occurred_at,
           json_extract_string(attributes, '$.assignee') AS assignee,
           lag(direction) OVER w AS prev_dir,
           min(CASE WHEN direction = 'outbound' THEN occurred_at END) OVER ahead AS reply_at,
           first_value(CASE WHEN direction = 'outbound' THEN agent_id END IGNORE NULLS)
               OVER ahead AS reply_agent
    FROM interactions
    WHERE thread_id IS NOT NULL AND occurred_at < $as_of
    WINDOW w AS (PARTITION BY customer_id, thread_id ORDER BY occurred_at, interaction_id),
           ahead AS (PARTITION BY customer_id, thread_id ORDER BY occurred_at, interaction_id
                     ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
),
owner AS (  -- the thread's agent: who answered it most, else the assignee the source named
    SELECT customer_id, thread_id,
           coalesce(mode(agent_id) FILTER (WHERE direction = 'outbound' AND agent_id IS NOT NULL),
                    mode(assignee) FILTER (WHERE assignee IS NOT NULL)) AS agent
    FROM th GROUP BY ALL
)
SELECT t.customer_id, t.thread_id, t.channel,
       CASE WHEN t.reply_at IS NOT NULL THEN coalesce(t.reply_agent, o.agent) ELSE o.agent END
           AS agent_id,
       date_diff('second', t.occurred_at, t.reply_at) / 3600.0 AS reply_h,
       date_diff('second', t.occurred_at, $as_of) / 3600.0 AS age_h
FROM th t LEFT JOIN owner o USING (customer_id, thread_id)
-- a customer turn: an inbound message not right after another inbound one
WHERE t.direction = 'inbound' AND (t.prev_dir IS NULL OR t.prev_dir <> 'inbound')
"""


def _reply_turns(ws: Workspace, at: dt.datetime) -> dict[str, np.ndarray]:
    """Every customer turn in a thread before ``at``: customer, channel, agent, hours to the
    first vendor reply (NaN: none yet) and hours from the turn to ``at``."""
    rows = ws.con.execute(_TURNS, {"as_of": at}).fetchall()
    return {
        "customer_id": np.array([r[0] for r in rows], dtype=object),
        "channel": np.array([r[2] or "" for r in rows], dtype=object),
        "agent_id": np.array([r[3] for r in rows], dtype=object),
        "reply_h": np.array([np.nan if r[4] is None else float(r[4]) for r in rows]),
        "age_h": np.array([float(r[5]) for r in rows]),
    }


def responders(
    ws: Workspace,
    as_of: Any = None,
    *,
    slow_factor: float | None = None,
    min_turns: int = 10,
    unanswered_after_hours: float | None = None,
) -> pa.Table:
    """How quickly each agent answers, and what rides on the customers they serve.

    Agents are the vendor-side ids on outbound replies (``agent_id``: in e-mail the sender's
    address, in tickets and chats the agent the source names). A *customer turn* is an inbound
    message in a thread that does not directly follow another inbound one; its *first reply*
    is the first outbound message in the same thread at or after it, and the agent who wrote it
    owns the turn. A turn without a reply belongs to the thread's agent (whoever answered the
    thread most, else the source's ``assignee``) and counts as *unanswered* once
    ``unanswered_after_hours`` (default ``[features] unanswered_after_hours`` or 48) have passed
    with no reply by then.

    The base's norm is each channel's median first reply over all agents (chats are answered in
    minutes, e-mails in hours); an agent's ``slowness`` is the median over their replied turns
    of reply time / the channel's norm, so 1.0 is typical and 2.0 twice as slow whatever the
    channel mix. Agents with at least ``min_turns`` replied turns and a slowness of at least
    ``slow_factor`` (default ``[insights] slow_factor`` or 2.0), or an unanswered share at
    least ``slow_factor`` times the base's, are flagged ``slow``.

    Columns: rank, agent_id, turns, replied, median_first_reply_h, p90_first_reply_h,
    slowness, unanswered, unanswered_share, customers, mean_defection_risk, clv, clv_at_risk
    (sum of CLV x risk over the agent's customers, from the scores at ``as_of``) and slow;
    ranked by slowness (slowest first), agents with too few turns last.
    """
    at = scores_as_of(ws, as_of)
    cfg = _insights_settings(ws)
    factor = float(slow_factor if slow_factor is not None
                   else cfg.get("slow_factor", DEFAULT_SLOW_FACTOR))
    feats = ws.settings.extra.get("features", {})
    wait_h = float(unanswered_after_hours if unanswered_after_hours is not None else
                   (feats.get("unanswered_after_hours", DEFAULT_UNANSWERED_HOURS)
                    if isinstance(feats, dict) else DEFAULT_UNANSWERED_HOURS))
    t = _reply_turns(ws, at)
    scores = {r[0]: (r[1], r[2]) for r in ws.con.execute(
        "SELECT customer_id, clv, defection_risk FROM scores WHERE as_of = ?", [at]).fetchall()}
    reply = t["reply_h"]
    replied = np.isfinite(reply)
    due = t["age_h"] >= wait_h
    unanswered = due & (~replied | (np.nan_to_num(reply, nan=np.inf) > wait_h))
    norm = {}
    for ch in set(t["channel"].tolist()):
        m = replied & (t["channel"] == ch)
        if m.any():
            norm[ch] = max(float(np.median(reply[m])), 1.0 / 60.0)  # at least a minute
    rel = np.array([reply[i] / norm[c] if replied[i] else np.nan
                    for i, c in enumerate(t["channel"])]) if len(reply) else np.zeros(0)
    base_unanswered = float(unanswered[due].mean()) if due.any() else 0.0
    out = []
    agents = sorted({a for a in t["agent_id"].tolist() if a is not None})
    for a in agents:
        m = t["agent_id"] == a
        r = m & replied
        n_rep = int(r.sum())
        custs = sorted(set(t["customer_id"][m].tolist()))
        clv = np.array([np.nan if scores.get(c, (None, None))[0] is None
                        else float(scores[c][0]) for c in custs])
        risk = np.array([np.nan if scores.get(c, (None, None))[1] is None
                         else float(scores[c][1]) for c in custs])
        n_due = int((m & due).sum())
        n_un = int((m & unanswered).sum())
        share = n_un / n_due if n_due else None
        slowness = float(np.median(rel[r])) if n_rep else None
        enough = n_rep >= min_turns
        slow = bool(enough and ((slowness or 0.0) >= factor or (
            share is not None and base_unanswered > 0 and share >= factor * base_unanswered)))
        out.append({
            "agent_id": a, "turns": int(m.sum()), "replied": n_rep,
            "median_first_reply_h": float(np.median(reply[r])) if n_rep else None,
            "p90_first_reply_h": float(np.quantile(reply[r], 0.9)) if n_rep else None,
            "slowness": slowness, "unanswered": n_un, "unanswered_share": share,
            "customers": len(custs),
            "mean_defection_risk": float(np.nanmean(risk)) if np.isfinite(risk).any() else None,
            "clv": float(np.nansum(clv)),
            "clv_at_risk": float(np.nansum(clv * risk)),
            "slow": slow, "_enough": enough,
        })
    out.sort(key=lambda d: (not d["_enough"], -(d["slowness"] or 0.0), d["agent_id"]))
    for k, d in enumerate(out, start=1):
        d.pop("_enough")
        d["rank"] = k
    schema = pa.schema([
        ("rank", pa.int64()), ("agent_id", pa.string()), ("turns", pa.int64()),
        ("replied", pa.int64()), ("median_first_reply_h", pa.float64()),
        ("p90_first_reply_h", pa.float64()), ("slowness", pa.float64()),
        ("unanswered", pa.int64()), ("unanswered_share", pa.float64()),
        ("customers", pa.int64()), ("mean_defection_risk", pa.float64()),
        ("clv", pa.float64()), ("clv_at_risk", pa.float64()), ("slow", pa.bool_()),
    ])
    return pa.Table.from_pylist(out, schema=schema)


# =========================================================================== themes
#: Version of the theme fit below; part of the stored fit's fingerprint.
THEMES_VERSION = 2


class ThemeSet:
    """Feedback themes found in a workspace's messages (what :func:`fit_themes` returns).

    ``themes``: one dict per theme (id, name, key_phrases, examples [{text, language}],
    n_texts, languages); ``assignments``: theme id (or None) per interaction_id of every text
    considered; ``n_embedded``: texts embedded and clustered (the rest take the theme their
    words point to); ``run_id``: the ``model_runs`` row it is stored in (None if not stored);
    ``extended_from``: the stored fit whose themes this one kept, assigning only the texts
    that fit had not seen (None for a fresh fit); ``unused_labels``: theme -> labels, for
    themes the user named with too few labels to be learnt. A theme the user named (see
    :func:`fit_themes`) has ``named`` set and its name as id.
    """

    def __init__(self, as_of: dt.datetime, days: int, themes: list[dict[str, Any]],
                 assignments: dict[str, str | None], n_embedded: int, fingerprint: str,
                 run_id: str | None = None, reused: bool = False, seconds: float = 0.0,
                 extended_from: str | None = None,
                 unused_labels: dict[str, int] | None = None) -> None:
        self.as_of = as_of
        self.days = days
        self.themes = themes
        self.assignments = assignments
        self.n_embedded = n_embedded
        self.fingerprint = fingerprint
        self.run_id = run_id
        self.reused = reused
        self.seconds = seconds
        self.extended_from = extended_from
        self.unused_labels = unused_labels or {}

    def __repr__(self) -> str:
        return (f"ThemeSet({len(self.themes)} themes over {len(self.assignments):,} texts, "
                f"as_of {self.as_of.date()}, {self.n_embedded} embedded)")


_TEXTS = """
SELECT i.interaction_id, i.customer_id, i.occurred_at, i.text,
       coalesce(s.language, c.language) AS language, s.sentiment_score
FROM (SELECT *, row_number() OVER (PARTITION BY customer_id, thread_id
                                    ORDER BY occurred_at, interaction_id) AS k
      FROM interactions) i
LEFT JOIN (SELECT interaction_id, min(language) AS language,
                  avg(sentiment_score) AS sentiment_score
           FROM text_signals GROUP BY interaction_id) s USING (interaction_id)
LEFT JOIN customers c ON c.customer_id = i.customer_id
WHERE i.direction = 'inbound' AND i.text IS NOT NULL AND length(trim(i.text)) >= ?
  AND coalesce(i.kind, '') NOT IN (SELECT unnest(?::VARCHAR[]))
  AND i.occurred_at >= ? AND i.occurred_at < ?
  AND (i.thread_id IS NULL OR i.k = 1)  -- the message that opened a thread, not replies
ORDER BY i.occurred_at, i.interaction_id
"""


def _feedback_texts(ws: Workspace, at: dt.datetime, days: int,
                    min_chars: int = 15) -> list[tuple[Any, ...]]:
    """The customers' own texts in the ``days`` before ``at``: messages that opened a thread
    and unthreaded ones (feedback, surveys, order problems...), not order notes or replies."""
    return ws.con.execute(_TEXTS, [min_chars, list(ws.settings.purchase_kinds),
                                   at - dt.timedelta(days=days), at]).fetchall()


def _fingerprint(ws: Workspace, at: dt.datetime, key: str) -> str:
    import hashlib

    row = ws.con.execute("SELECT count(*), max(batch_id) FROM interactions").fetchone()
    return hashlib.sha256(f"{row}|{at.isoformat()}|{key}".encode()).hexdigest()[:24]


def fit_themes(
    ws: Workspace,
    as_of: Any = None,
    *,
    days: int = 365,
    max_embed: int = 600,
    n_themes: int | None = None,
    max_themes: int = 16,
    seed: int = 0,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    refit: bool = False,
    store: bool = True,
    labels: bool = True,
) -> ThemeSet:
    """Find the feedback themes in the customers' own messages of the ``days`` before
    ``as_of`` (default: the latest analysis), in every language at once.

    At most ``max_embed`` texts (a random sample) are embedded with the multilingual encoder
    and grouped by :class:`custdyn.text.ThemeModel` (language-centred embeddings, average-linkage
    clustering, names from class-based TF-IDF key phrases); the number of themes is
    ``n_themes``, or the best silhouette up to ``max_themes`` (few broad themes rank by value
    better than many narrow ones: the narrow ones split a complaint's customers between
    them). Every other text takes the theme a regression on hashed character n-grams, learnt
    from the embedded sample's themes (and the labelled texts'), gives it
    (:func:`custdyn.text.themes.spread_themes`). The fit is stored in
    ``model_runs`` (kind ``themes``) when the workspace is writable and ``store`` is set, and
    reused while the data and the arguments are unchanged (``refit`` forces a new fit).

    When the data or ``as_of`` changed, a stored fit with the same arguments from at most
    ``[analysis] refit_every_days`` (default 30) before ``as_of`` is extended instead: its
    themes (ids, names, key phrases, examples) are kept, the texts it had assigned keep their
    theme, and each new text takes the theme the same n-gram regression, learnt from the
    assigned texts, gives it, so theme ids stay the same from one run to the next. A fresh
    fit is made when more than half of the texts are new, when none of the old ones is still
    in the window, or with ``refit``.
    ``embed`` replaces the encoder (texts -> unit vectors), e.g. for tests.

    Themes the user named: with ``labels`` (the default), the workspace's labels that carry
    a theme (``custdyn label --import`` with a ``theme`` column, or
    :func:`custdyn.text.labels.add_label`) teach the fit the user's own themes, each with at
    least :data:`custdyn.text.themes.MIN_THEME_LABELS` labels ("none" teaches what is no
    theme). A cluster most of whose texts read as one of them becomes it, under its name;
    the other clusters stay found themes, so themes nobody named are still found. A labelled message in the window keeps its label's theme. Adding or
    changing such labels makes the next call fit afresh.
    """
    import hashlib
    import time

    from custdyn.text.labels import read_theme_labels
    from custdyn.text.themes import ThemeModel, theme_label, theme_texts

    t0 = time.perf_counter()
    at = scores_as_of(ws, as_of)
    seeds = read_theme_labels(ws) if labels else []
    key_parts: list[Any] = [THEMES_VERSION, days, max_embed, n_themes, max_themes, seed,
                            None if embed is None else getattr(embed, "__name__", "custom")]
    if seeds:  # the labels are part of the fit: new or changed ones call for a new fit
        key_parts.append(hashlib.sha256(json.dumps(
            [[r["label_id"], r["text"], r["language"], r["theme"]] for r in seeds],
            ensure_ascii=False).encode()).hexdigest()[:16])
    key = json.dumps(key_parts)
    fp = _fingerprint(ws, at, key)
    if not refit:
        run = ws.latest_run("themes", fp)
        if run is not None:
            run_id, params, diag = run
            return ThemeSet(at, days, params["themes"], diag["assignments"],
                            int(diag["n_embedded"]), fp, run_id=run_id, reused=True,
                            seconds=time.perf_counter() - t0,
                            unused_labels=params.get("unused_labels"))
    rows = _feedback_texts(ws, at, days)
    if not rows:
        raise CustdynError(f"no customer messages with text in the {days} days before "
                           f"{at.date()}: nothing to find themes in")
    if not refit:
        extended = _extend_themes(ws, at, days, rows, key, fp)
        if extended is not None:
            extended.seconds = time.perf_counter() - t0
            if store and not ws.read_only:
                _store_themes(ws, extended, rows, key, {"max_embed": max_embed,
                              "n_themes": n_themes, "max_themes": max_themes, "seed": seed,
                              "unused_labels": extended.unused_labels}, None)
            return extended
    ids = [r[0] for r in rows]
    pos = {iid: i for i, iid in enumerate(ids)}
    custs = [r[1] for r in rows]
    texts = [str(r[3]) for r in rows]
    langs = [r[4] for r in rows]
    n_langs = len({g for g in langs if g}) or 1
    model = ThemeModel(n_themes, max_themes=max_themes, max_fit=max_embed,
                       embed=embed or _cached_encoder(ws), seed=seed,
                       n_examples=min(max(n_langs, 3), 8))
    assigned, sample = theme_texts(
        model, texts, langs, customer_ids=custs, max_embed=max_embed, seed=seed,
        labelled_texts=[r["text"] for r in seeds] if seeds else None,
        labelled_themes=[r["theme"] for r in seeds] if seeds else None,
        labelled_languages=[r["language"] for r in seeds] if seeds else None)
    learnt = set(model.named_)
    for r in seeds:  # a labelled message keeps its label's theme
        theme = theme_label(r["theme"])
        i = pos.get(r["interaction_id"]) if r["interaction_id"] else None
        if i is not None and theme is not None and (theme == "" or theme in learnt):
            assigned[i] = theme or None
    themes = [{"id": t["id"], "name": t["name"], "key_phrases": t["key_phrases"],
               "examples": t["examples"], "languages": t["languages"],
               "n_texts_embedded": t["n_texts"], "named": t["named"],
               "n_labels": t["n_labels"]} for t in model.themes_]
    assignments = dict(zip(ids, assigned, strict=True))
    ts = ThemeSet(at, days, themes, assignments, int(len(sample)), fp,
                  seconds=time.perf_counter() - t0, unused_labels=model.unused_labels_)
    if store and not ws.read_only:
        _store_themes(ws, ts, rows, key, {"max_embed": max_embed, "n_themes": n_themes,
                                          "max_themes": max_themes, "seed": seed,
                                          "unused_labels": model.unused_labels_},
                      getattr(model, "silhouette_", None))
    return ts


def _cached_encoder(ws: Workspace) -> Callable[[list[str]], np.ndarray]:
    """The encoder through the workspace's embedding cache (``text-models/embeddings.npz``,
    the one ``train-text`` and ``label`` keep): a later fit embeds only texts it has not seen,
    the labelled ones included. Read-only workspaces read the cache and write nothing."""
    from pathlib import Path

    from custdyn.text.train import embed_texts
    from custdyn.text.workspace_models import MODELS_DIR

    cache = Path(ws.path) / MODELS_DIR / "embeddings.npz"

    def encoder(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, cache, write=not ws.read_only)

    return encoder


def _store_themes(ws: Workspace, ts: ThemeSet, rows: list[tuple[Any, ...]], key: str,
                  args: dict[str, Any], silhouette: Any) -> None:
    """Write ``ts`` to ``model_runs`` (kind ``themes``) and set its ``run_id``."""
    import uuid

    from custdyn import __version__

    run_id = "themes-" + uuid.uuid4().hex[:12]
    ws.con.execute(
        "INSERT INTO model_runs VALUES (?, ?, ?, 'themes', 'ThemeModel', ?, ?, ?, ?, ?, ?)",
        [run_id, ts.as_of, dt.datetime.now(dt.UTC),
         json.dumps({"themes": ts.themes, "days": ts.days, **args, "key": key,
                     "extended_from": ts.extended_from}, ensure_ascii=False),
         json.dumps({"assignments": ts.assignments, "n_embedded": ts.n_embedded,
                     "n_texts": len(rows), "silhouette": silhouette}),
         min(r[2] for r in rows), ts.as_of, ts.fingerprint, __version__])
    ts.run_id = run_id


def _extend_themes(ws: Workspace, at: dt.datetime, days: int, rows: list[tuple[Any, ...]],
                   key: str, fp: str) -> ThemeSet | None:
    """The latest stored fit with the same arguments (``key``) within ``[analysis]
    refit_every_days`` before ``at``, its themes kept and the new texts assigned to them by
    :func:`custdyn.text.themes.spread_themes`; None when a fresh fit is due (see :func:`fit_themes`)."""
    from custdyn import __version__
    from custdyn.text.themes import spread_themes

    refit_days = float(ws.settings.extra.get("analysis", {}).get("refit_every_days", 30))
    if refit_days <= 0:
        return None
    found = ws.con.execute(
        "SELECT run_id, params, diagnostics FROM model_runs WHERE kind = 'themes' "
        "AND custdyn_version = ? AND as_of <= ? AND as_of >= ? "
        "ORDER BY as_of DESC, created_at DESC",
        [__version__, at, at - dt.timedelta(days=refit_days)]).fetchall()
    for run_id, params, diag in found:
        p = json.loads(params or "{}")
        if p.get("key") != key:
            continue
        d = json.loads(diag or "{}")
        old: dict[str, str | None] = d.get("assignments", {})
        known = [r for r in rows if r[0] in old]
        new = [r for r in rows if r[0] not in old]
        if not known or len(new) > len(rows) / 2:
            return None
        got = spread_themes([str(r[3]) for r in known], [old[r[0]] for r in known],
                            [str(r[3]) for r in new])
        assignments = {r[0]: old[r[0]] for r in known}
        assignments.update({r[0]: lab for r, lab in zip(new, got, strict=True)})
        return ThemeSet(at, days, p["themes"], assignments, int(d.get("n_embedded", 0)), fp,
                        extended_from=run_id, unused_labels=p.get("unused_labels"))
    return None


def stored_themes_of(ws: Workspace, interaction_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The themes the latest stored theme fit (``custdyn backlog``'s) gave these messages:
    interaction_id -> that theme's ``id``, ``name`` and ``named`` (a theme the user named).
    Messages the fit did not see, or gave no theme, are left out; nothing is fitted here."""
    row = ws.con.execute(
        "SELECT params, diagnostics FROM model_runs WHERE kind = 'themes' "
        "ORDER BY created_at DESC LIMIT 1").fetchone()
    if row is None:
        return {}
    themes = {t["id"]: t for t in json.loads(row[0] or "{}").get("themes", [])}
    assigned: dict[str, str | None] = json.loads(row[1] or "{}").get("assignments", {})
    out: dict[str, dict[str, Any]] = {}
    for iid in interaction_ids:
        t = themes.get(assigned.get(iid) or "")
        if t is not None:
            out[iid] = {"id": t["id"], "name": t["name"], "named": bool(t.get("named", False))}
    return out


# =========================================================================== backlog
def backlog_themes(ws: Workspace, as_of: Any = None, *, days: int = 365, trend_days: int = 90,
                   **fit: Any) -> ThemeSet:
    """The theme fit :func:`feedback_backlog` reads: :func:`fit_themes` (``fit`` its
    arguments) over the ``days`` before ``as_of``, or the two ``trend_days`` windows of its
    trend when they reach further back."""
    return fit_themes(ws, as_of, days=max(days, 2 * trend_days), **fit)


def feedback_backlog(
    ws: Workspace,
    as_of: Any = None,
    *,
    days: int = 365,
    trend_days: int = 90,
    themes: ThemeSet | None = None,
    **fit: Any,
) -> pa.Table:
    """Feedback themes ranked by the customer value riding on them: what to improve or build
    next.

    For each theme (from :func:`fit_themes`; ``fit`` passes its arguments, ``themes`` a fit
    already made) over the customers' messages in the ``days`` before ``as_of``: its name and
    key phrases, messages, customers, their total CLV and CLV at risk (sum over the theme's
    customers of CLV x defection risk at ``as_of``), the mean sentiment score of its messages
    (-1 to 1), the trend (messages in the last ``trend_days`` against the ``trend_days``
    before: ``trend`` = last / before - 1, None when there were none before) and example
    quotes, one per language first. Ranked by CLV at risk, largest first.
    """
    at = scores_as_of(ws, as_of)
    ts = themes if themes is not None else backlog_themes(ws, at, days=days,
                                                          trend_days=trend_days, **fit)
    rows = _feedback_texts(ws, at, ts.days)
    score = {r[0]: (r[1] or 0.0, r[2] or 0.0) for r in ws.con.execute(
        "SELECT customer_id, clv, defection_risk FROM scores WHERE as_of = ?", [at]).fetchall()}
    start = at - dt.timedelta(days=days)
    last_from = at - dt.timedelta(days=trend_days)
    prev_from = at - dt.timedelta(days=2 * trend_days)
    per: dict[str, dict[str, Any]] = {
        t["id"]: {"customers": set(), "sent": [], "n": 0, "last": 0, "prev": 0,
                  "langs": Counter()} for t in ts.themes}
    for iid, cid, when, _text, lang, sent in rows:
        tid = ts.assignments.get(iid)
        if tid is None or tid not in per:
            continue
        p = per[tid]
        if when >= last_from:
            p["last"] += 1
        elif when >= prev_from:
            p["prev"] += 1
        if when < start:
            continue
        p["n"] += 1
        p["customers"].add(cid)
        p["langs"][lang or "und"] += 1
        if sent is not None:
            p["sent"].append(float(sent))
    out = []
    for t in ts.themes:
        p = per[t["id"]]
        if not p["n"]:
            continue
        clv = np.array([score.get(c, (0.0, 0.0))[0] for c in p["customers"]], dtype=float)
        risk = np.array([score.get(c, (0.0, 0.0))[1] for c in p["customers"]], dtype=float)
        out.append({
            "theme_id": t["id"], "name": t["name"], "named": bool(t.get("named", False)),
            "key_phrases": list(t["key_phrases"]),
            "messages": p["n"], "customers": len(p["customers"]),
            "clv": float(clv.sum()), "clv_at_risk": float((clv * risk).sum()),
            "mean_sentiment": float(np.mean(p["sent"])) if p["sent"] else None,
            "messages_last": p["last"], "messages_before": p["prev"],
            "trend": (p["last"] / p["prev"] - 1.0) if p["prev"] else None,
            "languages": ", ".join(f"{g} {n}" for g, n in p["langs"].most_common()),
            "examples": [{"language": e.get("language"), "text": _snippet(e.get("text"), 200)}
                         for e in t["examples"]],
        })
    out.sort(key=lambda d: (-d["clv_at_risk"], d["theme_id"]))
    for k, d in enumerate(out, start=1):
        d["rank"] = k
    schema = pa.schema([
        ("rank", pa.int64()), ("theme_id", pa.string()), ("name", pa.string()),
        ("named", pa.bool_()), ("key_phrases", pa.list_(pa.string())), ("messages", pa.int64()),
        ("customers", pa.int64()), ("clv", pa.float64()), ("clv_at_risk", pa.float64()),
        ("mean_sentiment", pa.float64()), ("messages_last", pa.int64()),
        ("messages_before", pa.int64()), ("trend", pa.float64()), ("languages", pa.string()),
        ("examples", pa.list_(pa.struct([("language", pa.string()), ("text", pa.string())]))),
    ])
    return pa.Table.from_pylist(out, schema=schema)

