"""What a configuration overlay changed (``hccrad.overlay``), in the summary and the report."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from hccrad.report.format import _p, html_document, html_table, markdown_table

#: Columns of the table of values an overlay changed (``hccrad.overlay.Change.as_row``).
SCALED_COLUMNS = {
    "where": "where",
    "key": "key",
    "this_run": "this run",
    "full_scale": "full scale (paper)",
}


def scaled_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The values a configuration overlay changed, one row each (where, key, this run, full
    scale)."""
    table = pd.DataFrame(list(rows), columns=list(SCALED_COLUMNS))
    return table.rename(columns=SCALED_COLUMNS)


def scaled_markdown(rows: Sequence[Mapping[str, Any]], overlay: str, reason: str) -> str:
    """The summary's section on an overlay: its file, its reason and every value it changed."""
    lines = [
        f"## Scaled for this run ({overlay})",
        "",
        f"**Not the papers' settings.** {reason}".rstrip(),
        "",
        f"{len(rows)} values differ from the full-scale design (the study files and "
        "config/config.yaml); a run without the overlay uses the right-hand column.",
        "",
        markdown_table(scaled_table(rows)),
        "",
    ]
    return "\n".join(lines)


def scaled_html(rows: Sequence[Mapping[str, Any]], overlay: str, reason: str) -> str:
    """The report's table of the values an overlay changed."""
    title = f"Scaled for this run ({overlay})"
    return html_document(
        title,
        [f"<h2>{html.escape(title)}</h2>", _p(reason, "warn"), html_table(scaled_table(rows))],
    )
