"""Pieces of the batched decode loop (``core.generation.batching``): the prompt-prefix cache, per-row attention for a
left-padded batch, and left padding. Sampling is ``core.generation.sampling``'s, shared with the single-answer path.
"""

from __future__ import annotations

from typing import Any

BLOCK = 32
"""Prompt tokens prefilled per forward pass, and the unit in which prompt prefixes are reused."""


class PrefixCache:
    """Keys and values of the last few prompts, so that a new prompt sharing a long prefix with one of them (the
    same system prompt, the earlier turns of the same chat) prefills only what follows.

    Stored tensors are never written to: the cache layers concatenate into new ones.
    """

    def __init__(self, entries: int = 8, max_tokens: int = 8192, block: int = BLOCK) -> None:
        self.entries = entries
        self.max_tokens = max_tokens
        self.block = block
        self._items: list[tuple[list[int], list[tuple[Any, Any]]]] = []
        self.reused_tokens = 0
        """Prompt tokens taken from the cache so far (for benchmarks)."""

    def lookup(self, prompt: list[int]) -> list[tuple[Any, Any]]:
        """Per layer (keys, values) of the longest stored prefix of ``prompt`` in whole blocks, short of the
        prompt's last token (it must run to give the next token's logits); empty when there is none."""
        best, found = 0, None
        for ids, kv in self._items:
            n = common_prefix(ids, prompt, len(prompt) - 1) // self.block * self.block
            if n > best:
                best, found = n, kv
        if found is None:
            return []
        self.reused_tokens += best
        return [(k[:, :, :best], v[:, :, :best]) for k, v in found]

    def store(self, prompt: list[int], kv: list[tuple[Any, Any]]) -> None:
        """Remember ``prompt``'s keys and values (dropping a stored prompt it extends, and the oldest ones beyond
        ``entries`` prompts or ``max_tokens`` tokens in all)."""
        self._items = [item for item in self._items if common_prefix(item[0], prompt, len(item[0])) < len(item[0])]
        self._items.append((list(prompt), kv))
        del self._items[: -self.entries]
        while len(self._items) > 1 and sum(len(ids) for ids, _ in self._items) > self.max_tokens:
            del self._items[0]


def common_prefix(a: list[int], b: list[int], limit: int) -> int:
    """Length of the common prefix of ``a`` and ``b``, at most ``limit``."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y or n >= limit:
            break
        n += 1
    return n


ROWS_ATTENTION = "inkstone_rows"
"""The attention used for batched decoding steps of an ``sdpa`` model (see ``rows_attention``)."""


def rows_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, row_starts: Any = None,
                    scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """Attention of one new token per row, each row over its own keys only (its left padding cut off).

    An answer's rounding, and with it its greedy tokens, then do not depend on the other answers in the batch
    (a padded, masked batch rounds its softmax sums differently). The few small float32 matmuls per row cost
    less than an ``sdpa`` call each. Without ``row_starts`` (a prompt) it is plain masked ``sdpa``.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if row_starts is None or query.shape[2] != 1 or kwargs.get("softcap") is not None or \
            getattr(module, "sinks", None) is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    batch, heads, _, dim = query.shape
    groups = heads // key.shape[1]  # query heads per key/value head (grouped-query attention)
    scale = scaling if scaling is not None else dim ** -0.5
    rows = []
    for b, start in enumerate(row_starts):
        q = query[b].reshape(key.shape[1], groups, dim).float()  # head h uses key/value head h // groups
        weights = (q @ key[b, :, start:].float().transpose(-1, -2) * scale).softmax(-1)
        rows.append(weights @ value[b, :, start:].float())
    out = torch.stack(rows).reshape(batch, heads, 1, dim).transpose(1, 2)
    return out.to(query.dtype), None


def register_rows_attention() -> None:
    """Make ``ROWS_ATTENTION`` a transformers attention implementation (with ``sdpa``'s masks)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ROWS_ATTENTION, rows_attention)
    AttentionMaskInterface.register(ROWS_ATTENTION, sdpa_mask)


def left_pad(tensor: Any, width: int, dim: int = -2) -> Any:
    """``tensor`` padded with zeros on the left of ``dim`` to ``width``."""
    import torch

    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
