"""Property tests for the parsers: timestamps, amounts and e-mail headers."""

from __future__ import annotations

import datetime as dt
import decimal
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custdyn.io import EmailSource, Mapping
from custdyn.io.normalize import normalize_sql, trim

CON = duckdb.connect()


def normalize(rows: dict[str, list], mapping: Mapping | None = None, zone: str = "UTC"):
    """Run the ingest projection over raw string columns; return (fields, reasons) rows."""
    table = pa.table({k: pa.array(v, pa.string()) for k, v in rows.items()})
    n = table.num_rows
    table = table.append_column("_row", pa.array(range(1, n + 1), pa.int64()))
    proj = normalize_sql(list(rows), "interactions", mapping or Mapping(), source_name="t",
                         default_currency="EUR")
    CON.execute(f"SET TimeZone = '{zone}'")
    CON.register("stg", table)
    sel = ", ".join(f"{e} AS {f}" for f, e in proj.fields.items())
    out = CON.execute(f"SELECT {sel}, {proj.reason} AS _reason FROM (SELECT _row, {proj.inner} "
                      "FROM stg) ORDER BY _row").fetchall()
    CON.unregister("stg")
    CON.execute("SET TimeZone = 'UTC'")
    names = [*proj.fields, "_reason"]
    return [dict(zip(names, r, strict=True)) for r in out]


offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m)))
instants = st.datetimes(min_value=dt.datetime(1901, 1, 1), max_value=dt.datetime(2025, 12, 31),
                        timezones=offsets)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(instants, min_size=1, max_size=30), st.sampled_from(["T", " "]))
def test_iso_timestamps_round_trip_to_the_same_instant(values, sep):
    texts = [v.replace(microsecond=(v.microsecond // 1000) * 1000).isoformat(sep=sep)
             for v in values]
    out = normalize({"customer_id": ["c"] * len(texts), "occurred_at": texts})
    for text, row in zip(texts, out, strict=True):
        assert row["_reason"] is None, row
        assert row["occurred_at"] == dt.datetime.fromisoformat(text)


@given(st.lists(st.datetimes(min_value=dt.datetime(1950, 1, 1),
                             max_value=dt.datetime(2025, 1, 1)), min_size=1, max_size=20),
       st.sampled_from(["%d/%m/%Y %H:%M", "%Y%m%d", "%m-%d-%Y %H:%M:%S"]),
       st.sampled_from(["UTC", "Europe/Oslo", "Asia/Manila", "America/Sao_Paulo"]))
def test_formatted_local_timestamps_use_the_given_zone(values, fmt, zone):
    from zoneinfo import ZoneInfo

    texts = [v.strftime(fmt) for v in values]
    out = normalize({"customer_id": ["c"] * len(texts), "occurred_at": texts},
                    Mapping(date_format=fmt, timezone=zone))
    for text, row in zip(texts, out, strict=True):
        want = dt.datetime.strptime(text, fmt).replace(tzinfo=ZoneInfo(zone))
        assert row["_reason"] is None
        # wall times that do not exist or repeat (DST changes) may shift by the gap
        assert abs((row["occurred_at"] - want).total_seconds()) <= 3600


@given(st.lists(st.text(max_size=12), min_size=1, max_size=20))
def test_any_text_as_timestamp_is_parsed_or_rejected_never_crashes(texts):
    out = normalize({"customer_id": ["c"] * len(texts), "occurred_at": texts})
    for _text, row in zip(texts, out, strict=True):
        if row["_reason"] is None:
            assert row["occurred_at"] is not None
        else:
            assert "occurred_at" in row["_reason"]
            assert row["occurred_at"] is None


amounts = st.decimals(min_value=-10**12, max_value=10**12, places=4, allow_nan=False,
                      allow_infinity=False)


@given(st.lists(amounts, min_size=1, max_size=30), st.booleans())
def test_amounts_parse_exactly(values, comma):
    texts = [str(v) for v in values]
    if comma:
        texts = [t.replace(".", ",") for t in texts]
    out = normalize({"customer_id": ["c"] * len(texts), "occurred_at": ["2024-01-01"] * len(texts),
                     "amount": texts}, Mapping(decimal="," if comma else "."))
    for v, row in zip(values, out, strict=True):
        assert row["_reason"] is None, row
        assert row["amount"] == v
        assert row["currency"] == "EUR"


@given(st.lists(st.text(max_size=10), min_size=1, max_size=20))
def test_any_text_as_amount_is_a_number_or_a_named_rejection(texts):
    out = normalize({"customer_id": ["c"] * len(texts), "occurred_at": ["2024-01-01"] * len(texts),
                     "amount": texts})
    for text, row in zip(texts, out, strict=True):
        if row["_reason"] is None:
            if row["amount"] is None:
                assert text.strip() == ""  # a blank cell is no amount, not an error
            else:
                want = decimal.Decimal(text.strip()).quantize(decimal.Decimal("0.0001"))
                assert row["amount"] == want
        else:
            assert 'field "amount"' in row["_reason"] and row["amount"] is None


names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
                min_size=1, max_size=20).filter(lambda s: s.strip() == s and s)
locals_ = st.from_regex(r"[a-z][a-z0-9_]{0,5}(\.[a-z0-9_]{1,4}){0,2}", fullmatch=True)


@given(names, locals_, names, st.datetimes(min_value=dt.datetime(1990, 1, 1),
                                           max_value=dt.datetime(2030, 1, 1), timezones=offsets))
def test_email_headers_round_trip(tmp_path_factory, name, local, subject, when):
    m = EmailMessage()
    m["From"] = Address(display_name=name, addr_spec=f"{local}@client.example")
    m["To"] = "help@vendor.example"
    m["Subject"] = subject
    m["Date"] = format_datetime(when.replace(microsecond=0))
    m["Message-ID"] = f"<{local}.1@client.example>"
    m.set_content("body")
    d = tmp_path_factory.mktemp("eml")
    (d / "m.eml").write_bytes(m.as_bytes())
    src = EmailSource(d / "m.eml", vendor_domains=["vendor.example"])
    [chunk] = list(src.chunks())
    rec = chunk.table.to_pylist()[0]
    assert rec["customer_id"] == f"{local}@client.example"
    assert rec["subject"] == subject
    assert rec["interaction_id"] == f"{local}.1@client.example"
    assert dt.datetime.fromisoformat(rec["occurred_at"]) == when.replace(microsecond=0)
    assert rec["direction"] == "inbound"


spaces = st.sampled_from([" ", "\u00a0", "\u3000", "\u2009", "\t", "\n", "x", "ø", "é"])


@given(st.lists(st.one_of(st.none(), st.text(max_size=8),
                          st.lists(spaces, max_size=6).map("".join)), min_size=1, max_size=40))
def test_trim_shortcut_matches_trim_on_any_text(values):
    table = pa.table({"c": pa.array(values, pa.string())})
    CON.register("tr", table)
    got = CON.execute(f'SELECT {trim(chr(34) + "c" + chr(34))}, trim(c) FROM tr').fetchall()
    CON.unregister("tr")
    for fast, slow in got:
        assert fast == slow
