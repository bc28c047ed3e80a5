"""One study's section of ``summary.md`` and its table page in the report."""

from __future__ import annotations

import html
import os

from hccrad.report.format import (
    HELD_OUT,
    _p,
    html_document,
    html_table,
    markdown_table,
    split_label,
)
from hccrad.report.paper import (
    deviations_table,
    key_comparison_line,
    paper_vs_run,
    scaled_count,
)
from hccrad.report.studies import (
    StudyResult,
    classification_table,
    comparison_rows,
    performance_matrix,
    study_notes,
    study_overview,
    survival_lines,
    unfit,
)


def _unfit_rows(result: StudyResult) -> list[int]:
    """Rows of :func:`performance_matrix` (models, primary first) whose model was not fitted."""
    return [i for i, m in enumerate(result.models) if unfit(result, m)]


def _paper_markdown(result: StudyResult) -> list[str]:
    lines = []
    paper = paper_vs_run(result)
    if paper is not None:
        source = (result.metrics.get("published") or {}).get("source", "the paper")
        lines += [f"Paper vs this run ({source}):", "", markdown_table(paper), ""]
    key = key_comparison_line(result)
    if key:
        lines += [key, ""]
    deviations = deviations_table(result)
    if deviations is not None:
        lines += ["Deviations from the paper:", "", markdown_table(deviations), ""]
    n = scaled_count(result)
    if n:
        lines += [f"{n} of this study's values were scaled by the overlay (see above).", ""]
    return lines


def study_markdown(result: StudyResult) -> str:
    """The summary section of one study: AUCs (models that could not be fitted say so), the
    paper next to this run, the key comparison, classification metrics of every model,
    deviations, survival, notes and figures."""
    lines = [
        f"## {result.name}: {result.title}",
        "",
        study_overview(result),
        "",
        "AUC (95 % DeLong CI) per split:",
        "",
        markdown_table(performance_matrix(result)),
        "",
    ]
    for i in _unfit_rows(result):
        lines += [f"**{result.models[i]} could not be fitted: it has no result.**", ""]
    lines += _paper_markdown(result)
    pair = result.key_pair
    if pair is None:
        lines += ["No comparison configured.", ""]
    else:
        comp = comparison_rows(result.comparisons, pair)
        held = comp[comp["split"].isin([split_label(s) for s in HELD_OUT])]
        shown = (held if len(held) else comp).drop(columns=["comparison"])
        if not shown["note"].astype(bool).any():
            shown = shown.drop(columns=["note"])
        lines += [
            f"Key comparison, `{pair[0]}` vs `{pair[1]}` (held-out splits; all pairs and the "
            "training split in the report):",
            "",
            markdown_table(shown),
            "",
        ]
    lines += [
        "Every model at its training Youden cut-off:",
        "",
        markdown_table(classification_table(result)),
        "",
    ]
    surv = survival_lines(result)
    if surv:
        lines += ["Survival: " + "; ".join(surv) + ".", ""]
    notes = study_notes(result)
    if notes:
        lines += ["Notes: " + "; ".join(notes) + ".", ""]
    if result.figures:
        names = ", ".join(f"`{os.path.relpath(f, result.folder)}`" for f in result.figures)
        lines += [f"Figures in `{result.folder}/`: {names}.", ""]
    return "\n".join(lines)


def _paper_html(result: StudyResult) -> list[str]:
    body = []
    paper = paper_vs_run(result)
    if paper is not None:
        source = (result.metrics.get("published") or {}).get("source", "the paper")
        bad = [i for i, v in enumerate(paper["this run AUC (95 % CI)"]) if "NOT FITTED" in v]
        body += [
            f"<h3>Paper vs this run ({html.escape(source)})</h3>",
            html_table(paper, bad_rows=bad),
        ]
    key = key_comparison_line(result)
    if key:
        body += [_p(key)]
    deviations = deviations_table(result)
    if deviations is not None:
        body += ["<h3>Deviations from the paper</h3>", html_table(deviations)]
    return body


def study_html(result: StudyResult) -> str:
    """The report's table page of one study: AUCs (models not fitted in red), the paper next
    to this run, every model's classification metrics, every comparison (the key one in bold),
    deviations, survival and notes."""
    body = [
        f"<h2>{html.escape(result.name)}: {html.escape(result.title)}</h2>",
        _p(study_overview(result)),
        "<h3>Discrimination: AUC (95 % DeLong CI)</h3>",
        html_table(performance_matrix(result), key_rows=[0], bad_rows=_unfit_rows(result)),
        *_paper_html(result),
        "<h3>Every model at its training Youden cut-off</h3>",
        html_table(classification_table(result)),
    ]
    pair = result.key_pair
    if pair is not None:
        comp = comparison_rows(result.comparisons)
        key = [i for i, c in enumerate(comp["comparison"]) if c == f"{pair[0]} vs {pair[1]}"]
        body += [
            "<h3>Comparisons (DeLong test of paired AUCs; NRI of the new model over the "
            "reference)</h3>",
            _p(f"Key comparison (bold): {pair[0]} vs {pair[1]}."),
            html_table(comp, key_rows=key),
        ]
    surv = survival_lines(result)
    if surv:
        body += ["<h3>Survival</h3>", "<ul>"]
        body += [f"<li>{html.escape(line)}</li>" for line in surv]
        body += ["</ul>"]
    notes = study_notes(result)
    if notes:
        body += ["<h3>Notes</h3>", "<ul>"]
        body += [f"<li>{html.escape(n)}</li>" for n in notes]
        body += ["</ul>"]
    return html_document(f"{result.name}: performance", body)
