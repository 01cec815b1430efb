"""The Stats page (AppTest) and its queries (``core.history.stats``): per-model and per-persona figures of
stored answers,
as a summary table and charts; unfinished, failed and empty answers are left out."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.history.stats import answer_figures, chart_table, summary, totals_table
from core.history.store import HistoryStore

APP = Path(__file__).resolve().parents[1] / "app.py"
PAGE = "ui/stats_page.py"


def answer(store: HistoryStore, sid: str, status: str = "complete", completion: int = 20, rate: float = 10.0,
           ttft: float = 100.0) -> None:
    store.add_message(sid, "user", "question")
    row = store.add_message(sid, "assistant", "", status="streaming")
    store.update_message(row.id, content="an answer", status=status, prompt_tokens=30, completion_tokens=completion,
                         ttft_ms=ttft, tokens_per_s=rate)


def fill(store: HistoryStore) -> None:
    """Two models; one of them also with a persona; plus answers that must not count."""
    plain = store.create_session(model="fake").id
    answer(store, plain, rate=10.0, ttft=100.0)
    answer(store, plain, rate=20.0, ttft=300.0)
    quill = store.create_session(model="fake", persona="quill").id
    answer(store, quill, rate=30.0, ttft=200.0)
    other = store.create_session(model="/models/Qwen2.5-7B").id
    answer(store, other, rate=5.0, ttft=900.0, completion=40)
    answer(store, other, status="error", rate=99.0)  # failed: left out
    answer(store, other, status="stopped", completion=0)  # stopped before any token: left out


def test_figures_summary_and_tables(app_home: Path, app_store: HistoryStore) -> None:
    fill(app_store)
    figures = answer_figures(app_home / "inkstone.db")
    assert len(figures) == 4 and [f.tokens_per_s for f in figures] == [10.0, 20.0, 30.0, 5.0]
    by_model = {r["model"]: r for r in summary(figures, "model")}
    assert by_model["fake"]["answers"] == 3 and by_model["fake"]["median tokens/s"] == 20.0
    assert by_model["Qwen2.5-7B"]["median first token (ms)"] == 900.0 and by_model["Qwen2.5-7B"]["answer tokens"] == 40
    by_persona = {r["persona"]: r for r in summary(figures, "persona")}
    assert by_persona["quill"]["answers"] == 1 and by_persona["(no persona)"]["answers"] == 3
    table = chart_table(figures, "tokens_per_s", "persona")
    assert list(table.columns) == ["(no persona)", "quill"] and len(table) == 4
    assert totals_table(figures, "model").loc["fake", "prompt tokens"] == 90
    assert answer_figures(app_home / "missing.db") == []


def test_stats_page_draws_the_stored_figures(app_home: Path, app_store: HistoryStore) -> None:
    fill(app_store)
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    rows = at.dataframe[0].value.set_index("model")
    assert rows.loc["fake", "answers"] == 3 and rows.loc["Qwen2.5-7B", "median tokens/s"] == 5.0
    charts = at.get("vega_lite_chart")
    marks = [json.loads(c.proto.spec).get("mark", {}).get("type") for c in charts]
    assert len(charts) == 4 and marks[-1] == "bar"
    assert [s.value for s in at.subheader] == ["Tokens per second", "Time to first token (ms)", "Answer tokens",
                                               "Tokens in and out, total"]
    at.segmented_control(key="stats_by").set_value("persona").run()
    personas = at.dataframe[0].value.set_index("persona")
    assert personas.loc["quill", "median tokens/s"] == 30.0


def test_stats_page_without_answers_says_so(app_home: Path, app_store: HistoryStore) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception and "No finished answers yet" in at.info[0].value
