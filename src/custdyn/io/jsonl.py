"""JSON Lines: one JSON object per line, read line by line (bounded memory)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from custdyn.io.base import Chunk, Restart, RowError, Source, records_to_chunk

CHUNK_ROWS = 20_000


class JsonlSource(Source):
    """Each non-empty line is a record; nested objects and lists are kept as JSON text."""

    format = "jsonl"

    def __init__(self, path: Path, encoding: str = "utf-8") -> None:
        super().__init__(path)
        self.encoding = encoding

    def chunks(self) -> Iterator[Chunk | Restart]:
        records: list[dict] = []
        rows: list[int] = []
        errors: list[RowError] = []
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                self.bytes_read += len(raw)
                if not raw.strip():
                    continue
                try:
                    line = raw.decode(self.encoding)
                except UnicodeDecodeError as e:
                    errors.append(
                        RowError(
                            lineno,
                            None,
                            f"bytes that are not valid {self.encoding} at position {e.start}",
                            raw.decode(self.encoding, "backslashreplace").rstrip("\r\n"),
                        )
                    )
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    errors.append(
                        RowError(lineno, None, f"not valid JSON: {e.msg} at column {e.colno}",
                                 line.rstrip("\r\n"))
                    )
                    continue
                if not isinstance(obj, dict):
                    errors.append(
                        RowError(lineno, None,
                                 f"expected a JSON object, got {type(obj).__name__}",
                                 line.rstrip("\r\n"))
                    )
                    continue
                records.append(obj)
                rows.append(lineno)
                if len(records) >= CHUNK_ROWS:
                    yield records_to_chunk(records, rows, errors)
                    records, rows, errors = [], [], []
        if records or errors:
            yield records_to_chunk(records, rows, errors)
