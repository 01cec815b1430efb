"""Save as training data: the answers a user marked as good, exported as the chat JSONL that ``core train`` reads.

One record per marked answer: ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}``, the question
it answered and the answer. Earlier turns are left out on purpose: ``core train`` learns from every answer in a
record, so a record holds only the answer the user chose. No system prompt is written: ``core train --system``
gives the persona's to every record, so training matches chatting. Answers that failed or are empty are skipped.
"""

from __future__ import annotations

import json

from core.errors import InputError
from core.history.store import HistoryStore, Message


def training_records(store: HistoryStore, answers: list[Message]) -> list[dict]:
    """The chat-format records of ``answers`` (see the module docstring), in their order."""
    records = []
    for answer in answers:
        if answer.status not in ("complete", "stopped") or not answer.content.strip() or answer.parent_id is None:
            continue
        question = store.get_message(answer.parent_id)
        if question.role != "user" or not question.content.strip():
            continue
        records.append({"messages": [{"role": "user", "content": question.content},
                                     {"role": "assistant", "content": answer.content}]})  # fmt: skip
    return records


def training_jsonl(store: HistoryStore, *, session_id: str | None = None, persona_id: str | None = None) -> str:
    """The JSONL text of the good answers of a chat, or of a persona's answers in every chat; InputError naming
    the fix when none is marked."""
    records = training_records(store, store.good_answers(session_id=session_id, persona_id=persona_id))
    if not records:
        where = f"chat {session_id}" if session_id is not None else f"persona {persona_id!r}'s answers"
        raise InputError(f"No answer of {where} is marked as good: mark answers with 👍 Good in the chat (or "
                         "`python -m core sessions good ID MESSAGE_ID`), then export again.")
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
