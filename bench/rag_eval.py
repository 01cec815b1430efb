"""Retrieval quality on the bilingual evaluation set in tests/data/rag/: hit@4 per language, per embedder.

Ingests every file of ``tests/data/rag/docs/`` (facts, near-miss distractors, a GBK, a Big5 and a UTF-16
file, an English and a Chinese multi-page PDF, HTML, DOCX) into a throwaway Chroma directory with each
embedder, then asks every question of ``questions.jsonl``. A question is a hit when one of the first 4
results comes from the expected file and contains the expected answer (whitespace ignored); for PDF facts
the right-page rate counts the hits whose containing chunk is on the expected page. Off-topic questions
show what the relevance floor does. Prints figures only; it asserts nothing.

    .venv/bin/python bench/rag_eval.py [--embedders e5-small,minilm] [--chunks 500/80,300/50,800/120] [--data DIR]

``--data`` points at another set laid out the same way (``DIR/docs/``, ``DIR/questions.jsonl`` with ``lang``,
``question``, ``answer``, ``source`` and ``page`` per line).

``--hard dev.jsonl[,heldout2.jsonl]`` runs question files of tests/data/rag_hard/ instead: hit@4 per kind, the
share of unrelated questions that got sources. ``--translate`` adds the rows with the default chat model's
translations (``app+tr``: every question, ``app+gate``: where its own search is unsure, as ``rag_translate`` does)
and prints the seconds a translation adds; ``--translate-cache FILE`` keeps the translations between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

# One ONNX export of e5-small for every run (the throwaway data dirs would otherwise export it each time).
os.environ.setdefault("INKSTONE_ONNX_CACHE", str(Path.home() / ".cache" / "inkstone" / "e5-small-onnx"))
from knowledge import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, DEFAULT_EMBEDDER, KnowledgeLibrary  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "rag"
OFF_TOPIC = [
    "How do I change a flat tyre on a bicycle?",
    "What is the boiling point of nitrogen?",
    "Who won the 1998 football world cup?",
    "量子计算机是怎样工作的？",
    "怎么给猫剪指甲？",
    "明天上海会下雨吗？",
]


def squash(text: str) -> str:
    """Text without whitespace, for answer matching across PDF line breaks."""
    return re.sub(r"\s+", "", text)


def load_questions(data: Path = DATA) -> list[dict]:
    """The evaluation questions (one JSON object per line)."""
    lines = (data / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def ingest(
    lib: KnowledgeLibrary, collection: str, embedder: str, size: int, overlap: int, data: Path = DATA
) -> tuple[int, float]:
    """Add every evaluation document; returns (chunks, seconds)."""
    start = time.perf_counter()
    chunks = 0
    for path in sorted((data / "docs").iterdir()):
        stats = lib.add_document(collection, embedder, path.name, path, path.name, size, overlap)
        chunks += stats.chunks
    return chunks, time.perf_counter() - start


def evaluate(lib: KnowledgeLibrary, collection: str, embedder: str, mode: str, questions: list[dict]) -> dict:
    """hit@4 per language, right-page rate, misses, and the median query time for one search mode."""
    per_lang: dict[str, list[bool]] = {}
    pages: list[bool] = []
    misses: list[str] = []
    times: list[float] = []
    for q in questions:
        start = time.perf_counter()
        hits = lib.search([(collection, embedder)], q["question"], k=4, mode=mode)
        times.append((time.perf_counter() - start) * 1000)
        answer = squash(q["answer"])
        good = [h for h in hits if h.source == q["source"] and answer in squash(h.text)]
        per_lang.setdefault(q["lang"], []).append(bool(good))
        if q.get("page") is not None:
            pages.append(any(h.page == q["page"] for h in good))
        if not good:
            misses.append(f"{q['question']} -> {[(h.source, h.page, round(h.score, 2)) for h in hits]}")
    off = [not lib.search([(collection, embedder)], text, k=4, mode=mode) for text in OFF_TOPIC]
    return {
        "hit@4": {lang: sum(v) / len(v) for lang, v in per_lang.items()},
        "page": sum(pages) / len(pages) if pages else float("nan"),
        "off_topic_empty": sum(off) / len(off),
        "p50_ms": statistics.median(times),
        "misses": misses,
    }


HARD = Path(__file__).resolve().parents[1] / "tests" / "data" / "rag_hard"
KINDS = ("same", "cross", "followup", "switch", "versioned", "table")


def followup_query(q: dict, rule: str) -> str:
    """What a chat searches for this question: ``app`` is the chat's own rule (``retrieval_query``: the subject of the
    turns before a follow-up put in front of it), ``prev`` the user turn before it always put in front (the rule
    before), ``last`` the question alone."""
    from core.chat.service import retrieval_query

    if rule == "last" or not q.get("history"):
        return q["question"]
    if rule == "prev":
        return f"{q['history'][-1]}\n{q['question']}"
    turns = [("user", text) for text in q["history"]] + [("user", q["question"])]
    return retrieval_query(turns)


def evaluate_hard(lib: KnowledgeLibrary, targets: list[tuple[str, str]], questions: list[dict], rule: str = "app",
                  floor: float | None = None, also: dict[str, list[str]] | None = None,
                  gate: bool = False) -> dict:  # fmt: skip
    """hit@4 per kind, and the share of unrelated questions that get any source, on a rag_hard question file;
    ``also``: the translations searched with each query (``--translate``); ``gate``: only where the query's own
    search is unsure (``needs_translation``, as a chat does). "translated": the share of questions that used one."""
    from knowledge.crosslingual import needs_translation

    per_kind: dict[str, list[bool]] = {}
    misses: list[str] = []
    used = 0
    for q in questions:
        query = followup_query(q, rule)
        hits = lib.search(targets, query, k=4, floor=floor)
        extra = (also or {}).get(query, [])
        if extra and (not gate or needs_translation(h.score for h in hits)):
            hits = lib.search(targets, query, k=4, floor=floor, also=extra)
            used += 1
        if q["kind"] == "unrelated":
            per_kind.setdefault("unrelated", []).append(bool(hits))
            if hits:
                misses.append(f"[unrelated] {q['question']} -> {[(h.source, h.score) for h in hits]}")
            continue
        answer = squash(q["answer"])
        good = any(h.source == q["source"] and answer in squash(h.text) for h in hits)
        per_kind.setdefault(q["kind"], []).append(good)
        if not good:
            misses.append(f"[{q['kind']}] {q['question']} -> {[(h.source, h.score) for h in hits]}")
    return {kind: sum(v) / len(v) for kind, v in per_kind.items()} | {"misses": misses,
                                                                       "translated": used / len(questions)}


_TRANSLATOR: list = []  # the loaded model's translator, once per run


def translate_all(lib: KnowledgeLibrary, targets: list[tuple[str, str]], queries: list[str],
                  cache: Path | None) -> dict[str, list[str]]:  # fmt: skip
    """Each query's translations by the default chat model (``core.kb.translate``), as a chat makes them; prints the
    model's load time and the seconds a translation adds to a question. ``cache`` keeps them between runs."""
    from core.backends import create_backend
    from core.config import load_settings
    from core.kb.translate import model_translator
    from core.models.registry import resolve
    from knowledge.crosslingual import translations

    done = json.loads(cache.read_text(encoding="utf-8")) if cache and cache.is_file() else {}
    todo = [q for q in dict.fromkeys(queries) if q not in done]
    if todo:
        if not _TRANSLATOR:
            settings = load_settings({"home": tempfile.mkdtemp(prefix="rag-eval-")})
            start = time.perf_counter()
            backend = create_backend(resolve(settings.model), settings, None)
            print(f"translator: {settings.model} loaded in {time.perf_counter() - start:.0f} s")
            _TRANSLATOR.append(model_translator(backend))
            _TRANSLATOR[0]("Hello?", "zh")  # warm-up, not timed
        translate = _TRANSLATOR[0]
        present = lib.languages(targets)
        seconds = []
        for query in todo:
            start = time.perf_counter()
            done[query] = translations(query, present, translate)
            seconds.append(time.perf_counter() - start)
        print(f"translation: {len(todo)} questions, median {statistics.median(seconds):.2f} s, "
              f"max {max(seconds):.2f} s added per question (load: {os.getloadavg()[0]:.1f})")  # fmt: skip
        if cache:
            cache.write_text(json.dumps(done, ensure_ascii=False, indent=1), encoding="utf-8")
    return {q: done[q] for q in queries}


