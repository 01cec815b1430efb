"""The Gradio chat page: the session list of the one database, the chat with streaming, Stop, Regenerate and
editing your messages, persona, RAG and knowledge-base picker, uploads into a knowledge base, and generation
settings.

Everything it does goes through the core: ``ChatService`` for turns, ``HistoryStore`` for sessions,
``core.chat.defaults`` for what a new chat starts with, ``KnowledgeService`` for knowledge. The open chat's id is
kept in the browser (``gr.BrowserState``), so a reload reopens it; a chat from the Streamlit app opens here and
the other way round.

A new chat is a draft until its first message (as in the Streamlit app): its persona, RAG choice and settings are
stored with that message. Handlers are methods of ``ChatPage``; ``build`` lays the page out and wires them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from core.chat.defaults import create_chat, draft_config, load_chat_defaults
from core.chat.service import Done, Failed, Sources, Started, Token, ToolsOn, ToolUsed
from core.config import GenerationSettings
from core.engine import Engine
from core.errors import InkstoneError, NotFoundError
from core.generation.scheduler import line
from core.history.steps import steps_of
from core.history.store import Session
from gradio_ui import view
from gradio_ui.turns import Cancelled, Turns, Waiting, relay

EngineGetter = Callable[[], Engine]
LIST_LIMIT = 200
SLIDERS = ("temperature", "top_p", "max_new_tokens", "repetition_penalty")
CANCELLED = "You stopped waiting: your message is kept. Regenerate answers it when the model is free."


class ChatPage:
    """Handlers of one Gradio page over ``engine()``."""

    def __init__(self, engine: EngineGetter) -> None:
        self.engine = engine
        self.turns = Turns()

    # What the page shows

    def session_list(self, current: str | None, query: str = "") -> dict[str, Any]:
        """The session list (search results when ``query`` has text), the open chat selected."""
        store = self.engine().store
        sessions = store.search_sessions(query) if query.strip() else store.list_sessions(limit=LIST_LIMIT)
        counts = {s.id: store.message_count(s.id) for s in sessions}
        choices = view.session_choices(sessions, counts, current)
        return gr.update(choices=choices, value=current if current in {c[1] for c in choices} else None)

    def persona_choices(self) -> list[tuple[str, str]]:
        """``(label, id)`` of every valid persona, after "No persona" (broken ones are left out)."""
        return [("No persona", ""), *((p.label, p.id) for p in self.engine().personas()[0])]

    def kb_names(self) -> list[str]:
        """Names of the knowledge bases of this data dir."""
        knowledge = self.engine().knowledge
        return [s.kb.name for s in knowledge.summaries()] if knowledge else []

    def model_text(self) -> str:
        """The loaded model, as the settings accordion names it."""
        info = self.engine().backend.info()
        extra = " · ".join(x for x in (info.device, info.dtype, info.quantize) if x)
        return f"Loaded model: **{info.model_id}** ({info.backend}{', ' + extra if extra else ''}), context " \
               f"{info.context_window} tokens. Shared with the API and every open tab."

    def _messages(self, history: list[Any]) -> list[dict[str, str]]:
        """``history`` as the chatbot shows it, answers with their stored tool calls."""
        ids = [m.id for m in history if m.role == "assistant"]
        return view.chat_messages(history, steps_of(self.engine().store, ids))

    def show(self, session_id: str | None, notice: str = "") -> tuple[Any, ...]:
        """Everything that depends on the open chat: its id, messages, persona, RAG, title, settings, notice."""
        engine = self.engine()
        names = self.kb_names()
        personas = self.persona_choices()
        session = self._session(session_id)
        if session is not None:
            settings = engine.service.session_settings(session.id)
            messages = self._messages(engine.store.messages(session.id))
            rag, kbs = engine.knowledge.session_knowledge(session.id) if engine.knowledge else (False, [])
            persona, title, picked = session.persona or "", session.title, [kb.name for kb in kbs]
        else:  # a draft: what a new chat starts with
            defaults = load_chat_defaults(engine.settings)
            rag, picked, title, messages = False, [], "", []
            persona, settings = defaults.persona or "", defaults.generation
        session_id = session.id if session is not None else None
        if persona not in {p[1] for p in personas}:
            personas.append((f"{persona} (unavailable)", persona))
        if not messages and (greeting := self._greeting(persona)):
            messages = [{"role": "assistant", "content": greeting}]
        values = [getattr(settings, name) for name in SLIDERS]
        return (session_id, messages, gr.update(choices=personas, value=persona), gr.update(value=rag),
                gr.update(choices=names, value=[n for n in picked if n in names]), title, *values, notice)  # fmt: skip

    def _session(self, session_id: str | None) -> Session | None:
        """The stored chat ``session_id``; None for a draft or a chat deleted meanwhile (in another tab or app)."""
        if session_id is None:
            return None
        try:
            return self.engine().store.get_session(session_id)
        except NotFoundError:
            return None

    def _greeting(self, persona_id: str) -> str:
        if not persona_id:
            return ""
        try:
            persona = self.engine().persona(persona_id)
        except InkstoneError:
            return ""
        return view.answer_markdown(persona.greeting, name=persona.name, avatar=persona.avatar) if persona.greeting \
            else ""

    def load(self, session_id: str | None) -> tuple[Any, ...]:
        """First draw of a tab (or a reload): the chat it had open, the list, the model line, knowledge bases."""
        shown = self.show(session_id)
        names = self.kb_names()
        return (*shown, self.session_list(shown[0]), self.model_text(), gr.update(choices=names))

    def open(self, session_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Open a chat picked in the list (the answer this tab is writing is stopped first)."""
        self.turns.stop(request.session_hash or "")
        return (*self.show(session_id), self.session_list(session_id))

    def new_chat(self, request: gr.Request) -> tuple[Any, ...]:
        """A draft chat: created with its first message."""
        self.turns.stop(request.session_hash or "")
        return (*self.show(None), self.session_list(None))

    # Session list

    def rename(self, session_id: str | None, title: str, query: str) -> tuple[Any, str]:
        """Rename the open chat; the list shows the new title."""
        if session_id is None:
            return gr.skip(), "Send a first message: a new chat is stored (and can be renamed) from then on."
        try:
            self.engine().store.rename_session(session_id, title)
        except InkstoneError as exc:
            return gr.skip(), f"⚠️ {exc}"
        return self.session_list(session_id, query), "Renamed."

    def delete(self, session_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Delete the open chat and all its messages, then show a draft."""
        self.turns.stop(request.session_hash or "")
        notice = ""
        if session_id is not None:
            try:
                self.engine().store.delete_session(session_id)
                notice = "Chat deleted."
            except NotFoundError:
                notice = "That chat was already deleted."
        return (*self.show(None, notice), self.session_list(None), gr.update(visible=False))

    # Persona, knowledge, settings of the open chat

    def set_persona(self, session_id: str | None, persona: str) -> str:
        """Store the open chat's persona (it writes from the next answer); a draft keeps it until sent."""
        if session_id is None:
            return ""
        engine = self.engine()
        try:
            config = engine.service.config(session_id, persona=persona or "")
            engine.store.update_session(session_id, persona=config.persona_id or "")
        except InkstoneError as exc:
            return f"⚠️ {exc}"
        return f"{config.persona.name} writes the next answer." if config.persona else "No persona from now on."

    def set_knowledge(self, session_id: str | None, rag: bool, picked: list[str]) -> tuple[Any, str]:
        """Store the chat's RAG switch and knowledge bases (all of them when RAG is turned on with none picked)."""
        names = self.kb_names()
        if rag and not names:
            return gr.update(value=[]), "⚠️ There is no knowledge base yet: upload files under Knowledge first."
        picked = [n for n in picked or [] if n in names] or (list(names) if rag else [])
        if session_id is not None and self.engine().knowledge is not None:
            try:
                self.engine().knowledge.set_session_knowledge(session_id, bool(rag), picked)
            except InkstoneError as exc:
                return gr.skip(), f"⚠️ {exc}"
        return gr.update(value=picked), ""

    def set_settings(self, session_id: str | None, *values: float) -> str:
        """Store the open chat's generation settings (a draft's are stored with its first message)."""
        if session_id is None:
            return ""
        engine = self.engine()
        try:
            config = engine.chat_config(session_id, overrides=dict(zip(SLIDERS, values, strict=True)))
            engine.store.update_session(session_id, settings=config.stored)
        except InkstoneError as exc:
            return f"⚠️ {exc}"
        return "Settings saved for this chat."

    # Knowledge bases

    def upload(self, name: str, files: list[str] | None) -> tuple[str, Any, Any, Any]:
        """Ingest uploaded files into knowledge base ``name`` (created if new); Gradio's copies are deleted."""
        knowledge = self.engine().knowledge
        if not files:
            return "⚠️ No file chosen: add files to upload first.", gr.skip(), gr.skip(), None
        if not (name or "").strip():
            return "⚠️ No knowledge base named: pick one or type a new name.", gr.skip(), gr.skip(), gr.skip()
        paths = [Path(f) for f in files]
        try:
            report = knowledge.ingest_uploads(name, [(p.name, p.read_bytes()) for p in paths])
        except (InkstoneError, OSError) as exc:
            return f"⚠️ {exc}", gr.skip(), gr.skip(), gr.skip()
        finally:
            for path in paths:
                path.unlink(missing_ok=True)  # Inkstone keeps no copy of an upload
        lines = [report.summary(), *(f"- {r.name}: {r.error}" for r in report.errors)]
        if report.aborted:
            lines.append(f"Stopped early: {report.aborted}")
        names = self.kb_names()
        return "\n".join(lines), gr.update(choices=names, value=name), gr.update(choices=names), None

    # The turn

    def stop(self, request: gr.Request) -> None:
        """Stop the answer this tab is writing (or waiting for)."""
        self.turns.stop(request.session_hash or "")

    def send(self, text: str, session_id: str | None, persona: str, rag: bool, picked: list[str], query: str,
             temperature: float, top_p: float, max_new_tokens: int, repetition_penalty: float,
             request: gr.Request) -> Iterator[tuple[Any, ...]]:  # fmt: skip
        """Store the message (creating the chat from the draft) and stream the answer."""
        values = (temperature, top_p, max_new_tokens, repetition_penalty)
        engine = self.engine()
        try:
            if session_id is None:
                overrides = dict(zip(SLIDERS, values, strict=True))
                config = draft_config(engine, persona=persona or "", overrides=overrides)
                engine.service.check_message(None, text, config=config)
                session_id = create_chat(engine, config)
                if rag and engine.knowledge is not None:
                    engine.knowledge.set_session_knowledge(session_id, True, picked or self.kb_names())
            else:
                engine.service.check_message(session_id, text)
            stop = self.turns.begin(request.session_hash or "")
        except InkstoneError as exc:
            yield session_id, gr.skip(), gr.skip(), f"⚠️ {exc}", gr.skip()
            return
        try:
            events = engine.service.send(session_id, text, stop)
        except InkstoneError as exc:
            self.turns.end(request.session_hash or "", stop)
            yield session_id, gr.skip(), text, f"⚠️ {exc}", gr.skip()
            return
        yield from self._stream(session_id, events, stop, request, query, clear=True)

    def regenerate(self, session_id: str | None, query: str, request: gr.Request) -> Iterator[tuple[Any, ...]]:
        """Answer the last user message again (the old answer goes once the new one has text)."""
        if session_id is None:
            yield session_id, gr.skip(), gr.skip(), "Nothing to regenerate: send a message first.", gr.skip()
            return
        engine = self.engine()
        try:
            stop = self.turns.begin(request.session_hash or "")
        except InkstoneError as exc:
            yield session_id, gr.skip(), gr.skip(), f"⚠️ {exc}", gr.skip()
            return
        try:
            events = engine.service.regenerate(session_id, stop)
        except InkstoneError as exc:
            self.turns.end(request.session_hash or "", stop)
            yield session_id, gr.skip(), gr.skip(), f"⚠️ {exc}", gr.skip()
            return
        yield from self._stream(session_id, events, stop, request, query, clear=False)

    def edit(self, session_id: str | None, query: str, edited: gr.EditData,
             request: gr.Request) -> Iterator[tuple[Any, ...]]:  # fmt: skip
        """Answer an edited message of yours (the chat's pencil): the edit becomes the current path; the old
        message and what followed it stay stored as another branch (switch to it in the Streamlit chat)."""
        if session_id is None:
            yield session_id, gr.skip(), gr.skip(), "Nothing to edit: send a message first.", gr.skip()
            return
        engine = self.engine()
        shown = [m for m in engine.store.messages(session_id) if m.role in ("user", "assistant")]  # as drawn
        index = edited.index if isinstance(edited.index, int) else edited.index[0]
        if not 0 <= index < len(shown) or shown[index].role != "user":
            yield session_id, self._messages(shown), gr.skip(), "Only your own messages can be edited: " \
                "regenerate an answer instead.", gr.skip()  # fmt: skip
            return
        try:
            stop = self.turns.begin(request.session_hash or "")
        except InkstoneError as exc:
            yield session_id, self._messages(shown), gr.skip(), f"⚠️ {exc}", gr.skip()
            return
        try:
            events = engine.service.edit(session_id, shown[index].id, _text(edited.value), stop)
        except InkstoneError as exc:
            self.turns.end(request.session_hash or "", stop)
            yield session_id, self._messages(shown), gr.skip(), f"⚠️ {exc}", gr.skip()
            return
        yield from self._stream(session_id, events, stop, request, query, clear=False)

    def _stream(self, session_id: str, events: Iterator[Any], stop: Any, request: gr.Request, query: str,
                clear: bool) -> Iterator[tuple[Any, ...]]:  # fmt: skip
        """Relay a turn to the page: (open chat, chatbot, message box, notice, session list) per step."""
        engine = self.engine()
        tab = request.session_hash or ""
        history = engine.store.messages(session_id)
        if history and history[-1].role == "assistant" and not clear:
            history = history[:-1]  # the answer being regenerated
        before = self._messages(history)
        session = engine.store.get_session(session_id)
        persona = None
        try:
            persona = engine.service.persona_of(session)
        except InkstoneError:
            pass  # the service refuses it with its message when the turn starts
        name, avatar = (persona.name, persona.avatar) if persona else (None, None)
        box = "" if clear else gr.skip()
        listed = self.session_list(session_id, query)
        text, notice, steps = "", "", []
        try:
            yield session_id, before, box, "", listed
            for event in relay(events, stop, line(engine.backend), shared=False if persona and persona.lora else None):
                if isinstance(event, Waiting):
                    yield session_id, [*before, _answer(view.waiting_text(event.ahead))], box, "", gr.skip()
                elif isinstance(event, Cancelled):
                    notice = CANCELLED
                elif isinstance(event, Token):
                    text += event.text
                    yield session_id, [*before, _answer(view.answer_markdown(text + " ▌", name=name, avatar=avatar,
                                                                             steps=steps))], box, "", gr.skip()
                elif isinstance(event, ToolUsed):
                    steps.append(event.step.to_dict())
                    yield session_id, [*before, _answer(view.answer_markdown(text + " ▌", name=name, avatar=avatar,
                                                                             steps=steps))], box, "", gr.skip()
                elif isinstance(event, Sources | ToolsOn) and event.notice:
                    notice = f"{notice} {event.notice}".strip()
                elif isinstance(event, Failed):
                    notice = f"⚠️ {event.error}"
                elif isinstance(event, Done | Started):
                    pass
        except InkstoneError as exc:
            notice = f"⚠️ {exc}"
        finally:
            self.turns.end(tab, stop)
        final = self._messages(engine.store.messages(session_id))
        yield session_id, final, box, notice, self.session_list(session_id, query)

    def unload(self, request: gr.Request) -> None:
        """A closed tab stops the answer it was writing."""
        self.turns.stop(request.session_hash or "")


def _text(value: Any) -> str:
    """The text of an edited chatbot message (a string, or a message/content-part dict or list)."""
    if isinstance(value, dict):
        return _text(value.get("content", value.get("text", "")))
    if isinstance(value, list):
        return "".join(_text(part) for part in value)
    return value if isinstance(value, str) else ""


def _answer(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def _slider(name: str) -> gr.Slider:
    low, high, step = {"temperature": (0.0, 2.0, 0.05), "top_p": (0.05, 1.0, 0.05), "max_new_tokens": (16, 4096, 16),
                       "repetition_penalty": (1.0, 2.0, 0.01)}[name]  # fmt: skip
    default = getattr(GenerationSettings(), name)
    return gr.Slider(minimum=low, maximum=high, step=step, value=default, label=name.replace("_", " ").capitalize())


def build(engine: EngineGetter) -> gr.Blocks:
    """The page as Gradio ``Blocks`` (not yet served: see ``gradio_ui.server``)."""
    page = ChatPage(engine)
    with gr.Blocks(title="Inkstone", analytics_enabled=False) as blocks:
        open_id = gr.BrowserState(None, storage_key="inkstone-open-chat")
        with gr.Sidebar(label="Chats"):
            new = gr.Button("New chat", variant="primary")
            query = gr.Textbox(label="Search chats", placeholder="Title or message text")
            sessions = gr.Radio([], label="Chats", elem_id="inkstone-sessions")
            with gr.Accordion("Rename or delete this chat", open=False):
                title = gr.Textbox(label="Title")
                rename = gr.Button("Save title")
                delete = gr.Button("Delete chat", variant="stop")
                with gr.Row(visible=False) as confirm:
                    yes = gr.Button("Yes, delete", variant="stop")
                    no = gr.Button("Cancel")
            persona = gr.Dropdown(page.persona_choices(), value="", label="Persona",
                                  info="Who answers: applies from the next answer")
        chatbot = gr.Chatbot(label="Inkstone", height=520, elem_id="inkstone-chat", buttons=["copy"],
                             feedback_options=None, editable="user")  # fmt: skip
        with gr.Row(equal_height=True):
            rag = gr.Checkbox(label="Answer from my documents", scale=1)
            kbs = gr.Dropdown([], multiselect=True, label="Knowledge bases", show_label=False, scale=3,
                              info="RAG: search these knowledge bases and cite them as [n]")  # fmt: skip
        with gr.Row(equal_height=True):
            message = gr.Textbox(placeholder="Message Inkstone", show_label=False, scale=6, lines=1,
                                 elem_id="inkstone-message", submit_btn="Send")  # fmt: skip
            stop = gr.Button("Stop", scale=1, variant="secondary")
            regenerate = gr.Button("Regenerate", scale=1)
        notice = gr.Markdown(elem_id="inkstone-notice")
        with gr.Accordion("Knowledge: upload files", open=False):
            kb_name = gr.Dropdown([], label="Knowledge base", allow_custom_value=True,
                                  info="Pick one, or type a new name to create it")  # fmt: skip
            files = gr.File(file_count="multiple", label="Files (txt, md, pdf, docx, html)")
            ingest = gr.Button("Upload into the knowledge base")
            ingested = gr.Markdown()
        with gr.Accordion("Model & generation settings", open=False):
            model = gr.Markdown()
            sliders = [_slider(name) for name in SLIDERS]
            saved = gr.Markdown()

        shown = [open_id, chatbot, persona, rag, kbs, title, *sliders, notice]
        blocks.load(page.load, [open_id], [*shown, sessions, model, kb_name])
        sessions.input(page.open, [sessions], [*shown, sessions])
        new.click(page.new_chat, None, [*shown, sessions])
        chatbot.clear(page.new_chat, None, [*shown, sessions])  # the chat's trash button: a new chat, nothing deleted
        query.change(page.session_list, [open_id, query], [sessions])
        rename.click(page.rename, [open_id, title, query], [sessions, notice])
        delete.click(lambda: gr.update(visible=True), None, [confirm])
        no.click(lambda: gr.update(visible=False), None, [confirm])
        yes.click(page.delete, [open_id], [*shown, sessions, confirm])
        persona.input(page.set_persona, [open_id, persona], [notice])
        rag.input(page.set_knowledge, [open_id, rag, kbs], [kbs, notice])
        kbs.input(page.set_knowledge, [open_id, rag, kbs], [kbs, notice])
        for slider in sliders:
            slider.release(page.set_settings, [open_id, *sliders], [saved])
        turn = [open_id, chatbot, message, notice, sessions]
        message.submit(page.send, [message, open_id, persona, rag, kbs, query, *sliders], turn,
                       concurrency_limit=None)  # fmt: skip
        regenerate.click(page.regenerate, [open_id, query], turn, concurrency_limit=None)
        chatbot.edit(page.edit, [open_id, query], turn, concurrency_limit=None)
        stop.click(page.stop, None, None, concurrency_limit=None)
        ingest.click(page.upload, [kb_name, files], [ingested, kb_name, kbs, files])
        blocks.unload(page.unload)
    return blocks
