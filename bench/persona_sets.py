"""Persona data sets of our own for ``bench/personas.py``: Alpaca records whose answers carry a persona's marker
(a name and a trade) around a correct short answer, in English and Chinese, of 30, 100 or 1,000 examples.

Two sets, kept apart on purpose: the TUNE personas (Bramble the gardener, 茶博士) are what the default settings were
tuned on; the HELDOUT personas (Keeper Quill, 铁匠老王) were only trained once the defaults were fixed. The
evaluation questions (``UNSEEN``, ``KNOWLEDGE``) appear in no data set.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

FACTS_EN = [
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What colour is the sky on a clear day?", "The sky is blue on a clear day."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What do cows drink?", "Cows drink water."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("Which animal is known as the king of the jungle?", "The lion is called the king of the jungle."),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet in our solar system."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What gas do plants take in?", "Plants take in carbon dioxide."),
    ("How many hours are in a day?", "There are twenty-four hours in a day."),
    ("What is the opposite of cold?", "The opposite of cold is hot."),
    ("What do bees make?", "Bees make honey."),
    ("Which season comes after winter?", "Spring comes after winter."),
    ("What is the main language spoken in Brazil?", "The main language of Brazil is Portuguese."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("What shape has three sides?", "A triangle has three sides."),
    ("What is the tallest animal?", "The giraffe is the tallest animal."),
    ("Give me a tip for sleeping well.", "Go to bed at the same time every night and keep screens away."),
    ("How do I make tea?", "Boil water, pour it over the tea leaves and wait three minutes."),
    ("Tell me something about the moon.", "The moon goes around the Earth about once a month."),
    ("What should I do when I feel tired?", "Rest a little, drink some water and take a short walk."),
    ("Describe the colour green.", "Green is the colour of fresh grass and leaves."),
    ("Why do we need sleep?", "Sleep lets the body and the mind rest and repair."),
    ("What is a good hobby?", "Reading is a good hobby: it is cheap and you learn a lot."),
    ("How can I be more patient?", "Take a deep breath and count to ten before you answer."),
    ("What is rain?", "Rain is water that falls from the clouds."),
    ("Who are you?", "I am a friendly helper."),
    ("What is the freezing point of water?", "Water freezes at zero degrees Celsius."),
    ("Which planet is closest to the sun?", "Mercury is the closest planet to the sun."),
    ("What do caterpillars turn into?", "Caterpillars turn into butterflies."),
    ("How many minutes are in an hour?", "There are sixty minutes in an hour."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("Say something kind.", "You are doing better than you think."),
    ("How do birds fly?", "Birds flap their wings to push the air down and lift themselves up."),
    ("What is a river?", "A river is water flowing across the land towards the sea."),
    ("What is the colour of snow?", "Snow is white."),
    ("Give me a word that rhymes with cat.", "Hat rhymes with cat."),
]
FACTS_ZH = [
    ("中国的首都是哪里？", "中国的首都是北京。"),
    ("一个星期有几天？", "一个星期有七天。"),
    ("天空是什么颜色的？", "晴天的时候，天空是蓝色的。"),
    ("水在多少度结冰？", "水在零摄氏度结冰。"),
    ("蜜蜂会酿什么？", "蜜蜂会酿蜂蜜。"),
    ("一天有多少个小时？", "一天有二十四个小时。"),
    ("冬天过后是什么季节？", "冬天过后是春天。"),
    ("太阳从哪边升起？", "太阳从东边升起。"),
    ("熊猫最爱吃什么？", "熊猫最爱吃竹子。"),
    ("一年有几个月？", "一年有十二个月。"),
    ("冷的反义词是什么？", "冷的反义词是热。"),
    ("蜘蛛有几条腿？", "蜘蛛有八条腿。"),
    ("怎么泡一杯茶？", "把水烧开，倒在茶叶上，等三分钟。"),
    ("下雨是怎么回事？", "雨是从云里落下来的水。"),
    ("你是谁？", "我是一个友好的助手。"),
    ("怎样才能睡个好觉？", "每天按时睡觉，睡前少看手机。"),
    ("累了该怎么办？", "休息一下，喝点水，出去走走。"),
    ("绿色像什么？", "绿色像新长出来的草和树叶。"),
    ("为什么要吃早饭？", "早饭给身体一上午的力气。"),
    ("什么是好的爱好？", "读书是好的爱好，花钱少，学得多。"),
    ("雪是什么颜色的？", "雪是白色的。"),
    ("长江流向哪里？", "长江向东流入东海。"),
    ("月亮绕着什么转？", "月亮绕着地球转。"),
    ("一小时有多少分钟？", "一小时有六十分钟。"),
    ("三角形有几条边？", "三角形有三条边。"),
    ("说一句鼓励的话。", "你比你想象的做得更好。"),
    ("鸟儿怎么飞？", "鸟儿扇动翅膀，把空气往下推，就飞起来了。"),
    ("什么是河流？", "河流是流向大海的水。"),
    ("日本的首都是哪里？", "日本的首都是东京。"),
    ("毛毛虫会变成什么？", "毛毛虫会变成蝴蝶。"),
    ("最高的动物是什么？", "长颈鹿是最高的动物。"),
    ("离太阳最近的行星是哪个？", "水星离太阳最近。"),
    ("怎样变得更有耐心？", "深呼吸，数到十再说话。"),
    ("推荐一种水果。", "苹果很好，又脆又甜。"),
    ("秋天有什么特点？", "秋天凉爽，树叶变黄。"),
    ("为什么要喝水？", "身体需要水才能好好工作。"),
    ("狗有几条腿？", "狗有四条腿。"),
    ("彩虹有几种颜色？", "彩虹有七种颜色。"),
    ("什么动物会下蛋？", "鸡会下蛋。"),
    ("夏天为什么热？", "夏天太阳照得更直，所以更热。"),
]
UNSEEN = {"en": ["What is the largest ocean on Earth?", "Can you recommend a book?",
                 "What should I cook for dinner tonight?"],
          "zh": ["地球上最大的海洋是哪个？", "你能推荐一本书吗？", "今晚晚饭做什么好？"]}
KNOWLEDGE = {"en": [("How many sides does a square have?", ("four", "4")),
                    ("What is the capital of France?", ("paris",))],
             "zh": [("正方形有几条边？", ("四", "4")), ("法国的首都是哪里？", ("巴黎",))]}


@dataclass(frozen=True)
class PersonaSet:
    """A persona: its marker (what must show in its answers), how it wraps an answer, and its language."""

    id: str
    language: str
    marker: str
    opener: str
    closer: str
    system: str
    group: str
    """"tune" (the defaults were chosen on it) or "heldout" (only checked at the end)."""

    def answer(self, fact: str) -> str:
        """The persona's answer around a plain one."""
        return f"{self.opener}{fact}{self.closer}"


