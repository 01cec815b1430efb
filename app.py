"""Inkstone's Streamlit entry (``streamlit run app.py``): loads the engine once and routes to the pages.

The engine (history store, loaded model, chat service) is built by the one ``st.cache_resource`` below,
keyed by the model choice, so every browser tab shares it and picking another model on the settings page
loads that one instead. Pages get it from ``ui.state.engine()`` and never build it themselves.
"""

from __future__ import annotations

import streamlit as st

from core.config import Settings, load_settings
from core.engine import Engine, build_engine
from core.errors import InkstoneError
from ui import sidebar, state

st.set_page_config(page_title="Inkstone", page_icon="🪨", layout="wide")


@st.cache_resource(max_entries=1, show_spinner="Loading the model…")
def load_engine(key: tuple[str, ...], _settings: Settings) -> Engine:
    """Build the engine for ``_settings`` (``key`` names the model, quantization, device and data dir)."""
    with st.sidebar.status(f"Loading {_settings.model}…", expanded=True) as status:
        try:
            engine = build_engine(_settings, progress=status.write)
        except BaseException:
            status.update(label=f"Could not load {_settings.model}", state="error")
            raise
        loaded = getattr(engine.backend, "loaded", None)
        took = f" in {loaded.load_seconds:.0f} s" if loaded is not None else ""
        status.update(label=f"Model: {engine.backend.model_id}{took}", state="complete", expanded=False)
    return engine


def current_settings() -> Settings:
    """The configured settings (environment, inkstone.toml), with the model picked in the UI if any."""
    choice = state.model_choice()
    cli = {"model": choice.model, "quantize": choice.quantize} if choice else None
    return load_settings(cli)


try:
    settings = current_settings()
    key = (settings.model, settings.quantize or "none", settings.device, settings.dtype, str(settings.home))
    engine = load_engine(key, settings)
except InkstoneError as exc:
    st.error(str(exc))
    if state.model_choice() is not None:
        st.button("Use the configured model instead", on_click=state.forget_model_choice)
    st.stop()
state.set_engine(engine)

pages = [
    st.Page("ui/chat_page.py", title="Chat", icon=":material/chat:", default=True),
    st.Page("ui/settings_page.py", title="Model & settings", icon=":material/tune:"),
]
page = st.navigation(pages)
sidebar.render(engine)
page.run()
