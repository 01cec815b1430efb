"""Export a stored session as Markdown or as JSON in the OpenAI ``messages`` shape, and import the JSON.

The JSON is ``{"id", "title", "model", "persona", "settings", "created_at", "messages": [{"role",
"content"}, ...]}``, plus ``"rag"`` (the chat's RAG switch) and ``"knowledge_bases"`` (the names of the
knowledge bases it searches) when the caller knows them; a message carries ``"status"``, ``"error"`` or
``"sources"`` only where it has them (an answer that was stopped or failed, or that cited documents), so a
plain chat exports as plain OpenAI messages; an answer written by a persona carries OpenAI's ``"name"`` (the
persona id) and ``"persona"`` (``{"id", "name", "avatar"}`` as it was when it answered). Import creates a new
session (new ids and timestamps) from such a document; ``import_session`` also restores its RAG switch and the
knowledge bases it names that exist here.

A conversation is a tree (edits and regenerated answers are siblings): ``messages`` is its current path, and
``"tree"`` (an extra key OpenAI-shaped readers ignore) holds every message with its ``"id"`` and ``"parent_id"``,
oldest first (an answer marked good as training data has ``"good": true``), with ``"current"`` naming the current
leaf. Import restores the tree when the document has one,
refusing ids that point outside it or go round in a cycle; without one, ``messages`` becomes a single path.

A user message with pictures has OpenAI content parts as its ``content`` (in ``messages`` and in ``tree``):
``[{"type": "text", "text": ...}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}]``.
Import checks every picture through ``core.images`` before storing anything (a bad data URL is one of the problems
listed) and stores it like an attached one. Markdown names them (``[picture 1: red.png, 32 x 24]``).

Tool calls (``core.history.steps``): before an answer that called tools, ``messages`` holds, per call, an assistant
message with ``tool_calls`` (``{"id", "type": "function", "function": {"name", "arguments"}}``, arguments a JSON
string) and the ``{"role": "tool", "tool_call_id", "content"}`` message with its result, as OpenAI writes them; in the
``tree`` the answer carries them as ``"tool_steps"``. Import stores them with the answer again (from the tree when
there is one); a result must answer a call made before it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import InkstoneError, InputError
from core.history import steps as tool_steps
from core.history.store import ROLES, STATUSES, HistoryStore, Message, Session, StoredImage
from core.images import MAX_IMAGES, ImageInput, from_data_url
from core.kb.naming import where_label
from core.kb.rows import KnowledgeRows, SessionKnowledge

_ROLE_HEADINGS = {"system": "**System**", "user": "**User**", "assistant": "**Assistant**"}
Pictures = Mapping[str, Sequence[StoredImage]]
"""The stored pictures of messages, by message id (``HistoryStore.images_for``)."""


def figures_line(message: Message, stopped: str = "stopped") -> str:
    """The figures line under an answer (chat view, Gradio page): ``stopped`` as the status mark of a stopped
    answer, then tokens, decoding tokens/s and time to first token, joined with `` · ``."""
    parts: list[str] = []
    if message.status == "stopped":
        parts.append(stopped)
    elif message.status == "streaming":
        parts.append("… still being written")
    if message.completion_tokens is not None:
        parts.append(f"{message.completion_tokens} tokens")
    if message.tokens_per_s:
        parts.append(f"{message.tokens_per_s:.1f} tokens/s")
    if message.ttft_ms is not None:
        parts.append(f"first token {message.ttft_ms / 1000:.2f} s")
    return " · ".join(parts)


def source_label(source: dict[str, Any], number: int) -> str:
    """``[n] file, p. X`` for one cited source (the page part only when the source has a page; `` (OCR)`` when
    its text was read from a picture; `` (unverified)`` when the answer cites it for something it does not hold)."""
    name = next(
        (source[k] for k in ("file", "source", "document", "title") if source.get(k)), "unknown source"
    )
    unverified = " (unverified)" if source.get("citation") == "unverified" else ""
    return f"[{number}] " + where_label(str(name), source.get("page"), bool(source.get("ocr"))) + unverified


def _markdown_steps(steps: list[tool_steps.Step]) -> list[str]:
    """An answer's tool calls, readable: tool, arguments, time, then the result as a code block."""
    lines = []
    for step in steps:
        args = json.dumps(step["arguments"], ensure_ascii=False)
        failed = ", failed" if step.get("error") else ""
        result = str(step["result"])
        fence = "````" if "```" in result else "```"
        lines += [f"- Tool call: `{step['name']}` with `{args}` ({float(step.get('seconds') or 0):.2f} s{failed})", "",
                  f"  {fence}", *[f"  {line}" for line in result.splitlines() or [""]], f"  {fence}", ""]
    return lines


