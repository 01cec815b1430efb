"""No process of Inkstone calls home: the Hugging Face stack is offline and telemetry-free, hub kernels never load.

``core/__init__.py`` calls :func:`apply` on the first import of anything under ``core``, so every entry point
(``streamlit run app.py``, ``python -m core ...``, ``serve``, training jobs, the bench scripts) is covered before
transformers, huggingface_hub, bitsandbytes or chromadb are imported. What it does:

- **Offline** (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE``): models load from local files
  only. The opt-in ``INKSTONE_ONLINE=1`` (see ``core.config.online_opt_in``) lets the Hugging Face libraries reach
  the hub for the user's own use, such as a model id that is not on disk yet.
- **No telemetry, ever**, opt-in or not: Hugging Face, Chroma, Gradio, Streamlit, ONNX Runtime and the generic
  ``DO_NOT_TRACK`` (training sets WandB to offline mode itself).
- **Gradio fetches nothing** (the page of ``serve --ui gradio``): analytics and its version check off (above), never a
  share link (which downloads the ``frpc`` tunnel binary) and never server-side rendering (which starts Node), whatever
  the environment says; its default theme's fonts are bundled with it. ``gradio_ui.server`` also passes these
  options explicitly.
- **No hub kernels, ever.** transformers depends on the ``kernels`` package and, from 5.25, kernelizes every model
  it loads with compiled code downloaded from the hub unless ``USE_HUB_KERNELS=NO``; bitsandbytes' CPU 4-bit path
  calls ``kernels.get_kernel("kernels-community/...")`` at import whatever that says. Both are remote code,
  whatever ``trust_remote_code`` says. ``USE_HUB_KERNELS=NO`` turns off the first, and
  ``sys.modules["kernels"] = None`` makes every ``import kernels`` fail (bitsandbytes falls back to its own
  kernels) and makes transformers see the package as absent.
- **Quiet**, unless verbose (``--verbose`` on the command line or ``INKSTONE_VERBOSE=1``): third-party progress
  bars and warnings do not reach the user's terminal; errors still do. Inkstone's own progress is printed by its
  own code and is not affected.

Values the user already set in the environment win, except for the kernels block and the telemetry switches.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import MutableMapping

from core.config import online_opt_in, verbose_opt_in

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
NO_TELEMETRY = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "ANONYMIZED_TELEMETRY": "False",  # chromadb's Settings.anonymized_telemetry
    "GRADIO_ANALYTICS_ENABLED": "False",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "ORT_DISABLE_TELEMETRY": "1",  # ONNX Runtime's native 1DS telemetry (e5-small and OCR run on it)
}
NO_GRADIO_FETCH = {"GRADIO_SHARE": "False", "GRADIO_SSR_MODE": "False", "GRADIO_MCP_SERVER": "False"}
"""Gradio's switches for a share tunnel (frpc download), Node rendering and its MCP server: off, always."""
NO_HUB_KERNELS = {"USE_HUB_KERNELS": "NO"}
"""transformers 5.25+ kernelizes every ``from_pretrained`` model with hub kernels unless this says no."""
QUIET = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TQDM_DISABLE": "1",
}
THIRD_PARTY_LOGGERS = (
    "transformers", "huggingface_hub", "torchao", "bitsandbytes", "torch", "peft", "accelerate", "chromadb",
    "sentence_transformers", "httpx", "datasets", "jieba", "bm25s", "urllib3",
)  # fmt: skip
BLOCKED_MODULES = ("kernels",)
"""Modules that fetch and load code from a hub; never importable in an Inkstone process."""


def apply(environ: MutableMapping[str, str] | None = None, argv: list[str] | None = None) -> None:
    """Make this process offline (unless opted in), telemetry-free, hub-kernel-free and, unless verbose, quiet."""
    env = os.environ if environ is None else environ
    args = sys.argv if argv is None else argv
    if not online_opt_in(env):
        for key, value in OFFLINE.items():
            env[key] = value  # a stray HF_HUB_OFFLINE=0 in the user's shell must not turn the app online
    env.update(NO_TELEMETRY)
    env.update(NO_GRADIO_FETCH)
    env.update(NO_HUB_KERNELS)
    block_hub_kernels()
    if not verbose_opt_in(env, args):
        quiet_libraries(env)


def block_hub_kernels() -> None:
    """Make ``import kernels`` fail in this process (and ``importlib.util.find_spec`` report it absent)."""
    for name in BLOCKED_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]


def quiet_libraries(environ: MutableMapping[str, str]) -> None:
    """Third-party progress bars off, their loggers at ERROR, their warnings hidden (Inkstone's own still show)."""
    for key, value in QUIET.items():
        environ.setdefault(key, value)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"(core|knowledge|ui)(\.|$)")
