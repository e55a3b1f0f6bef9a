"""E-mail: single .eml files, a folder of them, or an .mbox mailbox.

Each message becomes one interaction with channel ``email``. Its direction comes from the
vendor's domains (From a vendor address: outbound); the customer is the other party's address,
matched to ``customers.email`` when the workspace knows it, else the address itself.
``thread_id`` is the first Message-ID in References, else In-Reply-To, else the message's own
Message-ID, so a reply shares its thread with the message that opened it. Bodies are plain
text (HTML reduced to text) with quoted replies trimmed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import parsedate_to_datetime
from pathlib import Path

from custdyn._mailtext import html_to_text, trim_quoted
from custdyn.io.base import Chunk, Restart, RowError, Source, numbered_chunks

CHUNK_ROWS = 5_000


class EmailSource(Source):
    """``.eml`` file, folder of ``.eml`` files, or ``.mbox`` file.

    Parameters
    ----------
    vendor_domains : e-mail domains of the vendor (``example.com``; subdomains match too).
    customer_by_email : lower-cased address -> customer_id, from the workspace's customers.
    """

    format = "email"

    def __init__(
        self,
        path: Path,
        vendor_domains: Iterable[str] = (),
        customer_by_email: dict[str, str] | None = None,
    ) -> None:
        super().__init__(path)
        self.vendor_domains = tuple(d.lower().lstrip("@") for d in vendor_domains)
        self.customers = customer_by_email or {}
        if self.path.is_dir():
            self.format = "eml"
        elif self.path.suffix.lower() == ".eml":
            self.format = "eml"
        else:
            self.format = "mbox"

    def _messages(self) -> Iterator[tuple[int, bytes]]:
        if self.path.is_dir():
            files = sorted(p for p in self.path.rglob("*.eml") if p.is_file())
            for i, p in enumerate(files, start=1):
                data = p.read_bytes()
                self.bytes_read += len(data)
                yield i, data
        elif self.format == "eml":
            data = self.path.read_bytes()
            self.bytes_read = len(data)
            yield 1, data
        else:
            yield from _split_mbox(self.path, self)

    def chunks(self) -> Iterator[Chunk | Restart]:
        def messages() -> Iterator[tuple[int, dict | RowError]]:
            for n, data in self._messages():
                try:
                    yield n, self._record(data)
                except _BadMessage as e:
                    yield n, RowError(n, e.field, str(e), _raw_headers(data))

        yield from numbered_chunks(messages(), CHUNK_ROWS)

    def _is_vendor(self, addr: str) -> bool:
        domain = addr.rsplit("@", 1)[-1].lower()
        return any(domain == d or domain.endswith("." + d) for d in self.vendor_domains)

    def _record(self, data: bytes) -> dict:
        headers, body_bytes = _split_headers(data)
        if not headers:
            raise _BadMessage("not an e-mail message (no headers)", None)
        sender = _first_address(headers.get("from", ""))
        recipients = _addresses(" , ".join(headers.get("to", []) + headers.get("cc", []))
                                if isinstance(headers.get("to"), list) else "")
        if not sender:
            raise _BadMessage('field "From": no sender address', "customer_id")
        if self._is_vendor(sender):
            direction = "outbound"
            others = [a for a in recipients if not self._is_vendor(a)]
            if not others:
                raise _BadMessage(
                    "an internal message (every address is the vendor's): no customer", "customer_id"
                )
            party = others[0]
        else:
            direction = "inbound"
            party = sender
        date_raw = headers.get("date", "")
        occurred = None
        if date_raw:
            try:
                occurred = parsedate_to_datetime(date_raw).isoformat()
            except (TypeError, ValueError, IndexError):
                occurred = date_raw  # left for the timestamp check to reject with its text
        mid = _msgid(headers.get("message-id", ""))
        refs = re.findall(r"<([^>]+)>", headers.get("references", ""))
        reply_to = _msgid(headers.get("in-reply-to", ""))
        thread = refs[0] if refs else (reply_to or mid)
        body = _fast_body(headers, body_bytes)
        if body is None:  # multipart or unusual: the standard library does it properly
            body = _body(message_from_bytes(data, policy=compat32))
        subject = _decode_words(headers.get("subject", ""))
        attrs: dict[str, object] = {"from": sender, "to": recipients}
        if reply_to:
            attrs["in_reply_to"] = reply_to
        return {
            "interaction_id": mid,
            "customer_id": self.customers.get(party, party),
            "occurred_at": occurred,
            "channel": "email",
            "kind": "contact",
            "direction": direction,
            "subject": subject or None,
            "text": body or None,
            "thread_id": thread,
            "agent_id": sender if direction == "outbound" else None,
            "attributes": json.dumps(attrs, ensure_ascii=False),
        }


_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MULTI = ("to", "cc")


def _split_headers(data: bytes) -> tuple[dict, bytes]:
    """Unfolded headers (lower-case names; To and Cc as lists) and the raw body."""
    m = _HEADER_END.search(data)
    head, body = (data[: m.start()], data[m.end():]) if m else (data, b"")
    text = head.decode("utf-8", "surrogateescape")
    headers: dict = {"to": [], "cc": []}
    name = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and name:
            if name in _MULTI:
                headers[name][-1] += " " + line.strip()
            else:
                headers[name] += " " + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep or " " in key.strip():
            name = None
            continue
        name = key.strip().lower()
        value = value.strip()
        if name in _MULTI:
            headers[name].append(value)
        elif name not in headers:
            headers[name] = value
        else:
            name = None  # keep the first of repeated single headers
    if len(headers) == 2 and not headers["to"] and not headers["cc"]:
        return {}, body
    return headers, body


_ADDR_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # a quoted display name: skipped
    r"|<([^<>]*)>"  # an angle address
    r"|([^\s<>,;:\"()\[\]]+@[^\s<>,;:\"()\[\]]+)"  # a bare address
)


def _addresses(value: str) -> list[str]:
    """Addresses in an address-list header, in order (display names are skipped)."""
    out = []
    for m in _ADDR_TOKEN.finditer(value):
        addr = m.group(1) if m.group(1) is not None else m.group(2)
        if addr and "@" in addr:
            out.append(addr.strip().lower())
    return out


def _first_address(value: str) -> str:
    found = _addresses(value)
    return found[0] if found else ""


def _decode_words(value: str) -> str:
    if "=?" not in value:
        return value.strip()
    try:
        return str(make_header(decode_header(value))).strip()
    except (UnicodeDecodeError, LookupError, ValueError):
        return value.strip()


_CHARSET = re.compile(r"charset\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)


def _fast_body(headers: dict, body: bytes) -> str | None:
    """Body text of a single-part text message, or None when the slow path is needed."""
    ctype_full = headers.get("content-type", "text/plain")
    ctype = ctype_full.split(";", 1)[0].strip().lower()
    if ctype not in ("text/plain", "text/html"):
        return None
    cte = headers.get("content-transfer-encoding", "").strip().lower()
    if cte == "base64":
        import base64
        import binascii

        try:
            body = base64.b64decode(body)
        except (binascii.Error, ValueError):
            return None
    elif cte == "quoted-printable":
        import quopri

        body = quopri.decodestring(body)
    m = _CHARSET.search(ctype_full)
    charset = m.group(1) if m else "utf-8"
    try:
        text = body.decode(charset)
    except (LookupError, UnicodeDecodeError):
        text = body.decode("latin-1")
    if ctype == "text/html":
        text = html_to_text(text)
    return trim_quoted(text)


class _BadMessage(Exception):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


def _split_mbox(path: Path, source: Source) -> Iterator[tuple[int, bytes]]:
    """Messages of an mbox file, one at a time (``From `` lines separate them)."""
    n = 0
    buf: list[bytes] = []
    prev_blank = True
    with open(path, "rb") as f:
        for line in f:
            source.bytes_read += len(line)
            if line.startswith(b"From ") and prev_blank:
                if buf:
                    n += 1
                    yield n, _unescape(buf)
                buf = []
                prev_blank = False
                continue
            buf.append(line)
            prev_blank = line in (b"\n", b"\r\n")
    if buf and any(x.strip() for x in buf):
        n += 1
        yield n, _unescape(buf)


def _unescape(lines: list[bytes]) -> bytes:
    out = [ln[1:] if ln.startswith(b">From ") else ln for ln in lines]
    if out and out[-1] in (b"\n", b"\r\n"):
        out.pop()  # the blank line that separates messages
    return b"".join(out)


def _header(msg: Message, name: str) -> str:
    v = msg.get(name)
    if v is None:
        return ""
    try:
        return str(make_header(decode_header(str(v)))).strip()
    except (UnicodeDecodeError, LookupError, ValueError):
        return str(v).strip()


def _msgid(v: str) -> str | None:
    v = v.strip()
    if not v:
        return None
    m = re.search(r"<([^>]+)>", v)
    return m.group(1) if m else v


def _raw_headers(data: bytes) -> str:
    head = data.split(b"\n\n", 1)[0][:4000]
    return head.decode("utf-8", "backslashreplace")


def _decode_part(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        return ""
    assert isinstance(payload, bytes)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return payload.decode("latin-1")


def _body(msg: Message) -> str:
    plain = html = None
    for part in msg.walk() if msg.is_multipart() else [msg]:
        if part.is_multipart() or part.get_filename():
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = _decode_part(part)
        elif ctype == "text/html" and html is None:
            html = _decode_part(part)
    text = plain if plain is not None and plain.strip() else html_to_text(html or "")
    return trim_quoted(text)