def session_to_markdown(
    session: Session, messages: list[Message], *, rag: bool | None = None, knowledge_bases: Sequence[str] = (),
    images: Pictures | None = None,
    steps: dict[str, list[tool_steps.Step]] | None = None,
) -> str:
    """A readable Markdown document: title, model/persona line, then each message under its role (an answer's tool
    calls from ``steps`` before its text).

    ``rag`` (None: not known, left out) and ``knowledge_bases`` add the chat's RAG switch and knowledge bases;
    ``images`` (the messages' stored pictures) names each picture under its message.
    """
    lines = [f"# {session.title}", ""]
    meta = f"Model: `{session.model}`"
    if session.persona:
        meta += f" · Persona: {session.persona}"
    if rag is not None:
        meta += " · RAG: " + ("on" if rag else "off")
        meta += f" ({', '.join(knowledge_bases)})" if knowledge_bases else ""
    lines += [f"{meta} · Created: {session.created_at}", ""]
    for message in messages:
        heading = _ROLE_HEADINGS.get(message.role, f"**{message.role}**")
        if message.role == "assistant" and message.persona_name:
            heading = f"**Assistant ({message.persona_name})**"
        lines += [heading, ""]
        lines += _markdown_steps((steps or {}).get(message.id, []))
        lines += [message.content or "", ""]
        pictures = (images or {}).get(message.id, ())
        lines += [f"[picture {n}: {p.name}, {p.width} x {p.height}]" for n, p in enumerate(pictures, start=1)]
        lines += [""] if pictures else []
        if message.status == "stopped":
            lines += ["_(answer stopped before it was finished)_", ""]
        elif message.status == "streaming":
            lines += ["_(answer was still being written)_", ""]
        elif message.status == "error":
            lines += [f"_(answer failed: {message.error or 'unknown error'})_", ""]
        if message.sources:
            lines += ["Sources:", ""]
            lines += [f"- {source_label(src, i)}" for i, src in enumerate(message.sources, start=1)]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _item(message: Message, pictures: Sequence[StoredImage] = ()) -> dict[str, Any]:
    """One message in the OpenAI shape, with Inkstone's extra keys only where it has them (``pictures``: content
    parts, each picture as a data URL; StorageError when a picture's file is gone)."""
    content: Any = message.content
    if pictures:
        content = [{"type": "text", "text": message.content}] if message.content else []
        content += [{"type": "image_url", "image_url": {"url": p.read().data_url()}} for p in pictures]
    item: dict[str, Any] = {"role": message.role, "content": content}
    if message.status != "complete":
        item["status"] = message.status
    if message.error:
        item["error"] = message.error
    if message.sources:
        item["sources"] = message.sources
    if message.role == "assistant" and message.persona_id:
        item["name"] = re.sub(r"[^A-Za-z0-9_-]", "_", message.persona_id)  # OpenAI's participant name
        item["persona"] = {"id": message.persona_id, "name": message.persona_name, "avatar": message.persona_avatar}
    return item


def session_to_json(
    session: Session,
    messages: list[Message],
    *,
    rag: bool | None = None,
    knowledge_bases: Sequence[str] = (),
    tree: list[Message] | None = None,
    images: Pictures | None = None,
    steps: dict[str, list[tool_steps.Step]] | None = None,
) -> dict[str, Any]:
    """The session as a JSON-ready dict in the OpenAI ``messages`` shape (see the module docstring): ``messages``
    is the current path; ``tree`` (every message, ``HistoryStore.all_messages``) adds ``"tree"`` and ``"current"``.
    ``rag`` None leaves the RAG keys out; ``images`` (the messages' stored pictures) go in as ``image_url`` parts;
    ``steps`` (``core.history.steps.steps_of``) are the answers' tool calls."""
    pictures = images or {}
    steps = steps or {}
    out = []
    for message in messages:
        out += tool_steps.openai_messages(message.id, steps.get(message.id, []))
        out.append(_item(message, pictures.get(message.id, ())))
    data = {
        "id": session.id,
        "title": session.title,
        "model": session.model,
        "persona": session.persona,
        "settings": session.settings,
        "created_at": session.created_at,
    }
    if rag is not None:
        data.update(rag=rag, knowledge_bases=list(knowledge_bases))
    if tree is not None:
        data["tree"] = [{"id": m.id, "parent_id": m.parent_id, **_item(m, pictures.get(m.id, ())),
                         **({"good": True} if m.good else {}),
                         **({"tool_steps": tool_steps.tree_steps(m.id, steps[m.id])} if steps.get(m.id) else {})}
                        for m in tree]
        data["current"] = messages[-1].id if messages else None
    return {**data, "messages": out}


