"""Stored chat sessions from the command line: ``python -m core sessions list|show|export|import|delete|search``,
and the branches of a conversation: ``show ID --tree`` draws them, ``branch ID MESSAGE_ID`` makes one current,
``fork ID MESSAGE_ID`` copies the path down to a message into a new session.

Every subcommand takes ``--home DIR`` (data dir) and ``--json`` (one JSON value on stdout, for
scripts). Inkstone errors are printed to stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from core.cli.common import add_home_flag, fail, print_json, settings_from_args
from core.errors import InkstoneError, InputError
from core.history.export import import_session, load_export, session_to_json, session_to_markdown, source_label
from core.history.steps import steps_of
from core.history.store import HistoryStore, Message, Session, StoredImage
from core.history.training_data import training_jsonl
from core.kb.rows import KnowledgeRows
from core.outputs import write_text_file


def _positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``sessions`` argument parser with its subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    add_home_flag(common)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser = argparse.ArgumentParser(
        prog="python -m core sessions",
        description="List, show, export, delete and search stored chat sessions; switch and fork their branches.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    list_ = sub.add_parser("list", parents=[common], help="list sessions, most recently used first")
    list_.add_argument("--limit", type=_positive, default=None, help="show at most this many (1 or more)")
    show = sub.add_parser("show", parents=[common], help="print one session with its messages")
    show.add_argument("id", help="session id (see `sessions list`)")
    show.add_argument("--tree", action="store_true", help="draw every branch (edits, other answers), * = current path")
    branch = sub.add_parser("branch", parents=[common], help="make the branch of a message the current path")
    branch.add_argument("id", help="session id")
    branch.add_argument("message_id", help="a message id of that session (see `sessions show ID --tree`)")
    fork = sub.add_parser("fork", parents=[common], help="new session from the path down to a message")
    fork.add_argument("id", help="session id")
    fork.add_argument("message_id", help="the last message to copy (see `sessions show ID --tree`)")
    good = sub.add_parser("good", parents=[common], help="mark an answer as good training data")
    good.add_argument("id", help="session id")
    good.add_argument("message_id", help="an answer of that session")
    good.add_argument("--unmark", action="store_true", help="remove the mark")
    data = sub.add_parser("training-data", parents=[common],
                          help="export the good answers of a chat, or of a persona, as JSONL for `core train`")
    data.add_argument("id", nargs="?", help="session id (or --persona)")
    data.add_argument("--persona", help="every good answer this persona wrote, in any chat")
    data.add_argument("--output", "-o", type=Path, help="write to this file, not stdout (never in the data dir)")
    data.add_argument("--force", action="store_true", help="replace the --output file if it exists")
    export = sub.add_parser("export", parents=[common], help="export a session as Markdown or JSON")
    export.add_argument("id", help="session id")
    export.add_argument("--format", choices=("md", "json"), default="md", help="output format (default md)")
    export.add_argument("--output", "-o", type=Path, help="write to this file, not stdout (never in the data dir)")
    export.add_argument("--force", action="store_true", help="replace the --output file if it exists")
    import_ = sub.add_parser("import", parents=[common], help="import a session exported as JSON (a new copy)")
    import_.add_argument("file", type=Path, help="a JSON file written by `sessions export --format json`")
    delete = sub.add_parser("delete", parents=[common], help="delete a session and its messages")
    delete.add_argument("id", help="session id")
    search = sub.add_parser("search", parents=[common], help="search message text and session titles")
    search.add_argument("text", help="words to find (all must occur)")
    search.add_argument("--limit", type=_positive, default=50, help="show at most this many (default 50)")
    search.add_argument("--sessions", action="store_true", help="list matching sessions, not messages")
    return parser


def _session_json(store: HistoryStore, session: Session) -> dict:
    return {**asdict(session), "message_count": store.message_count(session.id)}


def _cmd_list(store: HistoryStore, args: argparse.Namespace) -> None:
    sessions = store.list_sessions(limit=args.limit)
    if args.json:
        print_json([_session_json(store, s) for s in sessions])
        return
    if not sessions:
        print("No sessions yet." if args.limit is None or not store.list_sessions(limit=1) else "No sessions.")
    for s in sessions:
        print(
            f"{s.id}  {s.updated_at[:16].replace('T', ' ')}  {store.message_count(s.id):>4} msgs  {s.title}"
        )


def _print_message(message: Message, pictures: Sequence[StoredImage] = ()) -> None:
    status = "" if message.status == "complete" else f" [{message.status}]"
    print(f"{message.role}{status}: {message.content}")
    for n, picture in enumerate(pictures, start=1):
        print(f"  [picture {n}: {picture.name}, {picture.width} x {picture.height}, {picture.path}]")
    if message.error:
        print(f"  error: {message.error}")
    for i, source in enumerate(message.sources, start=1):
        print(f"  {source_label(source, i)}")


def _one_line(message: Message, width: int = 60) -> str:
    text = " ".join(message.content.split())
    status = "" if message.status == "complete" else f" [{message.status}]"
    return f"{message.id}  {message.role}{status}: {text[:width]}{'…' if len(text) > width else ''}"


def tree_lines(messages: list[Message], current: set[str]) -> list[str]:
    """The tree of a session as text lines: a chain goes straight down, a branch point indents its branches
    (``├─``/``└─``); ``*`` marks the current path."""
    children: dict[str | None, list[Message]] = {}
    for message in messages:
        children.setdefault(message.parent_id, []).append(message)
    lines: list[str] = []
    # An explicit stack, not recursion: any depth of nested branches. Items: a line to print, or a list of
    # siblings to walk with the prefix of their depth.
    stack: list[str | tuple[list[Message], str]] = [(children.get(None, []), "")]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            lines.append(item)
            continue
        kids, prefix = item
        while len(kids) == 1:  # a chain: no indentation, however long
            lines.append(f"{'*' if kids[0].id in current else ' '} {prefix}{_one_line(kids[0])}")
            kids = children.get(kids[0].id, [])
        for i, kid in reversed(list(enumerate(kids))):  # pushed last to first: drawn first to last
            last = i == len(kids) - 1
            stack.append((children.get(kid.id, []), prefix + ("   " if last else "│  ")))
            stack.append(f"{'*' if kid.id in current else ' '} {prefix}{'└─ ' if last else '├─ '}{_one_line(kid)}")
    return lines


def _cmd_show(store: HistoryStore, args: argparse.Namespace) -> None:
    session = store.get_session(args.id)
    messages = store.messages(session.id)
    if args.tree:
        tree = store.all_messages(session.id)
        if args.json:
            print_json({"session": asdict(session), "current": [m.id for m in messages],
                        "tree": [asdict(m) for m in tree]})  # fmt: skip
            return
        print(f"{session.title}\n{session.id} · {len(tree)} messages, {len(messages)} on the current path (*)\n")
        print("\n".join(tree_lines(tree, {m.id for m in messages})))
        return
    if args.json:
        print_json({"session": asdict(session), "messages": [asdict(m) for m in messages]})
        return
    persona = f", persona {session.persona}" if session.persona else ""
    print(f"{session.title}\n{session.id} · model {session.model}{persona} · {len(messages)} messages\n")
    pictures = store.images_for(m.id for m in messages if m.role == "user")
    for message in messages:
        _print_message(message, pictures.get(message.id, ()))


def _knowledge(store: HistoryStore, session_id: str) -> dict:
    """The session's RAG switch and the names of its knowledge bases (ones dropped since left out)."""
    rows = KnowledgeRows.open(Path(store.path))
    try:
        choice = rows.session_knowledge(session_id)
        names = [kb.name for kb in (rows.kb_by_id(kb_id) for kb_id in choice.kb_ids) if kb is not None]
    finally:
        rows.close()
    return {"rag": choice.rag, "knowledge_bases": names}


