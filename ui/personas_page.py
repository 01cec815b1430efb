"""Personas: list them (avatar, base model, training record), create/edit/delete prompt-only personas, and train a
LoRA persona for the loaded model from an uploaded dataset as a background job with live progress and Cancel.

Thin: every operation is ``core.training.studio.PersonaStudio``; the job's state is in SQLite, so a refresh or a
restart of the app shows it. The progress box is a fragment that polls the job row while it runs.
"""

from __future__ import annotations

import streamlit as st

from core.errors import InkstoneError, InputError
from core.training.callbacks import format_eta
from core.training.studio import PersonaStudio, preview_rows, settings_line
from ui import state

_JOB = "inkstone_persona_job"
studio = PersonaStudio(state.engine())
st.header("Personas")
st.caption("A persona is a system prompt, a greeting and an avatar, plus an optional LoRA adapter trained here.")


def show_outcome(record: dict) -> None:
    """Chosen settings, the preview side by side, and the verdict (with the command that trains longer)."""
    if record.get("settings"):
        st.caption(f"Settings: {settings_line(record)}")
    preview = record.get("preview") or {}
    if preview_rows(record):
        st.table(preview_rows(record))
    if preview.get("verdict") == "took":
        st.success(f"Verdict: took — {preview.get('reason', '')}")
    elif preview.get("verdict"):
        st.warning(f"Verdict: {preview['verdict']} — {preview.get('reason', '')}")
        if preview.get("resume_command"):
            st.code(preview["resume_command"], language="bash")


@st.fragment(run_every=2.0)
def job_box(job_id: str) -> None:
    """Step, loss and ETA of a training job, refreshed every 2 s while it runs; Cancel ends its process."""
    try:
        job = studio.jobs.get(job_id)
    except InkstoneError as exc:
        st.error(str(exc))
        return
    total = job.max_steps or 1
    if job.active:
        loss = f"{job.loss:.4f}" if job.loss is not None else "…"
        eta = format_eta(job.eta_s) if job.eta_s is not None else "…"
        st.progress(min(job.step / total, 1.0), text=f"Training **{job.persona}** on {job.base}: step {job.step}/"
                                                     f"{job.max_steps or '?'} · loss {loss} · ETA {eta}")
        if st.button("Cancel training", icon=":material/stop_circle:", key=f"cancel-{job.id}"):
            studio.jobs.cancel(job.id)
            st.rerun()
    elif job.status == "done":
        st.success(f"Persona **{job.persona}** is trained ({job.step} steps, loss {job.loss:.4f}); pick it in a chat.")
        show_outcome(studio.outcome(job))
    else:
        st.error(f"Training of **{job.persona}** {job.status}: {job.error or ''}")
        with st.expander("Log"):
            st.code(job.log_tail(40) or "(empty)")


jobs = studio.jobs.list(limit=5)
shown = st.session_state.get(_JOB) or next((j.id for j in jobs if j.active), None) or (jobs[0].id if jobs else None)
if shown:
    job_box(shown)

cards, broken = studio.cards()
for problem in broken:
    st.warning(problem)
for card in cards:
    p = card.persona
    kind = f"LoRA for {p.base_model}" if p.lora else "prompt only"
    with st.expander(f"{p.avatar or '🙂'} **{p.name}** · `{p.id}` · {kind}"):
        if p.greeting:
            st.markdown(f"> {p.greeting}")
        st.text_area("System prompt", p.system_prompt, disabled=True, key=f"sys-{p.id}")
        if card.training:
            t = card.training
            st.caption(f"Trained {t.get('steps')} steps on {t.get('data_file')} ({t.get('examples')} examples) · "
                       f"final loss {t.get('final_loss')} · {t.get('trained_at', '')}")
            show_outcome(t)
        if st.button("Delete", key=f"del-{p.id}", icon=":material/delete:"):
            try:
                studio.delete_persona(p.id)
            except InkstoneError as exc:
                st.error(str(exc))
            else:
                st.rerun()

with st.expander("Create or edit a prompt-only persona"):
    with st.form("persona-edit"):
        pid = st.text_input("Id", placeholder="my-helper", key="pp-id")
        name = st.text_input("Name", key="pp-name")
        avatar = st.text_input("Avatar (an emoji)", max_chars=8, key="pp-avatar")
        system = st.text_area("System prompt", key="pp-system")
        greeting = st.text_input("Greeting", key="pp-greeting")
        replace = st.checkbox("Replace the persona with this id if it exists", key="pp-replace")
        if st.form_submit_button("Save", icon=":material/save:"):
            try:
                saved = studio.save_prompt_persona(pid, name=name, system_prompt=system, greeting=greeting,
                                                   avatar=avatar, replace=replace)
            except InkstoneError as exc:
                st.error(str(exc))
            else:
                st.success(f"Saved {saved.name}.")
                st.rerun()

with st.expander(f"Train a LoRA persona for {studio.engine.profile.id}"):
    with st.form("persona-train"):
        upload = st.file_uploader("Dataset (Alpaca JSON/JSONL or chat JSONL)", type=["json", "jsonl"])
        tid = st.text_input("Persona id", placeholder="my-cat", key="pt-id")
        tname = st.text_input("Name", key="pt-name")
        tsystem = st.text_area("System prompt", key="pt-system")
        steps = st.number_input("Steps (0: chosen from the model and the data)", min_value=0, max_value=100000,
                                value=0)
        overwrite = st.checkbox("Overwrite an existing persona with this id")
        if st.form_submit_button("Start training", icon=":material/model_training:", type="primary"):
            try:
                if upload is None:
                    raise InputError("Choose a dataset file (Alpaca JSON/JSONL or chat JSONL) first.")
                path = studio.save_upload(upload.name, upload.getvalue())
                job = studio.start_training(path, tid.strip(), name=tname, system=tsystem, steps=int(steps) or None,
                                            overwrite=overwrite)
            except InkstoneError as exc:
                st.error(str(exc))
            else:
                st.session_state[_JOB] = job.id
                st.rerun()
