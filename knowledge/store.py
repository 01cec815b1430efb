"""The Chroma store: the only module that imports chromadb.

One narrow class over a persistent directory (``PersistentClient``, telemetry off) or a Chroma server
(``HttpClient`` for a ``chroma_url``). Embeddings are always passed in, so Chroma's default embedding
function (which would download a model) is never used. Each collection records the embedder id and
dimension in its metadata, plus a ``generation`` token bumped on every write so caches built from its
contents (the BM25 index) know when to rebuild. Chroma and network failures become StoreUnavailable.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from knowledge.errors import KnowledgeError, StoreUnavailable

GET_PAGE = 1000  # rows fetched per call when reading a whole collection


class CollectionMissing(StoreUnavailable):
    """The named collection does not exist in the store."""


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored: id, text, metadata and (when asked for) its embedding."""

    id: str
    text: str
    metadata: dict
    embedding: np.ndarray | None = None


class ChromaStore:
    """Add, delete, read and vector-search chunks in named Chroma collections."""

    def __init__(self, chroma_path: Path, chroma_url: str | None = None) -> None:
        import chromadb
        from chromadb.config import Settings

        self.path = Path(chroma_path)
        self.url = chroma_url
        settings = Settings(anonymized_telemetry=False)
        try:
            if chroma_url:
                parsed = urlparse(chroma_url if "://" in chroma_url else f"http://{chroma_url}")
                if not parsed.hostname:
                    raise StoreUnavailable(f"chroma_url {chroma_url!r} has no host; use e.g. http://127.0.0.1:8000")
                ssl = parsed.scheme == "https"
                self._client = chromadb.HttpClient(
                    host=parsed.hostname, port=parsed.port or (443 if ssl else 8000), ssl=ssl, settings=settings
                )
                self.where = f"the Chroma server at {chroma_url}"
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                _forget_cached_system(self.path)
                self._client = chromadb.PersistentClient(path=str(self.path), settings=settings)
                self.where = f"the Chroma directory {self.path}"
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - connection errors come as ValueError, httpx errors, OSError
            target = f"the Chroma server at {chroma_url}" if chroma_url else f"the Chroma directory {self.path}"
            raise StoreUnavailable(f"cannot open {target} ({exc}); {_fix(chroma_url)}") from exc

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Translate Chroma/network failures (and a directory deleted behind our back) into StoreUnavailable."""
        if not self.url and not (self.path / "chroma.sqlite3").is_file():
            raise StoreUnavailable(
                f"{self.where} is gone (deleted while Inkstone was running?); restart Inkstone to create a new "
                "one and ingest your documents again"
            )
        try:
            yield
        except KnowledgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - chromadb InternalError, httpx.ConnectError, sqlite errors, ...
            if _is_not_found(exc):
                raise CollectionMissing(
                    f"{self.where} has no collection for this knowledge base ({exc}); ingest its documents again"
                ) from exc
            raise StoreUnavailable(f"{self.where} failed ({type(exc).__name__}: {exc}); {_fix(self.url)}") from exc

    def metadata(self, name: str) -> dict | None:
        """The collection's metadata, or None if it does not exist."""
        try:
            with self._guard():
                return dict(self._client.get_collection(name).metadata or {})
        except CollectionMissing:
            return None

    def create(self, name: str, metadata: dict) -> None:
        """Create the collection (cosine space) with ``metadata``; nothing if it exists."""
        with self._guard():
            self._client.get_or_create_collection(
                name, metadata={**metadata, "generation": _token()}, configuration={"hnsw": {"space": "cosine"}}
            )

    def drop(self, name: str) -> None:
        """Delete the collection; a missing one is fine."""
        with contextlib.suppress(CollectionMissing), self._guard():
            self._client.delete_collection(name)

    def rename(self, old: str, new: str) -> None:
        """Give collection ``old`` the name ``new``."""
        with self._guard():
            self._client.get_collection(old).modify(name=new)

    def list_names(self) -> list[str]:
        """Names of all collections."""
        with self._guard():
            return [c.name if hasattr(c, "name") else str(c) for c in self._client.list_collections()]

    def count(self, name: str) -> int:
        """Chunks in the collection (0 if it does not exist)."""
        try:
            with self._guard():
                return int(self._collection(name).count())
        except CollectionMissing:
            return 0

    def add(self, name: str, ids: list[str], embeddings: np.ndarray, texts: list[str], metadatas: list[dict]) -> None:
        """Upsert chunks with their embeddings (call ``touch`` when a batch of adds is complete)."""
        with self._guard():
            self._collection(name).upsert(ids=ids, embeddings=embeddings, documents=texts, metadatas=metadatas)

    def delete_where(self, name: str, where: dict) -> None:
        """Delete the chunks whose metadata matches ``where``."""
        with self._guard():
            collection = self._collection(name)
            collection.delete(where=where)
            self._touch(collection)

    def iter_chunks(self, name: str, with_embeddings: bool = False) -> Iterator[list[StoredChunk]]:
        """The whole collection, page by page (bounded memory)."""
        include = ["documents", "metadatas"] + (["embeddings"] if with_embeddings else [])
        offset = 0
        while True:
            with self._guard():
                got = self._collection(name).get(limit=GET_PAGE, offset=offset, include=include)
            rows = _rows(got, with_embeddings)
            if not rows:
                return
            yield rows
            offset += len(rows)

    def all_ids(self, name: str) -> list[str]:
        """Every chunk id in the collection (read page by page, no texts)."""
        ids: list[str] = []
        while True:
            with self._guard():
                got = self._collection(name).get(limit=GET_PAGE * 10, offset=len(ids), include=[])
            if not got["ids"]:
                return ids
            ids += got["ids"]

    def get(self, name: str, ids: list[str], with_embeddings: bool = True) -> list[StoredChunk]:
        """The chunks with these ids (missing ones are left out)."""
        if not ids:
            return []
        include = ["documents", "metadatas"] + (["embeddings"] if with_embeddings else [])
        with self._guard():
            return _rows(self._collection(name).get(ids=ids, include=include), with_embeddings)

    def query(self, name: str, embedding: np.ndarray, n: int) -> list[tuple[StoredChunk, float]]:
        """The ``n`` nearest chunks with their cosine similarity, best first."""
        with self._guard():
            collection = self._collection(name)
            got = collection.query(
                query_embeddings=[embedding], n_results=n, include=["documents", "metadatas", "distances"]
            )
        out = []
        for cid, text, meta, dist in zip(
            got["ids"][0], got["documents"][0], got["metadatas"][0], got["distances"][0], strict=True
        ):
            out.append((StoredChunk(cid, text or "", dict(meta or {})), 1.0 - float(dist)))
        return out

    def close(self) -> None:
        """Release the client (a persistent directory's files are closed when nothing else uses them)."""
        with contextlib.suppress(Exception):
            self._client.close()

    def _collection(self, name: str):  # -> chromadb Collection
        return self._client.get_collection(name)

    def touch(self, name: str) -> None:
        """Record a new generation token, so caches of the collection's contents are rebuilt."""
        with self._guard():
            self._touch(self._collection(name))

    @staticmethod
    def _touch(collection) -> None:  # collection: chromadb Collection
        """Bump the generation, keeping the rest of the metadata (``modify`` replaces all of it)."""
        meta = {k: v for k, v in (collection.metadata or {}).items() if not k.startswith("hnsw:")}
        collection.modify(metadata={**meta, "generation": _token()})