Decoded = dict[str, ImageInput]
"""Pictures of an import document checked so far, by data URL (each decoded once, also when it repeats)."""


def _problems(data: Any, decoded: Decoded) -> list[str]:
    if not isinstance(data, dict):
        return [f"the document is a {type(data).__name__}, not a JSON object"]
    problems = []
    if not isinstance(data.get("model"), str) or not data["model"].strip():
        problems.append('"model" is missing or not a non-empty string')
    for key, kind in (("title", str), ("persona", str), ("settings", dict)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            problems.append(f'"{key}" is not a {kind.__name__}')
    if data.get("rag") is not None and not isinstance(data["rag"], bool):
        problems.append('"rag" is not true or false')
    names = data.get("knowledge_bases")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        problems.append('"knowledge_bases" is not a list of names')
    messages = data.get("messages")
    if not isinstance(messages, list):
        return [*problems, '"messages" is missing or not a list']
    calls: set[str] = set()
    for i, item in enumerate(messages):
        if tool_steps.is_call_item(item):
            problems += tool_steps.call_item_problems(item, f"messages[{i}]", calls)
        else:
            problems += _item_problems(item, f"messages[{i}]", decoded)
    if data.get("tree") is not None:
        problems += _tree_problems(data["tree"], data.get("current"), decoded)
    return problems


def _item_problems(item: Any, where: str, decoded: Decoded) -> list[str]:
    """What is wrong with one exported message (empty: nothing); its pictures are decoded into ``decoded``."""
    if not isinstance(item, dict):
        return [f"{where} is not an object"]
    problems = []
    if item.get("role") not in ROLES:
        problems.append(f"{where}.role is {item.get('role')!r}, not one of {', '.join(ROLES)}")
    if isinstance(item.get("content"), list):
        problems += _parts_problems(item["content"], item.get("role"), where, decoded)
    elif not isinstance(item.get("content"), str):
        problems.append(f"{where}.content is missing or not a string")
    if item.get("status", "complete") not in STATUSES:
        problems.append(f"{where}.status is {item.get('status')!r}, not one of {', '.join(STATUSES)}")
    if item.get("error") is not None and not isinstance(item["error"], str):
        problems.append(f"{where}.error is not a string")
    if item.get("good") is not None and not isinstance(item["good"], bool):
        problems.append(f"{where}.good is not true or false")
    signed = item.get("persona")
    if signed is not None and not (
        isinstance(signed, dict) and isinstance(signed.get("id"), str) and isinstance(signed.get("name"), str)
        and isinstance(signed.get("avatar"), str | None)
    ):
        problems.append(f'{where}.persona is not an object with "id" and "name" strings')
    sources = item.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
        problems.append(f"{where}.sources is not a list of objects")
    if item.get("tool_steps") is not None:
        problems += tool_steps.tree_steps_problems(item["tool_steps"], where)
    return problems


def _image_urls(parts: list[Any]) -> list[tuple[int, Any]]:
    """(index, url) of the ``image_url`` parts of a content list (``image_url`` an object with ``url``, or a string)."""
    found = []
    for index, part in enumerate(parts):
        if isinstance(part, dict) and part.get("type") == "image_url":
            ref = part.get("image_url")
            found.append((index, ref.get("url") if isinstance(ref, dict) else ref))
    return found


def _parts_problems(parts: list[Any], role: Any, where: str, decoded: Decoded) -> list[str]:
    """What is wrong with OpenAI content parts: a part that is neither text nor a picture, pictures on a message
    that is not the user's, too many, or a picture ``core.images`` refuses (each decoded once, into ``decoded``)."""
    problems = [f'{where}.content[{i}] is not a {{"type": "text", "text": "..."}} or {{"type": "image_url"}} part'
                for i, part in enumerate(parts) if not (isinstance(part, dict) and (
                    (part.get("type") == "text" and isinstance(part.get("text"), str))
                    or part.get("type") == "image_url"))]  # fmt: skip
    urls = _image_urls(parts)
    if urls and role != "user":
        return [*problems, f"{where}.content has pictures in a {role} message: only user messages carry them"]
    if len(urls) > MAX_IMAGES:
        return [*problems, f"{where}.content has {len(urls)} pictures, more than the {MAX_IMAGES} a message takes"]
    for index, url in urls:
        if not isinstance(url, str):
            problems.append(f'{where}.content[{index}].image_url has no "url" string')
        elif url not in decoded:
            try:
                decoded[url] = from_data_url(url, f"{where}.content[{index}]")
            except InputError as exc:
                problems.append(str(exc))
    return problems


def _text_and_pictures(item: dict[str, Any], decoded: Decoded) -> tuple[str, list[ImageInput]]:
    """A checked message's text (its text parts, joined) and pictures (named ``image 1``, ``image 2``...)."""
    content = item["content"]
    if isinstance(content, str):
        return content, []
    text = "\n".join(part["text"] for part in content if part.get("type") == "text")
    return text, [dataclasses.replace(decoded[url], name=f"image {n}")
                  for n, (_, url) in enumerate(_image_urls(content), start=1)]  # fmt: skip


def _tree_problems(tree: Any, current: Any, decoded: Decoded) -> list[str]:
    """What is wrong with an exported tree: its messages, ids that repeat, parents outside it, cycles."""
    if not isinstance(tree, list):
        return ['"tree" is not a list']
    problems: list[str] = []
    parents: dict[str, Any] = {}
    for i, item in enumerate(tree):
        where = f"tree[{i}]"
        problems += _item_problems(item, where, decoded)
        if not isinstance(item, dict):
            continue
        if not isinstance(item.get("id"), str) or not item["id"]:
            problems.append(f"{where}.id is missing or not a string")
        elif item["id"] in parents:
            problems.append(f"{where}.id {item['id']!r} is used twice")
        else:
            parents[item["id"]] = item.get("parent_id")
    for message_id, parent in parents.items():
        if parent is not None and parent not in parents:
            problems.append(f"message {message_id!r} has parent_id {parent!r}, which is not a message of this chat")
    cyclic = set()
    for message_id in parents:
        seen, at = set(), message_id
        while at in parents and at not in seen:
            seen.add(at)
            at = parents[at]
        if at in seen:
            cyclic.add(at)
    if cyclic:
        problems.append(f"the parent_ids of messages {', '.join(sorted(map(repr, cyclic)))} go round in a cycle")
    if current is not None and current not in parents:
        problems.append(f'"current" {current!r} is not a message of the tree')
    return problems


def load_export(raw: bytes, source: str) -> Any:
    """The JSON document in ``raw`` (UTF-8, a BOM allowed); InputError naming ``source`` when it is not JSON."""
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except RecursionError:
        problem = "its JSON is nested too deeply to be a chat export"
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = str(exc)
    raise InputError(f"Cannot import {source!r}: {problem}. Give a JSON file from `sessions export` or the chat's "
                     "Export JSON button.")


def _check(data: Any) -> Decoded:
    """InputError listing every problem of an import document (nothing stored yet); its pictures, checked."""
    decoded: Decoded = {}
    problems = _problems(data, decoded)
    if problems:
        raise InputError("Cannot import this session: " + "; ".join(problems) + ".")
    return decoded


def _signed(persona: dict[str, Any] | None) -> tuple[str, str, str | None] | None:
    """The (id, name, avatar) an imported answer was written by (None: no persona)."""
    return (persona["id"], persona["name"], persona.get("avatar")) if persona else None


def session_from_json(store: HistoryStore, data: Any) -> Session:
    """Create a new session in ``store`` from an exported JSON document and return it.

    Checks the whole document first (its pictures too) and raises one InputError listing every problem; nothing is
    stored then. An answer exported while ``streaming`` is imported as ``stopped``.
    """
    return _store_session(store, data, _check(data))


def _store_session(store: HistoryStore, data: dict[str, Any], decoded: Decoded) -> Session:
    """Store a checked document (``decoded``: its pictures) as a new session; an error removes it again."""
    session = store.create_session(
        model=data["model"],
        persona=data.get("persona"),
        settings=data.get("settings"),
        title=data.get("title"),
    )
    tree = data.get("tree")
    items = tree if tree is not None else data["messages"]
    new_ids: dict[str, str] = {}
    try:
        previous: str | None = None
        calls: list[dict[str, Any]] = []  # tool-call messages before the answer they belong to
        for item in _parents_first(tree) if tree is not None else items:
            if tool_steps.is_call_item(item):
                calls.append(item)
                continue
            if calls and item["role"] != "assistant":  # calls with no answer after them: kept on an empty one
                previous = _add_steps_answer(store, session.id, previous, calls)
            status = item.get("status", "complete")
            parent = new_ids.get(item.get("parent_id")) if tree is not None else previous
            text, pictures = _text_and_pictures(item, decoded)
            message = store.add_message(
                session.id,
                item["role"],
                text,
                status="stopped" if status == "streaming" else status,
                persona=_signed(item.get("persona")),
                parent_id=parent,
                images=pictures,
            )
            previous = message.id
            if tree is not None:
                new_ids[item["id"]] = message.id
            if item.get("sources") or item.get("error"):
                store.update_message(message.id, sources=item.get("sources"), error=item.get("error"))
            if item.get("good") is True and item["role"] == "assistant":
                store.mark_good(message.id)
            found = tool_steps.from_tree(item["tool_steps"]) if item.get("tool_steps") else \
                tool_steps.from_messages(calls) if item["role"] == "assistant" else []
            calls = []
            if found:
                tool_steps.save_steps(store, message.id, found)
        if calls:
            _add_steps_answer(store, session.id, previous, calls)
        if tree is not None and data.get("current") is not None:
            store.switch_branch(session.id, new_ids[data["current"]])
    except InkstoneError:
        # Do not leave half a conversation behind (a full disk, text that cannot be stored); report the first error.
        with contextlib.suppress(InkstoneError):
            store.delete_session(session.id)
        raise
    return store.get_session(session.id)


def _add_steps_answer(store: HistoryStore, session_id: str, parent: str | None, calls: list[dict[str, Any]]) -> str:
    """An empty stopped answer holding tool calls that no answer followed in the document; returns its id."""
    answer = store.add_message(session_id, "assistant", "", status="stopped", parent_id=parent)
    tool_steps.save_steps(store, answer.id, tool_steps.from_messages(calls))
    return answer.id


def _parents_first(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages of a checked tree in their order, except that each comes after its parent (so ids made on
    import keep the file's order of age, which picks the newest branch when switching)."""
    children: dict[Any, list[int]] = {}
    for index, item in enumerate(tree):
        children.setdefault(item.get("parent_id"), []).append(index)
    ready = list(children.get(None, []))
    heapq.heapify(ready)
    ordered = []
    while ready:
        item = tree[heapq.heappop(ready)]
        ordered.append(item)
        for child in children.get(item["id"], []):
            heapq.heappush(ready, child)
    return ordered


@dataclass(frozen=True)
class ImportedSession:
    """What ``import_session`` stored: the new session, its RAG switch and knowledge bases, and the notice
    naming the knowledge bases the document asks for that do not exist here (None: nothing left out)."""

    session: Session
    rag: bool = False
    knowledge_bases: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notice: str | None = None


def _missing_notice(missing: list[str], found: list[str], rag: bool) -> str | None:
    """The notice naming the knowledge bases an import left out (None when none was)."""
    if not missing:
        return None
    names = ", ".join(repr(n) for n in missing)
    plural = "s" if len(missing) > 1 else ""
    text = f"Knowledge base{plural} {names} of the imported chat do{'' if plural else 'es'} not exist here: left out"
    if found:
        return text + f"; it searches {', '.join(repr(n) for n in found)}."
    if rag:
        return text + ", so RAG is off for it: create or pick a knowledge base, then turn RAG on."
    return text + "."


def import_session(store: HistoryStore, rows: KnowledgeRows, data: Any) -> ImportedSession:
    """``session_from_json`` plus the chat's RAG switch and knowledge bases (``rag``, ``knowledge_bases``).

    ``rows`` are the knowledge tables of ``store``'s database. Named knowledge bases that exist here are
    restored; missing ones are left out and named in the notice; RAG stays off when none is left. An
    InputError (nothing stored) for a bad document; an error while storing removes the new session.
    """
    decoded = _check(data)
    wanted = list(dict.fromkeys(data.get("knowledge_bases") or []))
    kbs = {name: rows.kb_by_name(name) for name in wanted}
    found = [kb for kb in kbs.values() if kb is not None]
    missing = [name for name, kb in kbs.items() if kb is None]
    rag = bool(data.get("rag")) and bool(found)
    session = _store_session(store, data, decoded)
    if found:
        try:
            rows.set_session_knowledge(session.id, SessionKnowledge(rag, tuple(kb.id for kb in found)))
        except InkstoneError:
            with contextlib.suppress(InkstoneError):
                store.delete_session(session.id)
            raise
    names = [kb.name for kb in found]
    return ImportedSession(session, rag, names, missing, _missing_notice(missing, names, bool(data.get("rag"))))
