"""ChatService: one chat turn end to end, durable at every step.

The user message is committed before generation starts; the answer row is written as ``streaming``,
its text saved as it grows, and finalized as ``complete``, ``stopped`` or ``error`` with token counts,
time to first token and tokens/s. A crash or a killed process mid-answer leaves both rows on disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass

from core.backends.base import AdapterSpec, Backend, Finished, TextDelta
from core.config import GenerationSettings
from core.errors import ConfigError, GenerationError, InkstoneError, InputError, ModelError
from core.history import HistoryStore, Message, Session
from core.personas import Persona
from core.prompt import PromptPlan, build_prompt

SAVE_EVERY_S = 0.5
"""How often the growing answer is written to disk while it streams."""


@dataclass(frozen=True)
class Started:
    """The turn is stored and generation begins."""

    user_message_id: str
    assistant_message_id: str
    prompt_tokens: int
    omitted_turns: int
    """Earlier turns left out of the prompt (they stay stored)."""


@dataclass(frozen=True)
class Token:
    """New answer text."""

    text: str


@dataclass(frozen=True)
class Sources:
    """Numbered knowledge chunks the answer may cite (empty without RAG)."""

    items: list[dict]


@dataclass(frozen=True)
class TurnStats:
    """Figures of a finished answer."""

    message_id: str
    status: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None
    tokens_per_s: float | None
    omitted_turns: int


@dataclass(frozen=True)
class Done:
    """The answer is finished and stored (status ``complete`` or ``stopped``)."""

    stats: TurnStats


@dataclass(frozen=True)
class Failed:
    """Generation failed; the partial answer is stored with status ``error``."""

    message_id: str
    error: str


ChatEvent = Started | Token | Sources | Done | Failed


class ChatService:
    """Sends messages in stored sessions through one backend."""

    def __init__(
        self, store: HistoryStore, backend: Backend, personas: Callable[[str], Persona] | None = None
    ) -> None:
        self.store = store
        self.backend = backend
        self._personas = personas

    def persona_of(self, session: Session) -> Persona | None:
        """The session's persona, validated and checked against the loaded model (None without one)."""
        if not session.persona:
            return None
        if self._personas is None:
            raise ConfigError(f"Session {session.id} uses persona {session.persona!r} but no personas are set up.")
        persona = self._personas(session.persona)
        if persona.lora and not persona.fits_model(self.backend.model_id):
            raise ConfigError(
                f"Persona {persona.id!r} has a LoRA adapter trained for {persona.base_model!r}, but the loaded model "
                f"is {self.backend.model_id!r}: load {persona.base_model!r} or pick another persona for this chat."
            )
        return persona

    def _system_and_adapter(self, session: Session) -> tuple[str | None, AdapterSpec | None]:
        persona = self.persona_of(session)
        if persona is None:
            return session.settings.get("system_prompt") or None, None
        adapter = AdapterSpec(persona.id, persona.path) if persona.lora else None
        return persona.system_prompt or session.settings.get("system_prompt") or None, adapter

    def session_settings(self, session_id: str) -> GenerationSettings:
        """The generation settings stored with a session (defaults for missing keys)."""
        return GenerationSettings.from_dict(self.store.get_session(session_id).settings)

    def check_message(
        self,
        session_id: str | None,
        text: str,
        defaults: GenerationSettings | None = None,
        system: str | None = None,
    ) -> None:
        """Raise InputError for an empty message or one that alone exceeds the context budget.

        ``session_id`` None checks against ``defaults`` and ``system`` (what a new session would get), so a
        front end can refuse a message before creating a session for it.
        """
        if not text or not text.strip():
            raise InputError("The message is empty: type something before sending.")
        if session_id is None:
            settings = defaults or GenerationSettings()
        else:
            session = self.store.get_session(session_id)
            settings = GenerationSettings.from_dict(session.settings)
            system, _adapter = self._system_and_adapter(session)
        self._plan([("user", text)], settings, system, max_turns=1)

    def send(self, session_id: str, text: str, stop: threading.Event | None = None) -> Iterator[ChatEvent]:
        """Store ``text`` as the user's message and stream the answer. Bad input raises before anything is stored."""
        self.check_message(session_id, text)
        user = self.store.add_message(session_id, "user", text)
        return self._answer(session_id, user.id, stop or threading.Event())

    def regenerate(self, session_id: str, stop: threading.Event | None = None) -> Iterator[ChatEvent]:
        """Answer the last user message again. The old answer is deleted only once the new one has text
        (complete, or stopped part-way); if the new one fails or is stopped before any text, the old one stays.
        """
        messages = self.store.messages(session_id)
        if not messages:
            raise InputError("This session has no messages to regenerate: send a message first.")
        if messages[-1].status == "streaming":
            raise InputError("The last answer is still being written: stop it or wait for it before regenerating.")
        replaces = messages[-1].id if messages[-1].role == "assistant" else None
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        if last_user is None:
            raise InputError("This session has no user message to answer: send a message first.")
        return self._answer(session_id, last_user.id, stop or threading.Event(), replaces)

    def _plan(
        self, history: list[tuple[str, str]], settings: GenerationSettings, system: str | None, max_turns: int
    ) -> PromptPlan:
        """Fit ``history`` into this backend's context window (InputError when the last message cannot fit)."""
        return build_prompt(
            history,
            count_tokens=self.backend.count_prompt_tokens,
            context_window=self.backend.context_window,
            max_new_tokens=settings.max_new_tokens,
            max_turns=max_turns,
            system=system,
        )

    def _answer(
        self, session_id: str, user_message_id: str, stop: threading.Event, replaces: str | None = None
    ) -> Iterator[ChatEvent]:
        """Build the prompt now (errors raise before anything changes); the returned events do the rest."""
        session = self.store.get_session(session_id)
        settings = GenerationSettings.from_dict(session.settings)
        system, adapter = self._system_and_adapter(session)
        history = [(m.role, m.content) for m in self.store.messages(session_id) if _usable(m) and m.id != replaces]
        plan = self._plan(history, settings, system, max_turns=settings.max_turns)
        turn = _Turn(session, user_message_id, plan, settings, stop, adapter, replaces)
        return self._stream(turn)

    def _stream(self, turn: _Turn) -> Iterator[ChatEvent]:
        """Create the answer row, stream into it, and finalize it whatever happens to the consumer."""
        store = self.store
        if turn.session.model != self.backend.model_id:
            store.update_session(turn.session.id, model=self.backend.model_id)
        answer = store.add_message(turn.session.id, "assistant", "", status="streaming")
        parts: list[str] = []
        started = time.perf_counter()
        first: float | None = None
        last_save = started
        finished: Finished | None = None
        settled = False  # True once the row has its final status
        try:
            yield Started(turn.user_message_id, answer.id, turn.plan.prompt_tokens, turn.plan.omitted_turns)
            for event in self.backend.stream(turn.plan.messages, turn.settings, turn.stop, turn.adapter):
                if isinstance(event, TextDelta):
                    if first is None:
                        first = time.perf_counter()
                    parts.append(event.text)
                    now = time.perf_counter()
                    if now - last_save >= SAVE_EVERY_S:
                        store.update_message(answer.id, content="".join(parts))
                        last_save = now
                    yield Token(event.text)
                elif isinstance(event, Finished):
                    finished = event
        except (GenerationError, ModelError) as exc:
            store.update_message(answer.id, content="".join(parts), status="error", error=str(exc))
            settled = True
            yield Failed(answer.id, str(exc))
            return
        except Exception as exc:  # a bug: keep the text and say what happened, then let it surface
            error = f"Unexpected error: {type(exc).__name__}: {exc}"
            with suppress(InkstoneError):
                store.update_message(answer.id, content="".join(parts), status="error", error=error)
            settled = True
            raise
        finally:
            if finished is None and not settled:
                turn.stop.set()  # the consumer went away (browser rerun, Ctrl-C): keep what we have
                ttft = (first - started) * 1000 if first is not None else None
                with suppress(InkstoneError):
                    store.update_message(answer.id, content="".join(parts), status="stopped", ttft_ms=ttft)
                    self._settle_replacement(turn.replaces, answer.id, "stopped", "".join(parts))
        elapsed = time.perf_counter() - started
        completion = finished.completion_tokens
        stats = TurnStats(
            message_id=answer.id,
            status=finished.reason,
            text="".join(parts),
            prompt_tokens=finished.prompt_tokens,
            completion_tokens=completion,
            ttft_ms=(first - started) * 1000 if first is not None else None,
            tokens_per_s=completion / elapsed if completion and elapsed > 0 else None,
            omitted_turns=turn.plan.omitted_turns,
        )
        store.update_message(
            answer.id,
            content=stats.text,
            status=stats.status,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            ttft_ms=stats.ttft_ms,
            tokens_per_s=stats.tokens_per_s,
        )
        self._settle_replacement(turn.replaces, answer.id, stats.status, stats.text)
        yield Done(stats)

    def _settle_replacement(self, replaces: str | None, answer_id: str, status: str, text: str) -> None:
        """After a regenerate: drop the old answer if the new one has text, else drop the empty new one."""
        if replaces is None:
            return
        if text.strip():
            self.store.delete_message(replaces)
        elif status in ("complete", "stopped"):
            self.store.delete_message(answer_id)


@dataclass(frozen=True)
class _Turn:
    """Everything one answer needs, decided before its row is created."""

    session: Session
    user_message_id: str
    plan: PromptPlan
    settings: GenerationSettings
    stop: threading.Event
    adapter: AdapterSpec | None
    replaces: str | None
    """The answer a regenerate replaces."""


def _usable(message: Message) -> bool:
    """Messages that go into prompts: user messages and answers with text that did not fail."""
    if message.role == "user":
        return True
    return message.role == "assistant" and message.status in ("complete", "stopped") and bool(message.content.strip())
