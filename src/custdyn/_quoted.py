"""Quoted earlier messages in replies: the lines that introduce them, in the languages custdyn
supports. Shared by the e-mail reader (:mod:`custdyn.io.email`), which trims them at ingest,
and the message body the text engines read (:mod:`custdyn.text.salutations`), for texts that
came in another way (a CRM's export of e-mail bodies, say). Depends on nothing of ours.
"""

from __future__ import annotations

import re

__all__ = ["QUOTE_INTRO", "quoted_from", "trim_quoted"]

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
