"""Inkstone core: config, models and backends, prompts, history, the chat service and the CLI.

Nothing here imports streamlit or anything under ``ui/``. Importing any part of ``core`` first makes the process
offline, telemetry-free and free of hub kernels (``core.offline``): every entry point imports ``core`` before a
model library, so none can call home.
"""

from core import offline

offline.apply()
