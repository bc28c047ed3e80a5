"""Did the studies find what the synthetic cohort planted? One verdict line per study.

The verdicts come from :func:`hccrad.audit.planted.verdicts` on the planted-signal table of the
run's study folders and the cohort's ``truth.tsv``; the summary lists them near the top and the
report shows them as a page of its own, a study that missed its effect in red.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from hccrad.audit.planted import Verdict, planted_signal_table, tally, verdicts
from hccrad.report.format import html_document

__all__ = ["Verdict", "planted_html", "planted_markdown", "planted_verdicts"]

PathLike = str | os.PathLike[str]

TITLE = "Planted signal (synthetic cohort)"


def planted_verdicts(
    inputs: Mapping[str, PathLike], studies: Sequence[str] | Mapping[str, object]
) -> list[Verdict]:
    """The verdicts of the run's studies; empty without a ``truth`` input (a real cohort)."""
    if "truth" not in inputs:
        return []
    folders = [Path(inputs[f"metrics_{name}"]).parent for name in studies]
    return verdicts(planted_signal_table(folders, inputs["truth"]))


def _headline(planted: Sequence[Verdict]) -> str:
    good, judged = tally(planted)
    if planted and planted[0].null_cohort:
        return f"Null cohort (labels permuted): {good} of {judged} studies stay at chance."
    return f"{good} of {judged} studies recovered the effect the generator planted."


def planted_markdown(planted: Sequence[Verdict]) -> str:
    """The summary's section: a headline and one line per study (a miss in bold)."""
    lines = [f"## {TITLE}", "", _headline(planted), ""]
    for v in planted:
        lines.append(f"- **{v.line}**" if v.recovered is False else f"- {v.line}")
    return "\n".join(lines)


def planted_html(planted: Sequence[Verdict]) -> str:
    """The report's page: the headline and one paragraph per study, a miss in red."""
    body = [f"<h2>{html.escape(TITLE)}</h2>", f"<p>{html.escape(_headline(planted))}</p>"]
    for v in planted:
        cls = ' class="warn"' if v.recovered is False else ""
        body.append(f"<p{cls}>{html.escape(v.line)}</p>")
    return html_document(TITLE, body)
