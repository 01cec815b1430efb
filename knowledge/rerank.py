"""Optional reranking: a local cross-encoder directory reorders the fused candidates of a search.

Any Hugging Face sequence-classification checkpoint that scores a (question, passage) pair works (a cross-encoder
such as bge-reranker-v2-m3): it is loaded from its directory only (offline, no remote code), and each candidate
gets the model's logit for the pair (the single output, or the last class of a two-class head). The candidates
keep their calibrated relevance for the floor and for the shown score; only their order changes.
"""

from __future__ import annotations

import threading
from pathlib import Path

from knowledge.errors import KnowledgeError

MAX_TOKENS = 512
BATCH = 16


class RerankerError(KnowledgeError):
    """The reranker directory is missing or holds no loadable cross-encoder."""


class CrossEncoder:
    """A local cross-encoder: ``scores(question, passages)`` gives one relevance logit per passage."""

    def __init__(self, directory: str | Path) -> None:
        path = Path(directory).expanduser()
        fix = (
            "set `reranker` in inkstone.toml (or INKSTONE_RERANKER) to a local cross-encoder directory with "
            "config.json, the weights and the tokenizer files, or remove it to search without reranking"
        )
        if not path.is_dir():
            raise RerankerError(f"reranker directory {path} does not exist: {fix}")
        if not (path / "config.json").is_file():
            raise RerankerError(f"reranker directory {path} has no config.json (not a Hugging Face model): {fix}")
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, trust_remote_code=False
            )
        except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError... for bad dirs
            raise RerankerError(f"cannot load the reranker in {path} ({type(exc).__name__}: {exc}): {fix}") from exc
        self.model = model.eval()
        self.path = path
        self._lock = threading.Lock()

    def scores(self, question: str, passages: list[str]) -> list[float]:
        """The cross-encoder's relevance logit of each passage for ``question`` (higher is more relevant)."""
        import torch

        out: list[float] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(passages), BATCH):
                batch = passages[start : start + BATCH]
                inputs = self.tokenizer(
                    [question] * len(batch), batch, padding=True, truncation=True, max_length=MAX_TOKENS,
                    return_tensors="pt",
                )  # fmt: skip
                logits = self.model(**inputs).logits.float()
                out += logits[:, -1].tolist()
        return out


_LOADED: dict[Path, CrossEncoder] = {}
_LOADED_LOCK = threading.Lock()


def load_reranker(directory: str | Path) -> CrossEncoder:
    """The cross-encoder of ``directory``, loaded once per process (RerankerError names the path and the fix)."""
    path = Path(directory).expanduser().resolve()
    with _LOADED_LOCK:
        if path not in _LOADED:
            _LOADED[path] = CrossEncoder(path)
        return _LOADED[path]
