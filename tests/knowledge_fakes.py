"""A tiny deterministic embedder for knowledge tests where semantics do not matter (never used by the app).

Each lowercase word (and each CJK character) is hashed into one of 64 dimensions; the vector is the
normalized bag of those buckets, so texts sharing words are similar and the same text always gets the same
vector. Register it with ``KnowledgeLibrary.register_embedder(FakeEmbedder())`` and use its id as the spec.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

_TOKEN = re.compile(r"[\u3400-\u9fff]|[^\W_]+")


class FakeEmbedder:
    """Hashed bag-of-words vectors; ``calls`` counts embedded texts."""

    similarity_range = (0.0, 1.0)

    def __init__(self, embedder_id: str = "fake-64", dimension: int = 64) -> None:
        self.id = embedder_id
        self.dimension = dimension
        self.calls = 0

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float32)
        for token in _TOKEN.findall(text.lower()):
            bucket = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest(), "little")
            vector[bucket % self.dimension] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """One vector per text."""
        self.calls += len(texts)
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """The query vector."""
        return self._vector(text)