def _cmd_export(store: HistoryStore, args: argparse.Namespace) -> None:
    session = store.get_session(args.id)
    messages = store.messages(session.id)
    knowledge = _knowledge(store, session.id)
    tree = store.all_messages(session.id)
    pictures = store.images_for(m.id for m in tree if m.role == "user")
    steps = steps_of(store, [m.id for m in tree if m.role == "assistant"])  # the answers' tool calls
    if args.format == "json":
        data = session_to_json(session, messages, **knowledge, tree=tree, images=pictures, steps=steps)
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    else:
        text = session_to_markdown(session, messages, **knowledge, images=pictures, steps=steps)
    if args.output is None:
        sys.stdout.write(text)
        return
    write_text_file(args.output, text, args.home_dir, force=args.force, flag="--output")
    if args.json:
        print_json({"exported": session.id, "format": args.format, "path": str(args.output)})
    else:
        print(f"Exported session {session.id} ({len(messages)} messages) to {args.output}")


def _cmd_import(store: HistoryStore, args: argparse.Namespace) -> None:
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        raise InputError(f"Cannot import {str(args.file)!r}: {exc.strerror or exc}. Give a JSON file from "
                         "`sessions export`.") from None  # fmt: skip
    data = load_export(raw, str(args.file))
    rows = KnowledgeRows.open(Path(store.path))
    try:
        result = import_session(store, rows, data)
    finally:
        rows.close()
    session, count = result.session, store.message_count(result.session.id)
    if result.notice:
        print(result.notice, file=sys.stderr)
    if args.json:
        print_json({"imported": session.id, "title": session.title, "messages": count, "rag": result.rag,
                    "knowledge_bases": result.knowledge_bases, "missing_knowledge_bases": result.missing})  # fmt: skip
        return
    kbs = ", ".join(result.knowledge_bases)
    rag = f"; RAG {'on' if result.rag else 'off'} ({kbs})" if kbs else ""
    print(f"Imported “{session.title}” as session {session.id} ({count} message{'' if count == 1 else 's'}{rag}).")


