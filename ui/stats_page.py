"""Stats: how fast each model and persona answers (tokens/s, time to first token) and how many tokens they
use, over time, drawn from the figures stored with every answer. The queries live in ``core.history.stats``."""

from __future__ import annotations

import streamlit as st

from core.errors import InkstoneError
from core.history.stats import METRICS, answer_figures, chart_table, summary, totals_table
from ui import state

engine = state.engine()
st.set_page_config(page_title="Stats · Inkstone")
st.header("Stats")
try:
    figures = answer_figures(engine.settings.db_path)
except InkstoneError as exc:
    st.error(str(exc))
    st.stop()
if not figures:
    st.info("No finished answers yet: chat a little (in the app or through the API), then come back.")
    st.stop()

by = st.segmented_control("Group by", ["model", "persona"], default="model", key="stats_by") or "model"
st.caption(f"{len(figures)} answers · a persona's figures are those of chats that used it")
st.dataframe(summary(figures, by), hide_index=True)
for metric in ("tokens_per_s", "ttft_ms", "completion_tokens"):
    st.subheader(METRICS[metric])
    st.line_chart(chart_table(figures, metric, by))
st.subheader("Tokens in and out, total")
st.bar_chart(totals_table(figures, by))
