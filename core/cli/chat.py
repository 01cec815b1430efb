"""``python -m core chat``: answer one MESSAGE (streamed), or chat interactively in a REPL.

Ctrl-C while an answer streams stops it and keeps the partial answer (stored as ``stopped``). ``--image PATH``
(repeatable) sends pictures with MESSAGE to a model that takes them.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from core.chat.defaults import draft_config
from core.chat.service import Done, Failed, Sources, Started, Token, ToolsOn, ToolUsed
from core.cli.common import add_home_flag, fail, print_json, settings_from_args
from core.engine import Engine, build_engine
from core.errors import InkstoneError, InputError
from core.history.export import source_label
from core.history.images import check_count
from core.images import MAX_BYTES, ImageInput, read_image


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``chat``."""
    p = argparse.ArgumentParser(prog="python -m core chat", description="Chat with a model from the terminal.")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--session", help="continue this session id")
    which.add_argument("--new", action="store_true", help="start a new session (the default)")
    p.add_argument("--model", help="profile id or local model directory (see `python -m core model list`)")
    p.add_argument("--persona", help="persona id, or none")
    p.add_argument("--temperature", type=float, help="0 means greedy")
    p.add_argument("--max-new-tokens", type=int, help="longest answer in tokens")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"])
    p.add_argument("--quantize", choices=["4bit", "8bit", "none"])
    p.add_argument("--cpu-weights", choices=["auto", "int4", "int8", "bf16", "fp32"], help="weights held on a CPU")
    p.add_argument("--trust-remote-code", action="store_true", default=None, help="allow a checkpoint's own code")
    p.add_argument("--json", action="store_true", help="print one JSON object with the reply and figures last")
    p.add_argument("--kb", help="turn RAG on for this chat with these knowledge bases (NAME[,NAME...])")
    p.add_argument("--edit", metavar="MESSAGE_ID", help="with --session: replace this user message by MESSAGE and "
                   "answer it; the old message and what followed stay as another branch")
    p.add_argument("--tools", help="let the model call these tools: calculator,datetime,kb (kb searches the --kb "
                   "knowledge bases when the model decides to), mcp:NAME (a server of inkstone.toml)")
    p.add_argument("--max-tool-steps", type=int, default=5, help="tool calls per answer before the loop stops")
    p.add_argument("--image", action="append", metavar="PATH", help="send this picture (PNG, JPEG, WEBP, GIF, BMP) "
                   "with MESSAGE; repeat for more; needs a model that takes images")
    p.add_argument("message", nargs="?", help="answer this once; without it, start a REPL")
    add_home_flag(p)
    return p


class Target:
    """The session the CLI's messages go to. Flags are validated up front but stored only with the first
    message that passes the checks: a refused message leaves no new session and no changed settings behind."""

    def __init__(self, engine: Engine, args: argparse.Namespace) -> None:
        self.engine = engine
        self.session_id: str | None = args.session
        self.persona = args.persona
        """None keeps the session's persona (a new session: the saved new-chat default); ``none`` clears it."""
        self.overrides = {"temperature": args.temperature, "max_new_tokens": args.max_new_tokens}
        if self.session_id is None:  # a new chat starts from the new-chat defaults, as in the app
            self.config = draft_config(engine, persona=self.persona, overrides=self.overrides)
        else:
            self.config = engine.chat_config(self.session_id, persona=self.persona, overrides=self.overrides)
        self.kbs = [kb.name for kb in engine.knowledge.resolve(args.kb)] if args.kb and engine.knowledge else None
        self._pending = self.session_id is None or self.persona is not None or any(
            v is not None for v in self.overrides.values()
        )

    def for_message(self, text: str, images: Sequence[ImageInput] = ()) -> str:
        """The session id for ``text`` (and its pictures): creates the session, or stores the flags' changes, once
        they pass the checks; InputError (nothing stored) if they are refused."""
        self.engine.service.check_message(self.session_id, text, config=self.config, images=images)
        if self.session_id is None:
            self.session_id = self.engine.service.create_session(self.config).id
        elif self._pending:
            persona = None if self.persona is None else (self.config.persona_id or "")
            self.engine.store.update_session(self.session_id, persona=persona, settings=self.config.stored)
        self._pending = False
        if self.kbs is not None and self.engine.knowledge is not None:
            self.engine.knowledge.set_session_knowledge(self.session_id, True, self.kbs)  # --kb: RAG on
            self.kbs = None
        return self.session_id


