"""Exceptions of the knowledge library. Each message names the bad value and says how to fix it."""


class KnowledgeError(Exception):
    """Base class of every error the knowledge library raises."""


class LoaderError(KnowledgeError):
    """One file cannot be read: unsupported type, empty, binary, encrypted, or no text to index."""


class EmbedderError(KnowledgeError):
    """An embedder spec is unknown, or the embedder cannot be loaded offline."""


class EmbedderMismatch(KnowledgeError):
    """A collection was built with another embedder; its chunks must be re-embedded first."""


class StoreUnavailable(KnowledgeError):
    """The Chroma directory is unusable, or the Chroma server is down or unreachable."""
