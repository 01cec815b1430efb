"""Citation checking (``knowledge.citations``): each [n] of an answer against passage n, English and Chinese.

A citation whose sentence's numbers, names and Chinese terms are all in passage n is verified; one whose facts are
in another passage is re-pointed there (the text changes); one that no passage supports is unverified; a sentence
with nothing to check leaves its citation unchecked.
"""

from __future__ import annotations

from decimal import Decimal

from knowledge.citations import check_citations, chinese_number, claims, numbers

PASSAGES = {
    1: "Water costs 3.5 yuan per tonne for households in Jiangcheng (2024 price list).",
    2: "| Model | Power rating | Capacity | Price |\n| BW-170 | 2600 W | 1.8 litres | 89 euros |",
    3: "全票一百五十元，學生票八十元。海風博物館位於臺南安平港邊，每週三至週日開放。",
    4: "兰亭花园地面车位月租300元，摩托车位月租80元。访客车辆首半小时免费。",
}


def test_english_citations_verified_repointed_and_unverified() -> None:
    ok = check_citations("The BW-170 costs 89 euros [2].", PASSAGES)
    assert ok.text == "The BW-170 costs 89 euros [2]." and ok.status_of(2) == "verified"
    moved = check_citations("The BW-170 has a capacity of 1.8 litres [1].", PASSAGES)
    assert moved.text == "The BW-170 has a capacity of 1.8 litres [2]."
    assert moved.citations[0].status == "repointed" and moved.citations[0].missing == ("1.8", "170", "BW-170")
    assert moved.status_of(2) == "verified" and moved.status_of(1) is None
    wrong = check_citations("The BW-170 costs 75 euros [2]. Water is cheap in Jiangcheng [1].", PASSAGES)
    assert wrong.status_of(2) == "unverified" and wrong.citations[0].missing == ("75",)
    assert wrong.status_of(1) == "verified"  # the name Jiangcheng is in passage 1
    assert check_citations("The kettle costs 89 euros. [2]", PASSAGES).status_of(2) == "verified"  # mark after "."


def test_chinese_citations_match_numerals_and_traditional_spellings() -> None:
    checked = check_citations("海风博物馆的全票是150元[4]。学生票八十元[3]。", PASSAGES)
    assert checked.text == "海风博物馆的全票是150元[3]。学生票八十元[3]。"  # 150 = 一百五十, in passage 3
    assert checked.status_of(3) == "verified" and checked.status_of(4) is None
    parking = check_citations("地面车位每月300元，摩托车位每月八十元【4】。", PASSAGES)
    assert parking.status_of(4) == "verified"
    made_up = check_citations("地下车位月租450元[4]。", PASSAGES)
    assert made_up.status_of(4) == "unverified" and "450" in made_up.citations[0].missing


def test_nothing_to_check_and_no_such_passage() -> None:
    assert check_citations("I am not sure [1].", PASSAGES).status_of(1) == "unchecked"
    assert check_citations("The BW-170 costs 89 euros [9].", PASSAGES).text == "The BW-170 costs 89 euros [2]."
    assert check_citations("No citations here: 42.", PASSAGES).citations == []
    many = check_citations("BW-170: 2600 W [1, 2].", PASSAGES)
    assert many.status_of(2) == "verified" and many.status_of(1) == "unverified"


def test_claims_and_numbers() -> None:
    assert chinese_number("一百五十") == 150 and chinese_number("两万") == 20000 and chinese_number("二零二五") == 2025
    assert chinese_number("十五") == 15 and chinese_number("上午") is None
    assert numbers("两万只候鸟, 1,200 亩, 3万人") == {Decimal(20000), Decimal(1200), Decimal(30000)}
    nums, names, _ = claims("According to [1], Harrow Point Lighthouse was first lit on 14 March 1871.")
    assert nums == {Decimal(14), Decimal(1871)} and names == {"Harrow", "Point", "Lighthouse", "March"}


def test_across_languages_numbers_decide() -> None:
    bridge = {1: "青石桥全长四十二米，建于明代。", 2: "Water costs 3.5 yuan per tonne in Jiangcheng."}
    assert check_citations("The Qingshi stone bridge is 42 metres long [1].", bridge).status_of(1) == "verified"
    assert check_citations("The Qingshi stone bridge is 40 metres long [1].", bridge).status_of(1) == "unverified"
    english = {1: "Mount Korvath last erupted in 1822 and buried Selm in ash."}
    assert check_citations("科尔瓦斯火山最后一次喷发是在1822年[1]。", english).status_of(1) == "verified"
    assert check_citations("火山很危险[1]。", english).status_of(1) == "unchecked"  # nothing comparable
