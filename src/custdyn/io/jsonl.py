"""JSON Lines: one JSON object per line, read line by line (bounded memory)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from custdyn.io._lines import line_chunks
from custdyn.io.base import Chunk, Restart, RowError, Source

CHUNK_ROWS = 20_000


class JsonlSource(Source):
    """Each non-empty line is a record; nested objects and lists are kept as JSON text."""

    format = "jsonl"

    def __init__(self, path: Path, encoding: str = "utf-8") -> None:
        super().__init__(path)
        self.encoding = encoding

    def chunks(self) -> Iterator[Chunk | Restart]:
        return line_chunks(self, self._parse, CHUNK_ROWS)

    def _parse(self, lineno: int, raw: bytes) -> dict | RowError | None:
        if not raw.strip():
            return None
        try:
            line = raw.decode(self.encoding)
        except UnicodeDecodeError as e:
            return RowError(lineno, None,
                            f"bytes that are not valid {self.encoding} at position {e.start}",
                            raw.decode(self.encoding, "backslashreplace").rstrip("\r\n"))
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            return RowError(lineno, None, f"not valid JSON: {e.msg} at column {e.colno}",
                            line.rstrip("\r\n"))
        if not isinstance(obj, dict):
            return RowError(lineno, None, f"expected a JSON object, got {type(obj).__name__}",
                            line.rstrip("\r\n"))
        return obj
