"""The demo world: a seeded simulator of a vendor and its customers, with known truth.

>>> from custdyn.demo import write_world
>>> world = write_world("demo-data", n_customers=200, seed=7)  # doctest: +SKIP

The world is written as real files (CSV, mbox, JSON Lines) that the readers ingest, with the
truth (labels, parameters, churn times, themes) beside them in ``truth/``. See docs/demo.md.
"""

from __future__ import annotations

from custdyn.demo.labelled import write_labelled_sample
from custdyn.demo.writers import SourceFile, World, write_world

__all__ = ["SourceFile", "World", "write_labelled_sample", "write_world"]
