"""Training data: Alpaca JSON/JSONL (``instruction``, ``input``, ``output``, optional ``system``, ``history``) and
chat JSONL (``messages``), read into conversations with a report of every bad record by line number.

A record becomes one :class:`Example` per assistant answer it holds (earlier turns are the context), so each
example is exactly the prompt the model sees at chat time followed by the answer it should give.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Example:
    """One training example: the chat so far (ending with a user message) and the answer to learn."""

    line: int
    """Line of the record in the data file (1-based)."""
    context: Messages
    answer: str
    record: int | None = None
    """Position of the record in a JSON array (1-based; several may share a line); None in JSONL."""


@dataclass(frozen=True)
class Problem:
    """A record that cannot be used, and why."""

    line: int
    message: str
    record: int | None = None
    """Position of the record in a JSON array (1-based); None in JSONL, where the line names it."""

    def __str__(self) -> str:
        where = f"line {self.line}" if self.record is None else f"record {self.record} (line {self.line})"
        return f"{where}: {self.message}"


@dataclass
class DataReport:
    """What came out of a data file: usable examples and the problems found."""

    path: Path
    records: int = 0
    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Records that had a problem, each counted once (records of a JSON array may share a line)."""
        return len({(p.line, p.record) for p in self.problems})

    def summary(self, limit: int = 20) -> str:
        """Human report: counts, then up to ``limit`` problems with line numbers."""
        head = (f"{self.path.name}: {self.records} records, {len(self.examples)} examples usable, "
                f"{self.skipped} records skipped")
        lines = [head] + [f"  {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more problems")
        return "\n".join(lines)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (the training record names the exact data used)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _records(text: str) -> tuple[list[tuple[int, int | None, Any]], list[Problem]]:
    """(line, array position or None, value) of a JSON array file or a JSONL file, and what is not valid JSON."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        return _array_records(text)
    records, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            records.append((number, None, json.loads(raw)))
        except json.JSONDecodeError as exc:
            problems.append(Problem(number, f"invalid JSON ({exc.msg} at column {exc.colno})"))
        except RecursionError:
            problems.append(Problem(number, "invalid JSON (nested too deeply to be a training example)"))
    return records, problems


def _array_records(text: str) -> tuple[list[tuple[int, int | None, Any]], list[Problem]]:
    """Elements of a top-level JSON array with the line each starts on; stops at the first syntax error."""
    decoder = json.JSONDecoder()
    records: list[tuple[int, int | None, Any]] = []
    pos = text.index("[") + 1
    n = len(text)

    def skip(p: int) -> int:
        while p < n and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip(pos)
    if pos < n and text[pos] == "]":
        return records, []
    while pos < n:
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            bad = text.count("\n", 0, exc.pos) + 1
            return records, [Problem(bad, f"invalid JSON ({exc.msg}); the rest of the file was not read")]
        except RecursionError:
            return records, [Problem(line, "invalid JSON (nested too deeply to be a training example); the rest of "
                                           "the file was not read")]
        records.append((line, len(records) + 1, value))
        pos = skip(pos)
        if pos < n and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < n and text[pos] == "]":
            return records, []
        bad = text.count("\n", 0, pos) + 1
        return records, [Problem(bad, "invalid JSON (expected ',' or ']'); the rest of the file was not read")]
    return records, [Problem(text.count("\n") + 1, "invalid JSON (the array is not closed with ']')")]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _alpaca(record: dict[str, Any], default_system: str | None) -> tuple[Messages, list[str]]:
    """Messages of an Alpaca record, or the problems that make it unusable."""
    problems = []
    instruction, extra, output = record.get("instruction"), record.get("input", ""), record.get("output")
    if _text(instruction) is None or not instruction.strip():
        problems.append("missing or empty `instruction`")
    if extra is not None and _text(extra) is None:
        problems.append("`input` must be a string")
    if _text(output) is None:
        problems.append("missing `output` (the answer to learn)")
    elif not output.strip():
        problems.append("empty answer (`output` is blank)")
    system = record.get("system", default_system)
    if system is not None and _text(system) is None:
        problems.append("`system` must be a string")
    history = record.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(h, list | tuple) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in history
    ):
        problems.append("`history` must be a list of [question, answer] string pairs")
        history = []
    if problems:
        return [], problems
    messages: Messages = [{"role": "system", "content": system}] if system else []
    for question, reply in history:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
    user = instruction if not (extra or "").strip() else f"{instruction}\n{extra}"
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return messages, []


def _chat(record: dict[str, Any], default_system: str | None) -> tuple[Messages, list[str]]:
    """Messages of a chat record (``messages``: role/content dicts), or its problems."""
    raw = record["messages"]
    if not isinstance(raw, list) or not raw:
        return [], ["`messages` must be a non-empty list of {role, content} objects"]
    problems: list[str] = []
    messages: Messages = []
    system = record.get("system", default_system)
    for i, m in enumerate(raw, start=1):
        role, content = (m.get("role"), m.get("content")) if isinstance(m, dict) else (None, None)
        if role not in ("system", "user", "assistant"):
            problems.append(f"message {i} has role {role!r}; use system, user or assistant")
        elif _text(content) is None:
            problems.append(f"message {i} has no string `content`")
        elif role == "system" and messages:
            problems.append(f"message {i} is a system message after the first message")
        elif role == "assistant" and not content.strip():
            problems.append(f"message {i}: empty answer")
        else:
            messages.append({"role": role, "content": content})
    if not problems:
        if not any(m["role"] == "assistant" for m in messages):
            problems.append("no assistant message (nothing to learn)")
        elif messages[-1]["role"] != "assistant":
            problems.append("the last message must be the assistant's answer")
    if problems:
        return [], problems
    if system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    return messages, []


def _examples(line: int, record: int | None, messages: Messages) -> list[Example]:
    """One example per assistant message, with everything before it as context."""
    out = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and i > 0 and messages[i - 1]["role"] == "user":
            out.append(Example(line, [dict(x) for x in messages[:i]], m["content"], record))
    return out


def load_data(path: Path, system: str | None = None) -> DataReport:
    """Read ``path`` (JSON array or JSONL; Alpaca or chat records) into examples and a problem report.

    ``system`` is the system prompt of records that have none (the persona's, so training matches chat).
    Raises InputError when the file cannot be read at all; bad records are reported, not raised.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"Training data {path} does not exist: pass the path of a JSON or JSONL file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Training data {path} cannot be read as UTF-8 text ({exc}): save it as UTF-8 JSON/JSONL.")\
            from None
    report = DataReport(path)
    records, report.problems = _records(text)
    report.records = len(records) + len(report.problems)
    for line, position, record in records:
        if not isinstance(record, dict):
            report.problems.append(Problem(line, f"a record must be a JSON object, got {type(record).__name__}",
                                           position))
            continue
        if "messages" in record:
            messages, problems = _chat(record, system)
        elif "instruction" in record or "output" in record:
            messages, problems = _alpaca(record, system)
        else:
            keys = ", ".join(sorted(record)) or "none"
            messages, problems = [], [f"missing fields: need `instruction` + `output` (Alpaca) or `messages` "
                                      f"(chat); found {keys}"]
        report.problems += [Problem(line, p, position) for p in problems]
        if not problems:
            report.examples += _examples(line, position, messages)
    report.problems.sort(key=lambda p: (p.line, p.record or 0))
    return report
