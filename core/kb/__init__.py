"""Knowledge bases in core: their rows (SQLite), ingestion orchestration, the CLI/UI operations and the
retriever ``ChatService`` calls. The RAG machinery itself (loaders, splitting, embedders, Chroma, hybrid
search) is the ``knowledge`` library; this package only uses its facade.
"""

from core.kb.ingest import FileResult, IngestProgress, IngestReport
from core.kb.naming import KbSummary, QueryHit, clean_kb_name
from core.kb.rows import Document, KnowledgeBase, KnowledgeRows
from core.kb.service import KnowledgeService

__all__ = [
    "Document",
    "FileResult",
    "IngestProgress",
    "IngestReport",
    "KbSummary",
    "KnowledgeBase",
    "KnowledgeRows",
    "KnowledgeService",
    "QueryHit",
    "clean_kb_name",
]
