"""Formatting of the report's numbers and tables: Markdown, self-contained HTML."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

#: Reader-facing names of the study splits (``hccrad.studies``); others are shown as named.
SPLIT_NAMES = {
    "train": "training",
    "validation": "internal validation",
    "temporal": "temporal test",
    "external": "external test",
}


#: Splits never used to fit anything (the training split's numbers are optimistic).
HELD_OUT = ("validation", "temporal", "external")


DASH = "\u2013"  # en dash: missing values and CI ranges


CSS = """
body { font-family: sans-serif; font-size: 14px; margin: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em 0; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; }
td:first-child, th:first-child { text-align: left; }
tr.key td { font-weight: bold; }
tr.bad td { color: #b00; }
p.note { color: #555; }
p.warn { color: #b00; font-weight: bold; }
"""


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def fmt_num(x: Any, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals; missing / NaN as an en dash."""
    return DASH if _missing(x) else f"{float(x):.{digits}f}"


def fmt_p(p: Any) -> str:
    """A P value: ``< 0.001`` below 0.001, else three decimals; missing as an en dash."""
    if _missing(p):
        return DASH
    return "< 0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def fmt_auc(auc: Any, lower: Any, upper: Any, digits: int = 2) -> str:
    """The AUC with its confidence interval, e.g. ``0.81 (0.72-0.90)`` (with an en dash); the
    AUC alone without an interval, an en dash when missing."""
    if _missing(auc):
        return DASH
    if _missing(lower) or _missing(upper):
        return fmt_num(auc, digits)
    return f"{fmt_num(auc, digits)} ({fmt_num(lower, digits)}{DASH}{fmt_num(upper, digits)})"


def _cases(n: Any) -> str:
    if _missing(n):
        return f"{DASH} cases"
    return f"{int(n)} case" if int(n) == 1 else f"{int(n)} cases"


def split_label(split: str) -> str:
    return SPLIT_NAMES.get(split, split)


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (cells as text, ``|`` escaped)."""

    def cell(x: Any) -> str:
        return DASH if _missing(x) else str(x).replace("|", "\\|")

    head = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in table.itertuples(False)]
    return "\n".join([head, rule, *body])


def html_table(
    table: pd.DataFrame, *, key_rows: Sequence[int] = (), bad_rows: Sequence[int] = ()
) -> str:
    """An HTML table of text cells (escaped); rows in ``key_rows`` get class ``key`` (bold),
    rows in ``bad_rows`` class ``bad`` (red: e.g. a model that could not be fitted)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for i, row in enumerate(table.itertuples(False)):
        classes = [c for c, rows in (("key", key_rows), ("bad", bad_rows)) if i in rows]
        cls = f' class="{" ".join(classes)}"' if classes else ""
        cells = "".join(f"<td>{html.escape(DASH if _missing(x) else str(x))}</td>" for x in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_document(title: str, body: Sequence[str]) -> str:
    """A self-contained HTML page (inline CSS)."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"


def _rounded(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    out = table.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = [fmt_num(x, digits) for x in out[col]]
    return out
