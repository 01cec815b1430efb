"""Streamed text that may turn into tool calls: plain text flows on at once, while text that could open a call is
held back; once a call starts, the rest of the answer is kept and parsed at the end. A call that does not parse
(or names a tool that was not offered) comes back as the text it was. A call written twice in a row is a model
looping: the repeat is dropped and ``repeated`` tells the caller to end the answer."""

from __future__ import annotations

from core.tools.formats import ToolFormat
from core.tools.spec import ToolCall, ToolSpec


class ToolStream:
    """Splits an answer's text pieces into text to show now and, at the end, the calls."""

    def __init__(self, fmt: ToolFormat, tools: list[ToolSpec], forced: bool = False) -> None:
        self.fmt = fmt
        self.tools = tools
        self.in_call = forced
        """True once a call started (from the first token when a grammar forces one)."""
        self._buffer = ""
        self._call = ""
        self._emitted = False
        self._names = frozenset(t.name for t in tools)
        self.repeated = False
        """True once the answer wrote its last call again (``ToolFormat.repeat_at``): the repeat and all after it
        are dropped, and the caller should end the answer."""

    def feed(self, text: str) -> str:
        """The part of ``text`` (with what was held back) that is plain answer text for sure."""
        if self.in_call:
            if not self.repeated:
                self._call += text
                cut = self.fmt.repeat_at(self._call)
                if cut is not None:
                    self._call, self.repeated = self._call[:cut].rstrip(), True
            return ""
        self._buffer += text
        at_start = not self._emitted
        start = self.fmt.call_start(self._buffer, at_start, self._names)
        if start is not None:
            out, self._call, self._buffer = self._buffer[:start], self._buffer[start:], ""
            self.in_call = True
        else:
            cut = len(self._buffer) - self.fmt.hold(self._buffer, at_start)
            out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        self._emitted = self._emitted or bool(out)
        return out

    def finish(self, cut: bool = False) -> tuple[str, list[ToolCall]]:
        """At the end of the answer: the remaining text and the parsed calls (none when they do not parse). An
        answer ``cut`` by ``max_tokens`` inside a later call keeps the complete calls before it."""
        if not self.in_call:
            out, self._buffer = self._buffer, ""
            return out, []
        parsed = self.fmt.parse(self._call, self.tools)
        complete = self.fmt.complete_part(self._call) if cut and parsed is None else None
        if complete:
            parsed = self.fmt.parse(complete, self.tools)
        if parsed is None:
            return self._call, []
        return parsed
