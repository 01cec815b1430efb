"""Who writes a ``streaming`` answer, and whether that writer is gone, so any process that opens the history can
settle answers a killed process left ``streaming`` without ever touching one a live process is still writing.

A writer token is ``host/pid/process start time/store``: the start time tells a live process from a reused pid;
the store part tells an open store in this process from a closed one. Rows written from another host are
judged by their heartbeat (``messages.updated_at``, refreshed at every save).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

REMOTE_STALE_AFTER = timedelta(minutes=10)
"""A ``streaming`` answer written from another host is settled once it has not saved for this long."""
INTERRUPTED = (
    "Interrupted: the Inkstone process writing this answer ended (killed or crashed) before it finished; "
    "the text so far is kept."
)


_LIVE_WRITERS: set[str] = set()
"""Writer tokens of the stores open in this process (a closed store's streaming rows are settled)."""
_process_tag: str | None = None


def _this_process() -> str:
    """``host/pid/start time``: names this process, and still tells it apart after its pid is reused."""
    global _process_tag
    if _process_tag is None:
        import psutil

        _process_tag = f"{socket.gethostname()}/{os.getpid()}/{psutil.Process().create_time():.2f}"
    return _process_tag


def _process_alive(pid: int, started: str) -> bool:
    """True while the process ``pid`` that started at ``started`` runs (unknown: assumed alive)."""
    import psutil

    try:
        return abs(psutil.Process(pid).create_time() - float(started)) < 1.0  # same process, not a reused pid
    except ValueError:
        return True
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return True


def writer_gone(writer: str | None, updated_at: str | None) -> bool:
    """Whether the process that was writing a ``streaming`` answer has ended (its answer may be settled).

    No writer: a row from an Inkstone before migration m003, settled as before. This process: gone once
    the store that wrote it is closed. Another process on this host: gone when it no longer runs. Another
    host: gone when the row has not saved (``updated_at``, refreshed at every save) for a while.
    """
    if not writer:
        return True
    host, _, rest = writer.partition("/")
    pid, _, rest = rest.partition("/")
    started, _, _store = rest.partition("/")
    if writer.startswith(_this_process() + "/"):
        return writer not in _LIVE_WRITERS
    if host == socket.gethostname() and pid.isdigit():
        return not _process_alive(int(pid), started)
    try:
        saved = datetime.fromisoformat(updated_at or "")
    except ValueError:
        return True
    return datetime.now(UTC) - saved > REMOTE_STALE_AFTER


def new_writer() -> str:
    """A token for one open store of this process, marked live until ``writer_closed``."""
    token = f"{_this_process()}/{uuid.uuid4().hex[:8]}"
    _LIVE_WRITERS.add(token)
    return token


def writer_closed(token: str) -> None:
    """The store behind ``token`` is closed: its ``streaming`` rows may now be settled."""
    _LIVE_WRITERS.discard(token)
