"""What the model reads and what the user keeps in a RAG chat: table rows, named passages, copied source lines.

Checks ``core.chat.rag_tables`` through ``core.chat.rag_prompt.rag_question`` (a table question's prompt holds the
named row as "column: value" pairs under its header, and not the other rows; the sources keep the whole table),
``core.kb.chats.named`` (passages of another company or model stay out when the question names one that a passage
holds) and ``ChatService`` end to end with a scripted backend (a "(file, date)" line the model copies is not in the
answer the user sees and stores).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.backends.fake import FakeBackend
from core.chat.rag_prompt import rag_question, without_where_lines
from core.chat.service import ChatService, Done
from core.config import GenerationSettings
from core.history.store import HistoryStore
from core.kb.chats import named
from core.kb.naming import QueryHit

KETTLES = {"n": 1, "source": "brightwater_kettle_range.md", "date": "2025", "text": (
    "| Model | Power rating | Capacity | Price |\n|---|---|---|---|\n"
    "| BW-130 | 1800 W | 1.2 litres | 45 euros |\n| BW-140 | 2000 W | 1.5 litres | 52 euros |\n"
    "| BW-150 | 2200 W | 1.7 litres | 64 euros |")}  # fmt: skip
PARKING = {"n": 1, "source": "lanting_parking_notice.html", "date": "2025-07", "text": (
    "兰亭花园小区停车收费标准通知\n\n车位类型 | 月租 | 临时停车每小时 | 每日封顶\n\n地面车位 | 300元 | 5元 | 40元\n\n"
    "地下车位 | 450元 | 8元 | 60元\n\n访客车辆首半小时免费。")}  # fmt: skip
ORBIT = {"n": 2, "source": "orbit_kettle_spec.docx", "text": "Property | Value\nCapacity | 1.5 litres\nWeight | 1.1 kg"}


def test_a_table_question_shows_the_named_row_with_its_header_and_no_other_row() -> None:
    asked = rag_question([KETTLES, ORBIT], "What is the price of the BW-140 kettle?")
    assert "Model: BW-140; Power rating: 2000 W; Capacity: 1.5 litres; Price: 52 euros\n" in asked
    assert "BW-130" not in asked and "BW-150" not in asked and "64 euros" not in asked
    assert "Orbit" not in asked and "1.1 kg" not in asked  # a table without the named row is left out
    chinese = rag_question([PARKING], "兰亭花园地下车位每天最多收多少钱？")
    assert "车位类型：地下车位；月租：450元；临时停车每小时：8元；每日封顶：60元" in chinese
    assert "地面车位" not in chinese and "300元" not in chinese
    assert "兰亭花园小区停车收费标准通知" in chinese and "访客车辆首半小时免费。" in chinese  # the prose stays
    assert "52 euros" in KETTLES["text"] and "BW-130" in KETTLES["text"]  # the source itself is not changed


def test_a_table_question_naming_no_row_shows_the_tables_as_they_are() -> None:
    asked = rag_question([KETTLES, ORBIT], "Which kettle is the cheapest?")
    assert "| BW-130 | 1800 W | 1.2 litres | 45 euros |" in asked and "Weight | 1.1 kg" in asked
    assert "Model: " not in asked
    overlap = {**KETTLES, "n": 2, "text": "| Model | Power rating | Capacity | Price |\n"
               "| BW-140 | 2000 W | 1.5 litres | 52 euros |\n| BW-160 | 2400 W | 1.7 litres | 69 euros |"}  # fmt: skip
    shared = rag_question([KETTLES, overlap], "Price of the BW-140?")  # overlapping chunks repeat a row: shown once
    assert shared.count("Model: BW-140") == 1 and "BW-160" not in shared


def hit(rank: int, source: str, text: str) -> QueryHit:
    return QueryHit(rank, 1 - rank / 10, source, None, text, "kb", "2025-01-01")


def test_passages_that_lack_a_name_the_question_gives_stay_out() -> None:
    larkspur = hit(1, "larkspur_expense_policy_2025_revision.md", "Hotels are reimbursed up to 165 euros per night.")
    nimbus = hit(2, "nimbus_handbook.pdf", "Hotel costs are reimbursed up to 140 euros per night in Europe.")
    park = hit(3, "yunxi_forest_park.txt", "云溪森林公园门票每人二十元。")
    kept = named([larkspur, nimbus, park], "Under the current Larkspur policy, what is the hotel limit per night?")
    assert [(h.rank, h.source) for h in kept] == [(1, larkspur.source), (2, park.source)]  # Chinese text stays
    assert named([larkspur, nimbus], "What is the hotel limit per night?") == [larkspur, nimbus]  # no name given
    sources = [h.source for h in named([nimbus, park], "How much is a ticket to Yunxi Forest Park?")]
    assert sources == [nimbus.source, park.source]  # no passage holds the names: all stay
    branch = hit(1, "qinghe_chengdu_branch.md", "青禾咨询成都分公司实行弹性工时。")
    head = hit(2, "qinghe_handbook.md", "青禾咨询总部实行标准工时。")
    other = hit(3, "xinghe_handbook_zh.pdf", "星河科技在杭州和成都两地，实行弹性工作制。")
    assert [h.source for h in named([branch, head, other], "青禾咨询成都分公司实行什么工时制度？")] == [branch.source]
    both = named([branch, head, other], "青禾咨询实行什么工时制度？")
    assert [h.source for h in both] == [branch.source, head.source]


def test_chinese_numerals_reach_the_model_in_digits_and_the_sources_keep_them() -> None:
    text = "全票一百五十元，學生票八十元。病假最多十天，約兩萬隻候鳥。十分熱鬧。"
    museum = {"n": 1, "source": "haifeng_museum_big5.txt", "text": text}
    asked = rag_question([museum], "What is the adult ticket price at the Haifeng museum?")
    assert "全票150元，學生票80元。病假最多10天，約20000隻候鳥。十分熱鬧。" in asked  # 十分 (very) is no number
    assert museum["text"].startswith("全票一百五十元")


def test_a_chinese_question_naming_a_company_in_latin_letters_narrows_chinese_passages_too() -> None:
    aerospace = hit(1, "nimbus_aerospace_policies.txt", "Holidays: staff receive 25 days of paid holiday per year.")
    xinghe = hit(2, "xinghe_handbook_zh.pdf", "正式员工每年享有十五天带薪年假。")
    assert [h.source for h in named([aerospace, xinghe], "Nimbus Aerospace 的员工每年有多少天带薪假期？")] == [
        aerospace.source
    ]
    larkspur = hit(3, "larkspur_expense_policy_2023.md", "Meals are covered up to 40 euros per day.")
    meals = named([xinghe, larkspur], "Larkspur 2023 年的报销政策规定每天餐费最多报销多少？")  # the name opens it
    assert [h.source for h in meals] == [larkspur.source]
    english = named([aerospace, xinghe], "How many days of leave do Nimbus Aerospace staff get?")
    assert [h.source for h in english] == [aerospace.source, xinghe.source]  # "Nimbus" is not written in Chinese


def test_a_copied_source_line_is_left_out_of_an_answer_other_brackets_stay() -> None:
    sources = [{"n": 1, "source": "qinghe.md", "date": "2026-12-04", "text": "每月交通补贴三百元。"},
               {"n": 2, "source": "notice.html", "page": 3, "date": "2025-07", "text": "月租300元。"}]  # fmt: skip
    assert without_where_lines("每月交通补贴三百元。\n(qinghe.md，2026-12-04)", sources) == "每月交通补贴三百元。"
    assert without_where_lines("It is 300 yuan (notice.html, p. 3, 2025-07). Yes.", sources) == "It is 300 yuan. Yes."
    assert without_where_lines("The kettle (glass) costs 52 euros.", sources) == "The kettle (glass) costs 52 euros."
    assert without_where_lines("(2026-12-04)", sources) == "(2026-12-04)"  # nothing else to show: kept


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore.open(tmp_path / "inkstone.db")
    yield s
    s.close()


def test_the_stored_answer_has_no_copied_source_line_and_agrees_with_the_done_event(store: HistoryStore) -> None:
    backend = FakeBackend(["The BW-140 costs 52 euros.\n(brightwater_kettle_range.md, 2025)"])
    sid = store.create_session(model="fake", settings=GenerationSettings().to_dict()).id
    service = ChatService(store, backend, retriever=lambda session, question: [KETTLES])
    done = list(service.send(sid, "What is the price of the BW-140 kettle?"))[-1]
    assert isinstance(done, Done)
    prompt = backend.prompts[-1][-1]["content"]
    assert "Model: BW-140; Power rating: 2000 W; Capacity: 1.5 litres; Price: 52 euros" in prompt
    assert "BW-130" not in prompt
    stored = store.messages(sid)[-1]
    assert stored.content == done.stats.text == "The BW-140 costs 52 euros [1]."
    assert "brightwater_kettle_range.md" not in stored.content
    assert stored.sources is not None and stored.sources[0]["citation"] == "verified"