def _rows(got: dict, with_embeddings: bool) -> list[StoredChunk]:
    embeddings = got.get("embeddings") if with_embeddings else None
    rows = []
    for i, cid in enumerate(got["ids"]):
        vector = np.asarray(embeddings[i], dtype=np.float32) if embeddings is not None else None
        rows.append(StoredChunk(cid, got["documents"][i] or "", dict(got["metadatas"][i] or {}), vector))
    return rows


def _token() -> str:
    return uuid.uuid4().hex


def _is_not_found(exc: Exception) -> bool:
    from chromadb.errors import NotFoundError

    return isinstance(exc, NotFoundError) or "does not exist" in str(exc)


def _fix(chroma_url: str | None) -> str:
    if chroma_url:
        return "start the server (`chroma run --path DIR --port PORT`) or fix the chroma_url setting"
    return "check that the data directory exists and is writable"


def _forget_cached_system(path: Path) -> None:
    """Drop chromadb's in-process client cache for ``path`` if its directory was deleted and made again.

    chromadb keeps one system per path for the life of the process; after the directory is removed, a new
    client for the same path would otherwise reuse the stale one and write into deleted files.
    """
    if (path / "chroma.sqlite3").is_file():
        return
    try:
        from chromadb.api.shared_system_client import SharedSystemClient
    except ImportError:
        return
    cache = getattr(SharedSystemClient, "_identifier_to_system", {})
    getattr(SharedSystemClient, "_identifier_to_refcount", {}).pop(str(path), None)
    system = cache.pop(str(path), None)
    if system is not None:
        with contextlib.suppress(Exception):
            system.stop()
