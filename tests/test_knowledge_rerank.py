"""The optional reranker: a local cross-encoder directory orders the fused candidates of a search.

The cross-encoder here is a tiny randomly initialised BertForSequenceClassification with a WordPiece tokenizer
built offline from a word list: its scores mean nothing, so the tests check the plumbing a user relies on (the
hits come in the order of the cross-encoder's scores, the calibrated relevance shown stays the same, no reranker
set means the old order) and that a missing or broken directory is refused with a message naming it and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from knowledge_fakes import FakeEmbedder

from knowledge import KnowledgeError, KnowledgeLibrary

FAKE = "fake-64"
DOCS = {
    "owls.txt": "Barn owls hunt mice at night over the fields near the river.",
    "owl_care.txt": "An owl in care eats mice and chicks; its cage needs a perch and shade.",
    "river.txt": "The river floods the fields near the village every spring.",
    "mice.txt": "Field mice store seeds in the spring and hide from owls at night.",
    "bakery.txt": "The bakery near the river sells rye bread and owls shaped from dough.",
}
QUESTION = "What do owls eat at night near the river?"


def cross_encoder_dir(path: Path, seed: int) -> Path:
    """A random-weight BERT cross-encoder (one output) with a WordPiece vocabulary of the test's words."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = sorted({w.strip(".,;?").lower() for text in [*DOCS.values(), QUESTION] for w in text.split()})
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=5 + len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1)  # fmt: skip
    BertForSequenceClassification(config).eval().save_pretrained(path)
    return path


def direct_scores(path: Path, texts: list[str]) -> dict[str, float]:
    """The cross-encoder's logit per text, computed with transformers directly (not through knowledge.rerank)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True).eval()
    with torch.inference_mode():
        inputs = tokenizer([QUESTION] * len(texts), texts, padding=True, return_tensors="pt")
        return dict(zip(texts, model(**inputs).logits[:, 0].tolist(), strict=True))


def library(tmp_path: Path, reranker: Path | str | None) -> KnowledgeLibrary:
    lib = KnowledgeLibrary(tmp_path / "chroma", reranker=reranker)
    lib.register_embedder(FakeEmbedder(FAKE))
    for name, text in DOCS.items():
        doc = tmp_path / name
        doc.write_text(text, encoding="utf-8")
        lib.add_document("kb-test", FAKE, name, doc, name, 200, 20)
    return lib


def test_hits_follow_the_cross_encoder_scores_and_keep_their_relevance(tmp_path: Path) -> None:
    plain = library(tmp_path / "plain", None)
    before = plain.search([("kb-test", FAKE)], QUESTION, k=3, floor=0.0)
    everything = plain.search([("kb-test", FAKE)], QUESTION, k=10, floor=0.0)
    plain.close()
    assert [h.score for h in before] == sorted((h.score for h in before), reverse=True)
    relevance = {h.text: h.score for h in everything}
    for seed in range(20):  # a seed whose order differs from the plain one, so the test shows the reranker acts
        directory = cross_encoder_dir(tmp_path / f"reranker-{seed}", seed)
        scores = direct_scores(directory, list(relevance))
        expected = sorted(relevance, key=lambda text: -scores[text])[:3]
        if expected != [h.text for h in before]:
            break
    reranked_lib = library(tmp_path / "reranked", directory)
    hits = reranked_lib.search([("kb-test", FAKE)], QUESTION, k=3, floor=0.0)
    reranked_lib.close()
    assert [h.text for h in hits] == expected
    assert [h.text for h in hits] != [h.text for h in before]
    assert all(h.score == relevance[h.text] for h in hits)  # the shown relevance is still the calibrated cosine


def test_reranker_still_respects_the_relevance_floor(tmp_path: Path) -> None:
    lib = library(tmp_path, cross_encoder_dir(tmp_path / "reranker", 0))
    floor = 0.3
    allowed = {h.text for h in lib.search([("kb-test", FAKE)], QUESTION, k=10, floor=floor)}
    hits = lib.search([("kb-test", FAKE)], QUESTION, k=4, floor=floor)
    lib.close()
    assert hits and {h.text for h in hits} <= allowed
    assert all(h.score >= floor for h in hits)


@pytest.mark.parametrize("problem", ["missing", "no-config", "broken-weights"])
def test_a_bad_reranker_directory_names_the_path_and_the_fix(tmp_path: Path, problem: str) -> None:
    directory = tmp_path / "my-reranker"
    if problem == "no-config":
        directory.mkdir()
        (directory / "weights.bin").write_bytes(b"not a model")
    elif problem == "broken-weights":
        cross_encoder_dir(directory, 0)
        for weights in directory.glob("model.safetensors"):
            weights.write_bytes(b"truncated")
    lib = library(tmp_path, directory)
    with pytest.raises(KnowledgeError) as caught:
        lib.search([("kb-test", FAKE)], QUESTION, k=3, floor=0.0)
    lib.close()
    message = str(caught.value)
    assert str(directory) in message and "reranker" in message and "inkstone.toml" in message


def test_reranker_setting_comes_from_the_toml_file_or_the_environment(tmp_path: Path) -> None:
    from core.config import load_settings

    toml = tmp_path / "inkstone.toml"
    toml.write_text('reranker = "/models/bge-reranker-v2-m3"\n', encoding="utf-8")
    assert load_settings(config_file=toml, environ={}).reranker == "/models/bge-reranker-v2-m3"
    env = {"INKSTONE_RERANKER": "/models/other"}
    assert load_settings(config_file=tmp_path / "none.toml", environ=env).reranker == "/models/other"
    assert load_settings(config_file=tmp_path / "none.toml", environ={}).reranker is None
