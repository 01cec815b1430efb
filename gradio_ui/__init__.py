"""Inkstone's Gradio front end: one page over the same core as the Streamlit app (``ui/``).

``python -m core serve --ui gradio`` mounts it on the OpenAI API's server (one process, one model, one queue, one
batch); ``python -m gradio_ui`` serves the page alone. Only this package imports gradio; it holds no logic the core
owns (turns, history, personas, knowledge are ``core``'s), only the page and how core data is drawn on it.
"""

import core  # noqa: F401  (core.offline runs first: Gradio's telemetry switches are set before gradio loads)
