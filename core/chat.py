"""ChatService: one chat turn end to end, durable at every step.

The user message is committed before generation starts; the answer row is written as ``streaming``,
its text saved as it grows, and finalized as ``complete``, ``stopped`` or ``error`` with token counts,
time to first token and tokens/s. A crash or a killed process mid-answer leaves both rows on disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from core.backends.base import AdapterSpec, Backend, Finished, TextDelta
from core.config import GenerationSettings
from core.errors import ConfigError, GenerationError, InputError, ModelError
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

    def check_message(self, session_id: str | None, text: str, defaults: GenerationSettings | None = None) -> None:
        """Raise InputError for an empty message or one that alone exceeds the context budget.

        ``session_id`` None checks against ``defaults`` (the settings a new session would get), so a front end
        can refuse a message before creating a session for it.
        """
        if not text or not text.strip():
            raise InputError("The message is empty: type something before sending.")
        if session_id is None:
            settings, system = defaults or GenerationSettings(), None
        else:
            session = self.store.get_session(session_id)
            settings = GenerationSettings.from_dict(session.settings)
            system, _adapter = self._system_and_adapter(session)
        build_prompt(
            [("user", text)],
            count_tokens=self.backend.count_prompt_tokens,
            context_window=self.backend.context_window,
            max_new_tokens=settings.max_new_tokens,
            max_turns=1,
            system=system,
        )

    def send(self, session_id: str, text: str, stop: threading.Event | None = None) -> Iterator[ChatEvent]:
        """Store ``text`` as the user's message and stream the answer. Bad input raises before anything is stored."""
        self.check_message(session_id, text)
        user = self.store.add_message(session_id, "user", text)
        return self._answer(session_id, user.id, stop or threading.Event())

    def regenerate(self, session_id: str, stop: threading.Event | None = None) -> Iterator[ChatEvent]:
        """Replace the last answer of a session with a new one."""
        messages = self.store.messages(session_id)
        if not messages:
            raise InputError("This session has no messages to regenerate: send a message first.")
        if messages[-1].role == "assistant":
            self.store.delete_message(messages[-1].id)
            messages = messages[:-1]
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        if last_user is None:
            raise InputError("This session has no user message to answer: send a message first.")
        return self._answer(session_id, last_user.id, stop or threading.Event())

    def _answer(self, session_id: str, user_message_id: str, stop: threading.Event) -> Iterator[ChatEvent]:
        session = self.store.get_session(session_id)
        settings = GenerationSettings.from_dict(session.settings)
        system, adapter = self._system_and_adapter(session)
        history = [(m.role, m.content) for m in self.store.messages(session_id) if _usable(m)]
        plan = build_prompt(
            history,
            count_tokens=self.backend.count_prompt_tokens,
            context_window=self.backend.context_window,
            max_new_tokens=settings.max_new_tokens,
            max_turns=settings.max_turns,
            system=system,
        )
        if session.model != self.backend.model_id:
            self.store.update_session(session_id, model=self.backend.model_id)
        answer = self.store.add_message(session_id, "assistant", "", status="streaming")
        return self._stream(answer, user_message_id, plan, settings, stop, adapter)

    def _stream(  # noqa: PLR0913
        self,
        answer: Message,
        user_message_id: str,
        plan: PromptPlan,
        settings: GenerationSettings,
        stop: threading.Event,
        adapter: AdapterSpec | None,
    ) -> Iterator[ChatEvent]:
        yield Started(user_message_id, answer.id, plan.prompt_tokens, plan.omitted_turns)
        parts: list[str] = []
        started = time.perf_counter()
        first: float | None = None
        last_save = started
        finished: Finished | None = None
        settled = False  # True once the row has its final status
        try:
            for event in self.backend.stream(plan.messages, settings, stop, adapter):
                if isinstance(event, TextDelta):
                    if first is None:
                        first = time.perf_counter()
                    parts.append(event.text)
                    now = time.perf_counter()
                    if now - last_save >= SAVE_EVERY_S:
                        self.store.update_message(answer.id, content="".join(parts))
                        last_save = now
                    yield Token(event.text)
                elif isinstance(event, Finished):
                    finished = event
        except (GenerationError, ModelError) as exc:
            self.store.update_message(answer.id, content="".join(parts), status="error", error=str(exc))
            settled = True
            yield Failed(answer.id, str(exc))
            return
        finally:
            if finished is None and not settled:
                stop.set()  # the consumer went away (browser rerun, Ctrl-C) or a bug: keep what we have
                ttft = (first - started) * 1000 if first is not None else None
                self.store.update_message(answer.id, content="".join(parts), status="stopped", ttft_ms=ttft)
        status = finished.reason
        elapsed = time.perf_counter() - started
        completion = finished.completion_tokens if finished else len(parts)
        stats = TurnStats(
            message_id=answer.id,
            status=status,
            text="".join(parts),
            prompt_tokens=finished.prompt_tokens if finished else plan.prompt_tokens,
            completion_tokens=completion,
            ttft_ms=(first - started) * 1000 if first is not None else None,
            tokens_per_s=completion / elapsed if completion and elapsed > 0 else None,
            omitted_turns=plan.omitted_turns,
        )
        self.store.update_message(
            answer.id,
            content=stats.text,
            status=stats.status,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            ttft_ms=stats.ttft_ms,
            tokens_per_s=stats.tokens_per_s,
        )
        yield Done(stats)


def _usable(message: Message) -> bool:
    """Messages that go into prompts: user messages and answers with text that did not fail."""
    if message.role == "user":
        return True
    return message.role == "assistant" and message.status in ("complete", "stopped") and bool(message.content.strip())
