"""What every reader yields: chunks of raw source columns with their row numbers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from custdyn.io.mapping import Mapping


@dataclass
class RowError:
    """A record a reader could not turn into columns (bad bytes, bad JSON, wrong field count)."""

    row: int
    field: str | None
    reason: str
    raw: str


@dataclass
class Chunk:
    """Raw records from a source: string columns named as in the source.

    ``rows`` holds each record's 1-based row number in the source (for CSV the first record
    after the header is row 1; for mbox the first message is row 1).
    """

    table: pa.Table
    rows: np.ndarray
    errors: list[RowError] = field(default_factory=list)


class Restart:
    """Yielded by a reader that must start over (for example to number rows exactly)."""


RESTART = Restart()


class Source:
    """Base class of the readers. Subclasses implement :meth:`chunks`."""

    format: str = "?"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.bytes_read = 0
        self.total_bytes = _size(self.path)

    #: Mapping the reader implies (date format, constants) before the user's mapping.
    implied: Mapping = Mapping()

    def chunks(self) -> Iterator[Chunk | Restart]:  # pragma: no cover - abstract
        raise NotImplementedError


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def to_str_value(v: Any) -> str | None:
    """A Python value from a JSON record or a Parquet cell, as the text the stager keeps."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, default=str)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def numbered_chunks(items: Iterable[tuple[int, dict[str, Any] | RowError | None]],
                    chunk_rows: int) -> Iterator[Chunk]:
    """Gather ``(row number, record or RowError or None)`` items into chunks of at most
    ``chunk_rows`` records with the errors met on the way (``None``: an item passed over);
    the last chunk holds what is left. Reads ``items`` only as the chunks are asked for."""
    records: list[dict[str, Any]] = []
    rows: list[int] = []
    errors: list[RowError] = []
    for n, got in items:
        if got is None:
            continue
        if isinstance(got, RowError):
            errors.append(got)
            continue
        records.append(got)
        rows.append(n)
        if len(records) >= chunk_rows:
            yield records_to_chunk(records, rows, errors)
            records, rows, errors = [], [], []
    if records or errors:
        yield records_to_chunk(records, rows, errors)


def records_to_chunk(records: list[dict[str, Any]], rows: list[int], errors: list[RowError]) -> Chunk:
    """Build a chunk of string columns from dict records (keys in first-seen order)."""
    names: dict[str, None] = {}
    for r in records:
        for k in r:
            names.setdefault(k, None)
    cols = {n: pa.array([to_str_value(r.get(n)) for r in records], pa.string()) for n in names}
    table = pa.table(cols) if cols else pa.table({})
    if not cols and records:
        table = pa.table({"__empty__": pa.nulls(len(records), pa.string())})
    return Chunk(table=table, rows=np.asarray(rows, dtype=np.int64), errors=errors)