def main_hard(args: argparse.Namespace) -> None:
    """hit@4 per kind on the hard set (documents of both sets), plus the unrelated-question false-source rate."""
    for name in args.hard.split(","):
        lines = (HARD / name).read_text(encoding="utf-8").splitlines()
        questions = [json.loads(line) for line in lines if line.strip()]
        print(f"{name}: {len(questions)} questions; hit@4 per kind; 'unrelated' = share that wrongly got sources")
        hard_set(args, questions)


def hard_set(args: argparse.Namespace, questions: list[dict]) -> None:
    """One question file of the hard set, every embedder, every follow-up rule (and with translations)."""
    with tempfile.TemporaryDirectory() as tmp:
        lib = KnowledgeLibrary(Path(tmp) / "chroma")
        for embedder in args.embedders.split(","):
            collection = f"hard-{embedder}"
            start = time.perf_counter()
            for folder in (DATA / "docs", HARD / "docs"):
                for path in sorted(folder.iterdir()):
                    lib.add_document(collection, embedder, path.name, path, path.name, DEFAULT_CHUNK_SIZE,
                                     DEFAULT_CHUNK_OVERLAP)  # fmt: skip
            print(f"{embedder}: ingested in {time.perf_counter() - start:.1f} s")
            print(f"{'embedder':10} {'follow-up':9} " + " ".join(f"{k:>9}" for k in (*KINDS, "unrelated")))
            targets = [(collection, embedder)]
            also = None
            if args.translate:
                also = translate_all(lib, targets, [followup_query(q, "app") for q in questions], args.translate_cache)
            for rule in ("app", "prev", "last") + (("app+tr", "app+gate") if also else ()):
                with_tr = also if "+" in rule else None
                r = evaluate_hard(lib, targets, questions, rule.split("+")[0], also=with_tr, gate=rule.endswith("gate"))
                print(
                    f"{embedder:10} {rule:9} "
                    + " ".join(f"{r.get(k, float('nan')):9.2f}" for k in (*KINDS, "unrelated"))
                    + (f"  (translated: {r['translated']:.2f} of the questions)" if with_tr else "")
                )
                if rule.startswith("app") and (args.show_misses or embedder == DEFAULT_EMBEDDER):
                    for miss in r["misses"]:
                        print(f"    miss: {miss}")
        lib.close()


