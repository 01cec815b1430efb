"""ChatGLM3's tokenizer and prompt format rebuilt from ``tokenizer.model`` with the ``sentencepiece`` package.

No code from the checkpoint is used. The nine ChatGLM3 special tokens get the ids right after the
SentencePiece vocabulary (n .. n+8). A prompt is ``[gMASK] sop``, then for each message
``<|role|>`` + sp.encode(metadata + "\\n") + sp.encode(content) (segments encoded separately), then
``<|assistant|>``. ``decode`` accepts the keyword arguments transformers' streamers pass, so this class
can be used with ``TextStreamer`` / ``TextIteratorStreamer``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core.errors import InputError, ModelError

SPECIAL_TOKENS: tuple[str, ...] = (
    "[MASK]", "[gMASK]", "[sMASK]", "sop", "eop",
    "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>",
)
ROLES: tuple[str, ...] = ("system", "user", "assistant", "observation")


class ChatGLM3Tokenizer:
    """SentencePiece-based ChatGLM3 tokenizer: prompt building, encoding and decoding.

    Attributes:
        special_ids: special token text -> id (``[MASK]`` .. ``<|observation|>``).
        eos_token_id: the SentencePiece ``</s>`` id (2 for ChatGLM3).
        pad_token_id: ChatGLM3 pads with the ``<unk>`` id (0).
        stop_ids: ids that end an answer: eos, ``<|user|>``, ``<|observation|>``.
        vocab_size: number of ids this tokenizer can produce (SentencePiece pieces + 9 specials); the
            model's embedding may be larger (padded).
    """

    def __init__(self, path: Path) -> None:
        """Load ``path``: a checkpoint directory containing ``tokenizer.model``, or that file itself."""
        import sentencepiece as spm

        path = Path(path)
        model_file = path / "tokenizer.model" if path.is_dir() else path
        if not model_file.is_file():
            raise ModelError(f"{model_file} does not exist: a ChatGLM3 checkpoint needs its SentencePiece "
                             "tokenizer.model; copy it from the original download")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"{model_file} is not a SentencePiece model ({exc}); re-download it") from None
        n = self.sp.vocab_size()
        self.sp_vocab_size: int = n
        self.special_ids: dict[str, int] = {tok: n + i for i, tok in enumerate(SPECIAL_TOKENS)}
        self._special_text: dict[int, str] = {i: tok for tok, i in self.special_ids.items()}
        self.eos_token_id: int = self.sp.eos_id()
        self.bos_token_id: int = self.sp.bos_id()
        self.pad_token_id: int = self.sp.unk_id()
        self.vocab_size: int = n + len(SPECIAL_TOKENS)
        self.stop_ids: list[int] = [self.eos_token_id, self.special_ids["<|user|>"],
                                    self.special_ids["<|observation|>"]]

    def encode(self, text: str) -> list[int]:
        """Plain SentencePiece encoding of ``text`` (what the original ``SPTokenizer.encode`` does)."""
        return list(self.sp.encode(text))

    def role_ids(self, role: str, metadata: str = "") -> list[int]:
        """Ids of a message header: ``<|role|>`` + sp.encode(metadata + "\\n")."""
        if role not in ROLES:
            raise InputError(f"message role {role!r} is not a ChatGLM3 role; use one of {', '.join(ROLES)}")
        return [self.special_ids[f"<|{role}|>"], *self.encode(f"{metadata}\n")]

    def prompt_ids(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Ids of the generation prompt for chat ``messages`` (dicts with role, content, optional metadata).

        A system message with a ``tools`` list gets them appended as indented JSON, like the original
        ``build_chat_input``. The prompt ends with ``<|assistant|>``.
        """
        ids = [self.special_ids["[gMASK]"], self.special_ids["sop"]]
        for message in messages:
            role = message.get("role")
            content = message.get("content")
            if not isinstance(content, str):
                raise InputError(f"message content must be a string, got {type(content).__name__}; "
                                 "send text content only")
            if role == "system" and message.get("tools"):
                content = content + "\n" + json.dumps(message["tools"], indent=4, ensure_ascii=False)
            ids += self.role_ids(str(role), str(message.get("metadata") or ""))
            ids += self.encode(content)
        ids.append(self.special_ids["<|assistant|>"])
        return ids

    def count_tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        """Number of prompt tokens for ``messages`` (``len(prompt_ids(messages))``)."""
        return len(self.prompt_ids(messages))

    def answer_ids(self, content: str) -> list[int]:
        """Ids of an assistant reply body as the model produces it after ``<|assistant|>``: text, then eos."""
        return [*self.encode(content), self.eos_token_id]

    def decode(self, ids: Iterable[int] | Any, skip_special_tokens: bool = True, **_: Any) -> str:
        """Decode ``ids`` (list or 1-D tensor) to text.

        Byte-fallback pieces combine into UTF-8 characters; an incomplete byte sequence decodes to
        U+FFFD. ChatGLM3 specials and SentencePiece control tokens (``<s>``, ``</s>``) are dropped, or
        rendered as their text when ``skip_special_tokens`` is False. Ids outside the tokenizer's
        range (the model's padded vocabulary) are always dropped. Other keyword arguments are ignored.
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, int):
            ids = [ids]
        n = self.sp_vocab_size
        text: list[str] = []
        buffer: list[int] = []
        for token in ids:
            token = int(token)
            special = self._special_text.get(token)
            if 0 <= token < n and not (self.sp.is_control(token) and not skip_special_tokens):
                buffer.append(token)
                continue
            if buffer:
                text.append(self.sp.decode(buffer))
                buffer = []
            if skip_special_tokens:
                continue
            if special is not None:
                text.append(special)
            elif 0 <= token < n:
                text.append(self.sp.id_to_piece(token))
        if buffer:
            text.append(self.sp.decode(buffer))
        return "".join(text)

    def token_bytes(self) -> list[bytes]:
        """The bytes each id stands for, as a grammar library needs them (``core.generation.constrain``): a piece's
        text with ``▁`` as a space, a byte-fallback piece ``<0xNN>`` as that byte, and control pieces (``<s>``,
        ``</s>``, ``<unk>``) and the ChatGLM3 specials as their text after a 0xFF byte (never valid UTF-8, so no
        text can spell them). The first piece of an answer keeps its space here; ``decode`` drops it."""
        out: list[bytes] = []
        for i in range(self.sp_vocab_size):
            piece = self.sp.id_to_piece(i)
            if self.sp.is_byte(i):
                out.append(bytes([int(piece[3:5], 16)]))
            elif self.sp.is_control(i) or self.sp.is_unknown(i):
                out.append(b"\xff" + piece.encode())
            else:
                out.append(piece.replace("\u2581", " ").encode())
        return out + [b"\xff" + tok.encode() for tok in SPECIAL_TOKENS]

    def special_token_ids(self) -> list[int]:
        """Ids that stand for no text: SentencePiece control and unknown pieces, and the ChatGLM3 specials."""
        plain = [i for i in range(self.sp_vocab_size) if self.sp.is_control(i) or self.sp.is_unknown(i)]
        return plain + list(self.special_ids.values())

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        """Piece text of each id (special token text for specials, ``""`` for padded-vocabulary ids)."""
        n = self.sp_vocab_size
        return [self._special_text.get(i, self.sp.id_to_piece(i) if 0 <= i < n else "") for i in ids]