def _cmd_delete(store: HistoryStore, args: argparse.Namespace) -> None:
    session = store.get_session(args.id)
    count = store.message_count(session.id)
    store.delete_session(session.id)
    if args.json:
        print_json({"deleted": session.id, "title": session.title, "messages": count})
    else:
        print(f"Deleted session {session.id} “{session.title}” ({count} messages).")


def _cmd_branch(store: HistoryStore, args: argparse.Namespace) -> None:
    session = store.get_session(args.id)
    store.switch_branch(session.id, args.message_id)
    messages = store.messages(session.id)
    if args.json:
        print_json({"session": session.id, "current": [m.id for m in messages]})
        return
    print(f"Session {session.id} now shows the branch of {args.message_id} ({len(messages)} messages):\n")
    for message in messages:
        _print_message(message)


def _cmd_fork(store: HistoryStore, args: argparse.Namespace) -> None:
    session = store.get_session(args.id)
    path = store.path_to(args.message_id)
    if path[-1].session_id != session.id:
        raise InputError(f"Message {args.message_id!r} belongs to another session, not {session.id!r}: see "
                         f"`python -m core sessions show {session.id} --tree`.")
    fork = store.fork_session(args.message_id)
    if args.json:
        print_json({"forked": session.id, "session": fork.id, "title": fork.title, "messages": len(path)})
    else:
        print(f"New session {fork.id} “{fork.title}” with the {len(path)} messages down to {args.message_id}.")


def _cmd_good(store: HistoryStore, args: argparse.Namespace) -> None:
    session = store.get_session(args.id)
    if store.get_message(args.message_id).session_id != session.id:
        raise InputError(f"Message {args.message_id!r} belongs to another session, not {session.id!r}.")
    store.mark_good(args.message_id, not args.unmark)
    if args.json:
        print_json({"message": args.message_id, "good": not args.unmark})
    else:
        print(f"Answer {args.message_id} is {'no longer ' if args.unmark else ''}marked as good training data.")


def _cmd_training_data(store: HistoryStore, args: argparse.Namespace) -> None:
    if (args.id is None) == (args.persona is None):
        raise InputError("Give a session id or --persona ID (one of them): `sessions training-data ID -o FILE`.")
    if args.id is not None:
        store.get_session(args.id)
    text = training_jsonl(store, session_id=args.id, persona_id=args.persona)
    if args.output is None:
        sys.stdout.write(text)
        return
    write_text_file(args.output, text, args.home_dir, force=args.force, flag="--output")
    count = text.count("\n")
    if args.json:
        print_json({"path": str(args.output), "records": count})
    else:
        print(f"Wrote {count} training record{'' if count == 1 else 's'} to {args.output} (train with "
              f"`python -m core train --data {args.output} ...`).")


def _cmd_search(store: HistoryStore, args: argparse.Namespace) -> None:
    if args.sessions:
        sessions = store.search_sessions(args.text, limit=args.limit)
        if args.json:
            print_json([_session_json(store, s) for s in sessions])
        else:
            for s in sessions:
                print(f"{s.id}  {s.title}")
        return
    hits = store.search_messages(args.text, limit=args.limit)
    if args.json:
        print_json([asdict(h) for h in hits])
        return
    if not hits:
        print(f"No messages contain {args.text!r}.")
    for hit in hits:
        print(f"{hit.session_id}  {hit.session_title}\n  {hit.role} {hit.message_id}: {hit.snippet}")
    if hits:
        print("\nA message on another branch: `sessions branch SESSION_ID MESSAGE_ID` opens its branch.")


COMMANDS = {
    "list": _cmd_list,
    "show": _cmd_show,
    "export": _cmd_export,
    "import": _cmd_import,
    "delete": _cmd_delete,
    "search": _cmd_search,
    "branch": _cmd_branch,
    "fork": _cmd_fork,
    "good": _cmd_good,
    "training-data": _cmd_training_data,
}


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``sessions`` command; return the exit status (1 with a message on an Inkstone error)."""
    try:
        settings = settings_from_args(args)
        args.home_dir = settings.home
        store = HistoryStore.open(settings.db_path)
        try:
            COMMANDS[args.command](store, args)
        finally:
            store.close()
    except InkstoneError as exc:
        return fail(exc)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run it."""
    return run(build_parser().parse_args(argv))
