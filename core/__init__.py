"""Inkstone core: config, models and backends, prompts, history, the chat service and the CLI.

Nothing here imports streamlit or anything under ``ui/``.
"""
