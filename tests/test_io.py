"""Readers on real files: CSV/TSV (UTF-8, Latin-1), Parquet, JSON Lines, e-mail, CDNOW."""

from __future__ import annotations

import datetime as dt
import json
import mailbox
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custdyn.errors import InputFormatError, MappingError
from custdyn.io import (
    RESTART,
    detect_format,
    html_to_text,
    load_mapping,
    open_source,
    trim_quoted,
)


def collect(src):
    tables, rows, errors, restarts = [], [], [], 0
    for ch in src.chunks():
        if ch is RESTART:
            tables, rows, errors = [], [], []
            restarts += 1
            continue
        tables.append(ch.table)
        rows.extend(ch.rows.tolist())
        errors.extend(ch.errors)
    table = pa.concat_tables(tables, promote_options="default") if tables else None
    return table, rows, errors, restarts


def test_csv_utf8_reads_every_row_as_text(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("customer_id,occurred_at,amount,text\nC1,2024-01-01,1.5,\"héllo, ø\"\nC2,2024-01-02,2,\n")
    t, rows, errors, _ = collect(open_source(p))
    assert t.column("customer_id").to_pylist() == ["C1", "C2"]
    assert t.column("text").to_pylist() == ["héllo, ø", None]
    assert t.column("amount").type == pa.string()
    assert rows == [1, 2] and errors == []


def test_tsv_and_custom_delimiter(tmp_path: Path) -> None:
    p = tmp_path / "a.tsv"
    p.write_text("customer_id\toccurred_at\nC1\t2024-01-01\n")
    assert detect_format(p) == "tsv"
    t, *_ = collect(open_source(p))
    assert t.column("customer_id").to_pylist() == ["C1"]
    q = tmp_path / "b.csv"
    q.write_text("customer_id;occurred_at\nC9;2024-01-01\n")
    t, *_ = collect(open_source(q, delimiter=";"))
    assert t.column("customer_id").to_pylist() == ["C9"]


def test_latin1_file_needs_and_honours_encoding(tmp_path: Path) -> None:
    p = tmp_path / "l1.csv"
    p.write_bytes("customer_id,text\nC1,Søknad før\nC2,ok\n".encode("latin-1"))
    t, rows, errors, _ = collect(open_source(p, encoding="latin-1"))
    assert t.column("text").to_pylist() == ["Søknad før", "ok"] and not errors
    # read as UTF-8 the undecodable row is rejected with a reason; the other row survives
    t, rows, errors, _ = collect(open_source(p))
    assert t.column("customer_id").to_pylist() == ["C2"]
    assert len(errors) == 1 and errors[0].row == 1 and "UTF-8" in errors[0].reason
    assert "latin-1" in errors[0].reason


def test_csv_wrong_field_count_numbers_rows_exactly(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("a,b,c\n1,2,3\n4,5\n6,7,8\n9,10,11,12\n13,14,15\n")
    t, rows, errors, restarts = collect(open_source(p))
    assert restarts == 1
    assert t.column("a").to_pylist() == ["1", "6", "13"]
    assert rows == [1, 3, 5]
    assert [(e.row, e.raw) for e in errors] == [(2, "4,5"), (4, "9,10,11,12")]
    assert "expected 3 fields, found 2" in errors[0].reason


def test_csv_row_numbers_across_blocks(tmp_path: Path) -> None:
    from custdyn.io.csv import CsvSource

    p = tmp_path / "big.csv"
    lines = ["id,v"] + [f"{i},{i * 2}" for i in range(1, 20001)]
    p.write_text("\n".join(lines) + "\n")
    t, rows, errors, _ = collect(CsvSource(p, block_size=4096))
    assert rows == list(range(1, 20001))
    assert t.column("id").to_pylist()[-1] == "20000"


def test_csv_header_problems(tmp_path: Path) -> None:
    p = tmp_path / "dup.csv"
    p.write_text("a,a\n1,2\n")
    with pytest.raises(InputFormatError, match="twice"):
        list(open_source(p).chunks())
    e = tmp_path / "empty.csv"
    e.write_text("")
    with pytest.raises(InputFormatError, match="empty"):
        list(open_source(e).chunks())


def test_parquet_typed_columns_become_text(tmp_path: Path) -> None:
    p = tmp_path / "x.parquet"
    ts = pa.array([dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC), None], pa.timestamp("us", "UTC"))
    pq.write_table(pa.table({"customer_id": ["C1", "C2"], "occurred_at": ts,
                             "amount": pa.array([1.25, 2.0]),
                             "meta": pa.array([{"a": 1}, {"a": 2}])}), p)
    t, rows, errors, _ = collect(open_source(p))
    assert t.column("occurred_at").to_pylist()[0].startswith("2024-01-01T12:00:00")
    assert t.column("amount").to_pylist() == ["1.25", "2"]
    assert json.loads(t.column("meta").to_pylist()[0]) == {"a": 1}
    assert rows == [1, 2]


def test_jsonl_nested_and_bad_lines(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(
        b'{"customer_id": "C1", "attributes": {"nps": 9}, "ok": true}\n'
        b"\n"
        b"{not json}\n"
        b"[1, 2]\n"
        b'{"customer_id": "C\xff"}\n'
        b'{"customer_id": "C2", "amount": 3.5}\n'
    )
    t, rows, errors, _ = collect(open_source(p))
    assert t.column("customer_id").to_pylist() == ["C1", "C2"]
    assert json.loads(t.column("attributes").to_pylist()[0]) == {"nps": 9}
    assert t.column("ok").to_pylist() == ["true", None]
    assert rows == [1, 6]
    assert [e.row for e in errors] == [3, 4, 5]
    assert "not valid JSON" in errors[0].reason and "JSON object" in errors[1].reason


def _mail(frm, to, subject, body, date, msgid=None, reply_to=None, refs=None, html=None):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, to, subject
    m["Date"] = format_datetime(date)
    m["Message-ID"] = msgid or make_msgid(domain="test")
    if reply_to:
        m["In-Reply-To"] = reply_to
    if refs:
        m["References"] = refs
    if body is not None:
        m.set_content(body)
    if html is not None:
        if body is None:
            m.set_content(html, subtype="html")
        else:
            m.add_alternative(html, subtype="html")
    return m


def test_mbox_threads_direction_and_customer_matching(tmp_path: Path) -> None:
    d0 = dt.datetime(2024, 3, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    first = _mail("Ana Souza <ana@cliente.pt>", "support@vendor.com", "Encomenda atrasada",
                  "A minha encomenda está atrasada.\nFrom the start", d0, "<m1@cliente.pt>")
    reply = _mail("Bo <bo@help.vendor.com>", "ana@cliente.pt", "Re: Encomenda atrasada",
                  "Lamentamos!\n\nEm 1 de mar. de 2024, Ana escreveu:\n> A minha encomenda",
                  d0 + dt.timedelta(hours=3), "<m2@vendor.com>", "<m1@cliente.pt>",
                  "<m1@cliente.pt>")
    third = _mail("ana@cliente.pt", "support@vendor.com", "Re: Re: Encomenda atrasada",
                  None, d0 + dt.timedelta(days=1), "<m3@cliente.pt>", "<m2@vendor.com>",
                  "<m1@cliente.pt> <m2@vendor.com>",
                  html="<html><style>p{color:red}</style><p>Obrigada&nbsp;!</p>"
                  "<blockquote>old text</blockquote></html>")
    stranger = _mail("x@unknown.org", "sales@vendor.com", "Hi", "Hello.\nOn Mon, X wrote:\n> q",
                     d0, "<m4@unknown.org>")
    box = mailbox.mbox(tmp_path / "mail.mbox")
    for m in (first, reply, third, stranger):
        box.add(m)
    box.flush()
    box.close()
    src = open_source(tmp_path / "mail.mbox", vendor_domains=["vendor.com"],
                      customer_by_email={"ana@cliente.pt": "C-ANA"})
    t, rows, errors, _ = collect(src)
    recs = t.to_pylist()
    assert not errors and rows == [1, 2, 3, 4]
    assert [r["interaction_id"] for r in recs] == ["m1@cliente.pt", "m2@vendor.com",
                                                  "m3@cliente.pt", "m4@unknown.org"]
    assert [r["direction"] for r in recs] == ["inbound", "outbound", "inbound", "inbound"]
    assert [r["customer_id"] for r in recs] == ["C-ANA", "C-ANA", "C-ANA", "x@unknown.org"]
    assert {r["thread_id"] for r in recs[:3]} == {"m1@cliente.pt"}
    assert recs[1]["text"] == "Lamentamos!"  # the quoted message is trimmed
    assert recs[1]["agent_id"] == "bo@help.vendor.com"
    assert recs[2]["text"] == "Obrigada\xa0!"  # HTML reduced to text, quote dropped
    assert recs[3]["text"] == "Hello."
    assert recs[0]["occurred_at"].startswith("2024-03-01T09:00:00+01:00")
    assert recs[0]["subject"] == "Encomenda atrasada"


def test_eml_file_and_folder(tmp_path: Path) -> None:
    d0 = dt.datetime(2024, 3, 1, 9, 0, tzinfo=dt.UTC)
    folder = tmp_path / "eml"
    folder.mkdir()
    for i in range(3):
        m = _mail(f"c{i}@x.no", "hei@vendor.no", f"Sak {i}", f"Hei {i}", d0, f"<e{i}@x.no>")
        (folder / f"{i}.eml").write_bytes(m.as_bytes())
    t, rows, errors, _ = collect(open_source(folder, vendor_domains=["vendor.no"]))
    assert sorted(t.column("interaction_id").to_pylist()) == ["e0@x.no", "e1@x.no", "e2@x.no"]
    t, *_ = collect(open_source(folder / "1.eml", vendor_domains=["vendor.no"]))
    assert t.column("text").to_pylist() == ["Hei 1"]


def test_internal_mail_is_rejected_with_reason(tmp_path: Path) -> None:
    m = _mail("a@vendor.com", "b@vendor.com", "lunch?", "x", dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    p = tmp_path / "i.eml"
    p.write_bytes(m.as_bytes())
    t, rows, errors, _ = collect(open_source(p, vendor_domains=["vendor.com"]))
    assert len(errors) == 1 and "internal" in errors[0].reason


def test_cdnow_format_from_the_literature(tmp_path: Path) -> None:
    p = tmp_path / "cdnow.txt"
    p.write_text("00001 19970101 1 11.77\n00002 19970112 1 12.00\n00002 19970112 1 12.00\n"
                 "garbage line\n")
    assert detect_format(p) == "cdnow"
    t, rows, errors, _ = collect(open_source(p))
    assert t.column("customer_id").to_pylist() == ["00001", "00002", "00002"]
    assert t.column("line").to_pylist() == ["1", "2", "3"]  # identical purchases stay apart
    assert len(errors) == 1 and errors[0].row == 4


def test_html_and_quote_helpers() -> None:
    assert html_to_text("<div>A<br>B</div><script>x()</script>") == "A\nB"
    assert trim_quoted("Takk!\n\nDen 1. mars 2024 kl. 10:00 skrev Kari <k@x.no>:\n> hei") == "Takk!"
    assert trim_quoted("Salamat po!\n\nNoong Lun, 4 Mar 2024, sumulat si Jo:\n> x") == "Salamat po!"
    assert trim_quoted("no quote here") == "no quote here"


def test_mapping_file_checks(tmp_path: Path) -> None:
    good = tmp_path / "m.toml"
    good.write_text('[columns]\nAccount = "customer_id"\n[values.channel]\nCall = "phone"\n'
                    '[dates]\nformat = "%d/%m/%Y"\ntimezone = "Europe/Oslo"\n')
    m = load_mapping(good)
    assert m.columns == {"Account": "customer_id"} and m.values["channel"] == {"call": "phone"}
    bad = tmp_path / "b.toml"
    bad.write_text('[columns]\nAccount = "custmer_id"\n')
    with pytest.raises(MappingError, match="did you mean 'customer_id'"):
        load_mapping(bad)
    bad.write_text('[dates]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(MappingError, match="not a known time zone"):
        load_mapping(bad)
    bad.write_text("[nonsense]\n")
    with pytest.raises(MappingError, match="unknown section"):
        load_mapping(bad)
