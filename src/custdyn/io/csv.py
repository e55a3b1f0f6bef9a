"""CSV and TSV, streamed in blocks with pyarrow (bounded memory for any file size)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from custdyn.errors import InputFormatError
from custdyn.io.base import RESTART, Chunk, Restart, RowError, Source

BLOCK_SIZE = 4 << 20


class CsvSource(Source):
    """Delimited text. ``delimiter`` defaults to tab for .tsv/.tab and comma otherwise;
    ``encoding`` is any codec Python knows (``utf-8``, ``latin-1``, ``cp1252``, ...)."""

    format = "csv"

    def __init__(
        self,
        path: Path,
        delimiter: str | None = None,
        encoding: str = "utf-8",
        block_size: int | None = None,
    ) -> None:
        super().__init__(path)
        if delimiter is None:
            delimiter = "\t" if self.path.suffix.lower() in (".tsv", ".tab") else ","
        if delimiter in ("\\t", "tab"):
            delimiter = "\t"
        if len(delimiter) != 1:
            raise InputFormatError(f"{path}: delimiter must be one character, got {delimiter!r}")
        self.delimiter = delimiter
        self.encoding = encoding
        self.block_size = block_size or BLOCK_SIZE
        if self.delimiter == "\t":
            self.format = "tsv"

    def _header(self) -> list[str]:
        with open(self.path, encoding=self.encoding, errors="replace", newline="") as f:
            import csv as _csv

            line = f.readline()
            if not line.strip():
                raise InputFormatError(f"{self.path}: the file is empty or has no header line")
            names = next(_csv.reader([line], delimiter=self.delimiter))
        names = [n.strip().lstrip("\ufeff") for n in names]
        seen: set[str] = set()
        for n in names:
            if not n:
                raise InputFormatError(f"{self.path}: the header has an empty column name")
            if n in seen:
                raise InputFormatError(f"{self.path}: the header names column {n!r} twice")
            seen.add(n)
        return names

    def chunks(self) -> Iterator[Chunk | Restart]:
        names = self._header()
        exact = False
        while True:
            try:
                yield from self._read(names, exact)
                return
            except _NeedExact:
                exact = True
                yield RESTART

    def _read(self, names: list[str], exact: bool) -> Iterator[Chunk]:
        bad: list[tuple[int | None, str]] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            bad.append((row.number, row.text))
            return "skip"

        read_opts = pacsv.ReadOptions(
            block_size=self.block_size,
            use_threads=False,  # threads would read ahead without bound (see _batches)
            column_names=names,
            skip_rows=1,
            encoding="utf8" if self.encoding.lower().replace("-", "") == "utf8" else self.encoding,
        )
        parse_opts = pacsv.ParseOptions(
            delimiter=self.delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
        )
        conv = pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=True,
            null_values=[""],
            check_utf8=False,
        )
        try:
            reader = pacsv.open_csv(
                self.path, read_options=read_opts, parse_options=parse_opts, convert_options=conv
            )
        except pa.ArrowInvalid as e:
            if "Empty CSV file" in str(e):
                return
            raise InputFormatError(f"{self.path}: cannot read as CSV: {e}") from e
        valid_seen = 0
        skipped: list[int] = []  # record numbers of malformed rows, ascending
        size = self.total_bytes
        batches = _batches(reader, ahead=not exact)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except pa.ArrowInvalid as e:
                raise InputFormatError(f"{self.path}: cannot read as CSV: {e}") from e
            if bad and not exact:
                raise _NeedExact  # number the malformed rows exactly on a single-threaded pass
            errors: list[RowError] = []
            for number, text in bad:
                rec = (number - 1) if number is not None else valid_seen + len(skipped) + 1
                skipped.append(rec)
                errors.append(
                    RowError(
                        row=rec,
                        field=None,
                        reason=f"expected {len(names)} fields, found "
                        f"{len(_split(text, self.delimiter))}",
                        raw=text,
                    )
                )
            bad.clear()
            n = batch.num_rows
            ranks = np.arange(valid_seen + 1, valid_seen + n + 1, dtype=np.int64)
            if skipped:
                d = np.asarray(sorted(skipped), dtype=np.int64)
                d = d - np.arange(1, len(d) + 1)
                ranks = ranks + np.searchsorted(d, ranks, side="left")
            valid_seen += n
            table = pa.Table.from_batches([batch])
            table, ranks, enc_errors = _drop_undecodable(table, ranks, self.delimiter)
            errors.extend(enc_errors)
            self.bytes_read = min(size, self.bytes_read + self.block_size)
            yield Chunk(table=table, rows=ranks, errors=errors)
        if bad:
            if not exact:
                raise _NeedExact
            errors = [
                RowError(
                    row=(num - 1) if num is not None else valid_seen + i + 1,
                    field=None,
                    reason=f"expected {len(names)} fields, found {len(_split(text, self.delimiter))}",
                    raw=text,
                )
                for i, (num, text) in enumerate(bad)
            ]
            empty = pa.table({n: pa.array([], pa.string()) for n in names})
            yield Chunk(table=empty, rows=np.zeros(0, dtype=np.int64), errors=errors)
        self.bytes_read = size


class _NeedExact(Exception):
    pass


def _batches(reader: pacsv.CSVStreamingReader, ahead: bool) -> Iterator[pa.RecordBatch]:
    """The reader's batches; with ``ahead``, the next block is parsed in a thread while the
    caller works on the current one.

    pyarrow's own threaded reader reads ahead as far as it can get, so a slow consumer (the
    checks and the insert) would find most of a large file in memory; one block ahead keeps
    memory to two blocks. Malformed rows are then reported while the next block is parsed,
    which is fine for the first pass (any of them starts the exact pass) but not for the
    exact pass, which numbers them and so reads one block at a time.
    """
    if not ahead:
        while True:
            try:
                yield reader.read_next_batch()
            except StopIteration:
                return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(reader.read_next_batch)
        while True:
            try:
                batch = pending.result()
            except StopIteration:
                return
            pending = pool.submit(reader.read_next_batch)
            yield batch


def _split(text: str, delimiter: str) -> list[str]:
    import csv as _csv

    try:
        return next(_csv.reader([text], delimiter=delimiter))
    except (StopIteration, _csv.Error):
        return text.split(delimiter)


def _drop_undecodable(
    table: pa.Table, rows: np.ndarray, delimiter: str
) -> tuple[pa.Table, np.ndarray, list[RowError]]:
    """Find cells that are not valid UTF-8; reject their rows, keep the rest."""
    bad_rows: dict[int, str] = {}
    for name in table.column_names:
        col = table.column(name)
        try:
            col.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        values = col.cast(pa.binary()).to_pylist()
        for i, v in enumerate(values):
            if v is None:
                continue
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                bad_rows.setdefault(i, name)
    if not bad_rows:
        return table, rows, []
    errors = []
    for i, name in sorted(bad_rows.items()):
        raw = {
            n: (
                table.column(n)[i].as_buffer().to_pybytes().decode("utf-8", "backslashreplace")
                if table.column(n)[i].is_valid
                else None
            )
            for n in table.column_names
        }
        errors.append(
            RowError(
                row=int(rows[i]),
                field=name,
                reason=f'field "{name}": bytes that are not valid UTF-8 (is the file Latin-1? '
                "try --encoding latin-1)",
                raw=json.dumps(raw, ensure_ascii=False),
            )
        )
    keep = np.ones(table.num_rows, dtype=bool)
    keep[list(bad_rows)] = False
    return table.filter(pa.array(keep)), rows[keep], errors
