"""End-to-end RAG answers with the default bundled model: language, citations, right answers, "not in the documents".

Ingests the documents of tests/data/rag/ and tests/data/rag_hard/ into one knowledge base of a throwaway data dir
(default embedder), then asks each question of a rag_hard question file (and, with ``--basic N``, the first N of the
basic set tests/data/rag/questions.jsonl) in a new chat with RAG on, through ``ChatService`` as the chat view does
(follow-ups get their earlier questions stored first, each answered "Sure. What would you like to know?").
Prints per kind:

- right: the expected answer is in the reply (its figures by value, so "42 metres" answers 四十二米);
- language: the reply is in the question's language (Chinese characters for a Chinese question, few for English);
- cited: replies with at least one [n] as stored (m.cite: as the model wrote them, before the app cites a
  sentence a passage supports, ``knowledge.citations.attach_citations``); verified: of the checked citations, the
  share that hold (``knowledge.citations``: the passage holds the sentence's numbers and names), after re-pointing;
- for unrelated questions: no sources at all, and the reply says the documents do not contain it.

Each question is also answered by the plain recipe in the same run, for comparison: plain vector top-4 of the
question alone (no floor, no follow-up rule, no newer-first order) under a plain prompt (the usual "use the following
pieces of context" instruction with the passages in the system message, the question as the user message), its
citations checked the same way.

    .venv/bin/python bench/rag_answer.py [--hard dev.jsonl,answer_heldout.jsonl] [--basic 20] [--max-new-tokens 64]
        [--limit 12] [--kinds cross,table] [--recipes app,plain] [--out rows.jsonl] [--show]
        # questions of the sets taken in turn (--limit: the first N of them); --summary rows.jsonl re-prints

Figures only; it asserts nothing. Slow on a CPU (a few seconds per answer on an idle 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

os.environ.setdefault("INKSTONE_ONNX_CACHE", str(Path.home() / ".cache" / "inkstone" / "e5-small-onnx"))

ROOT = Path(__file__).resolve().parents[1]
BASIC = ROOT / "tests" / "data" / "rag"
HARD = ROOT / "tests" / "data" / "rag_hard"
CJK = re.compile(r"[\u3400-\u9fff]")
NOT_FOUND = re.compile(r"(?:do(?:es)? not|don't|doesn't|cannot|can't|no)\s+(?:\w+\s+){0,4}(?:contain|mention|find|"
                       r"include|provide|information|relevant)|not (?:in|found in) the (?:documents|passages)|"
                       r"没有|未(?:找到|提及|提到|包含)|不包含|无法(?:找到|回答|确定)|並未|沒有",
                       re.IGNORECASE)  # fmt: skip


def in_language(reply: str, lang: str) -> bool:
    """Whether ``reply`` is written in ``lang`` (zh: mostly Chinese characters among its letters; en: mostly not)."""
    letters = [c for c in reply if c.isalpha()]
    if not letters:
        return False
    share = sum(bool(CJK.match(c)) for c in letters) / len(letters)
    return share >= 0.5 if lang == "zh" else share < 0.2


def right(reply: str, expected: str) -> bool:
    """The expected answer is in the reply: by its figures when it has any (across scripts), else as text."""
    from knowledge.citations import numbers

    want = numbers(expected)
    if want:
        return want <= numbers(reply, with_parts=True)
    flat = re.sub(r"\s+", "", reply).lower()
    return re.sub(r"\s+", "", expected).lower() in flat


def load(path: Path, limit: int | None = None) -> list[dict]:
    """The questions of one JSON-lines file (at most ``limit``)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit is not None else rows


PLAIN_PROMPT = ("Use the following pieces of context to answer the question at the end. If you don't know the answer, "
                "just say that you don't know, don't try to make up an answer.\n\n{context}")
"""The plain recipe's prompt (the common "stuff" question-answering prompt), passages separated by blank lines."""


