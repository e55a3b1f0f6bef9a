"""Workspace settings: the ``custdyn.toml`` file beside the database."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from custdyn.errors import CustdynError
from custdyn.schema import PURCHASE_KINDS

FILENAME = "custdyn.toml"


class SettingsError(CustdynError, ValueError):
    """custdyn.toml is malformed."""


@dataclass
class Settings:
    """What a workspace knows about its vendor.

    Attributes
    ----------
    timezone : IANA zone for timestamps written without an offset (``Europe/Oslo``).
    currency : ISO 4217 code for amounts written without one.
    vendor_domains : the vendor's e-mail domains; mail from them is outbound.
    competitors : ``[{"name": "Nordvik", "aliases": ["nordviks", "nordvik.no"]}, ...]``.
    purchase_kinds : interaction kinds that count as purchases.
    engine : analytics backend, ``duckdb`` (default) or ``spark``.
    extra : every other section of the file, kept as it is for later rooms.
    """

    timezone: str = "UTC"
    currency: str = "EUR"
    vendor_domains: list[str] = field(default_factory=list)
    competitors: list[dict[str, Any]] = field(default_factory=list)
    purchase_kinds: list[str] = field(default_factory=lambda: list(PURCHASE_KINDS))
    engine: str = "duckdb"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "workspace": {
                "timezone": self.timezone,
                "currency": self.currency,
                "vendor_domains": list(self.vendor_domains),
                "engine": self.engine,
            },
            "features": {"purchase_kinds": list(self.purchase_kinds)},
            "competitors": [
                {"name": c["name"], "aliases": list(c.get("aliases", []))} for c in self.competitors
            ],
        }
        for k, v in self.extra.items():
            if k == "workspace_extra":
                d["workspace"].update(v)
            elif k == "features":
                d["features"].update(v)
            else:
                d[k] = v
        return d

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = FILENAME) -> Settings:
        ws = dict(raw.get("workspace", {}))
        feats = dict(raw.get("features", {}))
        comps = raw.get("competitors", [])
        if not isinstance(comps, list) or any(
            not isinstance(c, dict) or "name" not in c for c in comps
        ):
            raise SettingsError(
                f"{where}: [[competitors]] entries need a name, e.g.\n"
                '[[competitors]]\nname = "Nordvik"\naliases = ["nordvik.no"]'
            )
        s = cls(
            timezone=str(ws.pop("timezone", "UTC")),
            currency=str(ws.pop("currency", "EUR")).upper(),
            vendor_domains=[str(d).lower() for d in ws.pop("vendor_domains", [])],
            competitors=[
                {"name": str(c["name"]), "aliases": [str(a) for a in c.get("aliases", [])]}
                for c in comps
            ],
            purchase_kinds=[str(k) for k in feats.pop("purchase_kinds", list(PURCHASE_KINDS))],
            engine=str(ws.pop("engine", "duckdb")),
        )
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(s.timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise SettingsError(f"{where}: timezone = {s.timezone!r} is not a known zone") from e
        if s.engine not in ("duckdb", "spark"):
            raise SettingsError(f"{where}: engine = {s.engine!r}; allowed: duckdb, spark")
        extra = {k: v for k, v in raw.items() if k not in ("workspace", "features", "competitors")}
        if feats:
            extra["features"] = feats
        if ws:
            extra["workspace_extra"] = ws
        s.extra = extra
        return s

    @classmethod
    def load(cls, directory: Path) -> Settings:
        path = Path(directory) / FILENAME
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"{path}: not valid TOML: {e}") from e
        return cls.from_dict(raw, str(path))

    def save(self, directory: Path) -> None:
        path = Path(directory) / FILENAME
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(_HEADER + tomli_w.dumps(self.to_dict()), encoding="utf-8")
        tmp.replace(path)


_HEADER = """\
# custdyn workspace settings. Edit freely; `custdyn status` shows what is in the workspace.
# [workspace] timezone: IANA zone for timestamps without an offset; currency: ISO 4217 code
# for amounts without one; vendor_domains: your e-mail domains (mail from them is outbound);
# engine: duckdb (this folder's database) or spark.
# [[competitors]] name and aliases: matched in customers' messages.
# [text] languages: the languages your customers write in (e.g. ["no", "en"]); language
# detection then chooses among them only (optional).

"""
