"""What the Personas page needs, in one place: personas with their training record, prompt-only persona editing,
dataset uploads, and training jobs for the loaded model (started as ``python -m core train`` processes)."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError, InkstoneError, InputError, NotFoundError
from core.personas.store import ID_PATTERN, Persona, list_personas, load_persona
from core.training.jobs import Job, JobStore
from core.training.record import install_persona, to_toml

MAX_UPLOAD_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class PersonaCard:
    """A persona as the page lists it."""

    persona: Persona
    training: dict[str, Any]
    """The ``[training]`` record of a trained persona (empty for prompt-only ones)."""


def settings_line(record: dict[str, Any]) -> str:
    """The chosen settings of a training record in one line (what the run used, defaults included)."""
    s = record.get("settings") or {}
    if not isinstance(s, dict):
        return ""
    targets = s.get("target_modules") or []
    where = "all linear layers" if targets == ["all-linear"] else ", ".join(map(str, targets)) or "?"
    held = f" · {record['heldout_examples']} held out" if record.get("heldout_examples") else ""
    losses = f" · held-out loss {record['eval_loss']:.3f}" if isinstance(record.get("eval_loss"), float) else ""
    if losses and isinstance(record.get("base_eval_loss"), float):
        losses += f" (base {record['base_eval_loss']:.3f})"
    return f"lr {s.get('lr')} · rank {s.get('rank')} on {where}{held}{losses}"


def preview_rows(record: dict[str, Any]) -> list[dict[str, str]]:
    """The preview of a training record as table rows: prompt, with the persona, without it."""
    preview = record.get("preview")
    if not isinstance(preview, dict):
        return []
    columns = [preview.get(k) or [] for k in ("prompts", "persona", "base")]
    return [{"Prompt": str(p), "With the persona": str(a), "Without": str(b)}
            for p, a, b in zip(*columns, strict=False)]


def training_record(persona: Persona) -> dict[str, Any]:
    """The ``[training]`` table of a persona's persona.toml ({} if none)."""
    data = tomllib.loads((persona.path / "persona.toml").read_text(encoding="utf-8"))
    record = data.get("training")
    return record if isinstance(record, dict) else {}


class PersonaStudio:
    """Personas and training jobs of one engine (its adapters dir, data dir and history store)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.adapters: Path = engine.settings.adapters
        self.jobs = JobStore(engine.store)

    def outcome(self, job: Job) -> dict[str, Any]:
        """The training record a finished job wrote (settings, losses, preview and verdict); {} if there is none."""
        if job.status != "done":
            return {}
        try:
            return training_record(load_persona(self.adapters, job.persona))
        except (InkstoneError, OSError, tomllib.TOMLDecodeError):
            return {}

    def cards(self) -> tuple[list[PersonaCard], list[str]]:
        """Valid personas with their training records, and one message per broken directory."""
        personas, broken = list_personas(self.adapters)
        return [PersonaCard(p, training_record(p)) for p in personas], broken

    def save_prompt_persona(self, persona_id: str, *, name: str, system_prompt: str = "", greeting: str = "",
                            avatar: str = "", language: str = "", replace: bool = False) -> Persona:
        """Create (or, with ``replace``, edit) a prompt-only persona; ConfigError names a bad id or name."""
        persona_id = persona_id.strip()
        if not ID_PATTERN.match(persona_id) or persona_id == "none":
            raise ConfigError(f"Persona id {persona_id!r} is not valid: use letters, digits, '.', '_' or '-' "
                              "(starting with a letter or digit), for example my-helper.")
        if not name.strip():
            raise ConfigError("A persona needs a name: type one.")
        dest = self.adapters / persona_id
        generation: dict[str, Any] = {}
        if dest.exists():
            if not replace:
                raise ConfigError(f"Persona {persona_id!r} already exists: pick another id or edit that persona.")
            old = load_persona(self.adapters, persona_id)
            if old.lora:
                raise ConfigError(f"Persona {persona_id!r} has a trained adapter; edit its persona.toml instead.")
            generation = old.generation
        data = {"name": name.strip(), "avatar": avatar.strip() or None, "language": language.strip() or None,
                "system_prompt": system_prompt, "greeting": greeting, "generation": generation or None}
        text = to_toml(data)
        with tempfile.TemporaryDirectory() as root:  # validate (avatar, generation, ...) before touching adapters/
            (Path(root) / persona_id).mkdir()
            (Path(root) / persona_id / "persona.toml").write_text(text, encoding="utf-8")
            load_persona(Path(root), persona_id)
        install_persona(self.adapters, persona_id, lambda tmp: (tmp / "persona.toml").write_text(text, "utf-8"))
        return load_persona(self.adapters, persona_id)

    def delete_persona(self, persona_id: str) -> None:
        """Remove a persona directory (NotFoundError if there is none)."""
        path = self.adapters / persona_id
        if not ID_PATTERN.match(persona_id) or not (path / "persona.toml").is_file():
            raise NotFoundError(f"Persona {persona_id!r} not found in {self.adapters}.")
        shutil.rmtree(path)

    def save_upload(self, filename: str, data: bytes) -> Path:
        """Keep an uploaded dataset under ``<home>/uploads`` (named by content hash); InputError if unusable."""
        if not data.strip():
            raise InputError(f"{filename} is empty: upload an Alpaca JSON/JSONL or chat JSONL file.")
        if len(data) > MAX_UPLOAD_BYTES:
            raise InputError(f"{filename} is larger than {MAX_UPLOAD_BYTES // 2**20} MB: split it or train from the "
                             "command line.")
        suffix = ".json" if filename.lower().endswith(".json") else ".jsonl"
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(filename).stem)[:40] or "data"
        folder = self.engine.settings.home / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}{suffix}"
        path.write_bytes(data)
        return path

    def start_training(self, data: Path, persona_id: str, *, name: str, system: str = "", steps: int | None = None,
                       overwrite: bool = False) -> Job:
        """Train ``persona_id`` for the loaded model in a background process; the job row tracks it.

        ``steps`` None (or 0): the run chooses its steps, rate and adapter from the model and the data, like
        ``python -m core train`` without flags."""
        base = self.engine.profile.id
        if self.engine.profile.source == "fake":
            raise ConfigError("The scripted fake model cannot be trained: load a real model first.")
        running = [j for j in self.jobs.list() if j.active and j.persona == persona_id]
        if running:
            raise ConfigError(f"Persona {persona_id!r} is already being trained (job {running[0].id}).")
        if (self.adapters / persona_id).exists() and not overwrite:
            raise ConfigError(f"Persona {persona_id!r} already exists: choose another id or tick Overwrite.")
        args = ["--base", base, f"--data={data}", f"--persona={persona_id}", f"--name={name or persona_id}"]
        if steps:
            args += ["--steps", str(steps)]
        if system.strip():
            args.append(f"--system={system}")
        if overwrite:
            args.append("--overwrite")
        return self.jobs.start(args, self.engine.settings, persona_id, base)
