"""Knowledge bases for retrieval-augmented chat: load files, split, embed, store in Chroma, hybrid search.

A library that never imports core, ui or streamlit. ``KnowledgeLibrary`` is the facade; the rest is
re-exported for callers that need the constants, the exceptions and the small helpers.
"""

from knowledge.embedders import DEFAULT_EMBEDDER, EMBEDDERS, Embedder
from knowledge.errors import EmbedderError, EmbedderMismatch, KnowledgeError, LoaderError, StoreUnavailable
from knowledge.library import (
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_FLOOR,
    DocumentStats,
    EmbedderInfo,
    Hit,
    KnowledgeLibrary,
    collection_name,
)
from knowledge.loaders import SUPPORTED_SUFFIXES, file_sha256

__all__ = [
    "DEFAULT_CHUNK_OVERLAP",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_EMBEDDER",
    "DEFAULT_FLOOR",
    "EMBEDDERS",
    "SUPPORTED_SUFFIXES",
    "DocumentStats",
    "Embedder",
    "EmbedderError",
    "EmbedderInfo",
    "EmbedderMismatch",
    "Hit",
    "KnowledgeError",
    "KnowledgeLibrary",
    "LoaderError",
    "StoreUnavailable",
    "collection_name",
    "file_sha256",
]
