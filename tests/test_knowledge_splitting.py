"""Splitting: chunks keep their page and exact character offsets, respect the size, and end at sentence marks.

Chinese text must break after 。！？； (the mark stays with its sentence, no chunk starts with one); English
after ". " and friends; paragraphs first. Offsets are checked against the source text, not recomputed.
"""

from __future__ import annotations

import pytest

from knowledge import KnowledgeError
from knowledge.documents import Segment
from knowledge.splitting import split_segments

ZH = (
    "北京是中国的首都，有三千多年的建城史。长城在北京的北边！故宫为什么这么大？因为它是皇宫；"
    "很多游客每年都来参观。颐和园是清朝的皇家园林。"
)


def test_chunks_keep_page_and_exact_offsets_across_segments() -> None:
    pages = [Segment("First page. " * 30, 1, 0), Segment("Second page text. " * 30, 2, 0), Segment("x y z", 3, 0)]
    chunks = list(split_segments(pages, chunk_size=100, chunk_overlap=20))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert {c.page for c in chunks} == {1, 2, 3}
    for chunk in chunks:
        source = pages[chunk.page - 1].text
        assert source[chunk.start : chunk.end] == chunk.text
        assert len(chunk.text) <= 100


def test_offsets_include_the_segment_offset_for_streamed_text() -> None:
    text = "Alpha beta gamma. " * 20
    chunks = list(split_segments([Segment(text, None, 5000)], chunk_size=80, chunk_overlap=0))
    assert chunks[0].start == 5000 and chunks[0].page is None
    for chunk in chunks:
        assert text[chunk.start - 5000 : chunk.end - 5000] == chunk.text


def test_chinese_chunks_end_at_sentence_marks_which_stay_attached() -> None:
    chunks = list(split_segments([Segment(ZH * 3, None, 0)], chunk_size=40, chunk_overlap=0))
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text[-1] in "。！？；，", chunk.text
        assert chunk.text[0] not in "。！？；，"
        assert len(chunk.text) <= 40
    assert "".join(c.text for c in chunks) == ZH * 3


def test_english_breaks_at_sentences_before_words() -> None:
    text = "The tower is 38 metres tall. It was first lit in 1871. Keepers lived there until 1989. " * 3
    chunks = list(split_segments([Segment(text, None, 0)], chunk_size=60, chunk_overlap=0))
    assert all(c.text.endswith(".") for c in chunks), [c.text for c in chunks]


def test_paragraphs_are_preferred_over_sentences() -> None:
    text = "Short first paragraph.\n\nSecond paragraph, also short. It has two sentences."
    chunks = list(split_segments([Segment(text, None, 0)], chunk_size=60, chunk_overlap=0))
    assert [c.text for c in chunks] == ["Short first paragraph.", "Second paragraph, also short. It has two sentences."]


def test_overlap_repeats_the_end_of_the_previous_chunk() -> None:
    text = "".join(f"Sentence number {i} is here. " for i in range(30))
    chunks = list(split_segments([Segment(text, None, 0)], chunk_size=120, chunk_overlap=40))
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end  # overlapping spans
        assert text[b.start : a.end] in a.text and text[b.start : a.end] in b.text


@pytest.mark.parametrize(("size", "overlap"), [(10, 0), (100, 100), (100, -1)])
def test_bad_chunk_settings_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(KnowledgeError, match="chunk"):
        list(split_segments([Segment("text", None, 0)], size, overlap))


def test_table_rows_are_chunked_with_their_header() -> None:
    rows = "\n".join(f"| BW-{n}0 | {1000 + n * 100} W | {n} litres |" for n in range(10, 30))
    table = f"| Model | Power rating | Capacity |\n|---|---|---|\n{rows}"
    text = f"Kettles we sell.\n\n{table}\n\nSpare lids are sold online."
    chunks = list(split_segments([Segment(text, None, 0)], chunk_size=120, chunk_overlap=0))
    row = next(c for c in chunks if "BW-270" in c.text)
    assert row.header == "| Model | Power rating | Capacity |"
    assert row.stored_text.startswith("| Model | Power rating | Capacity |\n")
    assert text[row.start : row.end] == row.text  # offsets still point at the rows themselves
    assert all(not c.header for c in chunks if "Spare lids" in c.text and "BW-" not in c.text)
    assert chunks[0].header == ""  # the chunk that holds the header itself gets no second copy


def test_html_and_docx_tables_keep_their_header(tmp_path) -> None:
    from pathlib import Path

    from knowledge.loaders import open_document

    rows = "".join(f"<tr><td>车位{n}</td><td>{n * 10}元</td></tr>" for n in range(30))
    page = tmp_path / "p.html"
    page.write_text(
        f"<html><body><p>通知</p><table><tr><th>车位类型</th><th>月租</th></tr>{rows}</table></body></html>"
    )
    docs = Path(__file__).parent / "data" / "rag" / "docs"
    for path in (page, docs / "orbit_kettle_spec.docx"):
        chunks = list(split_segments(open_document(path, path.name).segments(), chunk_size=60, chunk_overlap=0))
        tabled = [c for c in chunks if " | " in c.text and c.header]
        assert tabled, path.name
        assert all(c.stored_text.split("\n")[0] in ("车位类型 | 月租", "Property | Value") for c in tabled)


def test_document_dates_and_version_families() -> None:
    from knowledge.library import document_date, version_family

    assert document_date("Expense Policy (2025 revision)", "Effective 1 January 2025.") == "2025-01-01"
    assert document_date("兰亭花园停车收费通知", "自二零二五年七月一日起执行。") == "2025-07"
    assert document_date("Volcano notes", "Mount Ember last erupted in 1822.") == ""  # a year in a fact is no date
    assert version_family("Expense Policy (2025 revision)") == version_family("Expense Policy")
    assert version_family("青禾咨询员工手册") != version_family("青禾咨询成都分公司员工手册")
