"""Which engine runs a bundled GGUF model: llama.cpp's server on a CPU where set-up built it, else PyTorch.

``engine = "auto"`` (the default) takes llama.cpp when the model runs on the CPU with the default weights
(``cpu_weights = "auto"``, no bitsandbytes ``quantize``) and ``llama-server`` is built for this CPU; a GPU, an
explicit ``cpu_weights`` or ``quantize`` keep PyTorch. ``engine = "llama.cpp"`` takes it whenever it can.
Where it cannot (not built, or the server does not start), PyTorch runs the model and the reason is shown on the
settings page and by ``model inspect`` (``ModelInfo.engine_note``), with the fix. ``engine = "torch"`` never
starts it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.config import Settings
from core.errors import ModelError
from core.models.registry import ModelProfile

NOT_BUILT = ("llama.cpp's server is not built on this machine, so answers run on PyTorch (slower on a CPU): "
             "install cmake and a C++ compiler, then run `make setup` again.")


def choose(profile: ModelProfile, settings: Settings, progress: Callable[[str], None] | None,
           torch_backend: Callable[[], Any]) -> tuple[Any | None, str | None]:
    """(the llama.cpp backend, None), or (None, why not) when PyTorch should run ``profile`` (None: no notice)."""
    if profile.source != "bundled" or settings.engine == "torch":
        return None, None
    from core.models.loader import pick_device

    asked = settings.engine == "llama.cpp"
    if pick_device(settings) != "cpu" or (not asked and (settings.quantize or settings.cpu_weights != "auto")):
        return None, None
    from core.llamacpp.build import find_binary

    binary = find_binary()
    if binary is None:
        return None, NOT_BUILT
    from core.backends.llamacpp_backend import start
    from core.models import bundled

    say = progress or (lambda _msg: None)
    root = settings.cache_dir / "llamacpp"
    try:
        source = bundled.source_for(profile.id)
        say(f"Verifying the bundled model files of {profile.id}…")
        gguf = bundled.assemble(source, root / "gguf")
        backend = start(profile.id, profile.title, gguf, root / "tokenizers" / f"{profile.id}-{source.fingerprint()}",
                        binary, root, torch_backend, say)
    except ModelError as exc:
        return None, f"llama.cpp's server did not start, so answers run on PyTorch: {exc}"
    return backend, None
