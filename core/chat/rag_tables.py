"""Table rows in a RAG prompt: the rows the question names, each written out as "column: value" pairs.

A passage cut from a table holds its header line and some rows (``a | b | c`` lines, as ``knowledge.formats`` writes
Markdown, HTML, DOCX and PDF tables). Asked "What is the price of the BW-140 kettle?" over six such rows, the bundled
0.5B model read the price of a neighbouring row (bench/rag_answer.py, tables right 0 of 5 on the held-out set). When
a row of the passages holds a cell the question names whole (a model code, a parking space type, 地下车位), the model
is shown only such rows, each as ``Model: BW-140; Power rating: 2000 W; ...`` under its own header, so it has no row
to pick; the text around the table stays. When no row is named, the passages are shown as they are.

Only the prompt changes: the sources the user sees and the citation check keep the whole passage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_RULE = re.compile(r"^[\s|:\-+]+$")
"""A Markdown table's separator line (``|---|---|``)."""
_CJK = re.compile(r"[\u3400-\u9fff]")


def table_cells(line: str) -> list[str] | None:
    """The cells of a table line (``a | b``, ``| a | b |``), None when ``line`` is not one."""
    if " | " not in line and not (line.strip().startswith("|") and line.strip().endswith("|")):
        return None
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return cells if len(cells) >= 2 else None


def names_row(cells: Sequence[str], question: str) -> bool:
    """Whether the question names a cell of this row whole: a Latin cell as a word (case-insensitive), a Chinese
    one as a substring. Cells of one character or without letters (prices, sizes) never name a row."""
    for cell in cells:
        if len(cell) < 2 or not any(c.isalpha() for c in cell):
            continue
        if _CJK.search(cell):
            if cell in question:
                return True
        elif re.search(rf"(?<![\w-]){re.escape(cell)}(?![\w-])", question, re.IGNORECASE):
            return True
    return False


def _parts(text: str) -> list[tuple[str, list[str] | None]]:
    """The lines of ``text`` with their cells (None for a line of prose), blank lines and separators left out."""
    return [(line, table_cells(line)) for line in text.splitlines() if line.strip() and not _RULE.match(line)]


def named_rows(sources: Sequence[dict], question: str) -> bool:
    """Whether a table row of any passage is named by ``question`` (a header row does not count)."""
    for source in sources:
        header = None
        for _, cells in _parts(str(source.get("text", ""))):
            if cells is None:
                header = None
            elif header is None:
                header = cells
            elif names_row(cells, question):
                return True
    return False


def focus_table(text: str, question: str, lang: str, seen: set[str] | None = None) -> str:
    """``text`` with its table lines replaced by the rows ``question`` names, each as "column: value" pairs under
    the table's header (rows already in ``seen`` are left out: chunks overlap); prose lines stay as they are."""
    seen = set() if seen is None else seen
    pair, sep = ("：", "；") if lang == "zh" else (": ", "; ")
    out: list[str] = []
    header: list[str] | None = None
    for line, cells in _parts(text):
        if cells is None:
            header = None
            out.append(line)
        elif header is None:
            header = cells
        elif names_row(cells, question) and line.strip() not in seen:
            seen.add(line.strip())
            names = header if len(header) == len(cells) else [""] * len(cells)
            out.append(sep.join(f"{n}{pair}{v}" if n else v for n, v in zip(names, cells, strict=True)))
    return "\n".join(out)


def focused(sources: Sequence[dict], question: str, lang: str) -> list[str]:
    """The text of each passage as the model reads it: with only the named table rows when ``question`` names a
    row of any of them, else as it is. A passage left empty (a table with none of the named rows) is ``""``."""
    texts = [str(s.get("text", "")).strip() for s in sources]
    if not named_rows(sources, question):
        return texts
    seen: set[str] = set()
    return [focus_table(text, question, lang, seen) for text in texts]
