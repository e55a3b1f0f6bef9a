"""The CDNOW transaction text format used by the customer-base literature.

Whitespace-separated columns: customer id, date (YYYYMMDD), quantity, amount, one
transaction per line, no header (a header line, if present, is skipped). Each line becomes an
``order`` interaction; the quantity and the line number go to ``attributes`` (two identical
lines are two purchases, so the line number keeps them apart).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from custdyn.io._lines import line_chunks
from custdyn.io.base import Chunk, Restart, RowError, Source
from custdyn.io.mapping import Mapping

CHUNK_ROWS = 100_000
_LINE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


def looks_like_cdnow(path: Path) -> bool:
    """True when the first data line of ``path`` has the four CDNOW columns."""
    try:
        with open(path, encoding="latin-1") as f:
            for _ in range(3):
                line = f.readline()
                if re.match(r"^\s*\d+\s+\d{8}\s+\d+\s+-?[\d.]+\s*$", line):
                    return True
    except OSError:
        return False
    return False


class CdnowSource(Source):
    format = "cdnow"

    def __init__(self, path: Path, currency: str = "USD") -> None:
        super().__init__(path)
        self.implied = Mapping(
            date_format="%Y%m%d",
            timezone="UTC",
            defaults={"kind": "order", "direction": "inbound", "channel": "other",
                      "currency": currency},
        )

    def chunks(self) -> Iterator[Chunk | Restart]:
        return line_chunks(self, self._parse, CHUNK_ROWS)

    @staticmethod
    def _parse(lineno: int, raw: bytes) -> dict | RowError | None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return RowError(lineno, None, "bytes that are not valid UTF-8", raw.decode("latin-1"))
        if not line.strip():
            return None
        m = _LINE.match(line)
        if m is None:
            if lineno == 1 and not re.search(r"\d{8}", line):
                return None  # a header line
            return RowError(lineno, None,
                            "expected 4 columns: customer id, date YYYYMMDD, quantity, amount",
                            line.rstrip("\r\n"))
        cid, date, qty, amount = m.groups()
        return {"customer_id": cid, "occurred_at": date, "amount": amount, "quantity": qty,
                "line": str(lineno)}
