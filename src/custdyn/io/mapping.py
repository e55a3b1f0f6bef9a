"""Mapping files: how a source's columns and values become the contract's fields.

A mapping is a small TOML file (``--mapping map.toml``)::

    into = "interactions"          # or "customers"; optional, guessed from the columns

    [columns]                       # source column -> contract field
    "Activity ID" = "interaction_id"
    Account = "customer_id"
    Date = "occurred_at"
    Type = "channel"

    [values.channel]                # source value -> contract value (case-insensitive)
    Call = "phone"
    Ticket = "ticket"

    [derive.kind]                   # set a field from another column's value
    column = "Type"
    map = { Call = "contact", Cancellation = "cancellation" }
    default = "contact"             # optional, for values the map lacks

    [dates]
    format = "%d/%m/%Y %H:%M"       # strptime format of occurred_at / created_at
    timezone = "Europe/Oslo"        # for timestamps without an offset

    [amounts]
    decimal = ","                   # decimal comma (default ".")

    [defaults]                      # constants for fields the source lacks
    channel = "web"

Source columns not named under ``[columns]`` (and not already contract field names) are kept
in ``attributes``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custdyn.errors import MappingError
from custdyn.schema import CUSTOMER_FIELDS, INTERACTION_FIELDS

_TABLES = ("interactions", "customers")
_SECTIONS = {"into", "columns", "values", "derive", "dates", "amounts", "defaults"}


@dataclass
class Mapping:
    """A parsed mapping file. The empty mapping (``Mapping()``) maps nothing."""

    into: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    derive: dict[str, dict[str, Any]] = field(default_factory=dict)
    date_format: str | None = None
    timezone: str | None = None
    decimal: str = "."
    defaults: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def fields(self, table: str) -> tuple[str, ...]:
        return INTERACTION_FIELDS if table == "interactions" else CUSTOMER_FIELDS


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a mapping file; raise :class:`MappingError` naming what is wrong."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise MappingError(f"{path}: mapping file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise MappingError(f"{path}: not valid TOML: {e}") from e
    return parse_mapping(raw, path)


def parse_mapping(raw: dict[str, Any], path: Path | None = None) -> Mapping:
    where = f"{path}: " if path else "mapping: "
    unknown = set(raw) - _SECTIONS
    if unknown:
        raise MappingError(
            f"{where}unknown section(s) {sorted(unknown)}; allowed: {sorted(_SECTIONS)}"
        )
    into = raw.get("into")
    if into is not None and into not in _TABLES:
        raise MappingError(f"{where}into = {into!r}; allowed: {list(_TABLES)}")
    allowed = set(INTERACTION_FIELDS) | set(CUSTOMER_FIELDS)

    def check_field(name: str, section: str) -> None:
        if name not in allowed:
            import difflib

            hint = difflib.get_close_matches(name, sorted(allowed), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise MappingError(
                f"{where}[{section}] names {name!r}, which is not a contract field{extra}. "
                f"Fields: {', '.join(sorted(allowed))}"
            )

    columns = {str(k): str(v) for k, v in raw.get("columns", {}).items()}
    for v in columns.values():
        check_field(v, "columns")
    values: dict[str, dict[str, str]] = {}
    for fld, table in raw.get("values", {}).items():
        check_field(fld, "values")
        if not isinstance(table, dict):
            raise MappingError(f"{where}[values.{fld}] must be a table of source = target")
        values[fld] = {str(k).strip().lower(): str(v) for k, v in table.items()}
    derive: dict[str, dict[str, Any]] = {}
    for fld, spec in raw.get("derive", {}).items():
        check_field(fld, "derive")
        if not isinstance(spec, dict) or "column" not in spec:
            raise MappingError(f"{where}[derive.{fld}] needs column = \"<source column>\"")
        derive[fld] = {
            "column": str(spec["column"]),
            "map": {str(k).strip().lower(): str(v) for k, v in spec.get("map", {}).items()},
            "default": spec.get("default"),
        }
    dates = raw.get("dates", {})
    defaults = {str(k): str(v) for k, v in raw.get("defaults", {}).items()}
    for k in defaults:
        check_field(k, "defaults")
    decimal = str(raw.get("amounts", {}).get("decimal", "."))
    if decimal not in (".", ","):
        raise MappingError(f"{where}[amounts] decimal = {decimal!r}; allowed: '.' or ','")
    tz = dates.get("timezone")
    if tz is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise MappingError(f"{where}[dates] timezone = {tz!r} is not a known time zone") from e
    return Mapping(
        into=into,
        columns=columns,
        values=values,
        derive=derive,
        date_format=dates.get("format"),
        timezone=tz,
        decimal=decimal,
        defaults=defaults,
        path=path,
    )
