"""Inkstone's Streamlit entry (``streamlit run app.py``): loads the engine once and routes to the pages.

The one ``st.cache_resource`` below holds the engine for the current model choice, so every browser
tab shares it; picking another model on the settings page changes the key, and ``max_entries=1`` lets
the old engine go before the new one loads. The engine is built outside the cached function, inside an
``st.status`` that shows the loader's progress (elements drawn inside a cached function would be
replayed on every rerun). Pages get the engine from ``ui.state.engine()`` and never build it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import streamlit as st

from core.config import Settings, load_settings
from core.engine import Engine, build_engine
from core.errors import InkstoneError
from core.models.loader import Progress
from ui import sidebar, state

ICON = Path(__file__).parent / "ui" / "inkstone.svg"
st.set_page_config(page_title="Inkstone", page_icon=str(ICON), layout="wide")
st.logo(str(ICON.with_name("inkstone-logo.svg")), icon_image=str(ICON))


class EngineSlot:
    """The engine of one model choice, built on first use (its scheduler is the line tabs wait in)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._lock = threading.Lock()

    def load(self, settings: Settings, progress: Progress) -> Engine:
        """The engine, building it now if no tab has yet (InkstoneError leaves the slot empty)."""
        with self._lock:
            if self.engine is None:
                self.engine = build_engine(settings, progress=progress)
            return self.engine


@st.cache_resource(max_entries=1, show_spinner=False)
def engine_slot(key: tuple[str, ...]) -> EngineSlot:
    """The shared slot for ``key`` (model, quantization, device, dtype, data dir)."""
    return EngineSlot()


@st.cache_resource(show_spinner=False)
def in_app_api(host: str, port: int) -> Any:
    """The API server started once per process (setting ``api_in_app``); it serves the engine it is given."""
    from core.api.inapp import InAppApi

    return InAppApi(load_settings())


def current_settings() -> Settings:
    """The configured settings (environment, inkstone.toml), with the model picked in the UI if any."""
    choice = state.model_choice()
    cli = {"model": choice.model, "quantize": choice.quantize} if choice else None
    return load_settings(cli)


def loaded_slot() -> EngineSlot:
    """The shared engine's slot; the first run after a model change loads it inside a visible status."""
    settings = current_settings()
    slot = engine_slot((settings.model, settings.quantize or "none", settings.device, settings.dtype,
                        str(settings.home)))  # fmt: skip
    if slot.engine is not None:
        return slot
    with st.status(f"Loading {settings.model}…", expanded=True) as status:
        try:
            engine = slot.load(settings, progress=status.write)
        except InkstoneError:
            status.update(label=f"Could not load {settings.model}", state="error", expanded=False)
            raise
        status.update(label=f"Loaded {engine.backend.model_id}", state="complete", expanded=False)
    return slot


try:
    slot = loaded_slot()
except InkstoneError as exc:
    st.error(str(exc))
    if state.model_choice() is not None:
        st.button("Use the configured model instead", on_click=state.forget_model_choice)
    st.stop()
engine = slot.engine
state.set_engine(engine)
if engine.settings.api_in_app:  # the OpenAI-compatible API beside the UI, on this engine (core/api/inapp.py)
    try:
        in_app_api(engine.settings.api_host, engine.settings.api_port).serve(engine)
    except InkstoneError as exc:
        st.sidebar.warning(f"The API server did not start: {exc}")

pages = [
    st.Page("ui/chat_page.py", title="Chat", icon=":material/chat:", default=True),
    st.Page("ui/settings_page.py", title="Model & settings", icon=":material/tune:"),
    st.Page("ui/knowledge_page.py", title="Knowledge", icon=":material/library_books:"),
    st.Page("ui/personas_page.py", title="Personas", icon=":material/face:"),
    st.Page("ui/stats_page.py", title="Stats", icon=":material/monitoring:"),
]
page = st.navigation(pages)
sidebar.render(engine)
page.run()
