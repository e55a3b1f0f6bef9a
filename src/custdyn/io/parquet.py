"""Parquet, read one row group slice at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from custdyn.errors import InputFormatError
from custdyn.io.base import Chunk, Restart, Source, to_str_value

BATCH_ROWS = 131_072


class ParquetSource(Source):
    format = "parquet"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._file = pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputFormatError(f"{path}: cannot read as Parquet: {e}") from e

    def chunks(self) -> Iterator[Chunk | Restart]:
        start = 0
        total_rows = max(self._file.metadata.num_rows, 1)
        for batch in self._file.iter_batches(batch_size=BATCH_ROWS):
            cols = {}
            for name, col in zip(batch.schema.names, batch.columns, strict=True):
                cols[name] = _as_string(col)
            n = batch.num_rows
            rows = np.arange(start + 1, start + n + 1, dtype=np.int64)
            start += n
            self.bytes_read = int(self.total_bytes * start / total_rows)
            yield Chunk(table=pa.table(cols), rows=rows)


def _as_string(col: pa.Array) -> pa.Array:
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.cast(pa.string())
    if pa.types.is_timestamp(t):
        # ISO 8601 with an offset when the column has a zone; naive otherwise.
        return pa.array([None if v is None else v.isoformat() for v in col.to_pylist()],
                        pa.string())
    if pa.types.is_nested(t):
        return pa.array([to_str_value(v) for v in col.to_pylist()], pa.string())
    try:
        return col.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([to_str_value(v) for v in col.to_pylist()], pa.string())
