"""Tables in a PDF's text layer, written as ``cell | cell`` lines with their header row first.

pypdf's plain text gives a table's cells as loose words, so a row loses its column names. Here the page's text
runs are placed by position (pypdf's layout-mode geometry), grouped into lines, and a block of lines whose runs
fall into the same columns is a table; its rows replace the same characters of the plain text, so the rest of the
page reads exactly as before and ``knowledge.splitting`` keeps each row with its header. Not tables: prose, lists,
two-column pages (long "cells", and their plain text runs column by column, so the rows are not found in it). A
table going on over the next page gets the header of the page before when it does not repeat it.

pypdf's layout-mode helpers are private (``pypdf._text_extraction._layout_mode``): if a pypdf release moves or
breaks them, no table is found and the page text is pypdf's plain text, as before tables were detected.
"""

from __future__ import annotations

import logging
import re
import statistics
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_CELL_MEDIAN = 32  # characters: the median cell of a table is short (a two-column page's "cells" are lines)
MIN_ROWS = 3  # a header and two rows; a continuation on a new page needs one


@dataclass(frozen=True)
class Run:
    """A piece of text drawn at x [start, end) on one line, in a font ``height`` points tall."""

    text: str
    start: float
    end: float
    height: float


@dataclass
class Table:
    """Rows of cells (header first as found on the page), the columns' x ranges, and where it sits on the page."""

    rows: list[list[str]]
    columns: list[tuple[float, float]]
    lines_above: list[str]  # text of the page's lines above the table
    lines_below: list[str]
    line_rows: list[list[str]]  # one row per printed line (the rows' text in the order of lines)

    def shape(self) -> list[float]:
        """Column starts relative to the first one (pages may be shifted against each other)."""
        return [a - self.columns[0][0] for a, _ in self.columns]


def page_lines(page) -> list[tuple[float, list[Run]]]:  # page: pypdf.PageObject
    """(baseline, runs left to right) for each line of the page, top first; [] where pypdf cannot place the text."""
    try:
        from pypdf._text_extraction import _layout_mode
        from pypdf.generic import ArrayObject, ContentStream, StreamObject

        contents = page.get("/Contents")
        contents = contents.get_object() if contents is not None else None
        if not isinstance(contents, (ArrayObject, StreamObject)):
            return []
        ops = iter(ContentStream(contents, page.pdf, "bytes").operations)
        groups = _layout_mode.text_show_operations(ops, page._layout_mode_fonts(), True, None)
        if not groups:
            return []
        lines = []
        for y, line in _layout_mode.y_coordinate_groups(groups, None).items():
            runs = [
                Run(g["text"].strip(), float(g["tx"]), float(g["displaced_tx"]), float(g["font_height"]) or 10.0)
                for g in line
                if g["text"].strip()
            ]
            if runs:
                lines.append((float(y), _join_touching(sorted(runs, key=lambda r: r.start))))
        return lines
    except Exception as exc:  # noqa: BLE001 - a page pypdf cannot lay out keeps its plain text
        log.debug("no table layout for a PDF page: %s: %s", type(exc).__name__, exc)
        return []


def _join_touching(runs: list[Run]) -> list[Run]:
    """Runs that touch (pieces of one word or phrase, e.g. a change of font) become one run."""
    out = [runs[0]]
    for run in runs[1:]:
        last = out[-1]
        gap = run.start - last.end
        if gap < 0.12 * min(last.height, run.height):
            sep = "" if gap < 0.05 * run.height else " "
            out[-1] = Run(last.text + sep + run.text, last.start, max(last.end, run.end), last.height)
        else:
            out.append(run)
    return out


def find_tables(lines: list[tuple[float, list[Run]]]) -> list[Table]:
    """The tables among a page's lines, top first: blocks of lines of 2+ runs with shared column channels (and the
    lines of wrapped cells between them). A block of one or two rows is kept too (it may go on from the page
    before); a table in its own right has ``MIN_ROWS``."""
    tables: list[Table] = []
    i = 0
    while i < len(lines):
        if len(lines[i][1]) < 2:
            i += 1
            continue
        end = i + 1  # lines of 2+ runs, and lines of one run close to the line above or below (a wrapped cell)
        while end < len(lines) and (
            len(lines[end][1]) >= 2 or _close(lines[end - 1], lines[end]) or _wraps_on(lines, end)
        ):
            end += 1
        columns = _columns([run for _, runs in lines[i:end] if len(runs) >= 2 for run in runs])
        cut = next((k for k in range(i, end) if any(_slot(r, columns) is None for r in lines[k][1])), end)
        block = lines[i:cut] if cut > i else lines[i : i + 1]
        rows = _rows(block, columns)
        if len(columns) >= 2 and _plausible(rows) and _aligned(block, columns):
            above, below = lines[:i], lines[i + len(block) :]
            line_rows = [_cells(runs, columns) for _, runs in block]
            tables.append(Table(rows, columns, [_line_text(r) for _, r in above], [_line_text(r) for _, r in below],
                                line_rows))  # fmt: skip
        i += len(block)
    return tables


