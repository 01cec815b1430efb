"""The one sampler: how generation settings pick the next token from a model's logits, for an answer generated
alone (transformers' ``generate``, given ``SettingsProcessor`` as its logits processor) and for the continuous
batch (``core.generation.batching``, row by row), so that both paths sample the same way.

The order is transformers': repetition penalty on every id of the context, then temperature, top-k and top-p.
Temperature 0 is greedy decoding: the most likely token after the penalty. ``generate_kwargs`` switches
``generate``'s own processors for these four settings off (those a model's ``generation_config.json`` sets
included), so a setting means the same on both paths; ``generate`` then takes the argmax or draws from the softmax
of the processed scores, as ``pick`` does.
"""

from __future__ import annotations

from typing import Any

from core.config import GenerationSettings


def is_greedy(settings: GenerationSettings) -> bool:
    """True when the answer is decoded greedily (temperature 0)."""
    return settings.temperature <= 0


def is_plain_argmax(settings: GenerationSettings) -> bool:
    """True when the next token is simply the most likely one (greedy, without a repetition penalty)."""
    return is_greedy(settings) and settings.repetition_penalty == 1.0


def process(context_ids: Any, scores: Any, settings: GenerationSettings) -> Any:
    """``scores`` [rows, vocab] (float) after the settings, as a new tensor.

    The repetition penalty divides the positive scores of the ids in ``context_ids`` [rows, n] (prompt and answer so
    far; repeated ids change nothing; None will do without a penalty) and multiplies their negative ones. When
    sampling, the scores are then divided by the temperature, and every token outside the top-k and outside the
    top-p mass is set to -inf (the most likely token is always kept).
    """
    import torch

    penalty = settings.repetition_penalty
    if penalty != 1.0:
        picked = scores.gather(-1, context_ids)
        scores = scores.scatter(-1, context_ids, torch.where(picked < 0, picked * penalty, picked / penalty))
    if is_greedy(settings):
        return scores
    scores = scores / settings.temperature
    vocab = scores.shape[-1]
    top_k = settings.top_k if 0 < settings.top_k < vocab else vocab
    if top_k == vocab and settings.top_p >= 1.0:
        return scores
    values, ids = scores.topk(top_k)  # most likely first
    if settings.top_p < 1.0:
        probs = values.softmax(-1)
        before = probs.cumsum(-1) - probs  # the mass of the more likely tokens
        values = values.masked_fill(before >= settings.top_p, float("-inf"))
    return torch.full_like(scores, float("-inf")).scatter(-1, ids, values)


def pick(scores: Any, settings: GenerationSettings) -> Any:
    """The next token id of each row [rows] from ``process``ed scores: the argmax when greedy, else one draw from
    their softmax (what ``generate`` does with them)."""
    import torch

    if is_greedy(settings):
        return scores.argmax(-1)
    return torch.multinomial(scores.softmax(-1), 1).squeeze(1)


class SettingsProcessor:
    """``process`` as a transformers logits processor: ``generate`` calls it with the ids so far and the scores."""

    def __init__(self, settings: GenerationSettings) -> None:
        self.settings = settings

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """The processed scores of the next token (see ``process``)."""
        return process(input_ids, scores, self.settings)


def generate_kwargs(settings: GenerationSettings) -> dict[str, Any]:
    """``generate`` keyword arguments that sample with ``settings`` through ``SettingsProcessor``: greedy at
    temperature 0; transformers' own temperature, top-k, top-p and repetition penalty are off (None), whatever the
    model's generation config says."""
    from transformers import LogitsProcessorList

    return {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": not is_greedy(settings),
        "temperature": None,
        "top_k": None,
        "top_p": None,
        "repetition_penalty": None,
        "logits_processor": LogitsProcessorList([SettingsProcessor(settings)]),
    }
