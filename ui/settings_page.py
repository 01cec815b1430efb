"""Model & settings: pick the model every tab uses; the open chat's persona and generation settings, or with no
chat open the same controls for the defaults new chats start with."""

from __future__ import annotations

import streamlit as st

from core.chat.defaults import load_chat_defaults, save_chat_defaults
from core.config import GenerationSettings
from core.errors import InkstoneError
from core.models.registry import profiles, resolve
from ui import mcp_servers, state

LOCAL_DIR = "Local model directory…"
QUANTIZE = ["none", "4bit", "8bit"]

engine = state.engine()
backend = engine.backend

st.set_page_config(page_title="Model & settings · Inkstone")
st.header("Model & settings")
info = backend.info()
facts = [f"**Loaded model:** {info.model_id}", f"**Context window:** {info.context_window} tokens"]
if info.device is not None:
    details = ", ".join(part for part in (info.dtype, info.quantize) if part)
    facts.append(f"**Device:** {info.device}" + (f" ({details})" if details else ""))
if info.engine_note:
    facts.append(f"**Engine:** {info.engine_note}")
if info.cpu_weights:
    facts.append(f"**CPU weights:** {info.cpu_weights_note or info.cpu_weights}")
estimate = engine.memory_estimate()
if estimate:
    facts.append(
        f"**Memory estimate:** bf16 {estimate['bf16']} GiB · 8-bit {estimate['8bit']} GiB · "
        f"4-bit {estimate['4bit']} GiB (weights + ~0.75 GiB overhead)"
    )
st.markdown("  \n".join(facts))

with st.form("model"):
    ids = [p.id for p in profiles()]
    titles = {p.id: p.title for p in profiles()}
    current = engine.settings.model
    choice = st.selectbox(
        "Model",
        [*ids, LOCAL_DIR],
        index=ids.index(current) if current in ids else len(ids),
        format_func=lambda i: titles.get(i, i),
    )
    directory = st.text_input(
        "Local model directory",
        value="" if current in ids else current,
        help="A Hugging Face model directory (config.json, weights, tokenizer files) "
        "or a ChatGLM3 checkpoint; used when the model is “Local model directory…”.",
    )
    quantize = st.radio(
        "Quantization",
        QUANTIZE,
        horizontal=True,
        index=QUANTIZE.index(engine.settings.quantize or "none"),
        help="4bit and 8bit need a CUDA GPU (bitsandbytes); on the CPU use none.",
    )
    st.caption(
        "4bit / 8bit quantization needs a CUDA GPU with bitsandbytes. Loading a model can take a while."
    )
    if st.form_submit_button("Load model", type="primary"):
        spec = directory.strip() if choice == LOCAL_DIR else choice
        try:
            resolve(spec or "")
        except InkstoneError as exc:
            st.error(str(exc))
        else:
            state.choose_model(state.ModelChoice(spec, quantize))
            st.rerun()

session_id = state.current_session_id()
st.subheader("Generation settings of this chat" if session_id else "Settings for new chats")
if session_id is None:
    try:
        defaults = load_chat_defaults(engine.settings)
    except InkstoneError as exc:
        st.error(str(exc))
        st.stop()
    st.caption(
        "No chat is open: a new chat starts with these. A persona's own generation defaults apply on top of them."
    )
    saved_persona, gen = defaults.persona or "", defaults.generation
else:
    session = engine.store.get_session(session_id)
    saved_persona, gen = session.persona or "", GenerationSettings.from_dict(session.settings)
personas, broken = engine.personas()
for problem in broken:
    st.warning(problem)
names = {"": "No persona", **{p.id: f"{p.avatar or ''} {p.name}".strip() for p in personas}}
current_persona = saved_persona if saved_persona in names else ""
picked = st.selectbox(
    "Persona of this chat" if session_id else "Persona of new chats",
    list(names),
    index=list(names).index(current_persona),
    format_func=names.get,
    help=f"System prompt and optional LoRA adapter, from {engine.settings.adapters}/<id>/persona.toml.",
)


def save(values: dict, persona: str) -> None:
    """Validate, then store: into the open chat, or as the new-chat defaults (InkstoneError if refused)."""
    if session_id is None:
        save_chat_defaults(engine.settings, values, persona, check_persona=engine.persona)
    else:  # the one place that decides a chat's settings checks them (and the persona) first
        config = engine.chat_config(session_id, persona=persona, overrides=values)
        engine.store.update_session(session_id, persona=config.persona_id or "", settings=config.stored)


if picked != current_persona:
    try:
        save(gen.to_dict(), picked)
    except InkstoneError as exc:
        st.error(str(exc))
    else:
        st.rerun()
with st.form(f"generation-{session_id or 'new-chats'}"):
    st.caption(f"Chat: {session.title}" if session_id else "Defaults of new chats")
    values = {
        "temperature": st.number_input("Temperature (0 = greedy)", 0.0, 5.0, float(gen.temperature), 0.05),
        "top_p": st.number_input("Top p", 0.01, 1.0, float(gen.top_p), 0.05),
        "top_k": st.number_input("Top k (0 = off)", 0, 1000, int(gen.top_k)),
        "max_new_tokens": st.number_input("Max new tokens", 1, 32768, int(gen.max_new_tokens)),
        "repetition_penalty": st.number_input(
            "Repetition penalty", 1.0, 3.0, float(gen.repetition_penalty), 0.01
        ),
        "max_turns": st.number_input(
            "Max turns in the prompt",
            1,
            1000,
            int(gen.max_turns),
            help="Older turns stay in the history; only the prompt leaves them out.",
        ),
    }
    if st.form_submit_button("Save settings"):
        try:
            save(values, current_persona)
        except InkstoneError as exc:
            st.error(str(exc))
        else:
            st.success(
                "Saved: the next answer in this chat uses these settings."
                if session_id
                else "Saved: new chats start with these settings."
            )
mcp_servers.render(engine)  # configured MCP servers and their tools, or why they fail
