"""The engine: settings, history store, loaded backend and chat service, built once per process.

The UI builds it behind one ``st.cache_resource``; the CLI builds it per command. All browser tabs share
one engine; its scheduler (``core.generation.scheduler``) is the one line tabs and API requests wait in for the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.backends import create_backend
from core.backends.base import Backend
from core.chat.config import ChatConfig
from core.chat.service import ChatService
from core.config import Settings
from core.generation.scheduler import queued
from core.history.store import HistoryStore, Session
from core.kb import KnowledgeService
from core.models.loader import Progress
from core.models.registry import ModelProfile, resolve
from core.personas.store import Persona, list_personas, load_persona
from core.tools.chat import ChatTools, chat_tools


@dataclass
class Engine:
    """Everything a front end needs to chat."""

    settings: Settings
    profile: ModelProfile
    store: HistoryStore
    backend: Backend
    service: ChatService
    knowledge: KnowledgeService | None = None
    """Knowledge bases of this data dir (the chat service's retriever)."""
    _memory: dict[str, float] | None = field(default=None, init=False, repr=False)

    def memory_estimate(self) -> dict[str, float] | None:
        """GiB this model needs in bf16, 8-bit and 4-bit (weights + overhead); None for the fake backend."""
        if self._memory is None:
            from core.models.modelinfo import inspect_directory, inspect_loaded

            if self.profile.path is not None and not self.settings.trust_remote_code:
                self._memory = inspect_directory(self.profile.path).memory_gib
            elif self.backend.loaded is not None:
                self._memory = inspect_loaded(self.backend.loaded).memory_gib
        return self._memory

    def chat_config(
        self, session_id: str | None = None, *, persona: str | None = None, overrides: dict[str, Any] | None = None
    ) -> ChatConfig:
        """Persona, system prompt and generation settings of a chat (None: a new one), with unsaved changes."""
        return self.service.config(session_id, persona=persona, overrides=overrides)

    def new_session(
        self, title: str | None = None, persona: str | None = None, overrides: dict[str, Any] | None = None
    ) -> str:
        """Create a session with this engine's model and default generation settings; return its id.

        With a persona, its generation defaults apply on top (ConfigError/NotFoundError if it is broken).
        """
        config = self.chat_config(persona=persona or "", overrides=overrides)
        return self.service.create_session(config, title=title).id

    def persona(self, persona_id: str) -> Persona:
        """Load and validate a persona from the adapters directory."""
        return load_persona(self.settings.adapters, persona_id)

    def personas(self) -> tuple[list[Persona], list[str]]:
        """The valid personas, and a message per broken persona directory."""
        return list_personas(self.settings.adapters)


def open_store(settings: Settings) -> HistoryStore:
    """Open the history database (answers whose writing process is gone are settled on every open)."""
    return HistoryStore.open(settings.db_path)


def build_engine(settings: Settings, progress: Progress | None = None, backend: Backend | None = None) -> Engine:
    """Resolve the model, open the store, load the backend (or use the given one) and wire the service.

    Opening the store settles answers left ``streaming`` by a process that is gone, never one a live
    process is still writing.
    """
    profile = resolve(settings.model)
    store = open_store(settings)
    if backend is None:
        backend = create_backend(profile, settings, progress)
    backend = queued(backend)  # one fair queue: the UI's answers and API requests take turns in arrival order
    knowledge = KnowledgeService.open(settings)
    if settings.rag_translate and backend.codec is not None:  # the local model also translates questions (opt-in)
        from core.kb.translate import model_translator

        knowledge.translate = model_translator(backend)
    service = ChatService(
        store,
        backend,
        personas=lambda pid: load_persona(settings.adapters, pid),
        defaults=settings.generation,
        retriever=knowledge.retrieve,
        tools=lambda session: answer_tools(settings, knowledge, session),
    )
    return Engine(settings, profile, store, backend, service, knowledge)


def answer_tools(settings: Settings, knowledge: KnowledgeService, session: Session) -> ChatTools | None:
    """The tools a chat turned on, for its next answer: its knowledge-base search covers the knowledge bases picked
    for the chat (all of them when none is picked)."""

    def kb_search(chat: Session) -> tuple[Callable[[str], list[Any]], list[str]] | None:
        kbs = knowledge.session_knowledge(chat.id)[1] or [s.kb for s in knowledge.summaries()]
        if not kbs:
            return None
        return (lambda query: knowledge.query(kbs, query, k=4)), [kb.name for kb in kbs]

    return chat_tools(session, settings, kb_search)
