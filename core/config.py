"""Typed settings, defaulted in one place and layered: CLI flags > inkstone.toml > environment > defaults.

This is the only module that reads the environment (``INKSTONE_HOME``, ``INKSTONE_MODEL``,
``INKSTONE_ADAPTERS``, ``INKSTONE_CHROMA_URL``, ``INKSTONE_API_KEY``, ``INKSTONE_RERANKER``, ``INKSTONE_CONFIG``, and
the process-wide switches ``INKSTONE_ONLINE`` and ``INKSTONE_VERBOSE`` that ``core.offline`` applies before any model
library loads).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core.errors import ConfigError

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
ENGINES = ("auto", "llama.cpp", "torch")


def default_engine(environ: Mapping[str, str] | None = None) -> str:
    """The ``engine`` setting's default: ``INKSTONE_ENGINE`` when it names an engine, else auto."""
    value = (os.environ if environ is None else environ).get("INKSTONE_ENGINE", "auto")
    return value if value in ENGINES else "auto"
PROMPT_LOOKUP_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings of one session; temperature 0 means greedy decoding."""

    temperature: float = 0.7
    """Softmax temperature; 0 switches to greedy decoding."""
    top_p: float = 0.9
    """Nucleus sampling mass (0 < top_p <= 1)."""
    top_k: int = 40
    """Keep only the k most likely tokens (0 disables)."""
    max_new_tokens: int = 512
    """Most tokens one answer may have; also reserved out of the context window."""
    repetition_penalty: float = 1.05
    """Penalty (>= 1) on tokens already in the context."""
    max_turns: int = 10
    """Most recent user/assistant turns put into the prompt; older turns stay stored."""
    prompt_lookup: str = "auto"
    """Prompt-lookup decoding (transformers' ``prompt_lookup_num_tokens``): drafts copied from the prompt, checked
    in one forward pass. ``auto``: on where it measured faster (greedy answers on a CPU, for a prompt with text to
    copy: retrieved sources, code, a long quote; see ``core.generation.lookup.prompt_lookup_tokens``), ``on`` or
    ``off``."""
    prompt_lookup_tokens: int = 10
    """Tokens drafted per lookup when prompt lookup is on."""

    def validated(self) -> GenerationSettings:
        """Return self, or raise ConfigError naming the first value of a wrong type or out of range."""
        self._validate_prompt_lookup()
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "prompt_lookup":
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or (f.type == "int" and not float(value).is_integer()):
                kind = "a whole number" if f.type == "int" else "a number"
                raise ConfigError(
                    f"Generation setting {f.name}={value!r} is not {kind}: write it without quotes, for example "
                    f"{f.name} = {getattr(GenerationSettings, f.name)!r}."
                )
            if f.type == "int" and not isinstance(value, int):
                object.__setattr__(self, f.name, int(value))
        checks = [
            ("temperature", 0 <= self.temperature <= 5, "between 0 and 5"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("top_k", self.top_k >= 0, ">= 0"),
            ("max_new_tokens", 1 <= self.max_new_tokens <= 32768, "between 1 and 32768"),
            ("repetition_penalty", 1 <= self.repetition_penalty <= 3, "between 1 and 3"),
            ("max_turns", 1 <= self.max_turns <= 1000, "between 1 and 1000"),
            ("prompt_lookup_tokens", 1 <= self.prompt_lookup_tokens <= 64, "between 1 and 64"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                value = getattr(self, name)
                raise ConfigError(f"Generation setting {name}={value!r} is out of range: use a value {allowed}.")
        return self

    def _validate_prompt_lookup(self) -> None:
        """Normalize ``prompt_lookup`` (a TOML boolean means on/off, case is ignored); ConfigError if unknown."""
        value = self.prompt_lookup
        if isinstance(value, bool):
            value = "on" if value else "off"
        if not isinstance(value, str) or value.strip().lower() not in PROMPT_LOOKUP_MODES:
            raise ConfigError(
                f"Generation setting prompt_lookup={value!r} is not supported: use "
                f"{', '.join(PROMPT_LOOKUP_MODES)} (for example prompt_lookup = \"auto\")."
            )
        object.__setattr__(self, "prompt_lookup", value.strip().lower())

    def with_updates(self, **changes: Any) -> GenerationSettings:
        """Copy with the given (non-None) fields replaced, validated; other keys are ignored."""
        known = {f.name for f in fields(self)}
        clean = {k: v for k, v in changes.items() if k in known and v is not None}
        return replace(self, **clean).validated()

    def with_strict_updates(self, where: str, **changes: Any) -> GenerationSettings:
        """Like ``with_updates`` for settings a person wrote (a persona's or config file's ``[generation]``):
        an unknown key is a ConfigError naming ``where`` and the closest known key, not silently ignored."""
        known = [f.name for f in fields(self)]
        for key in changes:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}."
                raise ConfigError(f"Unknown generation setting {key!r} in {where}: {hint}")
        return self.with_updates(**changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for storing with a session."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GenerationSettings:
        """Build from a stored dict, ignoring unknown keys and keeping defaults for missing ones."""
        return cls().with_updates(**(data or {}))


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one Inkstone process."""

    home: Path = Path("data")
    """Data dir: the SQLite history, converted-model cache, knowledge bases."""
    model: str = DEFAULT_MODEL
    """Model profile id (see ``python -m core model list``) or a local Hugging Face model directory."""
    adapters: Path = Path("adapters")
    """Directory of persona directories."""
    device: str = "auto"
    """auto (CUDA when available), cuda or cpu."""
    dtype: str = "auto"
    """auto (bf16 on CUDA where supported, else fp16; fp32 on CPU), float32, bfloat16 or float16."""
    quantize: str | None = None
    """None, "4bit" or "8bit" (bitsandbytes, CUDA only)."""
    cpu_weights: str = "auto"
    """Weights held on a CPU (dtype auto, no quantize): auto (default: the fastest on this CPU that keeps the
    model's quality, timed once; ``core.models.autoweights``), int8, int4, bf16 or fp32."""
    engine: str = field(default_factory=lambda: default_engine())
    """What runs a bundled GGUF model on a CPU: auto (default: llama.cpp's server where set-up built it, else
    PyTorch, with a notice), llama.cpp, or torch (``core.llamacpp.engine``). ``INKSTONE_ENGINE`` sets the default."""
    trust_remote_code: bool = False
    """Allow a checkpoint's own Python files to run. Off; only for checkpoints you have read."""
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    """Default generation settings of new sessions."""
    chroma_url: str | None = None
    """A Chroma server (``chroma run``), e.g. ``http://127.0.0.1:8000``; None keeps knowledge in ``home/chroma``."""
    embedder: str | None = None
    """Embedder of new knowledge bases: a bundled id or a local sentence-transformers dir (None: library default)."""
    kb_chunk_size: int | None = None
    """Characters per chunk of new knowledge bases (None: the library default)."""
    kb_chunk_overlap: int | None = None
    """Characters shared by neighbouring chunks of new knowledge bases (None: the library default)."""
    rag_top_k: int = 4
    """Sources retrieved for one answer when a chat has RAG on."""
    rag_translate: bool = False
    """Also search with the loaded model's translation of a question into the knowledge bases' other language (where
    the question's own search is unsure). Off: with the bundled 0.5B model it found no answer the question alone
    missed and gave sources to more unrelated questions (README, Knowledge bases)."""
    reranker: str | None = None
    """A local cross-encoder directory (e.g. bge-reranker-v2-m3) that reorders the fused search candidates; None:
    no reranking."""
    api_key: str | None = None
    """Key API clients send (``Authorization: Bearer``); required to serve on anything but loopback."""
    api_host: str = "127.0.0.1"
    """Address the API server binds (``python -m core serve``, or the app with ``api_in_app``)."""
    api_port: int = 8000
    """Port of the API server."""
    api_in_app: bool = False
    """``streamlit run app.py`` also serves the API on api_host:api_port, sharing the app's loaded model."""
    api_cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API (CORS); empty: CORS off."""
    api_image_downloads: bool = False
    """Let API clients send pictures as ``http(s)`` URLs, which the server then downloads (size and time limited);
    off: only ``data:`` URLs are taken, and the server reaches nothing."""
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``[models.<id>]`` tables: remote model profiles (``backend = "openai"``, base_url, model, api_key...)."""
    mcp_servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``[mcp_servers.<name>]`` tables: MCP servers whose tools a chat may turn on (``command = [...]`` for a stdio
    server, or ``url``; optional ``timeout_s``, ``env``); checked by ``core.tools.mcp_client``."""

    @property
    def db_path(self) -> Path:
        """The SQLite history file."""
        return self.home / "inkstone.db"

    @property
    def cache_dir(self) -> Path:
        """Where converted model weights are cached."""
        return self.home / "cache"

    @property
    def chroma_path(self) -> Path:
        """The local Chroma directory of the knowledge bases (unused when ``chroma_url`` is set)."""
        return self.home / "chroma"


_TOP_LEVEL = {f.name for f in fields(Settings)} - {"generation"}


def _coerce(name: str, value: Any) -> Any:
    if name in ("home", "adapters"):
        return Path(str(value)).expanduser()
    if name in ("trust_remote_code", "rag_translate"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}={value!r} must be true or false (a TOML boolean, not a string).")
    if name == "quantize":
        if value in (None, "", "none"):
            return None
        if value not in ("4bit", "8bit"):
            raise ConfigError(f"quantize={value!r} is not supported: use 4bit, 8bit or none.")
    if name == "device" and value not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"device={value!r} is not supported: use auto, cuda or cpu.")
    if name in _KNOWLEDGE:
        return _coerce_knowledge(name, value)
    if name in _API:
        return _coerce_api(name, value)
    if name == "cpu_weights" and value not in ("auto", "int4", "int8", "bf16", "fp32"):
        raise ConfigError(f"cpu_weights={value!r} is not supported: use auto, int4, int8, bf16 or fp32.")
    if name == "engine" and value not in ENGINES:
        raise ConfigError(f"engine={value!r} is not supported: use {', '.join(ENGINES)}.")
    if name == "dtype" and value not in ("auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype={value!r} is not supported: use auto, float32, bfloat16 or float16.")
    return value


_KNOWLEDGE = {"chroma_url", "embedder", "kb_chunk_size", "kb_chunk_overlap", "rag_top_k", "reranker"}


def _coerce_knowledge(name: str, value: Any) -> Any:
    """Validate the knowledge-base settings (``None`` or ``""`` means the default where one exists)."""
    if name in ("chroma_url", "embedder", "reranker"):
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{name}={value!r} must be text.")
        if name == "chroma_url" and not value.startswith(("http://", "https://")):
            raise ConfigError(f"chroma_url={value!r} is not a URL: use http://HOST:PORT of a `chroma run` server.")
        return value.strip()
    if name != "rag_top_k" and value in (None, ""):
        return None
    try:
        number = int(value)
        if isinstance(value, bool) or number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a whole number.") from None
    low, high = {"kb_chunk_size": (50, 20000), "kb_chunk_overlap": (0, 5000), "rag_top_k": (1, 50)}[name]
    if not low <= number <= high:
        raise ConfigError(f"{name}={value!r} is out of range: use a whole number between {low} and {high}.")
    return number


_API = {"api_key", "api_host", "api_port", "api_in_app", "api_cors_origins", "api_image_downloads", "models",
        "mcp_servers"}


def _coerce_api(name: str, value: Any) -> Any:
    """Validate the API server settings and the ``[models.<id>]`` tables (their keys are checked by the backend)."""
    if name == "api_port" and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535):
        raise ConfigError(f"api_port={value!r} is not a port: use a whole number between 1 and 65535.")
    if name in ("api_in_app", "api_image_downloads") and not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be true or false (a TOML boolean).")
    if name == "api_cors_origins":
        return tuple(value) if isinstance(value, list | tuple) else tuple(v.strip() for v in str(value).split(","))
    if name == "models" and not (isinstance(value, dict) and all(isinstance(t, dict) for t in value.values())):
        raise ConfigError("[models] must hold tables, one per model id: [models.my-server] base_url = ...")
    if name == "mcp_servers" and not (isinstance(value, dict) and all(isinstance(t, dict) for t in value.values())):
        raise ConfigError("[mcp_servers] must hold tables, one per server: [mcp_servers.files] command = [...]")
    if name in ("api_key", "api_host") and value is not None and not isinstance(value, str):
        raise ConfigError(f"{name}={value!r} must be text.")
    return value or None if name == "api_key" else value


def _apply(base: Settings, layer: dict[str, Any], source: str) -> Settings:
    top: dict[str, Any] = {}
    gen = dict(layer.get("generation") or {})
    for key, value in layer.items():
        if key == "generation":
            continue
        if key in _TOP_LEVEL:
            top[key] = _coerce(key, value)
        elif key in {f.name for f in fields(GenerationSettings)}:
            gen[key] = value
        else:
            raise ConfigError(f"Unknown setting {key!r} in {source}: remove it or check its spelling.")
    result = replace(base, **top)
    if gen:
        result = replace(result, generation=result.generation.with_strict_updates(source, **gen))
    return result


def env_layer(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Settings given by environment variables."""
    env = os.environ if environ is None else environ
    layer: dict[str, Any] = {}
    for var, key in (("INKSTONE_HOME", "home"), ("INKSTONE_MODEL", "model"), ("INKSTONE_ADAPTERS", "adapters"),
                     ("INKSTONE_CHROMA_URL", "chroma_url"), ("INKSTONE_API_KEY", "api_key"),
                     ("INKSTONE_RERANKER", "reranker")):
        if env.get(var):
            layer[key] = env[var]
    return layer


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def online_opt_in(environ: Mapping[str, str] | None = None) -> bool:
    """``INKSTONE_ONLINE=1``: the user lets the Hugging Face libraries reach the hub (download a model by id).

    Off by default: Inkstone then runs with the Hugging Face offline switches set. Telemetry and hub kernels stay
    off either way (``core.offline``)."""
    env = os.environ if environ is None else environ
    return _truthy(env.get("INKSTONE_ONLINE"))


def verbose_opt_in(environ: Mapping[str, str] | None = None, argv: Sequence[str] = ()) -> bool:
    """``--verbose`` on the command line or ``INKSTONE_VERBOSE=1``: let third-party warnings and progress bars show."""
    env = os.environ if environ is None else environ
    return "--verbose" in argv or _truthy(env.get("INKSTONE_VERBOSE"))


def config_file_path(environ: dict[str, str] | None = None) -> Path:
    """The config file: ``$INKSTONE_CONFIG`` or ``./inkstone.toml``."""
    env = os.environ if environ is None else environ
    return Path(env.get("INKSTONE_CONFIG") or "inkstone.toml")


def load_settings(
    cli: dict[str, Any] | None = None,
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Layer defaults, environment, the TOML file (if present) and CLI values (None means not given)."""
    settings = _apply(Settings(), env_layer(environ), "the environment")
    path = config_file or config_file_path(environ)
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Config file {path} is not valid TOML ({exc}): fix or delete it.") from None
        settings = _apply(settings, data, str(path))
    if cli:
        settings = _apply(settings, {k: v for k, v in cli.items() if v is not None}, "the command line")
    return settings
