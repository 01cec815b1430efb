"""Habits of the UI layer: ``ui/`` and ``app.py`` import no heavy or storage libraries (directly or through
what they import), nothing in ``core/`` imports ``ui``, pages stay thin, every module has a docstring.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UI_FILES = sorted((ROOT / "ui").glob("*.py")) + [ROOT / "app.py"]
FORBIDDEN = {"torch", "transformers", "peft", "chromadb", "sqlite3", "sqlite_utils"}
PAGES = ["ui/chat_page.py", "ui/settings_page.py", "ui/sidebar.py", "app.py"]


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_modules_import_no_heavy_or_storage_library(path: Path) -> None:
    assert not imported_roots(path) & FORBIDDEN


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_modules_have_a_docstring(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES)
def test_pages_stay_thin(page: str) -> None:
    assert len((ROOT / page).read_text(encoding="utf-8").splitlines()) <= 150


def test_nothing_in_core_imports_ui() -> None:
    for path in (ROOT / "core").rglob("*.py"):
        assert "ui" not in imported_roots(path) and "app" not in imported_roots(path), path


def test_importing_the_ui_helpers_loads_no_model_library() -> None:
    code = (
        "import sys; import ui.state, ui.sidebar, ui.turn; "
        f"print(sorted(m for m in {sorted(FORBIDDEN - {'sqlite3', 'sqlite_utils'})!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