def ask(engine, question: dict, recipe: str = "app") -> dict:  # noqa: ANN001 - an Engine
    """One question in a new RAG chat: the reply, its stored sources and the seconds it took."""
    from core.chat.service import Done, Failed, Token

    if recipe == "plain":
        return ask_plain(engine, question)

    sid = engine.new_session()
    engine.knowledge.set_session_knowledge(sid, True, ["eval"])
    for earlier in question.get("history", []):
        engine.store.add_message(sid, "user", earlier)
        engine.store.add_message(sid, "assistant", "Sure. What would you like to know?")  # no facts to copy
    start = time.perf_counter()
    events = list(engine.service.send(sid, question["question"]))
    seconds = time.perf_counter() - start
    end = events[-1]
    if isinstance(end, Failed):
        return {"reply": "", "sources": [], "seconds": seconds, "error": end.error}
    assert isinstance(end, Done)
    streamed = "".join(e.text for e in events if isinstance(e, Token))  # before the app's citation check
    return {"reply": end.stats.text, "streamed": streamed, "sources": end.stats.sources or [], "seconds": seconds}


def ask_plain(engine, question: dict) -> dict:  # noqa: ANN001 - an Engine
    """The plain recipe: vector top-4 of the question alone, the plain prompt, the same model and settings."""
    import threading

    from core.backends.base import Finished, TextDelta
    from knowledge.citations import check_sources

    kb = engine.knowledge.resolve(["eval"])[0]
    library = engine.knowledge.handle.get()
    hits = library.search([(kb.collection, kb.embedder)], question["question"], k=4, floor=-1e9, mode="vector")
    sources = [{"n": i, "source": h.source, "page": h.page, "text": h.text} for i, h in enumerate(hits, start=1)]
    context = "\n\n".join(s["text"] for s in sources)
    messages = [{"role": "system", "content": PLAIN_PROMPT.format(context=context)}]
    for earlier in question.get("history", []):
        messages += [{"role": "user", "content": earlier},
                     {"role": "assistant", "content": "Sure. What would you like to know?"}]  # fmt: skip
    messages.append({"role": "user", "content": question["question"]})
    start = time.perf_counter()
    text = ""
    for event in engine.backend.stream(messages, engine.service.config(None).settings, threading.Event()):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Finished):
            break
    seconds = time.perf_counter() - start
    streamed = text
    text, sources = check_sources(text, sources) if sources and text else (text, sources)
    return {"reply": text, "streamed": streamed, "sources": sources, "seconds": seconds}


def interleaved(sets: dict[str, list[dict]]) -> list[dict]:
    """The questions of every set, taken in turn from each set and kind, so a run cut short still covers them all."""
    queues = [[{**q, "set": name} for q in qs if q["kind"] == kind]
              for name, qs in sets.items() for kind in dict.fromkeys(q["kind"] for q in qs)]  # fmt: skip
    out: list[dict] = []
    while any(queues):
        out += [queue.pop(0) for queue in queues if queue]
    return out


