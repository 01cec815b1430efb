"""Per-answer figures for the Stats page: tokens/s, time to first token and token counts over time, by model
and by persona, read from the stored answers (every finished answer keeps its figures).

The queries open their own read-only connection to the history file, so they never wait on, or disturb,
the app's writing connection. The model and persona of an answer are its session's.
Only answers on each chat's current path count (as the prompt and exports, they follow the branch the
user chose); alternatives keep their figures for when they are chosen again.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import StorageError

METRICS = {
    "tokens_per_s": "Tokens per second",
    "ttft_ms": "Time to first token (ms)",
    "completion_tokens": "Answer tokens",
    "prompt_tokens": "Prompt tokens",
}
NO_PERSONA = "(no persona)"

_SQL = """
WITH RECURSIVE path(id, depth) AS (
    SELECT current_leaf, 0 FROM sessions WHERE current_leaf IS NOT NULL
    UNION ALL SELECT m.parent_id, p.depth + 1 FROM messages m JOIN path p ON m.id = p.id
    WHERE m.parent_id IS NOT NULL AND p.depth < 1000000
)
SELECT m.created_at, s.model, COALESCE(s.persona, ''), m.prompt_tokens, m.completion_tokens, m.ttft_ms,
       m.tokens_per_s
FROM messages m JOIN sessions s ON s.id = m.session_id
WHERE m.role = 'assistant' AND m.status IN ('complete', 'stopped') AND m.completion_tokens > 0
  AND m.created_at >= ? AND m.id IN (SELECT id FROM path)
ORDER BY m.created_at DESC LIMIT ?
"""


@dataclass(frozen=True)
class AnswerFigures:
    """The stored figures of one finished answer."""

    created_at: str
    model: str
    persona: str
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None
    tokens_per_s: float | None


def answer_figures(db_path: Path, since: str = "", limit: int = 5000) -> list[AnswerFigures]:
    """The newest ``limit`` finished answers since ``since`` (ISO time; "" = all), oldest first."""
    if not Path(db_path).is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(_SQL, [since, limit]).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(f"Cannot read answer figures from {db_path} ({exc}): check that the file is readable.") \
            from None
    return [AnswerFigures(r[0], r[1], r[2] or NO_PERSONA, r[3] or 0, r[4] or 0, r[5], r[6]) for r in reversed(rows)]


def _label(figures: AnswerFigures, by: str) -> str:
    return _short(figures.model) if by == "model" else figures.persona


def _short(model: str) -> str:
    return model.rstrip("/").rsplit("/", 1)[-1]


def chart_table(figures: list[AnswerFigures], metric: str, by: str = "model") -> Any:
    """A pandas table for a line chart: one row per answer (indexed by time), one column per model or persona."""
    import pandas as pd

    if metric not in METRICS or by not in ("model", "persona"):
        raise ValueError(f"unknown metric {metric!r} or grouping {by!r}")
    records = [{"time": pd.Timestamp(f.created_at), "label": _label(f, by), "value": getattr(f, metric)}
               for f in figures if getattr(f, metric) is not None]
    if not records:
        return pd.DataFrame()
    frame = pd.DataFrame(records).pivot_table(index="time", columns="label", values="value", aggfunc="mean")
    frame.columns.name = None
    return frame


def summary(figures: list[AnswerFigures], by: str = "model") -> list[dict[str, Any]]:
    """Per model (or persona): answers, median tokens/s and time to first token, tokens in and out."""
    groups: dict[str, list[AnswerFigures]] = {}
    for f in figures:
        groups.setdefault(_label(f, by), []).append(f)
    rows = []
    for label, items in sorted(groups.items()):
        rates = [f.tokens_per_s for f in items if f.tokens_per_s is not None]
        ttfts = [f.ttft_ms for f in items if f.ttft_ms is not None]
        rows.append({by: label, "answers": len(items), "median tokens/s": _median(rates),
                     "median first token (ms)": _median(ttfts),
                     "prompt tokens": sum(f.prompt_tokens for f in items),
                     "answer tokens": sum(f.completion_tokens for f in items)})
    return rows


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return round(ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2, 1)


def totals_table(figures: list[AnswerFigures], by: str = "model") -> Any:
    """A pandas table for a bar chart: prompt and answer tokens in total, one row per model or persona."""
    import pandas as pd

    rows = summary(figures, by)
    return pd.DataFrame({"prompt tokens": [r["prompt tokens"] for r in rows],
                         "answer tokens": [r["answer tokens"] for r in rows]}, index=[r[by] for r in rows])
