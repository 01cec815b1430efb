"""Domain exceptions. Each message names the bad value and says how to fix it.

Core raises these; the edges translate them: the UI shows ``st.error``, the CLI prints the message and
exits non-zero. Nothing turns them into chat text.
"""


class InkstoneError(Exception):
    """Base class of every error Inkstone reports to a user."""


class ConfigError(InkstoneError):
    """A setting, config file or CLI flag has a bad value."""


class ModelError(InkstoneError):
    """A model cannot be found, verified or loaded (unknown id, missing package, hash mismatch, won't fit)."""


class RemoteCodeRefused(ModelError):
    """A checkpoint needs Python code from its own directory and ``--trust-remote-code`` was not given."""


class GenerationError(InkstoneError):
    """Generation failed mid-answer (for example CUDA out of memory); the model stays usable."""


class InputError(InkstoneError):
    """A user message is refused before it is stored (empty, or larger than the context budget)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        """The request field at fault, where it is not the messages (the API names it)."""


class NotFoundError(InkstoneError):
    """A session, message or persona id does not exist."""


class StorageError(InkstoneError):
    """The history database cannot be opened or written (read-only, locked, corrupt)."""


class KnowledgeBaseError(InkstoneError):
    """A knowledge base cannot be created, ingested into, searched or re-embedded."""


class ReembedRequired(KnowledgeBaseError):
    """A knowledge base was built with another embedder than the one in use: re-embed it."""


class KnowledgeUnavailable(KnowledgeBaseError):
    """The Chroma store (local directory or server) cannot be reached or read."""
