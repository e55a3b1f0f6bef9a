"""Readers: one per source format. Each yields chunks of raw columns with row numbers; the
store stages them and :mod:`custdyn.io.normalize` turns them into the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from custdyn._mailtext import html_to_text, trim_quoted
from custdyn.errors import InputFormatError
from custdyn.io.base import RESTART, Chunk, Restart, RowError, Source
from custdyn.io.cdnow import CdnowSource, looks_like_cdnow
from custdyn.io.csv import CsvSource
from custdyn.io.email import EmailSource
from custdyn.io.jsonl import JsonlSource
from custdyn.io.mapping import Mapping, load_mapping, parse_mapping
from custdyn.io.parquet import ParquetSource

FORMATS = ("csv", "tsv", "parquet", "jsonl", "eml", "mbox", "cdnow")

__all__ = [
    "FORMATS",
    "RESTART",
    "CdnowSource",
    "Chunk",
    "CsvSource",
    "EmailSource",
    "JsonlSource",
    "Mapping",
    "ParquetSource",
    "Restart",
    "RowError",
    "Source",
    "detect_format",
    "html_to_text",
    "load_mapping",
    "open_source",
    "parse_mapping",
    "trim_quoted",
]


def detect_format(path: Path) -> str:
    """The format of ``path`` from its name (and, for .txt/.dat, its first line)."""
    path = Path(path)
    if path.is_dir():
        return "eml"
    suffix = path.suffix.lower()
    table = {
        ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
        ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".eml": "eml", ".mbox": "mbox",
        ".mbx": "mbox",
    }
    if suffix in table:
        return table[suffix]
    if suffix in (".txt", ".dat", "") and looks_like_cdnow(path):
        return "cdnow"
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(5) == b"From ":
                return "mbox"
    raise InputFormatError(
        f"{path}: cannot tell the format from the name; pass --format, one of {', '.join(FORMATS)}"
    )


def open_source(path: str | Path, format: str | None = None, **options: Any) -> Source:
    """Open a reader for ``path``.

    Options: ``delimiter``, ``encoding`` (CSV/TSV/JSONL), ``vendor_domains`` and
    ``customer_by_email`` (e-mail), ``currency`` (CDNOW).
    """
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"{path}: no such file or folder")
    fmt = format or detect_format(path)
    if fmt in ("csv", "tsv"):
        delim = options.get("delimiter") or ("\t" if fmt == "tsv" else None)
        return CsvSource(path, delimiter=delim, encoding=options.get("encoding") or "utf-8")
    if fmt == "parquet":
        return ParquetSource(path)
    if fmt == "jsonl":
        return JsonlSource(path, encoding=options.get("encoding") or "utf-8")
    if fmt in ("eml", "mbox", "email"):
        return EmailSource(path, options.get("vendor_domains", ()),
                           options.get("customer_by_email"))
    if fmt == "cdnow":
        return CdnowSource(path, currency=options.get("currency") or "USD")
    raise InputFormatError(f"{path}: unknown format {fmt!r}; one of {', '.join(FORMATS)}")
