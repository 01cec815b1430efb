"""ChatGLM3 through the app's own path: the engine loads the fixture by directory (no remote code), a greedy chat
turn streams exactly the reference answer, and the CLI's model commands print the reference ids. Expected context
window and dtype on disk come from the fixture (``CHATGLM3_FIXTURE``), not from the default checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.chat.service import Done, Started, Token
from core.cli import main
from core.config import load_settings
from core.engine import build_engine
from tests.chatglm3_fixture import FIXTURE, disk_dtype, fixture_config


def reference() -> dict:
    return json.loads((FIXTURE / "reference.json").read_text(encoding="utf-8"))


def test_greedy_turn_streams_reference_answer(home: Path) -> None:
    single_user = [c for c in reference()["cases"] if [m["role"] for m in c["messages"]] == ["user"]]
    assert single_user, "reference.json needs a case with one user message"
    case = single_user[0]
    settings = load_settings({"model": str(FIXTURE), "temperature": 0, "repetition_penalty": 1.0,
                              "max_new_tokens": len(case["greedy_new_ids"]), "cpu_weights": "fp32"})  # the reference
    engine = build_engine(settings)
    sid = engine.new_session()
    events = list(engine.service.send(sid, case["messages"][0]["content"]))
    assert isinstance(events[0], Started) and events[0].prompt_tokens == len(case["prompt_ids"])
    streamed = "".join(e.text for e in events if isinstance(e, Token))
    done = events[-1]
    assert isinstance(done, Done)
    assert streamed == done.stats.text == case["greedy_text"]
    assert engine.store.messages(sid)[-1].content == case["greedy_text"]


@pytest.mark.parametrize("index", range(len(reference()["cases"])) if FIXTURE.is_dir() else [])
def test_model_prompt_and_generate_print_reference_ids(index: int, home: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    case = reference()["cases"][index]
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps(case["messages"], ensure_ascii=False), encoding="utf-8")
    assert main(["model", "prompt", str(FIXTURE), "--messages", str(messages), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ids"] == case["prompt_ids"]
    n = len(case["greedy_new_ids"])
    assert main(["model", "generate", str(FIXTURE), "--messages", str(messages), "--greedy",
                 "--max-new-tokens", str(n), "--dtype", "float32", "--json"]) == 0  # the reference is float32
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ids"] == case["greedy_new_ids"]
    assert main(["model", "inspect", str(FIXTURE), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["family"] == "chatglm3" and info["context_window"] == fixture_config()["seq_length"]
    assert info["dtype_on_disk"] == disk_dtype()
