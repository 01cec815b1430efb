"""Where the ChatGLM3-format test checkpoint is (env ``CHATGLM3_FIXTURE``, default ``../shared/fixtures/
chatglm3-tiny`` next to the repo), and the skip marker for tests that need it. Imported by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURE = Path(
    os.environ.get("CHATGLM3_FIXTURE") or Path(__file__).resolve().parents[2] / "shared/fixtures/chatglm3-tiny"
)
needs_fixture = pytest.mark.skipif(
    not (FIXTURE / "reference.json").is_file(),
    reason=f"ChatGLM3 fixture not found at {FIXTURE} (set CHATGLM3_FIXTURE to its directory)",
)
