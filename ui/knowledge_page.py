"""Knowledge bases: create and delete them (choosing the embedder), upload documents with a progress bar, see
each document's pages, chunks, status and errors, delete a document, re-embed, and try a query.

Thin by design: every operation is ``engine.knowledge`` (``core/kb``); this page only draws and forwards.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.errors import InkstoneError, ReembedRequired
from core.kb import IngestProgress, KnowledgeBase
from ui import state

_PICK = "inkstone_kb_pick"
_UPLOADS = "inkstone_kb_uploads"
_REPORT = "inkstone_kb_report"
_CONFIRM = "inkstone_kb_confirm_drop"
_FLASH = "inkstone_kb_flash"

engine = state.engine()
kn = engine.knowledge
st.header("Knowledge bases")
st.caption("Upload documents, then turn RAG on in a chat: answers cite them as [n] with file and page.")


def pick_embedder(label: str, key: str, default: str) -> str:
    """A bundled embedder, unless a local sentence-transformers folder is typed in."""
    bundled = kn.embedders()
    options = list(bundled) if default in bundled else [default, *bundled]
    choice = st.selectbox(label, options, index=options.index(default), key=key,
                          format_func=lambda e: f"{e} — {bundled.get(e, 'local model')}")  # fmt: skip
    folder = st.text_input("…or a local sentence-transformers folder", key=f"{key}-dir", placeholder="/models/bge-m3")
    return folder.strip() or choice


def reembed(kb: KnowledgeBase, embedder: str) -> None:
    """Re-embed ``kb`` with a progress bar."""
    bar = st.progress(0.0, text=f"Re-embedding {kb.name} with {embedder}…")
    try:
        kn.reembed(kb.name, embedder, progress=lambda done, total: bar.progress(min(done / (total or done or 1), 1.0)))
    except InkstoneError as exc:
        st.error(str(exc))
    else:
        st.session_state[_FLASH] = f"Re-embedded {kb.name} with {embedder}."
        st.rerun()


with st.expander("New knowledge base", expanded=not kn.summaries()):
    with st.form("kb-create", clear_on_submit=True):
        name = st.text_input("Name", placeholder="Any language, e.g. 产品手册")
        embedder = pick_embedder("Embedder", "kb-create-embedder", kn.default_embedder)
        if st.form_submit_button("Create", icon=":material/add:"):
            try:
                created = kn.create(name, embedder)
            except InkstoneError as exc:
                st.error(str(exc))
            else:
                st.session_state[_PICK] = created.name
                st.success(f"Created {created.name} ({created.embedder}).")

summaries = {s.kb.name: s for s in kn.summaries()}
if not summaries:
    st.info("No knowledge bases yet: create one above.")
    st.stop()
if st.session_state.get(_PICK) not in summaries:
    st.session_state[_PICK] = next(iter(summaries))
picked = st.selectbox("Knowledge base", list(summaries), key=_PICK)
summary = summaries[picked]
kb = summary.kb
st.caption(f"Embedder **{kb.embedder}** ({kb.dimension} dimensions) · chunks of {kb.chunk_size} characters, "
           f"{kb.chunk_overlap} overlap · {summary.ready} documents, {summary.chunks} chunks")  # fmt: skip
if flash := st.session_state.pop(_FLASH, None):
    st.success(flash)
if conflict := kn.embedder_conflict(kb):
    st.warning(conflict)
    if st.button(f"Re-embed with {kn.default_embedder}", key="kb-fix-conflict", type="primary"):
        reembed(kb, kn.default_embedder)

uploads = st.file_uploader("Add documents", accept_multiple_files=True, type=[s[1:] for s in kn.supported_suffixes()],
                           key=f"{_UPLOADS}-{st.session_state.get(_UPLOADS, 0)}")  # fmt: skip
if uploads and st.button("Ingest", type="primary", icon=":material/upload:"):
    bar = st.progress(0.0, text="Ingesting…")

    def show(update: IngestProgress) -> None:
        ocr = f" · OCR page {update.pages_done}/{update.pages_total}" if update.ocr_pages else ""
        bar.progress(update.fraction, text=f"{update.files_done}/{update.files_total} · {update.name}{ocr}")

    try:
        report = kn.ingest_uploads(kb.name, [(f.name, f) for f in uploads], progress=show)
    except InkstoneError as exc:
        st.error(str(exc))
    else:
        st.session_state[_REPORT] = report
        st.session_state[_UPLOADS] = st.session_state.get(_UPLOADS, 0) + 1  # a fresh, empty uploader
        st.rerun()
with st.expander("Sync with a folder"):
    st.caption("The knowledge base mirrors the folder: new files are added, changed ones re-ingested, deleted ones "
               "removed. Safe to run again; an interrupted sync finishes on the next run.")  # fmt: skip
    folder = st.text_input("Folder on this computer", key=f"kb-sync-dir-{kb.id}", placeholder="/home/me/manuals")
    if st.button("Sync", icon=":material/sync:", key=f"kb-sync-{kb.id}", disabled=not folder.strip()):
        with st.spinner(f"Syncing {folder}…"):
            try:
                report, gone = kn.sync(kb.name, Path(folder.strip()))
            except InkstoneError as exc:
                st.error(str(exc))
            else:
                st.session_state[_REPORT] = report
                st.session_state[_FLASH] = f"{len(gone)} removed" + (f": {', '.join(gone)}" if gone else "")
                st.rerun()
if (report := st.session_state.pop(_REPORT, None)) is not None:
    (st.warning if report.errors or report.aborted else st.success)(report.summary())
    for result in report.results:
        if result.status == "error":
            st.error(f"{result.name}: {result.detail}")
        for warning in result.warnings:
            st.warning(f"{result.name}: {warning}")

docs = kn.documents(kb.name)
if docs:
    st.dataframe(
        [{"document": d.name, "status": d.status, "pages": d.pages, "chunks": d.chunks,
          "problem": d.error or "; ".join(d.warnings), "updated": d.updated_at[:19].replace("T", " ")} for d in docs],
        hide_index=True,
        width="stretch",
    )  # fmt: skip
    with st.container(horizontal=True, vertical_alignment="bottom"):
        doomed = st.selectbox("Document", sorted({d.name for d in docs}), key=f"kb-doc-{kb.id}")
        if st.button("Delete document", icon=":material/delete:"):
            try:
                kn.remove(kb.name, doomed)
            except InkstoneError as exc:
                st.error(str(exc))
            else:
                st.rerun()
else:
    st.caption("No documents yet: upload some above.")

st.subheader("Try a query")
query = st.text_input("Query", key=f"kb-query-{kb.id}", placeholder="A question your documents answer")
k = st.slider("Hits", 1, 10, engine.settings.rag_top_k, key="kb-query-k")
if query.strip():
    try:
        hits = kn.query([kb], query, k=k)
    except ReembedRequired as exc:
        st.error(str(exc))
        if st.button(f"Re-embed with {kn.default_embedder}", key="kb-fix-reembed"):
            reembed(kb, kn.default_embedder)
    except InkstoneError as exc:
        st.error(str(exc))
    else:
        if not hits:
            st.info("No relevant passage found.")
        for hit in hits:
            dated = f" · dated {hit.date}" if hit.date else ""
            st.markdown(f"**{hit.rank}. {hit.where}**{dated} · score {hit.score:.3f}")
            st.text(" ".join(hit.text.split())[:600])

with st.expander("Re-embed or delete"):
    if kb.embedder != kn.default_embedder:
        st.info(f"Built with {kb.embedder}; new knowledge bases use {kn.default_embedder}.")
    target = pick_embedder("Re-embed with", f"kb-reembed-{kb.id}", kn.default_embedder)
    if st.button("Re-embed", icon=":material/autorenew:", disabled=not target):
        reembed(kb, target)
    if st.session_state.get(_CONFIRM) == kb.id:
        st.warning(f"Delete “{kb.name}” with its {summary.documents} documents? This cannot be undone.")
        yes, no = st.columns(2)
        if yes.button("Yes, delete", type="primary", key="kb-drop-yes"):
            st.session_state.pop(_CONFIRM, None)
            try:
                kn.drop(kb.name)
            except InkstoneError as exc:
                st.error(str(exc))
            else:
                st.rerun()
        if no.button("Cancel", key="kb-drop-no"):
            st.session_state.pop(_CONFIRM, None)
            st.rerun()
    elif st.button("Delete knowledge base", icon=":material/delete_forever:", key="kb-drop"):
        st.session_state[_CONFIRM] = kb.id
        st.rerun()
