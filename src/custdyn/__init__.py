"""custdyn: the customer dynamics engine.

Turns the flow of activity between a vendor and its customers into a measured picture of
each relationship. See README.md for a tour and ``docs/`` for each capability.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "Workspace"]


def __getattr__(name: str):  # lazy, so `import custdyn` stays light
    if name == "Workspace":
        from custdyn.store import Workspace

        return Workspace
    raise AttributeError(f"module 'custdyn' has no attribute {name!r}")
