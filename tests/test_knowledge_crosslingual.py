"""Questions across languages: a chat also searches with the question translated into the passages' language.

What a user relies on: an English question finds a Chinese passage its own words do not reach once the translator
(the loaded model in the app; a plain function here) gives the Chinese question, and the sources say what was
searched; without a translator (``kb query``, a scripted or remote backend) the search is the question alone; the
translator is only asked when the knowledge base holds another language and the question's own search is unsure
(no hit scoring 0.5), and a translator that fails or answers
instead of translating costs nothing. Real Chroma, real embedders (fake-4096 for the library, minilm for the service).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from knowledge_fakes import FakeEmbedder

from core.backends.fake import FakeBackend
from core.config import load_settings
from core.engine import build_engine
from core.kb.translate import model_translator
from knowledge import KnowledgeLibrary
from knowledge.crosslingual import translations

FAKE = "fake-4096"  # wide enough that English words and Chinese characters do not share buckets
NOODLES = "老街面馆开在云溪县城的老街口。面馆的招牌是葱油拌面，每碗十二元。"
LIGHTHOUSE = "Harrow Point Lighthouse is 38 metres tall and was first lit on 14 March 1871."
BAKERY = "The Wren Street Bakery's signature dish is a rye sourdough loaf; its best seller is the cardamom bun."
CAFE = "The harbour cafe's signature dish is fish soup, served from noon in the old shop by the pier."
QUESTION = "What is the signature dish of the laojie noodle shop?"  # lower case: not read as a pinyin name
TRANSLATED = "老街面馆的招牌菜是什么？"


@pytest.fixture
def lib(tmp_path: Path):
    library = KnowledgeLibrary(tmp_path / "chroma")
    library.register_embedder(FakeEmbedder(FAKE, dimension=4096))
    for name, text in {"noodles.txt": NOODLES, "lighthouse.md": LIGHTHOUSE}.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        library.add_document("kb-test", FAKE, name, tmp_path / name, name, 200, 20)
    yield library
    library.close()


def test_a_translation_searched_alongside_finds_the_other_language_passage(lib: KnowledgeLibrary) -> None:
    assert [h.source for h in lib.search([("kb-test", FAKE)], QUESTION)] != ["noodles.txt"]
    hits = lib.search([("kb-test", FAKE)], QUESTION, also=[TRANSLATED])
    assert hits[0].source == "noodles.txt" and "葱油拌面" in hits[0].text
    assert lib.search([("kb-test", FAKE)], QUESTION, also=[QUESTION, ""]) == lib.search([("kb-test", FAKE)], QUESTION)


def test_passage_languages_come_from_the_stored_chunks(lib: KnowledgeLibrary, tmp_path: Path) -> None:
    assert lib.languages([("kb-test", FAKE)]) == {"en", "zh"}
    (tmp_path / "only.txt").write_text("An English note about owls and their nests.", encoding="utf-8")
    lib.add_document("kb-english", FAKE, "only.txt", tmp_path / "only.txt", "only.txt", 200, 20)
    assert lib.languages([("kb-english", FAKE)]) == {"en"}


def test_the_translator_is_asked_only_for_another_language_and_bad_output_is_dropped() -> None:
    asked: list[tuple[str, str]] = []

    def translate(question: str, target: str) -> str:
        asked.append((question, target))
        return {"zh": TRANSLATED, "en": QUESTION}[target]

    assert translations(QUESTION, {"en"}, translate) == [] and asked == []  # the question's language only
    assert translations(QUESTION, {"en", "zh"}, None) == []
    assert translations(QUESTION, {"en", "zh"}, translate) == [TRANSLATED] and asked == [(QUESTION, "zh")]
    assert translations("老街面馆的招牌菜是什么？", {"zh", "en"}, translate) == [QUESTION]

    def broken(question: str, target: str) -> str:
        raise RuntimeError("model crashed")

    assert translations(QUESTION, {"zh"}, broken) == []
    assert translations(QUESTION, {"zh"}, lambda q, t: QUESTION) == []  # not translated: still English
    assert translations(QUESTION, {"zh"}, lambda q, t: "") == []
    answer = "老街面馆的招牌菜是葱油拌面，" * 20  # the model answered at length instead of translating
    assert translations(QUESTION, {"zh"}, lambda q, t: answer) == []


def test_a_chat_searches_with_the_translation_and_shows_it(home: Path, tmp_path: Path) -> None:
    docs = {"noodles.txt": NOODLES, "lighthouse.md": LIGHTHOUSE, "bakery.txt": BAKERY, "cafe.txt": CAFE}
    for name, text in docs.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    engine = build_engine(load_settings({"model": "fake"}), backend=FakeBackend())
    assert engine.knowledge.translate is None  # a scripted backend has no model to translate with
    engine.knowledge.ingest("guide", [tmp_path / name for name in docs], embedder="minilm")
    sid = engine.new_session()
    engine.knowledge.set_session_knowledge(sid, True, ["guide"])
    session = engine.store.get_session(sid)
    before = engine.knowledge.retrieve(session, QUESTION)
    assert before[0]["source"] != "noodles.txt"  # English near misses rank above the Chinese answer
    asked: list[str] = []

    def translate(question: str, target: str) -> str | None:
        asked.append(question)
        return TRANSLATED if target == "zh" else None

    engine.knowledge.translate = translate
    found = engine.knowledge.retrieve(session, QUESTION)
    assert found[0]["source"] == "noodles.txt"
    assert found[0]["query"] == f"{QUESTION} | {TRANSLATED}"  # the sources say what was searched for
    sure = "How tall is Harrow Point Lighthouse, first lit on 14 March 1871?"
    found = engine.knowledge.retrieve(session, sure)  # its own search is sure: no seconds spent translating
    assert found[0]["source"] == "lighthouse.md" and found[0]["query"] == sure
    assert asked == [QUESTION]
    engine.knowledge.close()


def test_the_model_translator_asks_for_a_translation_only() -> None:
    backend = FakeBackend([f"{TRANSLATED}\n(This means: what is the speciality?)"])
    translate = model_translator(backend)
    assert translate(QUESTION, "zh") == TRANSLATED  # the first line only
    system, *_, question = backend.prompts[-1]
    assert "Simplified Chinese" in system["content"] and "Do not answer" in system["content"]
    assert question == {"role": "user", "content": QUESTION}
    assert translate(QUESTION, "fr") is None and len(backend.prompts) == 1


def test_translation_is_opt_in_and_its_setting_is_a_boolean(tmp_path: Path) -> None:
    from core.config import load_settings as load
    from core.errors import ConfigError

    assert load(config_file=tmp_path / "none.toml", environ={}).rag_translate is False
    assert load({"rag_translate": True}, config_file=tmp_path / "none.toml", environ={}).rag_translate is True
    with pytest.raises(ConfigError, match="rag_translate='yes' must be true or false"):
        load({"rag_translate": "yes"}, config_file=tmp_path / "none.toml", environ={})
