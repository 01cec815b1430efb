"""``python -m core model``: the debugging commands reach the model only through the backend protocol
(``core.backends.base.Backend``), so any in-process backend serves them; a backend without an in-process model
is refused with the fix."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from core.backends.base import Backend
from core.cli import main

MODEL_CLI = Path(__file__).resolve().parents[1] / "core" / "cli" / "model.py"


def test_model_cli_uses_only_members_of_the_backend_protocol() -> None:
    tree = ast.parse(MODEL_CLI.read_text(encoding="utf-8"))
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "backend"}  # fmt: skip
    members = {name for name in dir(Backend) if not name.startswith("_")} | set(Backend.__annotations__)
    assert used and used <= members, sorted(used - members)


def test_a_backend_without_an_in_process_model_is_refused(home: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "hi"}]), encoding="utf-8")
    assert main(["model", "generate", "fake", "--messages", str(messages)]) == 1
    assert "no local tokenizer or weights" in capsys.readouterr().err
