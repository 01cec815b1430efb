"""Dependencies point one way: app.py, ui/ -> core/ -> knowledge/. Walks every import in the tree."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UI_FORBIDDEN = {"torch", "transformers", "peft", "chromadb", "sqlite3", "sqlite_utils", "accelerate", "bitsandbytes"}


def imports_of(path: Path) -> set[str]:
    """Top-level package names imported anywhere in ``path`` (relative imports resolved to their package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(REPO).parts[0] if len(path.relative_to(REPO).parts) > 1 else ""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(package if node.level else (node.module or "").split(".")[0])
    return names


def files(*tops: str) -> list[Path]:
    out: list[Path] = []
    for top in tops:
        p = REPO / top
        out += [p] if p.suffix == ".py" else sorted(p.rglob("*.py")) if p.is_dir() else []
    return out


def violations() -> list[str]:
    bad = []
    for f in files("core", "knowledge"):
        for name in imports_of(f) & {"ui", "streamlit", "app"}:
            bad.append(f"{f.relative_to(REPO)} imports {name}")
    for f in files("knowledge"):
        if "core" in imports_of(f):
            bad.append(f"{f.relative_to(REPO)} imports core (knowledge must not depend on core)")
    for f in files("ui"):
        for name in imports_of(f) & UI_FORBIDDEN:
            bad.append(f"{f.relative_to(REPO)} imports {name} (ui/ must go through core/)")
    for f in files("core", "knowledge", "bench", "tests"):
        if "ui" in imports_of(f) and f.parent.name != "tests":
            bad.append(f"{f.relative_to(REPO)} imports ui")
    return bad


def test_no_wrong_way_imports() -> None:
    assert files("core"), "the walk found no core modules"
    assert violations() == []


def test_the_walk_detects_a_wrong_way_import(tmp_path: Path) -> None:
    """Guard against a walker that can never fail: a planted bad import must be reported."""
    fake_repo = tmp_path
    (fake_repo / "core").mkdir()
    (fake_repo / "core" / "bad.py").write_text("import streamlit\nfrom ui import chat_page\n")
    (fake_repo / "ui").mkdir()
    (fake_repo / "ui" / "page.py").write_text("import torch\n")
    globals()["REPO"] = fake_repo
    try:
        found = violations()
    finally:
        globals()["REPO"] = Path(__file__).resolve().parents[1]
    assert "core/bad.py imports streamlit" in found and "core/bad.py imports ui" in found
    assert "ui/page.py imports torch (ui/ must go through core/)" in found


def test_every_module_has_a_docstring() -> None:
    missing = [str(f.relative_to(REPO)) for f in files("app.py", "core", "ui", "knowledge", "bench")
               if ast.get_docstring(ast.parse(f.read_text(encoding="utf-8"))) is None]
    assert missing == []