@contextmanager
def _ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """While an answer streams, Ctrl-C sets ``stop`` (the answer ends cleanly and is kept) instead of raising."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def read_pictures(paths: Sequence[str]) -> list[ImageInput]:
    """The pictures at ``paths``, checked (``core.images.read_image``); InputError naming the file and the fix."""
    check_count(len(paths))
    pictures = []
    for path in map(Path, paths):
        try:
            size = path.stat().st_size
            if size > MAX_BYTES:  # not read into memory
                raise InputError(f"{path} is {size / 1e6:.1f} MB, over the {MAX_BYTES // (1024 * 1024)} MB limit for "
                                 "a picture: scale it down or save it as JPEG.")
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"Cannot read the picture {path} ({exc.strerror or exc}): check the path.") from None
        pictures.append(read_image(data, str(path)))
    return pictures


def answer(
    engine: Engine, session_id: str, text: str, *, out: TextIO | None = None, edit: str | None = None,
    images: Sequence[ImageInput] = (),
) -> dict:
    """Stream one answer to ``out`` (stdout); return the figures (the ``--json`` object). Ctrl-C stops it.
    ``edit``: ``text`` replaces that user message (``ChatService.edit``; it keeps its pictures unless ``images``
    are given) instead of following the chat."""
    out = out or sys.stdout
    stop = threading.Event()
    result: dict = {"session_id": session_id, "reply": "", "prompt_tokens": None, "completion_tokens": None,
                    "ttft_ms": None, "tokens_per_s": None, "finish_reason": None, "sources": [], "status": None}
    if edit is not None:
        events = engine.service.edit(session_id, edit, text, stop, images=list(images) or None)
    else:
        events = engine.service.send(session_id, text, stop, images=images)
    with _ctrl_c_sets(stop):
        for event in events:
            if isinstance(event, Token):
                out.write(event.text)
                out.flush()
            elif isinstance(event, Sources):
                result["sources"] = event.items
                if event.notice:
                    print(f"[{event.notice}]", file=sys.stderr)
            elif isinstance(event, ToolsOn) and event.notice:  # the chat turned tools on (chat view, Gradio)
                print(f"[{event.notice}]", file=sys.stderr)
            elif isinstance(event, ToolUsed):
                from core.cli.tools import show_step

                show_step(event.step, sys.stderr)
                result.setdefault("tool_calls", []).append(event.step.to_dict())
            elif isinstance(event, Started) and event.omitted_turns:
                print(f"[{event.omitted_turns} earlier turns left out of the prompt]", file=sys.stderr)
            elif isinstance(event, Done):
                s = event.stats
                result.update(reply=s.text, prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens,
                              ttft_ms=s.ttft_ms, tokens_per_s=s.tokens_per_s, finish_reason=s.finish_reason,
                              status=s.status)
                result["sources"] = s.sources if s.sources is not None else result["sources"]  # citations checked
            elif isinstance(event, Failed):
                result.update(status="error", error=event.error)
    if result["status"] == "stopped":
        out.write("\n[stopped]")
    out.write("\n")
    for number, source in enumerate(result["sources"], start=1):
        out.write(f"  {source_label(source, source.get('n', number))}\n")  # the sources the answer may cite
    return result


def repl(engine: Engine, target: Target, tools: list | None = None, max_tool_steps: int = 5) -> int:
    """Read messages until EOF or /exit; a refused or undecodable line is reported and the REPL goes on."""
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")  # bad bytes reach check_message (a clear error), not a crash
    where = f"Session {target.session_id}" if target.session_id else "A new session"
    print(f"{where} with {engine.backend.model_id}. Ctrl-C stops an answer; /exit or Ctrl-D quits.")
    while True:
        try:
            text = input("you> ")
        except UnicodeDecodeError as exc:
            print(f"error: that line is not valid text ({exc}): type it again as UTF-8.", file=sys.stderr)
            continue
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text.strip() in ("/exit", "/quit"):
            return 0
        try:
            if tools is not None:
                from core.cli.tools import answer_with_tools

                result = answer_with_tools(engine, target, target.for_message(text), text, tools,
                                           max_steps=max_tool_steps)
            else:
                result = answer(engine, target.for_message(text), text)
        except InkstoneError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        if result.get("status") == "error":
            print(f"error: {result['error']}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``chat`` with parsed arguments."""
    try:
        if args.edit is not None and (args.session is None or args.message is None):
            raise InputError('--edit needs --session ID and the new text: chat --session ID --edit MESSAGE_ID "text".')
        if args.edit is not None and args.tools:
            raise InputError("--edit and --tools do not go together yet: edit the message without --tools.")
        if args.image and (args.message is None or args.tools):
            raise InputError('--image goes with a MESSAGE and without --tools: chat --image PATH "question" (the '
                             'question may be "").')
        images = read_pictures(args.image or [])  # a bad picture is refused before the model loads
        settings = settings_from_args(
            args, model=args.model, device=args.device, quantize=args.quantize, cpu_weights=args.cpu_weights,
            trust_remote_code=args.trust_remote_code
        )
        progress = (lambda msg: print(msg, file=sys.stderr)) if sys.stderr.isatty() else None
        engine = build_engine(settings, progress)
        tools = None
        if args.tools:
            from core.cli.tools import pick_tools

            tools = pick_tools(engine, args.tools, args.kb)
            args.kb = None  # the model searches through the tool instead of retrieval on every turn
        target = Target(engine, args)
        if args.message is None:
            return repl(engine, target, tools, max(0, args.max_tool_steps))
        if tools is not None:
            from core.cli.tools import answer_with_tools

            result = answer_with_tools(engine, target, target.for_message(args.message), args.message, tools,
                                       max_steps=max(0, args.max_tool_steps))
        else:
            result = answer(engine, target.for_message(args.message, images), args.message, edit=args.edit,
                            images=images)
    except InkstoneError as exc:
        return fail(exc)
    if args.json:
        print_json(result)
    if result.get("status") == "error":
        print(f"error: {result['error']}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return run(build_parser().parse_args(argv))
