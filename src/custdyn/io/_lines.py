"""Line-by-line readers: one record (or one error) per line, gathered into chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from custdyn.io.base import Chunk, RowError, Source, records_to_chunk

LineParser = Callable[[int, bytes], "dict | RowError | None"]


def line_chunks(source: Source, parse: LineParser, chunk_rows: int) -> Iterator[Chunk]:
    """Read ``source.path`` line by line (bounded memory), counting ``source.bytes_read``.

    ``parse(lineno, raw)`` turns one line (1-based number, raw bytes with the line end) into a
    record, a :class:`RowError`, or ``None`` for a line to pass over. Records and errors go out
    in chunks of at most ``chunk_rows`` records; the last chunk holds what is left.
    """
    records: list[dict] = []
    rows: list[int] = []
    errors: list[RowError] = []
    with open(source.path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            source.bytes_read += len(raw)
            got = parse(lineno, raw)
            if got is None:
                continue
            if isinstance(got, RowError):
                errors.append(got)
                continue
            records.append(got)
            rows.append(lineno)
            if len(records) >= chunk_rows:
                yield records_to_chunk(records, rows, errors)
                records, rows, errors = [], [], []
    if records or errors:
        yield records_to_chunk(records, rows, errors)
