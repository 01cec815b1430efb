"""``core.generation.sampling``: the one sampler of the single-answer path (``generate``) and the continuous batch.

Its scores match transformers' own processors (repetition penalty, temperature, top-k, top-p) on random logits;
greedy takes the argmax after the penalty; and through ``generate`` the settings alone decide the answer, whatever
sampling defaults a model's ``generation_config.json`` carries.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from transformers import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from core.backends.base import TextDelta
from core.backends.transformers_backend import TransformersBackend
from core.config import GenerationSettings, load_settings
from core.generation import sampling
from core.models.loader import load_model
from core.models.registry import resolve
from tests.fixtures_native import make_native_checkpoint


def transformers_scores(context: torch.Tensor, scores: torch.Tensor, s: GenerationSettings) -> torch.Tensor:
    """What ``generate``'s own processors make of ``scores`` for these settings."""
    scores = RepetitionPenaltyLogitsProcessor(s.repetition_penalty)(context, scores)
    scores = TemperatureLogitsWarper(s.temperature)(context, scores)
    if s.top_k:
        scores = TopKLogitsWarper(s.top_k)(context, scores)
    return TopPLogitsWarper(s.top_p)(context, scores) if s.top_p < 1.0 else scores


@pytest.mark.parametrize(("top_k", "top_p"), [(0, 0.9), (20, 1.0), (20, 0.5), (0, 1.0)])
def test_scores_match_transformers_processors(top_k: int, top_p: float) -> None:
    torch.manual_seed(0)
    scores = torch.randn(1, 100) * 3
    context = torch.tensor([[3, 7, 7, 42, 99]])
    s = GenerationSettings(temperature=0.8, top_k=top_k, top_p=top_p, repetition_penalty=1.3)
    ours, theirs = sampling.process(context, scores, s), transformers_scores(context, scores, s)
    assert torch.equal(ours.isfinite(), theirs.isfinite())
    torch.testing.assert_close(ours[ours.isfinite()], theirs[theirs.isfinite()])


def test_greedy_is_the_argmax_after_the_penalty() -> None:
    scores = torch.tensor([[5.0, 4.9, -1.0, 0.5]])
    greedy = GenerationSettings(temperature=0, repetition_penalty=1.0)
    assert sampling.pick(sampling.process(None, scores, greedy), greedy).tolist() == [0]
    penalized = greedy.with_updates(repetition_penalty=1.5)
    assert not sampling.is_plain_argmax(penalized)
    assert sampling.pick(sampling.process(torch.tensor([[0]]), scores, penalized), penalized).tolist() == [1]


def test_a_sampled_draw_stays_inside_top_k() -> None:
    torch.manual_seed(1)
    scores = torch.randn(4, 50)
    s = GenerationSettings(temperature=1.5, top_k=3, top_p=1.0, repetition_penalty=1.0)
    drawn = sampling.pick(sampling.process(None, scores, s), s)
    allowed = scores.topk(3).indices
    assert all(int(t) in allowed[row].tolist() for row, t in enumerate(drawn))


def test_the_settings_alone_decide_what_generate_samples(tmp_path: Path) -> None:
    """A model whose generation config asks for a strong repetition penalty and top-k 1 answers greedy settings
    exactly as without them, and still samples varied answers at a high temperature."""
    model_dir = make_native_checkpoint("llama", tmp_path / "tiny-llama")
    settings = load_settings({"model": str(model_dir), "home": str(tmp_path / "home"), "dtype": "float32"},
                             config_file=tmp_path / "absent.toml")
    backend = TransformersBackend(load_model(resolve(str(model_dir)), settings))
    ask = [{"role": "user", "content": "Hello there"}]
    greedy = GenerationSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=8, prompt_lookup="off")
    before = backend.generate_ids(ask, greedy)
    config = backend.loaded.model.generation_config
    config.repetition_penalty, config.top_k, config.temperature = 3.0, 1, 0.01
    assert backend.generate_ids(ask, greedy) == before
    hot = GenerationSettings(temperature=2.0, top_k=0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=8,
                             prompt_lookup="off")
    texts = set()
    for seed in range(4):
        events = backend.stream(ask, hot, threading.Event(), seed=seed)
        texts.add("".join(e.text for e in events if isinstance(e, TextDelta)))
    assert len(texts) > 1