def main() -> None:
    """Parse options, run every embedder x chunking x mode, print a table (and the misses of the default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedders", default="e5-small,minilm")
    parser.add_argument("--chunks", default=f"{DEFAULT_CHUNK_SIZE}/{DEFAULT_CHUNK_OVERLAP}")
    parser.add_argument("--show-misses", action="store_true", help="list the missed questions of every run")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with docs/ and questions.jsonl")
    parser.add_argument("--hard", help="a question file of tests/data/rag_hard/ (dev.jsonl; heldout.jsonl at the end)")
    parser.add_argument("--translate", action="store_true",
                        help="with --hard: also search with the default chat model's translations (rows app+tr: "
                        "always, app+gate: where the question's own search is unsure, as a chat does)")
    parser.add_argument("--translate-cache", type=Path, help="JSON file keeping the translations between runs")
    args = parser.parse_args()
    if args.hard:
        main_hard(args)
        return
    questions = load_questions(args.data)
    counts = {lang: sum(q["lang"] == lang for q in questions) for lang in ("en", "zh")}
    print(f"{len(questions)} questions ({counts['en']} en, {counts['zh']} zh), {len(OFF_TOPIC)} off-topic")
    print("hit@4: share of questions whose answer is in one of the first 4 hits from the expected file")
    print(f"{'embedder':10} {'chunk':>8} {'mode':7} {'en':>6} {'zh':>6} {'page':>6} {'offtopic∅':>9} {'p50 ms':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        lib = KnowledgeLibrary(Path(tmp) / "chroma")
        for embedder in args.embedders.split(","):
            for spec in args.chunks.split(","):
                size, overlap = (int(x) for x in spec.split("/"))
                collection = f"eval-{embedder}-{size}-{overlap}"
                chunks, seconds = ingest(lib, collection, embedder, size, overlap, args.data)
                for mode in ("vector", "bm25", "hybrid"):
                    r = evaluate(lib, collection, embedder, mode, questions)
                    print(
                        f"{embedder:10} {spec:>8} {mode:7} {r['hit@4'].get('en', 0):6.3f}"
                        f" {r['hit@4'].get('zh', 0):6.3f} {r['page']:6.3f}"
                        f" {r['off_topic_empty']:9.2f} {r['p50_ms']:7.1f}"
                    )
                    default = embedder == DEFAULT_EMBEDDER and mode == "hybrid"
                    if r["misses"] and (args.show_misses or default):
                        for miss in r["misses"]:
                            print(f"    miss: {miss}")
                print(f"    ({chunks} chunks ingested in {seconds:.1f} s)")
        lib.close()


if __name__ == "__main__":
    main()
