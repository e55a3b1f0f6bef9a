"""All of custdyn's exceptions and warnings, in one place.

Each error subclasses both :class:`CustdynError` and the builtin it resembles, so callers
can catch either.
"""

from __future__ import annotations


class CustdynError(Exception):
    """Base class of every error custdyn raises on purpose."""


class CustdynWarning(UserWarning):
    """Base class of every warning custdyn emits."""


class WorkspaceNotFoundError(CustdynError, FileNotFoundError):
    """No workspace at the given path (or in any parent of the current directory)."""


class WorkspaceExistsError(CustdynError, FileExistsError):
    """``init`` was asked to create a workspace where one already exists."""


class WorkspaceLockedError(CustdynError, RuntimeError):
    """Another process holds the workspace for writing."""


class SchemaVersionError(CustdynError, RuntimeError):
    """The workspace was written by a newer custdyn than this one."""


class MappingError(CustdynError, ValueError):
    """A mapping file (``--mapping map.toml``) is malformed or names unknown fields."""


class InputFormatError(CustdynError, ValueError):
    """A source file cannot be read at all (unknown format, missing required column, ...)."""


class BatchRefusedError(CustdynError, ValueError):
    """``--strict`` ingest refused a whole file because some records were invalid."""

    def __init__(self, message: str, rejected: list | None = None) -> None:
        super().__init__(message)
        self.rejected = rejected or []


class FeatureError(CustdynError, ValueError):
    """A feature query was asked for something it cannot do (unknown engine, bad dates, ...)."""


class NotFittedError(CustdynError, ValueError, AttributeError):
    """A model method that needs a fitted model was called before ``fit``."""


class ConvergenceWarning(CustdynWarning):
    """An optimiser stopped before it converged; diagnostics are on the model."""


class DataWarning(CustdynWarning):
    """The data is thin or odd in a way worth a look (few customers, constant features, ...)."""


class InsufficientDataError(CustdynError, ValueError):
    """Too little or too uniform data to fit a model (too few rows, one class only, no usable
    feature); callers fall back to a simpler method, e.g. the configured scorecard."""
