"""Background training jobs: ``python -m core train ... --job ID`` as a separate process, its state in SQLite.

The app starts a job with :meth:`JobStore.start` (the chat stays responsive; the training process has its own
memory and CPU). The child writes its progress (step, loss, ETA) into its ``training_jobs`` row; the app only
reads. :meth:`JobStore.refresh` marks a ``running`` job whose process is gone as ``failed`` with the tail of its
log, so a refresh or a restart of the app shows the truth. :meth:`JobStore.cancel` ends the process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import InkstoneError, NotFoundError
from core.history.store import HistoryStore, new_id

ACTIVE = ("running",)
COLUMNS = ("id", "persona", "base", "status", "pid", "step", "max_steps", "loss", "eta_s", "log_path", "error",
           "args", "created_at", "updated_at")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Job:
    """One training job row."""

    id: str
    persona: str
    base: str
    status: str
    pid: int | None
    step: int
    max_steps: int
    loss: float | None
    eta_s: float | None
    log_path: str
    error: str | None
    args: list[str]
    created_at: str
    updated_at: str

    @property
    def active(self) -> bool:
        """True while the job is (supposed to be) running."""
        return self.status in ACTIVE

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the job's log (empty if there is none yet)."""
        try:
            text = Path(self.log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def process_alive(pid: int | None, job_id: str) -> bool:
    """True if ``pid`` is a live (not zombie) process running job ``job_id``."""
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if (proc / "stat").read_text().split(") ")[-1].startswith("Z"):
                return False
            return job_id.encode() in (proc / "cmdline").read_bytes()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class JobStore:
    """Training job rows in the history database; handed an open :class:`HistoryStore`."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    def _row(self, job_id: str) -> Job:
        with self.store._read() as db:  # noqa: SLF001 - the store's locked connection
            row = db.execute(f"SELECT {', '.join(COLUMNS)} FROM training_jobs WHERE id = ?", [job_id]).fetchone()
        if row is None:
            raise NotFoundError(f"Training job {job_id!r} not found: list jobs to see their ids.")
        return _job(row)

    def get(self, job_id: str) -> Job:
        """The job with this id, refreshed (a dead process is marked failed); NotFoundError if unknown."""
        self._settle(self._row(job_id))
        return self._row(job_id)

    def list(self, limit: int = 20) -> list[Job]:
        """Newest jobs first, refreshed."""
        self.refresh()
        with self.store._read() as db:  # noqa: SLF001
            rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM training_jobs ORDER BY created_at DESC LIMIT ?",
                              [limit]).fetchall()
        return [_job(r) for r in rows]

    def refresh(self) -> int:
        """Mark every running job whose process is gone as failed; return how many were marked."""
        with self.store._read() as db:  # noqa: SLF001
            rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM training_jobs WHERE status = 'running'").fetchall()
        return sum(self._settle(_job(r)) for r in rows)

    def _settle(self, job: Job) -> bool:
        if not job.active or process_alive(job.pid, job.id):
            return False
        tail = job.log_tail(8)
        return self._set(job.id, "running", status="failed",
                         error="The training process ended without finishing (killed, crashed or out of memory)"
                               + (f"; last log lines:\n{tail}" if tail else "; it left no log."))

    def _set(self, job_id: str, only_if: str | None, **changes: Any) -> bool:
        changes["updated_at"] = _now()
        sets = ", ".join(f"{k} = ?" for k in changes)
        where, params = "id = ?", [*changes.values(), job_id]
        if only_if is not None:
            where += " AND status = ?"
            params.append(only_if)
        with self.store._write() as db:  # noqa: SLF001
            return db.execute(f"UPDATE training_jobs SET {sets} WHERE {where}", params).rowcount > 0

    def create(self, persona: str, base: str, args: list[str], log_path: Path) -> Job:
        """Insert a ``running`` row (no pid yet) and return it."""
        job_id, now = new_id(), _now()
        with self.store._write() as db:  # noqa: SLF001
            db.execute(
                "INSERT INTO training_jobs (id, persona, base, status, step, max_steps, log_path, args, created_at,"
                " updated_at) VALUES (?, ?, ?, 'running', 0, 0, ?, ?, ?, ?)",
                [job_id, persona, base, str(log_path), json.dumps(args), now, now],
            )
        return self._row(job_id)

    def start(self, args: list[str], settings: Settings, persona: str, base: str) -> Job:
        """Start ``python -m core train <args> --job ID`` in its own process group; log to ``<home>/jobs/``."""
        log_dir = settings.home / "jobs"
        log_dir.mkdir(parents=True, exist_ok=True)
        job = self.create(persona, base, args, log_dir / "pending.log")
        log_path = log_dir / f"train-{job.id}.log"
        env = {**os.environ, "INKSTONE_HOME": str(settings.home), "INKSTONE_ADAPTERS": str(settings.adapters),
               "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "core", "train", *args, "--job", job.id],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._set(job.id, None, pid=proc.pid, log_path=str(log_path))
        return self._row(job.id)

    def progress(self, job_id: str, step: int, max_steps: int, loss: float, eta_s: float) -> None:
        """Record a step (from the training process); ignored once the job is no longer running."""
        self._set(job_id, "running", step=step, max_steps=max_steps, loss=loss, eta_s=eta_s)

    def finish(self, job_id: str, status: str, error: str | None = None) -> None:
        """Mark a running job ``done`` or ``failed`` (a cancelled one stays cancelled)."""
        self._set(job_id, "running", status=status, error=error, eta_s=0.0 if status == "done" else None)

    def cancel(self, job_id: str) -> Job:
        """Stop a running job (SIGTERM to its process group) and mark it cancelled; a finished job is unchanged."""
        job = self._row(job_id)
        if not job.active:
            return job
        self._set(job_id, "running", status="cancelled", error="Cancelled by the user.")
        if process_alive(job.pid, job.id):
            try:
                os.killpg(job.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        return self._row(job_id)


def _job(row: tuple) -> Job:
    data = dict(zip(COLUMNS, row, strict=True))
    data["args"] = json.loads(data["args"])
    return Job(**data)


def run_as_job(job_id: str, options: Any, settings: Settings, say: Callable[[str], None]) -> int:
    """Body of the training process started by :meth:`JobStore.start`: train, writing progress to the row."""
    from core.training.trainer import train_persona

    store = HistoryStore.open(settings.db_path)
    jobs = JobStore(store)
    jobs._set(job_id, "running", pid=os.getpid())  # noqa: SLF001 - the pid of this very process
    try:
        result = train_persona(options, settings, say=say, on_progress=lambda p: jobs.progress(
            job_id, p.step, p.max_steps, p.loss, p.eta_s))
    except InkstoneError as exc:
        say(f"error: {exc}")
        jobs.finish(job_id, "failed", str(exc))
        return 1
    except BaseException as exc:
        jobs.finish(job_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    jobs.finish(job_id, "done")
    say(f"Persona {options.persona!r} written to {result.persona_dir} ({result.steps} steps, loss "
        f"{result.final_loss:.4f}).")
    if result.preview is not None:  # the page shows it from the persona's [training] record
        say(f"Verdict: {result.preview.verdict} — {result.preview.reason}")
    store.close()
    return 0
