"""Line-by-line readers: one record (or one error) per line, gathered into chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from custdyn.io.base import Chunk, RowError, Source, numbered_chunks

LineParser = Callable[[int, bytes], "dict | RowError | None"]


def line_chunks(source: Source, parse: LineParser, chunk_rows: int) -> Iterator[Chunk]:
    """Read ``source.path`` line by line (bounded memory), counting ``source.bytes_read``.

    ``parse(lineno, raw)`` turns one line (1-based number, raw bytes with the line end) into a
    record, a :class:`RowError`, or ``None`` for a line to pass over. Records and errors go out
    in chunks of at most ``chunk_rows`` records; the last chunk holds what is left.
    """

    def lines() -> Iterator[tuple[int, dict | RowError | None]]:
        with open(source.path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                source.bytes_read += len(raw)
                yield lineno, parse(lineno, raw)

    yield from numbered_chunks(lines(), chunk_rows)
