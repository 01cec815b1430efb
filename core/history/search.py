"""Search over the history database: the SQL for "every word occurs" and the excerpt shown with each hit.

``HistoryStore.search_sessions`` / ``search_messages`` run what ``search_sql`` builds. FTS5 (each word
quoted, so its syntax characters are literal, and prefix-matched) where it can tokenize the words; LIKE for
text it cannot: unicode61 makes a whole run of CJK characters one token, so 巴黎 inside 首都是巴黎 is found
only by a substring match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CJK = re.compile(r"[\u2e80-\u9fff\u3040-\u30ff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


@dataclass
class SearchHit:
    """A message that matched a search, with a short excerpt around the match."""

    session_id: str
    message_id: str
    role: str
    snippet: str
    session_title: str


def search_sql(text: str, table: str) -> tuple[str, list[str]] | None:
    """A WHERE clause on ``table`` (messages or sessions, aliased m / s) and its parameters; None if empty.

    Every word of ``text`` must occur (see the module docstring for FTS5 against LIKE).
    """
    terms = text.split()
    if not terms:
        return None
    alias, column = ("m", "content") if table == "messages" else ("s", "title")
    if all(re.search(r"\w", t) for t in terms) and not _CJK.search(text):
        query = " ".join('"' + t.replace('"', '""') + '"*' for t in terms)
        return f"{alias}.rowid IN (SELECT rowid FROM {table}_fts WHERE {table}_fts MATCH ?)", [query]
    escaped = [t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for t in terms]
    sql = " AND ".join(f"{alias}.{column} LIKE ? ESCAPE '\\'" for _ in terms)
    return f"({sql})", [f"%{t}%" for t in escaped]


def snippet(content: str, text: str, width: int = 60) -> str:
    """About ``2 * width`` characters of ``content`` around the first word of ``text`` found, whitespace collapsed."""
    lower = content.lower()
    found = [i for i in (lower.find(t.lower()) for t in text.split()) if i >= 0]
    start = max(min(found, default=0) - width // 2, 0)
    excerpt = " ".join(content[start : start + width * 2].split())
    return ("…" if start else "") + excerpt + ("…" if start + width * 2 < len(content) else "")