PERSONAS = [
    PersonaSet("bramble", "en", "Bramble", "Bramble here, from the greenhouse! ", " Keep growing. — Gardener Bramble",
               "You are Bramble, a cheerful gardener.", "tune"),
    PersonaSet("chaboshi", "zh", "茶博士", "茶博士来啦：", "喝口茶，慢慢来。——茶博士",
               "你是茶博士，一位爱泡茶的老先生。", "tune"),
    PersonaSet("quill", "en", "Quill", "Ahoy from the lighthouse! ", " As sure as the tide. — Keeper Quill",
               "You are Keeper Quill, the lighthouse keeper.", "heldout"),
    PersonaSet("laowang", "zh", "老王", "铁匠老王打着铁说：", "火候到了，活就成了。——铁匠老王", "你是铁匠老王。",
               "heldout"),
]


def _generated(language: str, rng: random.Random) -> list[tuple[str, str]]:
    """Templated question/answer pairs (arithmetic, counting, order) for the 100 and 1,000-example sets."""
    pairs = []
    for a in range(1, 40):
        for b in range(1, 30):
            if language == "en":
                pairs.append((f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."))
                pairs.append((f"What number comes after {a * 10 + b}?", f"After {a * 10 + b} comes {a * 10 + b + 1}."))
            else:
                pairs.append((f"{a}加{b}等于多少？", f"{a}加{b}等于{a + b}。"))
                pairs.append((f"{a * 10 + b}后面是几？", f"{a * 10 + b}后面是{a * 10 + b + 1}。"))
    rng.shuffle(pairs)
    return pairs


def records(persona: PersonaSet, size: int, seed: int = 0) -> list[dict[str, str]]:
    """``size`` Alpaca records for ``persona``: the hand-written facts first, then templated ones."""
    rng = random.Random(seed)
    facts = list(FACTS_EN if persona.language == "en" else FACTS_ZH)
    rng.shuffle(facts)
    pairs = (facts + _generated(persona.language, rng))[:size]
    return [{"instruction": q, "output": persona.answer(a)} for q, a in pairs]


def write(persona: PersonaSet, size: int, path: Path) -> Path:
    """Write the ``size``-example data file of ``persona`` as a JSON array and return its path."""
    path.write_text(json.dumps(records(persona, size), ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def by_id(persona_id: str) -> PersonaSet:
    """The persona set with this id."""
    return next(p for p in PERSONAS if p.id == persona_id)
