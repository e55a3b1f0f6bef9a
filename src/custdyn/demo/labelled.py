"""A labelled sample of the demo's inbound messages, for ``custdyn eval-text`` and
``eval-text --train-on``: each message's text as ingested, with the sentiment, language,
emotion and theme the simulator gave it (its truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Messages in the sample (fewer when the world has fewer).
SAMPLE = 2000


def write_labelled_sample(con: Any, truth_dir: str | Path, n: int = SAMPLE) -> Path:
    """Write ``truth_dir/labelled.csv`` (``text``, ``label``, ``language``, ``emotions``:
    the planted emotion, or ``none``; ``theme``: the planted theme, or ``none``): up to ``n``
    inbound messages with text, drawn by a hash of their id (the same world gives the same
    sample), from the ingested ``interactions`` of the DuckDB connection ``con`` and the truth
    in ``truth_dir/messages.parquet``. Returns the file's path."""
    truth = Path(truth_dir)
    out = truth / "labelled.csv"
    src = str(truth / "messages.parquet").replace("'", "''")
    dst = str(out).replace("'", "''")
    con.execute(f"""COPY (
        SELECT i.text, m.sentiment AS label, m.language,
               CASE WHEN m.emotion = 'neutral' THEN 'none' ELSE m.emotion END AS emotions,
               coalesce(m.theme_id, 'none') AS theme
        FROM interactions i JOIN read_parquet('{src}') m ON m.interaction_id = i.interaction_id
        WHERE i.direction = 'inbound' AND length(trim(coalesce(i.text, ''))) > 0
          AND m.sentiment IN ('negative', 'neutral', 'positive')
        ORDER BY hash(i.interaction_id), i.interaction_id
        LIMIT {int(n)}) TO '{dst}' (HEADER, DELIMITER ',')""")
    return out