def main() -> None:
    """Ingest, ask every question (each line to ``--out`` as it comes), print the figures per set and kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hard", default="dev.jsonl", help="question files of tests/data/rag_hard/, comma-separated")
    parser.add_argument("--basic", type=int, default=0, help="also the first N questions of tests/data/rag/")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--limit", type=int, help="only the first N questions (of the sets taken in turn)")
    parser.add_argument("--kinds", help="only these kinds, comma-separated (cross,table,versioned,...)")
    parser.add_argument("--recipes", default="app,plain", help="app (the chat as it is), plain (the plain recipe)")
    parser.add_argument("--out", type=Path, help="write each question's outcome to this JSON-lines file")
    parser.add_argument("--summary", type=Path, help="only print the figures of an --out file (a run cut short)")
    parser.add_argument("--show", action="store_true", help="print each question, reply and citation outcome")
    args = parser.parse_args()
    if args.summary:
        report([json.loads(line) for line in args.summary.read_text(encoding="utf-8").splitlines() if line.strip()])
        return

    from core.config import load_settings
    from core.engine import build_engine

    sets = {name: load(HARD / name) for name in args.hard.split(",") if name}
    if args.basic:
        sets["basic"] = [{**q, "kind": "basic"} for q in load(BASIC / "questions.jsonl", args.basic)]
    if args.kinds:
        sets = {name: [q for q in qs if q["kind"] in args.kinds.split(",")] for name, qs in sets.items()}
    questions = interleaved(sets)[: args.limit]
    home = Path(os.environ.get("INKSTONE_BENCH_HOME", Path(tempfile.gettempdir()) / "inkstone-rag-answer"))
    settings = load_settings({"home": str(home), "temperature": 0, "max_new_tokens": args.max_new_tokens})
    started = time.perf_counter()
    engine = build_engine(settings)
    docs = sorted((BASIC / "docs").iterdir()) + sorted((HARD / "docs").iterdir())
    engine.knowledge.ingest("eval", docs)  # a no-op when an earlier run left them (content hashes)
    print(f"model {engine.profile.id}, {len(docs)} documents, ready in {time.perf_counter() - started:.0f} s; "
          f"{len(questions)} questions ({', '.join(sets)})", flush=True)  # fmt: skip
    rows: list[dict] = []
    out = args.out.open("w", encoding="utf-8") if args.out else None
    for q, recipe in ((q, r) for q in questions for r in args.recipes.split(",")):
        got = ask(engine, q, recipe)
        verdicts = [s.get("citation") for s in got["sources"] if s.get("citation")]
        row = {
            "set": q["set"], "recipe": recipe, "kind": q["kind"], "lang": q["lang"], "question": q["question"],
            "reply": got["reply"],
            "right": q["kind"] != "unrelated" and right(got["reply"], q.get("answer", "")),
            "language": in_language(got["reply"], q["lang"]),
            "cited": bool(re.search(r"\[\d+\]", got["reply"])),
            "model_cited": bool(re.search(r"\[\d+\]", got.get("streamed", got["reply"]))),
            "verified": verdicts.count("verified"),
            "checked": len(verdicts),
            "no_sources": not got["sources"],
            "says_not_found": bool(NOT_FOUND.search(got["reply"])),
            "seconds": round(got["seconds"], 1),
        }  # fmt: skip
        rows.append(row)
        if out:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
        if args.show:
            print(f"[{recipe} {q['set']} {q['kind']}/{q['lang']}] {q['question']}\n"
                  f"    -> {got['reply'].strip()[:300]!r}\n    "
                  f"right={row['right']} lang={row['language']} citations={verdicts}", flush=True)  # fmt: skip
    engine.knowledge.close()
    report(rows)


def report(rows: list[dict]) -> None:
    """The figures per set and kind of these outcomes."""
    for name, recipe in dict.fromkeys((r["set"], r.get("recipe", "app")) for r in rows):
        mine = [r for r in rows if r["set"] == name and r.get("recipe", "app") == recipe]
        print(f"\n{name}, {recipe} recipe: {len(mine)} questions")
        print(f"{'kind':10} {'n':>3} {'right':>6} {'lang':>6} {'cited':>6} {'m.cite':>6} {'verif.':>7} {'s/ans':>6}")
        by_kind: dict[str, list[dict]] = {}
        for r in mine:
            by_kind.setdefault(r["kind"], []).append(r)
        total = [r for r in mine if r["kind"] != "unrelated"]
        for kind, rs in [*by_kind.items(), ("answerable", total)]:
            checked = sum(r["checked"] for r in rs)
            verified = sum(r["verified"] for r in rs) / checked if checked else float("nan")
            line = (f"{kind:10} {len(rs):3} {'' if kind == 'unrelated' else format(_share(rs, 'right'), '6.2f'):>6} "
                    f"{_share(rs, 'language'):6.2f} {_share(rs, 'cited'):6.2f} {_share(rs, 'model_cited'):6.2f} "
                    f"{verified:7.2f} {_mean(rs):6.1f}")
            if kind == "unrelated":
                line += (f"   no sources {_share(rs, 'no_sources'):.2f}, says not in the documents "
                         f"{_share(rs, 'says_not_found'):.2f}")  # fmt: skip
            if kind == "answerable":
                line += f"   ({checked} citations checked)"
            print(line)


def _share(rows: list[dict], key: str) -> float:
    return sum(bool(r[key]) for r in rows) / len(rows) if rows else float("nan")


def _mean(rows: list[dict]) -> float:
    return sum(r["seconds"] for r in rows) / len(rows) if rows else float("nan")


if __name__ == "__main__":
    main()
