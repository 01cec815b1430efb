"""The API inside the Streamlit app (setting ``api_in_app``): one server thread per process, serving whatever
engine the app has loaded now, so API clients share the app's model and follow its model switches.

The app keeps the ``InAppApi`` behind an ``st.cache_resource`` and points it at its engine on every run.
"""

from __future__ import annotations

import weakref
from typing import Any

from core.api.server import ApiServer
from core.config import Settings
from core.errors import ModelError


class InAppApi:
    """A running API server and the engine it serves (None until the app has loaded one)."""

    instances: weakref.WeakSet[InAppApi] = weakref.WeakSet()
    """Every server started in this process (tests stop them)."""

    def __init__(self, settings: Settings) -> None:
        self.engine: Any | None = None
        self.server = ApiServer(self.current, settings.api_host, settings.api_port, api_key=settings.api_key,
                                cors_origins=list(settings.api_cors_origins)).start()
        InAppApi.instances.add(self)

    def current(self) -> Any:
        """The engine to serve; ModelError (a 503) while the app has none loaded."""
        if self.engine is None:
            raise ModelError("The app has no model loaded right now: open it in a browser to load one, or fix the "
                             "error it shows.")
        return self.engine

    def serve(self, engine: Any | None) -> None:
        """Serve ``engine`` from now on (None: answer 503 until a model is loaded again)."""
        self.engine = engine

    def stop(self) -> None:
        """Stop the server thread."""
        self.server.stop()
        self.engine = None
