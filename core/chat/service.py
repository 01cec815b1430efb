"""ChatService: one chat turn end to end, durable at every step.

The user message is committed before generation starts; the answer row is written by the one answer recorder
(``core.history.recorder``) as ``streaming``, its text saved as it grows. The stream loop only collects; one
finalize step
writes the row whatever ended the stream (finished, stopped, failed, consumer gone, backend ending without
``Finished``) as ``complete``, ``stopped`` or ``error`` with the ``Finished`` event's token counts, time to first
token and decode tokens/s, and the sources. A crash or a killed process mid-answer leaves both rows on disk.

A conversation is a tree (``core.history.store``): ``send`` continues the current path, ``edit`` answers a new
version of any user message and ``regenerate`` a new version of an answer; the old ones stay as siblings, and the
prompt is always the branch being answered.

Seams for what plugs in: a ``retriever`` (knowledge bases) returns numbered source dicts for a question;
they go into the prompt as a context block, out as a ``Sources`` event, and onto the answer row. ``tools`` gives
the tools a chat turned on (``core.tools.chat``): its answers then run the bounded tool loop
(``core.tools.loop.tool_turn``: model -> calls -> results -> model), each call goes out as a ``ToolUsed`` event and
is stored with the answer (``tool_steps``), and Stop ends the loop like any answer.

Pictures (``core.images.ImageInput``) go with a user message (``send(..., images=[...])``; an edit keeps the
question's pictures unless given new ones) to a backend that declares ``capabilities.images``; a text-only backend
refuses a message with pictures before anything is stored, naming models that take them. The prompt's user messages
carry their stored pictures as ``"images"``; for a text-only backend (the chat's model was changed) earlier pictures
become a note in the text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

from core.backends.base import AdapterSpec, Backend, Finished, TextDelta
from core.chat.config import ChatConfig, PersonaLoader, chat_config
from core.chat.followup import standalone_query
from core.chat.prompt import ChatMessages, HistoryItem, PromptPlan, build_prompt, fit_sources
from core.chat.rag_prompt import not_found_line, with_passages, without_where_lines
from core.config import GenerationSettings
from core.errors import InkstoneError, InputError, NotFoundError, StorageError
from core.history.images import check_count
from core.history.recorder import AnswerRecorder, RecordedAnswer
from core.history.store import HistoryStore, Message, Session
from core.images import ImageInput
from core.personas.store import Persona
from core.tools.chat import ChatTools
from core.tools.history import save_steps
from core.tools.loop import LoopResult, ToolStep, tool_turn
from knowledge.citations import check_sources


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
    """Numbered knowledge chunks the answer may cite; sent only when the chat has RAG on (empty: none found)."""

    items: list[dict]
    notice: str | None = None
    """Why the answer goes without the knowledge bases (Chroma down, re-embed needed...); None when searched."""


@dataclass(frozen=True)
class ToolsOn:
    """The chat has tools on: their names, the calls one answer may make, and what could not be offered."""

    names: list[str]
    max_steps: int
    notice: str | None = None


@dataclass(frozen=True)
class ToolUsed:
    """The model called a tool and got its result (the answer goes on from it)."""

    step: ToolStep


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
    finish_reason: str | None = None
    """Why generation ended (``Finished.reason``: ``stop``, ``length``, ``stopped``)."""
    tool_steps: int = 0
    """Tool calls the answer made."""
    tool_limit_hit: bool = False
    """The tool loop reached its limit and the model answered without more tools."""
    sources: list[dict] | None = None
    """The sources as stored with the answer, each checked one marked ``citation`` (``verified`` or
    ``unverified``); None without RAG."""


@dataclass(frozen=True)
class Done:
    """The answer is finished and stored (status ``complete`` or ``stopped``)."""

    stats: TurnStats


@dataclass(frozen=True)
class Failed:
    """Generation failed; the partial answer is stored with status ``error``."""

    message_id: str
    error: str


ChatEvent = Started | Token | Sources | ToolsOn | ToolUsed | Done | Failed

Retriever = Callable[[Session, str], list[dict[str, Any]] | None]
"""Given a chat and what to search for (``retrieval_query``: the question, a follow-up with its subject), the
sources (dicts with ``n``, ``source``, ``page``, ``text``...) for its answer: None when the chat has RAG off, ``[]``
when nothing relevant was found. An InkstoneError it raises makes the answer go without sources
(``Sources.notice`` says why)."""

ToolProvider = Callable[[Session], ChatTools | None]
"""Given a chat, the tools its answer may call (None: it turned none on); see ``core.tools.chat.chat_tools``."""

TEXT_ONLY = (
    "{model} reads text only and cannot see pictures: load a vision-language model directory (Qwen2-VL or "
    "Qwen2.5-VL, SmolVLM, LLaVA; on the Settings page or with --model), or send the message without pictures."
)
"""Why a text-only backend refuses a message with pictures (``{model}``: the loaded model)."""


def picture_note(count: int, missing: bool = False) -> str:
    """What a text-only model reads in place of a message's pictures (or a picture whose file is gone)."""
    pictures = "a picture" if count == 1 else f"{count} pictures"
    return f"[{pictures} {'no longer available' if missing else 'attached here, which this model cannot see'}]"


