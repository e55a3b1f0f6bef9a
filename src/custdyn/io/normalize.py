"""From staged raw columns to the contract: one SQL projection per field, plus a reason for
every record that cannot be loaded.

The store stages each reader's raw string columns in a table; :func:`normalize_sql` builds the
``SELECT`` that turns them into contract columns (value mappings, synonyms, time zones,
decimal amounts) together with ``_reason`` (a sentence a person understands, NULL when the
record is fine), ``_field`` (the first field at fault) and ``_raw`` (the record as JSON).
It runs inside DuckDB, so validation is vectorised and spills to disk like any query.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from custdyn.io.mapping import Mapping
from custdyn.schema import (
    CHANNEL_SYNONYMS,
    CHANNELS,
    CUSTOMER_FIELDS,
    DIRECTION_SYNONYMS,
    DIRECTIONS,
    INTERACTION_FIELDS,
    KIND_SYNONYMS,
    KINDS,
)

ENUMS = {
    "channel": (CHANNELS, CHANNEL_SYNONYMS),
    "kind": (KINDS, KIND_SYNONYMS),
    "direction": (DIRECTIONS, DIRECTION_SYNONYMS),
}
TIMESTAMP_FIELDS = ("occurred_at", "created_at")
#: Timestamps outside this window are "impossible" (typos such as 0024 or 2204).
EARLIEST = "1900-01-01"
LATEST_DAYS_AHEAD = 366


def quoted_msg(prefix: str, raw_sql: str, suffix: str = "") -> str:
    """SQL for ``prefix 'value' suffix`` with the offending value in quotes."""
    return f"{lit(prefix + chr(39))} || {raw_sql} || {lit(chr(39) + suffix)}"


def q(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """Quote a string literal for DuckDB."""
    return "'" + value.replace("'", "''") + "'"


def trim(expr: str) -> str:
    """SQL trimming ``expr`` like ``trim()``, which copies every value; a plain column is
    only trimmed where it starts or ends with a space or holds other than ASCII (``trim``
    also strips Unicode spaces), so clean values pass through as they are."""
    if not re.fullmatch(r'"(?:[^"]|"")*"', expr):
        return f"trim({expr})"
    return (f"(CASE WHEN starts_with({expr}, ' ') OR ends_with({expr}, ' ') "
            f"OR strlen({expr}) <> length({expr}) THEN trim({expr}) ELSE {expr} END)")


@dataclass
class Projection:
    """The SQL pieces for one staged source.

    :meth:`select` assembles them into one query; the pieces are kept for callers that need
    only some of them.
    """

    inner: str  # select list over the staged table: r_<field> raw text, v_<field> parsed
    fields: dict[str, str]  # contract field -> SQL expression over ``inner``
    reason: str  # SQL expression over ``inner``: NULL when valid, else the reasons joined by '; '
    first_field: str  # SQL expression over ``inner``: the first field at fault
    raw: str  # SQL expression: the record as JSON text
    id_expr: str | None  # SQL expression computing a stable content id (interactions only)
    checks: list[tuple[str, str, str]] = field(default_factory=list)  # (field, cond, message)
    #: whether records sharing an id may differ: true when the source gives ids (or the
    #: ``source`` field, which the content id leaves out); records with equal content ids are
    #: otherwise equal in every field, so which of them is kept does not matter
    repeats_may_differ: bool = False

    def select(self, source: str, names: tuple[str, ...], keep: tuple[str, ...] = ("_row",)) -> str:
        """One query over ``source`` giving ``keep``, the contract fields ``names`` (with the
        content id filled in), ``_reason`` and ``_field``.

        Each value is parsed once (``inner``), each check is evaluated once into a boolean,
        and the message text is only built for records that fail a check.
        """
        kept = "".join(f"{q(k)}, " for k in keep)
        conds = ", ".join(f"({cond}) AS _c{i}" for i, (_, cond, _m) in enumerate(self.checks))
        bad = " OR ".join(f"_c{i}" for i in range(len(self.checks))) or "FALSE"
        reason = (
            f"CASE WHEN {bad} THEN nullif(concat_ws('; ', "
            + ", ".join(f"CASE WHEN _c{i} THEN {msg} END"
                        for i, (_, _c, msg) in enumerate(self.checks))
            + "), '') END"
        ) if self.checks else "NULL::VARCHAR"
        first = (
            "CASE " + " ".join(f"WHEN _c{i} THEN {lit(f)}"
                               for i, (f, _c, _m) in enumerate(self.checks)) + " END"
        ) if self.checks else "NULL::VARCHAR"
        sel = ", ".join(f"{self.fields[f]} AS {q(f)}" for f in names)
        out = ", ".join(
            f"coalesce({q(f)}, {self.id_expr}) AS {q(f)}"
            if f == "interaction_id" and self.id_expr else q(f)
            for f in names
        )
        return (
            f"SELECT {kept}{out}, _reason, _field FROM ("
            f"SELECT {kept}{sel}, {reason} AS _reason, {first} AS _field FROM ("
            f"SELECT *, {conds or 'NULL AS _c'} FROM ("
            f"SELECT {kept}{self.inner} FROM {source})))"
        )


def normalize_sql(
    source_columns: list[str],
    table: str,
    mapping: Mapping,
    *,
    implied: Mapping | None = None,
    source_name: str,
    default_currency: str | None = None,
) -> Projection:
    """Build the projection for staged ``source_columns`` into ``table``.

    ``implied`` is the reader's own mapping (e.g. the CDNOW date format); the user's mapping
    wins over it field by field.
    """
    implied = implied or Mapping()
    fields_of = INTERACTION_FIELDS if table == "interactions" else CUSTOMER_FIELDS
    cols = [c for c in source_columns if not c.startswith("_")]
    by_lower = {c.lower(): c for c in cols}
    used: set[str] = set()
    raw_expr: dict[str, str] = {}

    # 1. where each field comes from
    renamed = {**implied.columns, **mapping.columns}
    for src, dst in renamed.items():
        if src in cols and dst in fields_of:
            raw_expr[dst] = q(src)
            used.add(src)
    for f in fields_of:
        if f in raw_expr:
            continue
        if f in cols and f not in used:
            raw_expr[f] = q(f)
            used.add(f)
        elif f in by_lower and by_lower[f] not in used and by_lower[f] not in renamed:
            raw_expr[f] = q(by_lower[f])
            used.add(by_lower[f])
    derive = {**implied.derive, **mapping.derive}
    for f, spec in derive.items():
        if f not in fields_of or spec["column"] not in cols:
            continue
        col = q(spec["column"])
        whens = " ".join(
            f"WHEN {lit(k)} THEN {lit(v)}" for k, v in spec["map"].items()
        )
        default = lit(spec["default"]) if spec.get("default") is not None else f"trim({col})"
        derived = f"(CASE lower(trim({col})) {whens} ELSE {default} END)" if whens else default
        raw_expr[f] = f"coalesce(nullif(trim({raw_expr[f]}), ''), {derived})" if f in raw_expr \
            else derived
        used.add(spec["column"])
    defaults = {**implied.defaults, **mapping.defaults}
    for f, v in defaults.items():
        if f not in fields_of:
            continue
        raw_expr[f] = f"coalesce(nullif(trim({raw_expr[f]}), ''), {lit(v)})" if f in raw_expr \
            else lit(v)

    # Two levels, so each value is parsed once: ``inner`` (over the staged table) holds the
    # trimmed raw text ``r_<field>`` and the parsed value ``v_<field>``; the fields and the
    # reasons (over ``inner``) only compare those columns.
    inner: dict[str, str] = {}
    out: dict[str, str] = {}
    reasons: list[tuple[str, str, str]] = []  # (field, condition, message sql)
    latest = (dt.datetime.now(dt.UTC) + dt.timedelta(days=LATEST_DAYS_AHEAD)).strftime(
        "%Y-%m-%d %H:%M:%S+00")

    def txt(f: str) -> str:
        e = raw_expr.get(f)
        return f"nullif({trim(e)}, '')" if e else "NULL::VARCHAR"

    # 1. identifiers and free text
    for f in fields_of:
        if f in ("attributes", "amount", "currency", "email") or f in TIMESTAMP_FIELDS \
                or f in ENUMS:
            continue
        if f in ("subject", "text"):
            inner[f"v_{f}"] = f"nullif({raw_expr[f]}, '')" if f in raw_expr else "NULL::VARCHAR"
        else:
            inner[f"v_{f}"] = txt(f)
        out[f] = f"v_{f}"
    reasons.append(("customer_id", "v_customer_id IS NULL",
                    lit('field "customer_id": missing (no customer id)')))

    # 2. enumerations: the user's value map, then common synonyms, then the allowed set
    for f, (allowed, synonyms) in ENUMS.items():
        if f not in fields_of:
            continue
        r = txt(f)
        if r == "NULL::VARCHAR":
            out[f] = "NULL::VARCHAR"
            continue
        user = {**implied.values.get(f, {}), **mapping.values.get(f, {})}
        merged = {**synonyms, **user}
        whens = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in merged.items())
        inner[f"r_{f}"] = r
        inner[f"v_{f}"] = f"(CASE lower({r}) {whens} ELSE lower({r}) END)"
        allowed_sql = ", ".join(lit(a) for a in allowed)
        reasons.append((
            f,
            f"r_{f} IS NOT NULL AND v_{f} NOT IN ({allowed_sql})",
            quoted_msg(f'field "{f}": unknown value ', f"r_{f}",
                       f"; allowed: {', '.join(allowed)}; "
                       f"map it under [values.{f}] in a mapping file"),
        ))
        out[f] = f"(CASE WHEN v_{f} IN ({allowed_sql}) THEN v_{f} END)"

    # 3. timestamps
    fmt = mapping.date_format or implied.date_format
    tz = mapping.timezone or implied.timezone
    for f in TIMESTAMP_FIELDS:
        if f not in fields_of:
            continue
        r = txt(f)
        if r == "NULL::VARCHAR":
            out[f] = "NULL::TIMESTAMPTZ"
            if f == "occurred_at":
                reasons.append((f, "TRUE",
                                lit('field "occurred_at": missing (every interaction needs a '
                                    'time; map a column to occurred_at)')))
            continue
        iso = f"try_cast({r} AS TIMESTAMPTZ)"
        if fmt:
            if "%z" in fmt or "%Z" in fmt:
                parsed = f"try_strptime({r}, {lit(fmt)})::TIMESTAMPTZ"
            else:
                zone = lit(tz) if tz else "current_setting('TimeZone')"
                parsed = f"timezone({zone}, try_strptime({r}, {lit(fmt)}))"
            parsed = f"coalesce({parsed}, {iso})"
        else:
            parsed = iso
        inner[f"r_{f}"] = r
        inner[f"v_{f}"] = parsed
        ok = f"v_{f} BETWEEN TIMESTAMPTZ '{EARLIEST} 00:00:00+00' AND TIMESTAMPTZ '{latest}'"
        out[f] = f"(CASE WHEN {ok} THEN v_{f} END)"
        reasons.append((
            f,
            f"r_{f} IS NOT NULL AND v_{f} IS NULL",
            quoted_msg(
                f'field "{f}": cannot read ', f"r_{f}",
                f" as a timestamp (expected {fmt!r})" if fmt
                else " as a timestamp (expected ISO 8601 such as 2024-03-01T14:05:00+01:00; "
                "set [dates] format in a mapping file)",
            ),
        ))
        reasons.append((
            f,
            f"v_{f} IS NOT NULL AND NOT ({ok})",
            quoted_msg(f'field "{f}": impossible timestamp ', f"r_{f}",
                       f" (before {EARLIEST} or more than a year ahead)"),
        ))
        if f == "occurred_at":
            reasons.append((f, f"r_{f} IS NULL",
                            lit('field "occurred_at": missing (every interaction needs a time)')))

    # 4. amounts and currency
    if "amount" in fields_of:
        r = txt("amount")
        clean = f"replace(replace({r}, ' ', ''), ',', '.')" if mapping.decimal == "," else r
        inner["r_amount"] = r
        inner["v_amount"] = f"try_cast({clean} AS DECIMAL(18,4))"
        out["amount"] = "v_amount"
        reasons.append((
            "amount",
            "r_amount IS NOT NULL AND v_amount IS NULL",
            quoted_msg('field "amount": expected a number, got ', "r_amount",
                       " (fix the cell, or map the value to empty in a mapping file)"),
        ))
        inner["r_currency"] = txt("currency")
        inner["v_currency"] = f"upper({txt('currency')})"
        default_cur = lit(default_currency.upper()) if default_currency else "NULL"
        out["currency"] = (
            f"(CASE WHEN v_currency IS NOT NULL THEN v_currency "
            f"WHEN v_amount IS NOT NULL THEN {default_cur} END)"
        )
        reasons.append((
            "currency",
            "v_currency IS NOT NULL AND NOT regexp_full_match(v_currency, '[A-Z]{3}')",
            quoted_msg('field "currency": expected a 3-letter ISO 4217 code, got ',
                       "r_currency"),
        ))
    if "email" in fields_of:
        inner["r_email"] = txt("email")
        inner["v_email"] = f"lower({txt('email')})"
        out["email"] = "(CASE WHEN v_email LIKE '%_@_%' THEN v_email END)"
        reasons.append((
            "email",
            "v_email IS NOT NULL AND v_email NOT LIKE '%_@_%'",
            quoted_msg('field "email": not an e-mail address: ', "r_email"),
        ))

    # 5. attributes: a JSON attributes column, merged with every column nobody mapped
    extras = [c for c in cols if c not in used and c != "__empty__"]
    base_attr = raw_expr.get("attributes")
    attr_json = None
    if base_attr:
        attr_json = (
            f"(CASE WHEN json_valid({base_attr}) AND json_type({base_attr}::JSON) = 'OBJECT' "
            f"THEN {base_attr} WHEN {base_attr} IS NOT NULL THEN json_object('value', {base_attr}) END)"
        )
    if extras:
        entries = ", ".join(f"{{'k': {lit(c)}, 'v': {q(c)}}}" for c in extras)
        obj = (
            f"nullif(to_json(map_from_entries(list_filter([{entries}], e -> e.v IS NOT NULL)))"
            "::VARCHAR, '{}')"
        )
        attr_json = (
            f"nullif(json_merge_patch(coalesce({attr_json}, '{{}}'), coalesce({obj}, '{{}}'))"
            "::VARCHAR, '{}')" if attr_json else obj
        )
    inner["v_attributes"] = attr_json or "NULL::VARCHAR"
    out["attributes"] = "v_attributes"
    if "source" in fields_of and "source" not in raw_expr:
        out["source"] = lit(source_name)

    reason = (
        "nullif(concat_ws('; ', "
        + ", ".join(f"CASE WHEN {cond} THEN {msg} END" for _, cond, msg in reasons)
        + "), '')"
    )
    first_field = (
        "CASE " + " ".join(f"WHEN {cond} THEN {lit(fld)}" for fld, cond, _ in reasons) + " END"
    )
    raw = "json_object(" + ", ".join(f"{lit(c)}, {q(c)}" for c in cols) + ")::VARCHAR" \
        if cols else "'{}'"

    id_expr = None
    if table == "interactions":
        parts = [
            "customer_id", "epoch_us(occurred_at)", "channel", "kind", "direction",
            "amount", "currency", "subject", "text", "thread_id", "agent_id", "attributes",
        ]
        id_expr = (
            "'i-' || md5(concat_ws(chr(31), "
            + ", ".join(f"coalesce(CAST({p} AS VARCHAR), '')" for p in parts)
            + "))"
        )
    inner_sql = ", ".join(f"{e} AS {k}" for k, e in inner.items())
    return Projection(inner=inner_sql, fields=out, reason=reason, first_field=first_field,
                      raw=raw, id_expr=id_expr, checks=reasons,
                      repeats_may_differ=table == "interactions"
                      and ("interaction_id" in raw_expr or "source" in raw_expr))
