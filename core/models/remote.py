"""Remote model profiles: the ``[models.<id>]`` tables of inkstone.toml that name an OpenAI-compatible server
(checked here, with the registry; ``core.backends.openai_backend`` talks to the server).
"""

from __future__ import annotations

from typing import Any

from core.errors import ConfigError

PROFILE_KEYS = {"backend", "base_url", "model", "api_key", "context_window", "title", "description", "adapters",
                "timeout_s"}




def profile_options(model_id: str, table: dict[str, Any]) -> dict[str, Any]:
    """Validate one ``[models.<id>]`` table; ConfigError names every problem at once."""
    problems = [f"unknown key {k!r}" for k in sorted(set(table) - PROFILE_KEYS)]
    if table.get("backend", "openai") != "openai":
        problems.append(f"backend {table.get('backend')!r} is not supported here: use \"openai\"")
    url = table.get("base_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append("base_url must be the server's http(s)://HOST:PORT/v1 URL")
    if not isinstance(table.get("model"), str) or not table["model"].strip():
        problems.append("model (the server's model name) is missing")
    window = table.get("context_window", 4096)
    if isinstance(window, bool) or not isinstance(window, int) or window < 16:
        problems.append(f"context_window {window!r} must be a whole number of tokens (e.g. 8192)")
    adapters = table.get("adapters", {})
    if not isinstance(adapters, dict) or not all(isinstance(v, str) for v in adapters.values()):
        problems.append("adapters must map persona ids to the server's adapter names")
    if problems:
        raise ConfigError(f"Model profile [models.{model_id}] in inkstone.toml: " + "; ".join(problems) + ".")
    return {"base_url": url, "model": table["model"].strip(), "api_key": table.get("api_key"),
            "context_window": window, "adapters": tuple(sorted(adapters.items())),
            "timeout_s": float(table.get("timeout_s", 600))}
