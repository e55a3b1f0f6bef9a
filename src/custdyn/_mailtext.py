"""Message text as people read it, shared by the e-mail reader (:mod:`custdyn.io.email`) and
the text room, for texts that came in another way (a CRM's export of e-mail bodies, a review
dataset scraped from web pages). Depends on nothing of ours.

- :func:`html_to_text`: the visible text of HTML (e-mail bodies at ingest; labelled review
  files, :func:`custdyn.text.labelled.plain_text`);
- quoted earlier messages in replies: the lines that introduce them, in the languages custdyn
  supports (:func:`trim_quoted` at ingest; :func:`quoted_from` for the message body the text
  engines read, :mod:`custdyn.text.salutations`).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["QUOTE_INTRO", "html_to_text", "quoted_from", "trim_quoted"]


class _TextExtractor(HTMLParser):
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table",
              "blockquote", "section", "article", "header", "footer", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._quote = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip += 1
        elif tag == "blockquote":
            self._quote += 1
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title") and self._skip:
            self._skip -= 1
        elif tag == "blockquote" and self._quote:
            self._quote -= 1
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip and not self._quote:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML body: no tags, scripts, styles or quoted blocks.

    >>> html_to_text("<p>Hello&nbsp;<b>there</b></p><style>p{}</style><p>Bye</p>")
    'Hello\\xa0there\\n\\nBye'
    """
    p = _TextExtractor()
    p.feed(html)
    p.close()
    text = "".join(p.parts)
    lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in text.splitlines()]
    out: list[str] = []
    for ln in lines:
        if ln or (out and out[-1]):
            out.append(ln)
    return "\n".join(out).strip()

#: A line that introduces a quoted earlier message.
QUOTE_INTRO = re.compile(
    r"^\s*("
    r"On .{3,200} wrote:|"  # English
    r"Em .{3,200} escreveu:|"  # Portuguese
    r"(Den|På) .{3,200} skrev .{0,200}:|"  # Norwegian, Danish, Swedish
    r"Noong .{3,200} (ay )?sumulat.{0,200}:|"  # Tagalog
    r"El .{3,200} escribió:|Le .{3,200} a écrit ?:|Am .{3,200} schrieb .{0,200}:|"
    r"-{2,}\s*(Original Message|Opprinnelig melding|Mensagem original|Forwarded message)\s*-{2,}|"
    r"From: .+"
    r")\s*$",
    re.IGNORECASE,
)


def trim_quoted(text: str) -> str:
    """Drop the quoted earlier message from a reply: ``>`` lines and what follows an
    "On ... wrote:" line (and its Portuguese, Norwegian and Tagalog forms).

    >>> trim_quoted("Thanks!\\n\\nOn Mon, 1 Jan 2024, Ann wrote:\\n> Hi\\n> there")
    'Thanks!'
    """
    lines = text.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for i, ln in enumerate(lines):
        if QUOTE_INTRO.match(ln) and i > 0:
            break
        if ln.lstrip().startswith(">"):
            continue
        kept.append(ln)
    return "\n".join(kept).strip()


def quoted_from(lines: list[str]) -> int | None:
    """Index of the line where a reply's quoted history begins: a line after the first with
    text that introduces it ("On ... wrote:") or starts with ``>``; None when there is none.

    >>> quoted_from(["It broke.", "", "On Mon, Ann wrote:", "> Hi"])
    2
    """
    content = [i for i, ln in enumerate(lines) if ln.strip()]
    for i in content[1:]:
        if QUOTE_INTRO.match(lines[i]) or lines[i].lstrip().startswith(">"):
            return i
    return None