def retrieval_query(history: Sequence[HistoryItem]) -> str:
    """The text the knowledge bases are searched with: the last user message, with the subject of the turns before
    it put in front when it is a follow-up that does not name its own (``core.chat.followup``)."""
    return standalone_query([(item[0], item[1]) for item in history])


class ChatService:
    """Sends messages in stored sessions through one backend."""

    def __init__(
        self,
        store: HistoryStore,
        backend: Backend,
        personas: PersonaLoader | None = None,
        *,
        defaults: GenerationSettings | None = None,
        retriever: Retriever | None = None,
        tools: ToolProvider | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self._personas = personas
        self.defaults = defaults or GenerationSettings()
        """Generation settings of new sessions (before a persona's defaults)."""
        self.retriever = retriever
        """Knowledge retrieval for answers (None: no sources)."""
        self.tools = tools
        """The tools a chat turned on (None: answers never call tools)."""

    def config(
        self,
        session_id: str | None,
        *,
        persona: str | None = None,
        overrides: dict[str, Any] | None = None,
        defaults: GenerationSettings | None = None,
    ) -> ChatConfig:
        """The persona, system prompt and settings a chat answers with (``session_id`` None: a new chat).

        See ``core.chat.config.chat_config``; ``persona``/``overrides`` are changes not yet stored.
        """
        session = self.store.get_session(session_id) if session_id is not None else None
        return chat_config(
            defaults=defaults or self.defaults,
            model_id=self.backend.model_id,
            personas=self._personas,
            session=session,
            persona=persona,
            overrides=overrides,
        )

    def persona_of(self, session: Session) -> Persona | None:
        """The session's persona, validated and checked against the loaded model (None without one)."""
        return chat_config(
            defaults=self.defaults, model_id=self.backend.model_id, personas=self._personas, session=session
        ).persona

    def session_settings(self, session_id: str) -> GenerationSettings:
        """The generation settings stored with a session (defaults for missing keys)."""
        return self.config(session_id).settings

    def create_session(self, config: ChatConfig, *, title: str | None = None) -> Session:
        """Store a new session for the loaded model with ``config``'s persona and settings (``config.stored``).

        The one place a session is created: the UI's new chat, the CLI, the API (``inkstone_session="new"``) and
        ``Engine.new_session`` all come here.
        """
        return self.store.create_session(
            model=self.backend.model_id, persona=config.persona_id, settings=config.stored, title=title
        )

    def check_message(
        self,
        session_id: str | None,
        text: str,
        defaults: GenerationSettings | None = None,
        system: str | None = None,
        *,
        config: ChatConfig | None = None,
        images: Sequence[ImageInput] = (),
    ) -> None:
        """Raise InputError for an empty message (no text and no pictures), pictures this backend cannot see (or
        too many), or a message that alone exceeds the context budget.

        Checks against ``config`` when given (changes a front end is about to store), else the session's
        config; ``session_id`` None checks what a new chat would get (``defaults``, ``system``), so a front
        end can refuse a message before creating a session for it.
        """
        if not isinstance(text, str) or not (text.strip() or images):
            raise InputError("The message is empty: type something before sending.")
        _check_encodable(text)
        self.check_images(images)
        if config is None:
            config = self.config(session_id, defaults=defaults)
            if session_id is None and system is not None:
                config = replace(config, system_prompt=system or None)
        self._plan([("user", text, images)], config, None, max_turns=1)

    def check_images(self, images: Sequence[ImageInput]) -> None:
        """InputError for pictures the loaded model cannot see (a text-only backend), or more than a message takes."""
        if images and not self.backend.capabilities.images:
            raise InputError(TEXT_ONLY.format(model=self.backend.model_id))
        check_count(len(images))

    def send(
        self, session_id: str, text: str, stop: threading.Event | None = None, images: Sequence[ImageInput] = ()
    ) -> Iterator[ChatEvent]:
        """Store ``text`` (with ``images``, checked pictures) as the user's message at the end of the current path
        and stream the answer. Bad input raises before anything is stored."""
        self.check_message(session_id, text, images=images)
        path = self.store.messages(session_id)
        turn = self._prepare(session_id, path, text, stop or threading.Event(), new_images=images)
        user = self.store.add_message(session_id, "user", text, parent_id=path[-1].id if path else None,
                                      images=images)  # fmt: skip
        return self._stream(replace(turn, user_message_id=user.id))

    def edit(
        self, session_id: str, message_id: str, text: str, stop: threading.Event | None = None,
        images: Sequence[ImageInput] | None = None,
    ) -> Iterator[ChatEvent]:
        """Store ``text`` as an edit of the user message ``message_id`` (any of them, not only the last) and
        stream the answer to it. The edit is a sibling of the old message, which stays, with everything below
        it, as the other branch; the edit's branch becomes the current path. It keeps the old message's pictures
        (``images`` None) or carries ``images`` instead. Bad input raises before anything is
        stored: an empty or oversized text, a message that is not a user message of this chat (or was deleted
        meanwhile), or a chat with an answer still being written."""
        old = self.check_edit(session_id, message_id, text, images)
        kept = self._edit_images(old, images)
        before = self.store.path_to(old.parent_id) if old.parent_id else []
        turn = self._prepare(session_id, before, text, stop or threading.Event(), new_images=kept)
        user = self.store.add_message(session_id, "user", text, parent_id=old.parent_id, images=kept)
        return self._stream(replace(turn, user_message_id=user.id))

    def check_edit(
        self, session_id: str, message_id: str, text: str, images: Sequence[ImageInput] | None = None
    ) -> Message:
        """Raise what ``edit`` would refuse (see there) without storing anything; returns the message edited."""
        old = self._message_of(session_id, message_id)
        self.check_message(session_id, text, images=self._edit_images(old, images))
        if old.role != "user":
            raise InputError(f"Message {message_id!r} is an answer, not a user message: only your own messages can "
                             "be edited (regenerate an answer instead).")
        self._not_streaming(session_id)
        return old

    def _edit_images(self, old: Message, images: Sequence[ImageInput] | None) -> Sequence[ImageInput]:
        """The pictures an edit of ``old`` carries: ``images``, or (None) the old message's own."""
        if images is not None:
            return images
        return [stored.read() for stored in self.store.images_of(old.id)]

    def regenerate(
        self, session_id: str, stop: threading.Event | None = None, message_id: str | None = None
    ) -> Iterator[ChatEvent]:
        """Answer again: the answer ``message_id`` (default: the last message of the current path; a user message
        there is simply answered). The new answer is a sibling of the old one, which stays as an alternative
        (``‹ 1/2 ›``); only a new answer stopped before any text is dropped, leaving the old one current."""
        if message_id is None:
            path = self.store.messages(session_id)
            if not path:
                raise InputError("This session has no messages to regenerate: send a message first.")
            target = path[-1]
        else:
            target = self._message_of(session_id, message_id)
        self._not_streaming(session_id)
        if target.role == "assistant":
            if target.parent_id is None:
                raise InputError("This answer follows no user message: send a message first.")
            question = self.store.get_message(target.parent_id)
        else:
            question = target
        if question.role != "user":
            raise InputError("This session has no user message to answer: send a message first.")
        if self.store.images_of(question.id) and not self.backend.capabilities.images:
            raise InputError(TEXT_ONLY.format(model=self.backend.model_id))
        history = self.store.path_to(question.id)
        replaces = target.id if target.role == "assistant" else None
        turn = self._prepare(session_id, history, None, stop or threading.Event(), replaces)
        return self._stream(replace(turn, user_message_id=question.id))

    def _message_of(self, session_id: str, message_id: str) -> Message:
        """The message ``message_id`` of this chat: NotFoundError when it is gone, InputError when it is another's."""
        message = self.store.get_message(message_id)  # NotFoundError: deleted meanwhile (another tab)
        if message.session_id != session_id:
            raise InputError(f"Message {message_id!r} belongs to another chat, not {session_id!r}: open that chat.")
        return message

    def _not_streaming(self, session_id: str) -> None:
        """InputError while an answer on the chat's current path is being written."""
        if any(m.status == "streaming" for m in self.store.messages(session_id)):
            raise InputError("An answer of this chat is still being written: stop it or wait for it, then edit or "
                             "regenerate.")

    def _plan(
        self, history: list[HistoryItem], config: ChatConfig, sources: list[dict[str, Any]] | None, max_turns: int
    ) -> PromptPlan:
        """Fit ``history`` into this backend's context window (InputError when the last message cannot fit); with
        sources, the last user message carries them (``core.chat.rag_prompt``)."""
        system = config.system_prompt
        return build_prompt(
            with_passages(history, sources),
            count_tokens=self.backend.count_prompt_tokens,
            context_window=self.backend.context_window,
            max_new_tokens=config.settings.max_new_tokens,
            max_turns=max_turns,
            system=system,
            system_source=config.system_source if not sources else f"{config.system_source} and the sources",
        )

    def _prepare(
        self,
        session_id: str,
        path: list[Message],
        new_text: str | None,
        stop: threading.Event,
        replaces: str | None = None,
        new_images: Sequence[ImageInput] = (),
    ) -> _Turn:
        """Decide everything the answer needs (errors raise before anything changes): config, sources, prompt.
        ``path`` is the branch the answer follows (ending with the question unless ``new_text`` is it)."""
        session = self.store.get_session(session_id)
        config = self.config(session_id)
        history = self._history([m for m in path if _usable(m) and m.id != replaces], asked=new_text is None)
        if new_text is not None:
            history.append(("user", new_text, new_images))
        sources, notice = self._retrieve(session, retrieval_query(history))
        sources = fit_sources(
            history,
            sources,
            count_tokens=self.backend.count_prompt_tokens,
            system=config.system_prompt,
            context_window=self.backend.context_window,
            max_new_tokens=config.settings.max_new_tokens,
            layout=_rag_layout,
        )
        plan = self._plan(history, config, sources, max_turns=config.settings.max_turns)
        question = next((item[1] for item in reversed(history) if item[0] == "user"), "")
        return _Turn(session, "", plan, config.settings, stop, config.adapter, replaces, sources, notice,
                     config.persona, question)

    def _history(self, messages: list[Message], asked: bool) -> list[HistoryItem]:
        """The prompt history of ``messages``, user messages with their stored pictures (``asked``: the last user
        message is the question; a picture of it that cannot be read raises, an earlier one becomes a note)."""
        stored = self.store.images_for(m.id for m in messages if m.role == "user")
        question = next((m.id for m in reversed(messages) if m.role == "user"), None) if asked else None
        history: list[HistoryItem] = []
        for message in messages:
            pictures = stored.get(message.id)
            if not pictures:
                history.append((message.role, message.content))
                continue
            if not self.backend.capabilities.images:
                note = picture_note(len(pictures))
            else:
                try:
                    history.append((message.role, message.content, [p.read() for p in pictures]))
                    continue
                except StorageError:
                    if message.id == question:
                        raise
                    note = picture_note(len(pictures), missing=True)
            history.append((message.role, "\n\n".join(part for part in (message.content, note) if part)))
        return history

    def _retrieve(self, session: Session, question: str) -> tuple[list[dict[str, Any]] | None, str | None]:
        """The retriever's sources (None: RAG off), or None and the reason when it cannot search."""
        if self.retriever is None:
            return None, None
        try:
            found = self.retriever(session, question)
        except InkstoneError as exc:  # Chroma down, re-embed needed...: answer without sources and say so
            return None, f"Answering without the knowledge bases: {exc}"
        return (None if found is None else list(found)), None

    def _stream(self, turn: _Turn) -> Iterator[ChatEvent]:
        """Create the answer row and stream into it; ``_finalize`` writes its end, whatever ends the stream."""
        rec = AnswerRecorder.start(self.store, turn.session, self.backend.model_id, turn.persona,
                                   parent_id=turn.user_message_id)  # fmt: skip
        error: str | None = None
        backend_events = None
        loop = LoopResult()
        try:
            yield Started(turn.user_message_id, rec.answer_id, turn.plan.prompt_tokens, turn.plan.omitted_turns)
            if turn.sources is not None or turn.notice:
                yield Sources(turn.sources or [], turn.notice)
            if turn.sources == []:  # RAG on, nothing relevant found: the app says so first, in the user's language
                opening = not_found_line(turn.question) + "\n\n"
                rec.add(opening)
                yield Token(opening)
            tools = self.tools(turn.session) if self.tools is not None else None
            if tools is not None:
                yield ToolsOn([t.spec.name for t in tools.tools], tools.max_steps, tools.notice)
            if tools is not None and tools.tools:
                backend_events = tool_turn(self.backend, turn.plan.messages, turn.settings, tools.tools, turn.stop,
                                           max_steps=tools.max_steps, adapter=turn.adapter)
                new_round = False
                for item in backend_events:
                    if isinstance(item, str):
                        if new_round and rec.text.strip():  # text before a call and the answer after it
                            item = "\n\n" + item.lstrip()
                        new_round = False
                        rec.add(item)
                        yield Token(item)
                    elif isinstance(item, ToolStep):
                        new_round = True
                        loop.steps.append(item)
                        yield ToolUsed(item)
                    elif isinstance(item, LoopResult):
                        loop.limit_hit = item.limit_hit
                        if item.finished is not None:
                            rec.finish(item.finished)
            else:
                backend_events = self.backend.stream(turn.plan.messages, turn.settings, turn.stop, turn.adapter)
                for event in backend_events:
                    if isinstance(event, TextDelta):
                        rec.add(event.text)  # saved now and then: also the row's heartbeat
                        yield Token(event.text)
                    elif isinstance(event, Finished):
                        rec.finish(event)
            rec.ran_out()
        except InkstoneError as exc:  # generation failed, adapter refused, or the store could not be written
            error = str(exc)
        except Exception as exc:  # a bug: keep the text and say what happened, then let it surface
            error = f"Unexpected error: {type(exc).__name__}: {exc}"
            raise
        finally:
            # Without ``Finished`` or an error, the consumer went away (browser rerun, closed iterator) or the
            # backend ended without it: the recorder's rules say which.
            end = rec.end(error)
            if end.status != "complete":
                turn.stop.set()
            close = getattr(backend_events, "close", None)
            if close is not None:
                close()  # ends generation and releases the backend's lock now, not at garbage collection
            final = self._finalize(turn, rec, end, loop)
        yield final

    def _finalize(self, turn: _Turn, rec: AnswerRecorder, end: RecordedAnswer, loop: LoopResult) -> ChatEvent:
        """Write the answer row's end (text, status, error, figures, sources, tool calls), settle a regenerate, and
        return the event that reports it. Never raises an Inkstone error: a failed write becomes ``Failed``."""
        end, sources = checked_citations(end, turn.sources)
        stats = TurnStats(
            message_id=end.message_id,
            status=end.status,
            text=end.text,
            prompt_tokens=end.prompt_tokens if end.prompt_tokens is not None else turn.plan.prompt_tokens,
            completion_tokens=end.completion_tokens or 0,
            ttft_ms=end.ttft_ms,
            tokens_per_s=end.tokens_per_s,
            omitted_turns=turn.plan.omitted_turns,
            finish_reason=end.reason,
            tool_steps=len(loop.steps),
            tool_limit_hit=loop.limit_hit,
            sources=sources,
        )
        try:
            rec.save(end, sources=sources or None)
            if loop.steps:
                save_steps(self.store, end.message_id, loop.steps)
            self._settle_replacement(turn.replaces, end.message_id, end.status, end.text)
        except InkstoneError as exc:  # locked or disk full: written with the store's next write, or at close
            prefix = f"{end.error} " if end.error else ""
            return Failed(end.message_id, f"{prefix}The answer could not be saved yet: {exc}")
        if end.status == "error":
            return Failed(end.message_id, end.error or "Generation failed.")
        return Done(stats)

    def _settle_replacement(self, replaces: str | None, answer_id: str, status: str, text: str) -> None:
        """After a regenerate: both answers stay as alternatives, except a new one stopped before any text,
        which is dropped (the old answer is current again). A failed new answer stays: its error is visible."""
        if replaces is None or status == "error" or text.strip():
            return
        self.store.delete_branch(answer_id)
        with suppress(NotFoundError):  # the old answer was deleted meanwhile: the parent stays the leaf
            self.store.switch_branch(self.store.get_message(replaces).session_id, replaces)


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
    """The answer a regenerate answers again (kept as the alternative)."""
    sources: list[dict[str, Any]] | None = None
    """Retrieved sources (None: RAG off): in the prompt's context block, sent as ``Sources``, stored with the answer."""
    notice: str | None = None
    """Why RAG could not search for this answer."""
    persona: Persona | None = None
    """The persona that writes the answer, stored with it (None: no persona)."""
    question: str = ""
    """The user message being answered (the language of the app's own "not in the documents" line)."""


def _rag_layout(system: str | None, sources: list[dict[str, Any]] | None, last: ChatMessages) -> ChatMessages:
    """The messages the model reads for the last turn: ``fit_sources`` counts them as ``_plan`` sends them."""
    head: ChatMessages = [{"role": "system", "content": system}] if system else []
    items = [(m["role"], m["content"]) for m in last]
    return head + [{**m, "content": item[1]} for m, item in zip(last, with_passages(items, sources), strict=True)]


def checked_citations(
    end: RecordedAnswer, sources: list[dict[str, Any]] | None
) -> tuple[RecordedAnswer, list[dict[str, Any]] | None]:
    """The answer with each [n] checked against source n (``knowledge.citations``): re-pointed citations in its
    text, its checked sources marked ``verified`` or ``unverified``, and a "(file, date)" line of a passage that
    the model copied left out (``rag_prompt.without_where_lines``). A failed answer is left as it is."""
    if not sources or end.status == "error" or not end.text:
        return end, sources
    text, marked = check_sources(without_where_lines(end.text, sources), sources)
    return replace(end, text=text), marked


def _check_encodable(text: str) -> None:
    """InputError for text that cannot be stored as UTF-8 (lone surrogates from undecodable input bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        try:
            shown = repr(bad.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            shown = ascii(bad)
        raise InputError(
            f"The message contains bytes that are not valid UTF-8 ({shown} at character {exc.start}): send it as "
            "UTF-8 text (check the encoding of the terminal or file it comes from)."
        ) from None


def _usable(message: Message) -> bool:
    """Messages that go into prompts: user messages and answers with text that did not fail."""
    if message.role == "user":
        return True
    return message.role == "assistant" and message.status in ("complete", "stopped") and bool(message.content.strip())
