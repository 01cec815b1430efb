"""Dependencies point one way: app.py, ui/ -> core/ -> knowledge/, and inside core/ from higher packages to lower
ones (``CORE_LAYERS``). Walks every import in the tree."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEB_FRAMEWORK = {"fastapi", "starlette", "uvicorn"}
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
    for f in [f for f in files("app.py", "core", "knowledge", "ui", "bench") if f.is_file()]:
        rel = f.relative_to(REPO).as_posix()
        for name in imports_of(f) & WEB_FRAMEWORK:
            if not rel.startswith("core/api/"):
                bad.append(f"{rel} imports {name} (only core/api/ imports the web framework)")
        if "openai" in imports_of(f) and rel != "core/backends/openai_backend.py" and not rel.startswith("bench/"):
            bad.append(f"{rel} imports openai (only core/backends/openai_backend.py does)")
    for f in [f for f in files("app.py", "ui") if f.is_file()]:
        if "knowledge" in imports_of(f):
            bad.append(f"{f.relative_to(REPO).as_posix()} imports knowledge (ui/ must go through core/)")
    for f in [f for f in files("app.py", "core", "knowledge", "ui") if f.is_file()]:
        rel = f.relative_to(REPO).as_posix()
        if "chromadb" in imports_of(f) and rel != "knowledge/store.py":
            bad.append(f"{rel} imports chromadb (only knowledge/store.py does)")
    for f in files("core", "knowledge", "bench", "tests"):
        if "ui" in imports_of(f) and f.parent.name != "tests":
            bad.append(f"{f.relative_to(REPO)} imports ui")
    bad += front_end_violations()
    return bad


FRONT_ENDS = {"streamlit": ("app.py", "ui"), "gradio": ("gradio_ui",)}
"""Each front-end framework and the only places that import it."""


def front_end_violations() -> list[str]:
    """Streamlit only in app.py and ui/, Gradio only in gradio_ui/; core, knowledge and each front end import no
    other front end (``gradio_ui`` is named in core only as a string, loaded by ``serve --ui``)."""
    bad = []
    everything = [f for f in REPO.rglob("*.py") if f.is_file() and ".venv" not in f.parts and "tests" not in f.parts]
    for f in everything:
        rel = f.relative_to(REPO).as_posix()
        names = imports_of(f)
        for framework, homes in FRONT_ENDS.items():
            inside = any(rel == home or rel.startswith(f"{home}/") for home in homes)
            if framework in names and not inside:
                bad.append(f"{rel} imports {framework} (only {', '.join(homes)} may)")
        if "gradio_ui" in names and not rel.startswith("gradio_ui/"):
            bad.append(f"{rel} imports gradio_ui (nothing imports a front end)")
        if rel.startswith("gradio_ui/") and names & {"ui", "app", "streamlit"}:
            bad.append(f"{rel} imports the Streamlit front end (each front end stands on core alone)")
        if rel.startswith("gradio_ui/") and names & UI_FORBIDDEN:
            bad.append(f"{rel} imports {sorted(names & UI_FORBIDDEN)} (gradio_ui/ must go through core/)")
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
    (fake_repo / "ui" / "kb.py").write_text("from knowledge import KnowledgeLibrary\n")
    (fake_repo / "core" / "vectors.py").write_text("def f():\n    import chromadb\n")
    (fake_repo / "core" / "web.py").write_text("from fastapi import FastAPI\nimport openai\n")
    (fake_repo / "core" / "page.py").write_text("import gradio\nfrom gradio_ui import page\n")
    (fake_repo / "gradio_ui").mkdir()
    (fake_repo / "gradio_ui" / "page.py").write_text("import gradio\nfrom ui import turn\nimport torch\n")
    (fake_repo / "ui" / "both.py").write_text("import gradio\n")
    globals()["REPO"] = fake_repo
    try:
        found = violations()
    finally:
        globals()["REPO"] = Path(__file__).resolve().parents[1]
    assert "core/bad.py imports streamlit" in found and "core/bad.py imports ui" in found
    assert "ui/page.py imports torch (ui/ must go through core/)" in found
    assert "ui/kb.py imports knowledge (ui/ must go through core/)" in found
    assert "core/vectors.py imports chromadb (only knowledge/store.py does)" in found
    assert "core/web.py imports fastapi (only core/api/ imports the web framework)" in found
    assert "core/web.py imports openai (only core/backends/openai_backend.py does)" in found
    assert "core/page.py imports gradio (only gradio_ui may)" in found
    assert "core/page.py imports gradio_ui (nothing imports a front end)" in found
    assert "ui/both.py imports gradio (only gradio_ui may)" in found
    assert "gradio_ui/page.py imports the Streamlit front end (each front end stands on core alone)" in found
    assert "gradio_ui/page.py imports ['torch'] (gradio_ui/ must go through core/)" in found
    assert not any(line.startswith("gradio_ui/page.py imports gradio ") for line in found)


def test_every_module_has_a_docstring() -> None:
    missing = [str(f.relative_to(REPO)) for f in files("app.py", "core", "ui", "gradio_ui", "knowledge", "bench")
               if ast.get_docstring(ast.parse(f.read_text(encoding="utf-8"))) is None]
    assert missing == []


def module_name(path: Path) -> str:
    """Dotted module name of a file under REPO (``core/models/loader.py`` -> ``core.models.loader``)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (imports there never run)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph(top: str = "core") -> dict[str, set[str]]:
    """Module -> modules of ``top`` it imports, at module level or inside functions (TYPE_CHECKING excluded)."""
    modules = {module_name(f): f for f in files(top)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted; the list sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_cycles_inside_core() -> None:
    graph = import_graph("core")
    assert "core.models.loader" in graph and graph["core.models.loader"], "the walk found no imports"
    assert import_cycles(graph) == []


def test_the_cycle_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    """A cycle made only by a function-level import (what loader/inspect had) must be reported."""
    (tmp_path / "core" / "models").mkdir(parents=True)
    (tmp_path / "core" / "__init__.py").write_text('"""x"""\n')
    (tmp_path / "core" / "models" / "__init__.py").write_text('"""x"""\n')
    (tmp_path / "core" / "models" / "a.py").write_text("from core.models import b\n")
    (tmp_path / "core" / "models" / "b.py").write_text("def f():\n    from .a import g\n    return g\n")
    (tmp_path / "core" / "models" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core.models import a\n")
    globals()["REPO"] = tmp_path
    try:
        cycles = import_cycles(import_graph("core"))
    finally:
        globals()["REPO"] = Path(__file__).resolve().parents[1]
    assert cycles == [["core.models.a", "core.models.b"]]


# -- Declare, don't probe: callers read ``Backend.capabilities`` and the protocol's members ------------------------

PROBES = {"getattr", "hasattr", "inspect.signature", "signature"}
"""Calls that learn what an object can do by looking at it instead of reading what it declares."""
BACKEND_NAMES = {"backend", "inner"}
"""Names that hold a backend: ``backend``, ``self.inner``, ``engine().backend``, ``self._backend``, ``*_backend``."""
GETATTR_ALLOWED = {
    "core/chatglm3/__init__.py": "a module-level __getattr__ that imports the package's public names lazily "
                                 "(PEP 562): no object is wrapped, nothing is forwarded",
}
"""Files that may define ``__getattr__``, each with the reason."""


def _backend_name(name: str) -> bool:
    bare = name.lstrip("_")
    return bare in BACKEND_NAMES or bare.endswith("_backend")


def holds_backend(node: ast.AST) -> bool:
    """True when ``node`` is a backend or is reached through one (``backend``, ``backend.stream``, ``backend()``,
    ``engine().backend.queue``, ``self.inner``); ``request.state`` or ``model.forward`` are not."""
    while True:
        if isinstance(node, ast.Name):
            return _backend_name(node.id)
        if isinstance(node, ast.Attribute):
            if _backend_name(node.attr):
                return True
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return False


def probes() -> list[str]:
    """Backends probed outside ``core/backends/`` (``getattr``/``hasattr``/``inspect.signature`` on a backend), and
    ``__getattr__`` forwarding anywhere in app.py, core/ or ui/ except ``GETATTR_ALLOWED``."""
    bad = []
    for f in [f for f in files("app.py", "core", "ui") if f.is_file()]:
        rel = f.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "__getattr__":
                if rel not in GETATTR_ALLOWED:
                    bad.append(f"{rel}:{node.lineno} defines __getattr__ (expose what callers need explicitly)")
            elif isinstance(node, ast.Call) and node.args and not rel.startswith("core/backends/"):
                name = ast.unparse(node.func)
                if name in PROBES and holds_backend(node.args[0]):
                    bad.append(f"{rel}:{node.lineno} probes a backend with {name}() (read Backend.capabilities)")
    return sorted(bad)


def test_no_backend_is_probed() -> None:
    assert files("core/api"), "the walk found no API modules"
    assert probes() == []


def test_the_probe_check_finds_probing_and_spares_other_objects(tmp_path: Path) -> None:
    """Guard against a check that can never fail: planted probes are reported; getattr on a request, a signature of
    a model's forward, and a backend's own module are not."""
    (tmp_path / "core" / "api").mkdir(parents=True)
    (tmp_path / "core" / "backends").mkdir()
    (tmp_path / "ui").mkdir()
    (tmp_path / "core" / "api" / "bad.py").write_text(
        "import inspect\n"
        "def seeds(backend):\n    return 'seed' in inspect.signature(backend.stream).parameters\n"
        "def depth(engine):\n    return getattr(engine().backend.queue, 'depth', 0)\n"
        "def fine(request, model, backend_events):\n"
        "    return getattr(request.state, 'model', ''), inspect.signature(model.forward), "
        "getattr(backend_events, 'close', None)\n")
    (tmp_path / "core" / "scheduler.py").write_text(
        "class Queued:\n    def __getattr__(self, name):\n        return getattr(self.inner, name)\n")
    (tmp_path / "ui" / "page.py").write_text("def page(backend):\n    return hasattr(backend, 'loaded')\n")
    (tmp_path / "core" / "backends" / "own.py").write_text("def look(backend):\n    return getattr(backend, 'x')\n")
    globals()["REPO"] = tmp_path
    try:
        found = probes()
    finally:
        globals()["REPO"] = Path(__file__).resolve().parents[1]
    assert found == [
        "core/api/bad.py:3 probes a backend with inspect.signature() (read Backend.capabilities)",
        "core/api/bad.py:5 probes a backend with getattr() (read Backend.capabilities)",
        "core/scheduler.py:2 defines __getattr__ (expose what callers need explicitly)",
        "core/scheduler.py:3 probes a backend with getattr() (read Backend.capabilities)",
        "ui/page.py:2 probes a backend with hasattr() (read Backend.capabilities)",
    ]


CORE_LAYERS = (
    ("core.errors", "core.config", "core.offline", "core.outputs", "core.images"),
    ("core.storage",),
    ("core.models", "core.chatglm3", "core.personas", "core.generation.threads"),
    ("core.backends", "core.generation", "core.llamacpp"),
    ("core.kb",),
    ("core.history",),
    ("core.tools",),
    ("core.chat",),
    ("core.engine", "core.training", "core.api"),
    ("core.cli", "core.__main__", "core"),
)
"""core/ from the bottom up: a module imports only from its own layer or lower ones (``core.generation.threads``, the
OpenMP release that model loading also calls, imports nothing of core and sits with the models). Imports under
``if TYPE_CHECKING:`` only name types and are not counted."""


def core_layer(module: str) -> int:
    """The layer of a ``core`` module (the longest package prefix in ``CORE_LAYERS`` decides)."""
    found = [(len(name), i) for i, names in enumerate(CORE_LAYERS) for name in names
             if module == name or module.startswith(name + ".")]  # fmt: skip
    assert found, f"{module} is in no layer of CORE_LAYERS: add it"
    return max(found)[1]


def runtime_core_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every ``core`` import that runs (function-level ones included, TYPE_CHECKING ones not)."""
    typing_only = {id(sub) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for sub in ast.walk(node)}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "core":
            found += [(node.lineno, f"core.{a.name}") for a in node.names] if node.module == "core" else \
                [(node.lineno, node.module)]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "core"]
    return found


def upward_imports(root: Path) -> list[str]:
    bad = []
    for f in sorted((root / "core").rglob("*.py")):
        module = ".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for line, imported in runtime_core_imports(ast.parse(f.read_text(encoding="utf-8"))):
            if core_layer(imported) > core_layer(module):
                bad.append(f"{f.relative_to(root).as_posix()}:{line} imports {imported} (a higher layer)")
    return bad


def test_core_packages_import_downwards_only() -> None:
    assert upward_imports(REPO) == []


def test_the_layer_check_finds_an_upward_import(tmp_path: Path) -> None:
    """Guard against a check that can never fail: a backend importing the chat service is reported; a lazy import
    counts, a TYPE_CHECKING one does not."""
    (tmp_path / "core" / "backends").mkdir(parents=True)
    (tmp_path / "core" / "backends" / "bad.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core.engine import Engine\n"
        "def f():\n    from core.chat.service import ChatService\n    from core.config import Settings\n")
    assert upward_imports(tmp_path) == ["core/backends/bad.py:5 imports core.chat.service (a higher layer)"]
