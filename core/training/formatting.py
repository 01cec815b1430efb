"""Examples -> token ids and labels through the SAME chat codec that builds prompts at chat time.

The prompt part is ``codec.prompt_ids(context)`` (exactly what the transformers backend sends); the answer part is
what the model must produce after it, ending with the token that stops generation. Labels are -100 on the prompt,
so the loss covers only the answer.

- Hugging Face chat templates: the conversation with the answer is rendered by the tokenizer's own template; its
  prompt must be a prefix of that rendering, and the answer runs up to and including the first stop token
  (``<|im_end|>`` for Qwen). Templates that rewrite earlier turns fall back to encoding the answer alone + a stop id.
- ChatGLM3: ``ChatGLM3Tokenizer.answer_ids`` (the answer's SentencePiece ids, then eos) after ``<|assistant|>``.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from core.training.data import DataReport, Example, Problem

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """Token ids of one example and its labels (-100 where no loss is taken)."""

    line: int
    input_ids: list[int]
    labels: list[int]
    record: int | None = None
    """The example's record position in a JSON array (see ``Example.record``)."""


def answer_ids(codec: Any, context: list[dict[str, str]], prompt: list[int], answer: str) -> list[int]:
    """Ids the model should generate after ``prompt`` (the rendering of ``context``) to give ``answer``."""
    from core.models.codec import ChatGLM3Codec

    if isinstance(codec, ChatGLM3Codec):
        return list(codec.tokenizer.answer_ids(answer))
    tokenizer = codec.tokenizer
    with getattr(codec, "_lock", None) or nullcontext():
        full = list(tokenizer.apply_chat_template(
            [*context, {"role": "assistant", "content": answer}],
            tokenize=True, add_generation_prompt=False, return_dict=False,
        ))
        if full[: len(prompt)] == prompt and len(full) > len(prompt):
            tail = full[len(prompt):]
            for i, token in enumerate(tail):
                if token in codec.stop_ids:
                    return tail[: i + 1]
            return [*tail, codec.stop_ids[0]]
        return [*tokenizer.encode(answer, add_special_tokens=False), codec.stop_ids[0]]


def encode_example(codec: Any, example: Example) -> Encoded:
    """Prompt ids (as chat builds them) + answer ids, with labels only on the answer."""
    prompt = list(codec.prompt_ids(example.context))
    answer = answer_ids(codec, example.context, prompt, example.answer)
    return Encoded(example.line, prompt + answer, [IGNORE] * len(prompt) + answer, example.record)


def encode_report(codec: Any, report: DataReport, max_length: int) -> list[Encoded]:
    """Encode every example of ``report``; examples longer than ``max_length`` tokens become problems there.

    Every example of a record must fit for the record to be used (a record is skipped as a whole).
    """
    encoded: list[Encoded] = []
    too_long: dict[tuple[int, int | None], int] = {}
    for example in report.examples:
        item = encode_example(codec, example)
        if len(item.input_ids) > max_length:
            key = (example.line, example.record)
            too_long[key] = max(too_long.get(key, 0), len(item.input_ids))
        else:
            encoded.append(item)
    if too_long:
        report.problems += [Problem(line, f"example is {n} tokens, longer than --max-length {max_length}", record)
                            for (line, record), n in too_long.items()]
        report.problems.sort(key=lambda p: (p.line, p.record or 0))
        report.examples = [e for e in report.examples if (e.line, e.record) not in too_long]
        encoded = [e for e in encoded if (e.line, e.record) not in too_long]
    return encoded


def split_holdout(encoded: list[Encoded], count: int, seed: int) -> tuple[list[Encoded], list[Encoded]]:
    """(train, held out): ``count`` records' examples kept out of training, chosen by ``seed`` (the same split on
    ``--resume``). A record is never split (its turns share a context)."""
    import random

    keys = list(dict.fromkeys((e.line, e.record) for e in encoded))
    if count <= 0 or len(keys) < 2:
        return encoded, []
    held = set(random.Random(seed).sample(keys, min(count, len(keys) - 1)))
    return [e for e in encoded if (e.line, e.record) not in held], [e for e in encoded if (e.line, e.record) in held]