def _wraps_on(lines: list[tuple[float, list[Run]]], k: int) -> bool:
    """Line ``k`` (one run) is the first line of a wrapped cell: lines close under it lead to a line of 2+ runs."""
    while k + 1 < len(lines) and _close(lines[k], lines[k + 1]):
        k += 1
        if len(lines[k][1]) >= 2:
            return True
    return False


def _close(above: tuple[float, list[Run]], line: tuple[float, list[Run]]) -> bool:
    """``line`` sits closer under ``above`` than a new row would: a further line of a cell that wraps."""
    return 0 < above[0] - line[0] <= 1.3 * min(run.height for run in above[1] + line[1])


def _rows(block: list[tuple[float, list[Run]]], columns: list[tuple[float, float]]) -> list[list[str]]:
    """The block's rows: lines closer than the row pitch are one row (wrapped cells) when some rows are further
    apart; in a tight table (every line at the same pitch) each line is a row."""
    spaced = any(not _close(a, b) for a, b in zip(block, block[1:], strict=False))
    rows: list[list[str]] = []
    for k, (_, runs) in enumerate(block):
        cells = _cells(runs, columns)
        if rows and spaced and _close(block[k - 1], block[k]):
            rows[-1] = [_join(old, new) for old, new in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    return rows


def _join(first: str, second: str) -> str:
    """Two lines of a cell: joined by a space, or directly between Chinese characters."""
    if not first or not second:
        return first or second
    cjk = first[-1] >= "\u3000" and second[0] >= "\u3000"
    return first + ("" if cjk else " ") + second


def _columns(runs: list[Run]) -> list[tuple[float, float]]:
    """Column x ranges: the union of the runs' x ranges, split where a gap of white space runs through every line."""
    spans = sorted((r.start, r.end, r.height) for r in runs)
    columns: list[list[float]] = []
    for start, end, height in spans:
        if columns and start - columns[-1][1] < 0.3 * height:
            columns[-1][1] = max(columns[-1][1], end)
        else:
            columns.append([start, end])
    return [(a, b) for a, b in columns]


def _slot(run: Run, columns: list[tuple[float, float]]) -> int | None:
    """The column a run lies in, or None when it spans several."""
    for index, (a, b) in enumerate(columns):
        if a - 0.5 <= run.start and run.end <= b + 0.5:
            return index
    return None


def _cells(runs: list[Run], columns: list[tuple[float, float]]) -> list[str]:
    """A line's text per column ('' where the row has no cell)."""
    cells = [""] * len(columns)
    for run in runs:
        slot = _slot(run, columns)
        if slot is not None:
            cells[slot] = f"{cells[slot]} {run.text}".strip()
    return cells


def _aligned(block: list[tuple[float, list[Run]]], columns: list[tuple[float, float]]) -> bool:
    """Every gap between two columns is a table's: the cells on one side of it line up (left edges of the column
    to its right, right edges of the column to its left, or centres of either), or it is wide (1.5 em or more).
    Word gaps that happen to line up through a few lines of prose are narrow and ragged on both sides."""
    edges: list[tuple[list[float], list[float], list[float]]] = []  # per column: starts, ends, centres of its cells
    for index in range(len(columns)):
        cells = [[r for r in runs if _slot(r, columns) == index] for _, runs in block]
        cells = [c for c in cells if c]
        edges.append(
            ([c[0].start for c in cells], [c[-1].end for c in cells], [(c[0].start + c[-1].end) / 2 for c in cells])
        )
    height = statistics.median(r.height for _, runs in block for r in runs)
    for index in range(len(columns) - 1):
        left, right = edges[index], edges[index + 1]
        lined_up = _lined_up(left[1]) or _lined_up(right[0]) or _centred(left) or _centred(right)
        if not lined_up and columns[index + 1][0] - columns[index][1] < 1.5 * height:
            return False
    return True


def _centred(edges: tuple[list[float], list[float], list[float]]) -> bool:
    """A centred column: its cells' centres line up and their left edges do not (else the cells are left-aligned
    and of about the same width, as lines of justified prose)."""
    return _lined_up(edges[2]) and not _lined_up(edges[0])


def _lined_up(values: list[float]) -> bool:
    """Three quarters or more of ``values`` (at least two) lie within 1.5 points of each other."""
    values = sorted(values)
    best = max((sum(1 for w in values if v <= w <= v + 1.5) for v in values), default=0)
    return best >= 2 and best >= 0.75 * len(values)


def _plausible(rows: list[list[str]]) -> bool:
    """Cells short like a table's (not lines of prose), the header and most rows filling 2+ columns, and the
    first column not a list's bullets or numbers (1. 2. 3., a) b), •)."""
    filled = [sum(bool(c) for c in row) for row in rows]
    lengths = [len(c) for row in rows for c in row if c]
    markers = [row[0] for row in rows if row[0]]
    if markers and all(_LIST_MARKER.match(m) for m in markers):
        return False
    return (
        filled[0] >= 2
        and sum(n >= 2 for n in filled) * 2 >= len(rows)
        and (statistics.median(lengths) <= MAX_CELL_MEDIAN)
    )


_LIST_MARKER = re.compile(r"^(?:\(?(?:\d{1,3}|[A-Za-z]|[ivxlcIVXLC]{1,5})[.)]?|[^\w\s#])$")


def _new_header(rows: list[list[str]], header: list[str]) -> bool:
    """``rows`` start with a header of their own, not ``header``: a first row without digits above rows that
    mostly have some (a new table with the same columns, not the old one going on)."""
    if _squash(rows[0]) == _squash(header) or any(ch.isdigit() for ch in _squash(rows[0])) or len(rows) < 2:
        return False
    return sum(any(ch.isdigit() for ch in _squash(row)) for row in rows[1:]) * 2 > len(rows) - 1


def _line_text(runs: list[Run]) -> str:
    return " ".join(r.text for r in runs)


def _squash(cells: list[str]) -> str:
    return "".join("".join(cells).split())


def row_line(cells: list[str]) -> str:
    """One table row as the splitter reads it: cells joined by ' | ', an empty cell as '-' (so a row that starts or
    ends with one still has as many separators as the others), a '|' inside a cell as '/'."""
    return " | ".join(cell.replace("|", "/") or "-" for cell in cells)


def locate(text: str, rows: list[list[str]]) -> tuple[int, int] | None:
    """[start, end) of the table's characters in ``text``, row by row and ignoring white space; None if they are
    not there in that order (a two-column page, a table drawn column by column, text pypdf decodes differently)."""
    target = "".join(ch for row in rows for cell in row for ch in cell if not ch.isspace())
    if not target:
        return None
    index = [i for i, ch in enumerate(text) if not ch.isspace()]
    at = "".join(text[i] for i in index).find(target)
    if at < 0:
        return None
    return index[at], index[at + len(target) - 1] + 1


def continues(table: Table, before: Table | None) -> bool:
    """``table`` goes on from ``before``, the last table of the page before: that table ended its page (at most a
    footer line below it), this one starts its page (at most a running head above it), with the same columns."""
    if before is None or len(table.columns) != len(before.columns):
        return False
    short = [len(line) <= 60 for line in before.lines_below + table.lines_above]
    if len(before.lines_below) > 2 or len(table.lines_above) > 2 or not all(short):
        return False
    return all(abs(a - b) <= 6.0 for a, b in zip(table.shape(), before.shape(), strict=True))


def tabulate_page(text: str, page, before: Table | None) -> tuple[str, Table | None]:  # page: pypdf.PageObject
    """The page's plain ``text`` with each table's lines replaced by its ``cell | cell`` rows (header first; a
    table going on from the page before gets that header), and the table to carry to the next page (None: none)."""
    carried: Table | None = None
    for table in find_tables(page_lines(page)):
        going_on = continues(table, before) and before is not None and not _new_header(table.rows, before.rows[0])
        if not (len(table.rows) >= MIN_ROWS or going_on):
            continue
        rows = table.rows  # pypdf gives a table's text cell by cell, or (some writers) line by line
        span = locate(text, rows)
        if span is None and len(table.line_rows) > len(rows):
            rows = table.line_rows
            span = locate(text, rows)
        if span is None:
            continue
        if going_on and before is not None and _squash(rows[0]) != _squash(before.rows[0]):
            rows = [before.rows[0], *rows]
        block = "\n".join(row_line(cells) for cells in rows)
        text = f"{text[: span[0]].rstrip(' ')}\n{block}\n{text[span[1] :].lstrip(' ')}"
        carried = Table(rows, table.columns, table.lines_above, table.lines_below, rows)
        before = None  # only the first table of a page can go on from the page before
    return text, carried
