"""The metadata workbook's first sheet as a table, read within fixed bounds.

A 5 KB workbook with one cell at XFD1048576 makes a reader that materialises the sheet's
rectangle allocate 16384 x 1048576 cells. Here the sheet is streamed (openpyxl read-only mode,
the dimension it declares ignored), only the columns up to the last header cell are read, blank
rows are skipped without being stored, and the unpacked size, the header width and the last row
with data are capped; whatever exceeds a cap is named with its cell and refused in one line.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from typing import Any

import pandas as pd

from harness.errors import DataError, one_line

MAX_ROWS = 200_000
"""Data rows below the header (the paper's dataset has 1503)."""
MAX_COLUMNS = 256
MAX_UNPACKED_BYTES = 256 * 2**20
"""Sum of the sizes of the workbook's parts once unzipped (sheet XML, shared strings, styles)."""


def column_letter(n: int) -> str:
    """1 -> "A", 28 -> "AB", 16384 -> "XFD"."""
    out = ""
    while n > 0:
        n, rest = divmod(n - 1, 26)
        out = chr(65 + rest) + out
    return out


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and value != value)


def _column_names(header: tuple[Any, ...]) -> tuple[list[str], list[str]]:
    """Header cells as names (blank ones "Unnamed: j", repeats "name.1", as pandas names them) and the
    names that repeat."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for j, value in enumerate(header):
        name = f"Unnamed: {j}" if _blank(value) else one_line(value)
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        names.append(name)
    return names, [n for n, k in seen.items() if k]


def _check_archive(data: bytes, name: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DataError(f"{name}: cannot be read as an .xlsx workbook ({type(e).__name__}: {one_line(e)}); re-save "
                        "it from Excel.") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise DataError(f"{name}: unpacks to {unpacked / 2**20:.0f} MB, over the limit of "
                        f"{MAX_UNPACKED_BYTES / 2**20:.0f} MB for a metadata table; keep only the table (one row "
                        "per image) in the workbook and save it again.")


def read_sheet(data: bytes, name: str) -> pd.DataFrame:
    """The first sheet of an .xlsx workbook as an object table; the index is the Excel row number - 2.

    Row 1 is the header. Rows whose read columns are all blank are left out, so ``index + 2`` is
    always the row Excel shows. Every problem is a :class:`~harness.errors.DataError` naming ``name``.
    """
    import openpyxl  # lazy: ~0.3 s import, only when a workbook is read

    _check_archive(data, name)
    row = 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Workbook contains no default style"
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            try:
                if not book.worksheets:
                    raise DataError(f"{name}: the workbook has no worksheet; put the metadata table on its first "
                                    "sheet.")
                sheet = book.worksheets[0]
                sheet.reset_dimensions()  # the declared <dimension> may lie (or be A1:XFD1048576)
                header = next(sheet.iter_rows(min_row=1, max_row=1, values_only=True), ())
                used = max((j + 1 for j, v in enumerate(header) if not _blank(v)), default=0)
                if used > MAX_COLUMNS:
                    raise DataError(
                        f"{name}: the header row has a cell in column {column_letter(used)} (column {used}); at "
                        f"most {MAX_COLUMNS} columns are read. Delete the stray cells right of the table.")
                names, repeated = _column_names(header[:used])
                kept: list[tuple[Any, ...]] = []
                rows: list[int] = []
                if used:
                    for row, values in enumerate(sheet.iter_rows(min_row=2, max_col=used, values_only=True), start=2):
                        if all(_blank(v) for v in values):
                            continue
                        if row > MAX_ROWS + 1:
                            first = next(j for j, v in enumerate(values) if not _blank(v))
                            raise DataError(
                                f"{name}: cell {column_letter(first + 1)}{row} has data, below the limit of "
                                f"{MAX_ROWS} rows under the header; delete the stray cells below the table.")
                        kept.append(tuple(values) + (None,) * (used - len(values)))
                        rows.append(row - 2)
            finally:
                book.close()
    except DataError:
        raise
    except Exception as e:  # openpyxl and its XML parser raise many types for a broken workbook
        where = f" near row {row}" if row > 1 else ""
        raise DataError(f"{name}: cannot be read as an .xlsx workbook{where} ({type(e).__name__}: {one_line(e)}); "
                        "re-save it from Excel.") from None
    table = pd.DataFrame(kept, columns=names, index=rows, dtype=object)
    table.attrs["repeated_columns"] = repeated
    return table
