"""Thin Streamlit pages and widgets of Inkstone: chat, session list (sidebar) and model & settings.

Only ``app.py`` and this package import streamlit; nothing here imports torch, transformers, peft,
chromadb or sqlite3. Pages talk to ``core`` through the engine that ``app.py`` builds once.
"""
