"""``python -m core kb``: knowledge bases from the command line (same data dir as the app).

``create NAME [--embedder ID|PATH]``, ``list [--json]``, ``show NAME`` (its documents), ``ingest --kb NAME
PATH...`` (files or folders, recursive; creates the knowledge base if missing; a progress bar on stderr,
a summary on stdout), ``sync NAME DIR`` (the knowledge base mirrors the folder: new files added, changed
ones re-ingested, deleted ones removed), ``remove --kb NAME FILE``, ``drop NAME``, ``reembed NAME --embedder ID``,
``query --kb NAME [--k 4] [--json] QUERY... | -`` and ``embedders``. Errors go to stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from core.cli.common import add_home_flag, fail, print_json, settings_from_args
from core.errors import InkstoneError
from core.kb import IngestProgress, KnowledgeService

BAR_WIDTH = 24


def build_parser() -> argparse.ArgumentParser:
    """The ``kb`` argument parser with its subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    add_home_flag(common)
    common.add_argument("--chroma-url", help="a Chroma server (`chroma run`) instead of the data dir's folder")
    parser = argparse.ArgumentParser(prog="python -m core kb", description="Manage knowledge bases for RAG.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = sub.add_parser("create", parents=[common], help="create an empty knowledge base")
    create.add_argument("name", help="display name (any language)")
    create.add_argument("--embedder", help="bundled embedder id (see `kb embedders`) or a local model folder")
    create.add_argument("--chunk-size", type=int, help="characters per chunk")
    create.add_argument("--chunk-overlap", type=int, help="characters shared by neighbouring chunks")
    list_ = sub.add_parser("list", parents=[common], help="list knowledge bases")
    list_.add_argument("--json", action="store_true", help="print a JSON array")
    show = sub.add_parser("show", parents=[common], help="list the documents of a knowledge base")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print a JSON array")
    ingest = sub.add_parser("ingest", parents=[common], help="add files or folders (recursive)")
    ingest.add_argument("--kb", required=True, help="knowledge base (created if missing)")
    ingest.add_argument("--embedder", help="embedder for a new knowledge base")
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    mirror = "make a knowledge base mirror a folder: add new, re-ingest changed, remove deleted files"
    sync = sub.add_parser("sync", parents=[common], help=mirror)
    sync.add_argument("name", metavar="NAME", help="knowledge base (created if missing)")
    sync.add_argument("folder", type=Path, metavar="DIR")
    sync.add_argument("--embedder", help="embedder for a new knowledge base")
    sync.add_argument("--json", action="store_true", help="print the report as JSON")
    remove = sub.add_parser("remove", parents=[common], help="remove a document and its chunks")
    remove.add_argument("--kb", required=True)
    remove.add_argument("file", metavar="FILE", help="the document's name as ingested (see `kb show`)")
    drop = sub.add_parser("drop", parents=[common], help="delete a knowledge base and all its chunks")
    drop.add_argument("name")
    reembed = sub.add_parser("reembed", parents=[common], help="re-embed all chunks with another embedder")
    reembed.add_argument("name")
    reembed.add_argument("--embedder", required=True, help="bundled embedder id or a local model folder")
    query = sub.add_parser("query", parents=[common], help="search knowledge bases")
    query.add_argument("--kb", required=True, help="knowledge base name (NAME,NAME for several)")
    query.add_argument("--k", "-k", type=int, default=4, help="hits per query (default 4)")
    query.add_argument("--json", action="store_true", help="one JSON object per query per line")
    query.add_argument("queries", nargs="+", metavar="QUERY", help="each argument is one query; - reads stdin")
    sub.add_parser("embedders", parents=[common], help="list the bundled embedders")
    return parser


class ProgressBar:
    """Ingestion progress on stderr: a redrawn bar on a terminal, one line per finished file otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def __call__(self, update: IngestProgress) -> None:
        """Show one progress update."""
        if update.result is not None:
            r = update.result
            text = f"[{update.files_done}/{update.files_total}] {r.name}: {r.status}"
            text += f", {r.chunks} chunks" if r.status in ("added", "replaced") else ""
            text += f" ({r.ocr_pages} page(s) read by OCR)" if r.ocr_pages else ""
            text += f" ({r.detail})" if r.detail else ""
            self._line(text)
            for warning in r.warnings:
                self._line(f"    warning: {warning}")
        elif self.tty:
            filled = int(BAR_WIDTH * update.fraction)
            chunks = f" {update.chunks_done}/{update.chunks_total or '?'} chunks" if update.chunks_done else ""
            if update.ocr_pages:
                chunks += f" page {update.pages_done}/{update.pages_total} ({update.ocr_pages} by OCR)"
            self.stream.write(f"\r\x1b[K[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] "
                              f"{update.files_done}/{update.files_total} {update.name[:40]}{chunks}")  # fmt: skip
            self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        self.stream.flush()


def _queries(given: list[str], stdin: TextIO) -> list[str]:
    out: list[str] = []
    for item in given:
        if item == "-":
            out += [line.strip() for line in stdin if line.strip()]
        else:
            out.append(item)
    return out


def _run(service: KnowledgeService, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "embedders":
        for ident, about in service.embedders().items():
            mark = " (default)" if ident == service.default_embedder else ""
            print(f"{ident}{mark}: {about}")
    elif cmd == "create":
        kb = service.create(args.name, args.embedder, args.chunk_size, args.chunk_overlap)
        print(f"Created knowledge base {kb.name!r} (embedder {kb.embedder}, {kb.dimension} dimensions).")
    elif cmd == "list":
        summaries = service.summaries()
        if args.json:
            print_json([s.to_dict() for s in summaries])
        elif not summaries:
            print("No knowledge bases yet: `python -m core kb ingest --kb NAME PATH...` makes one.")
        for s in summaries if not args.json else []:
            extra = "".join(f", {n} {what}" for n, what in ((s.errors, "with errors"), (s.ingesting, "ingesting")) if n)
            print(f"{s.kb.name}\t{s.ready} documents, {s.chunks} chunks{extra}\tembedder {s.kb.embedder}")
    elif cmd == "show":
        docs = service.documents(args.name)
        if args.json:
            print_json(
                [
                    {
                        "name": d.name,
                        "status": d.status,
                        "pages": d.pages,
                        "chunks": d.chunks,
                        "error": d.error,
                        "warnings": d.warnings,
                        "embedder": d.embedder,
                        "updated_at": d.updated_at,
                    }
                    for d in docs
                ]
            )
        elif not docs:
            print("No documents yet.")
        for d in docs if not args.json else []:
            print(f"{d.name}\t{d.status}\t{d.pages} pages\t{d.chunks} chunks" + (f"\t{d.error}" if d.error else ""))
    elif cmd == "ingest":
        report = service.ingest(args.kb, args.paths, embedder=args.embedder, progress=ProgressBar())
        if args.json:
            print_json(report.to_dict())
        else:
            print(report.summary())
        for r in report.errors if not args.json else []:
            print(f"error: {r.name}: {r.detail}", file=sys.stderr)
        if report.aborted:
            print(f"error: stopped early: {report.aborted}", file=sys.stderr)
        return 1 if report.errors or report.aborted else 0
    elif cmd == "sync":
        report, gone = service.sync(args.name, args.folder, embedder=args.embedder, progress=ProgressBar())
        if args.json:
            print_json(report.to_dict() | {"removed": gone})
        else:
            print(f"{report.summary()}, {len(gone)} removed" + (f": {', '.join(gone)}" if gone else ""))
        for r in report.errors if not args.json else []:
            print(f"error: {r.name}: {r.detail}", file=sys.stderr)
        if report.aborted:
            print(f"error: stopped early (nothing removed): {report.aborted}", file=sys.stderr)
        return 1 if report.errors or report.aborted else 0
    elif cmd == "remove":
        removed = service.remove(args.kb, args.file)
        print(f"Removed {removed[0].name!r} ({sum(d.chunks for d in removed)} chunks) from {args.kb!r}.")
    elif cmd == "drop":
        kb = service.get(args.name)
        service.drop(kb.name)
        print(f"Dropped knowledge base {kb.name!r}.")
    elif cmd == "reembed":
        kb = service.reembed(args.name, args.embedder)
        print(f"Re-embedded {kb.name!r} with {kb.embedder} ({kb.dimension} dimensions).")
    elif cmd == "query":
        kbs = service.resolve(args.kb)
        for text in _queries(args.queries, sys.stdin):
            hits = service.query(kbs, text, k=args.k)
            if args.json:
                print_json({"query": text, "hits": [h.to_dict() for h in hits]})
                sys.stdout.flush()
                continue
            print(f"Query: {text}")
            if not hits:
                print("  (no relevant passage found)")
            for h in hits:
                print(f"  {h.rank}. [{h.score:.3f}] {h.where}\n     {' '.join(h.text.split())[:300]}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a ``kb`` subcommand with parsed arguments."""
    service = None
    try:
        service = KnowledgeService.open(settings_from_args(args, chroma_url=args.chroma_url))
        return _run(service, args)
    except InkstoneError as exc:
        return fail(exc)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to finish (nothing half-done is searchable)",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        if service is not None:
            service.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return run(build_parser().parse_args(argv))
