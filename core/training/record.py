"""Writing a persona directory: ``persona.toml`` (with the ``[training]`` record) next to the PEFT files.

The directory is assembled beside its final name and swapped in (``core.storage.dirswap``), so a persona is
either the old
one or the complete new one, never half written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.storage.dirswap import replace_dir


def toml_value(value: Any) -> str:
    """A TOML literal for a string, bool, int, float or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Serialize nested dicts (scalars first, then sub-tables); None values are left out."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if v is not None and not isinstance(v, dict)]
    for key, sub in data.items():
        if isinstance(sub, dict):
            name = f"{prefix}.{key}" if prefix else key
            lines += ["", f"[{name}]", to_toml(sub, name)]
    return "\n".join(line for line in lines if line is not None).rstrip() + "\n"


def install_persona(adapters: Path, persona_id: str, build: Any) -> Path:
    """Call ``build(tmp_dir)`` to fill a fresh directory, then swap it in as ``adapters/persona_id``."""
    dest = adapters / persona_id
    with replace_dir(dest) as tmp:
        build(tmp)
    return dest
