"""Chat codecs: messages -> prompt ids, ids -> text, and the ids that end an answer.

``HFChatCodec`` wraps a Hugging Face tokenizer with a chat template. ChatGLM3 has its own codec
(``core.chatglm3.ChatGLM3Tokenizer``) with the same three members, so the backend treats both alike.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from core.errors import ModelError


class ChatCodec(Protocol):
    """What the transformers backend needs from a tokenizer."""

    stop_ids: list[int]

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of the chat prompt, ending with the assistant's turn marker."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` with special tokens left out."""
        ...


class HFChatCodec:
    """A Hugging Face tokenizer and its chat template."""

    def __init__(self, tokenizer: Any, generation_config: Any = None, source: str = "") -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ModelError(
                f"The tokenizer of {source or 'this model'} has no chat template, so Inkstone cannot build prompts: "
                "use an instruct/chat model, or add a `chat_template` to its tokenizer_config.json."
            )
        self.tokenizer = tokenizer
        self._lock = threading.Lock()  # Rust tokenizers may refuse concurrent use ("Already borrowed")
        stop: list[int] = []
        for candidate in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
            for i in candidate if isinstance(candidate, list) else [candidate]:
                if isinstance(i, int) and i not in stop:
                    stop.append(i)
        self.stop_ids = stop
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop[0] if stop else 0)
        # Streaming decodes a few ids per token: the Rust tokenizer straight, where transformers' decode would only
        # convert the ids and (with clean_up_tokenization_spaces off) return the same text.
        rust = getattr(tokenizer, "backend_tokenizer", None)
        self._fast_decode = None if rust is None or getattr(tokenizer, "clean_up_tokenization_spaces", True) \
            else rust.decode

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """Render the chat template with the generation prompt and tokenize it. A message with a ``tools`` list
        (``core.tools.formats``) hands it to the template as its ``tools`` variable."""
        tools = next((m["tools"] for m in messages if m.get("tools")), None)
        if tools is not None:
            messages = [{k: v for k, v in m.items() if k != "tools"} for m in messages]
        with self._lock:
            ids = self.tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        return list(ids)

    def decode(self, ids: list[int]) -> str:
        """Decode, skipping special tokens."""
        with self._lock:
            if self._fast_decode is not None:
                return self._fast_decode(ids, skip_special_tokens=True)
            return self.tokenizer.decode(ids, skip_special_tokens=True)


class ChatGLM3Codec:
    """ChatGLM3's own prompt format (``core.chatglm3.ChatGLM3Tokenizer``) behind the codec interface."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = list(tokenizer.stop_ids)
        self.pad_id = tokenizer.pad_token_id

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """``[gMASK] sop``, each message with its role token, then ``<|assistant|>``."""
        return self.tokenizer.prompt_ids(messages)

    def decode(self, ids: list[int]) -> str:
        """Decode, skipping special tokens."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def render(self, ids: list[int]) -> str:
        """Text of ids with special tokens shown (for ``model prompt``)."""
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def render_ids(codec: Any, ids: list[int]) -> str:
    """Text of ``ids`` with special tokens kept, for any codec (debug output)."""
    if isinstance(codec, ChatGLM3Codec):
        return codec.render(ids)
    return codec.tokenizer.decode(ids, skip_special_tokens=False)
