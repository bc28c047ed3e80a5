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
from hccrad.report.networks import network_notes, network_table
from hccrad.report.paper import (
    deviations_table,
    key_comparison_line,
    paper_vs_run,
    scaled_count,
)
from hccrad.report.studies import (
    TRAIN_P_HEADER,
    StudyResult,
    classification_table,
    comparison_rows,
    performance_matrix,
    study_notes,
    study_overview,
    survival_lines,
    unfit,
)
from hccrad.report.subgroups import shown_models, subgroup_tables

#: What the train-vs-split P columns of :func:`performance_matrix` mean.
TRAIN_P_NOTE = (
    "P vs training: unpaired DeLong test of the split's AUC against the same model's training "
    "AUC (independent patients); a small P says the model does worse on patients it was not "
    "fitted on (overfitting)."
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


def _networks_html(result: StudyResult) -> list[str]:
    """The deep networks' own performance per split; nothing for a study without them."""
    if not result.networks:
        return []
    body = [
        "<h3>Deep networks on their own: performance per split</h3>",
        _p(
            "Each network's own predicted probability (not the study models built on its "
            "features): AUC (95 % DeLong CI), and the rates at the Youden cut-off of its "
            "training samples; slice-level networks are scored per slice against the "
            "patient's label.",
            "note",
        ),
    ]
    table = network_table(result)
    if len(table):
        body.append(html_table(table))
    body += [_p(n, "note") for n in network_notes(result)]
    return body


def _subgroups_html(result: StudyResult) -> list[str]:
    """AUC per center / scanner subgroup with the unpaired DeLong P against the reference
    subgroup, one table per subgroup column (the primary model's rows in bold)."""
    if result.by_center is None:
        return []
    body = [
        "<h3>Subgroups: AUC by center and scanner (unpaired DeLong test against the reference "
        "subgroup)</h3>"
    ]
    tables = subgroup_tables(result)
    if not tables:
        why = "no subgroup column (evaluation.by) in the clinical table, or no fitted model"
        return [*body, _p(f"No subgroup AUC: {why}.", "note")]
    shown = shown_models(result)
    others = sorted(set(result.by_center["model"]) - set(shown))
    if others:
        what = f"{', '.join(shown)} (the primary model and the key comparison's other model)"
        body.append(_p(f"Shown: {what}; every model's subgroups are in by_center.parquet.", "note"))
    for by, table in tables.items():
        key = [i for i, m in enumerate(table["model"]) if m == result.primary]
        body += [f"<h4>By {html.escape(by)}</h4>", html_table(table, key_rows=key)]
    return body


def study_html(result: StudyResult) -> str:
    """The report's table page of one study: AUCs with each held-out split's DeLong P against
    training (models not fitted in red), the deep networks' own performance per split, the
    paper next to this run, every model's classification metrics, every comparison (the key one
    in bold), the subgroup AUCs by center and scanner, deviations, survival and notes."""
    auc = performance_matrix(result, train_p=True)
    body = [
        f"<h2>{html.escape(result.name)}: {html.escape(result.title)}</h2>",
        _p(study_overview(result)),
        "<h3>Discrimination: AUC (95 % DeLong CI)</h3>",
        html_table(auc, key_rows=[0], bad_rows=_unfit_rows(result)),
    ]
    if any(str(c).endswith(TRAIN_P_HEADER) for c in auc.columns):
        body.append(_p(TRAIN_P_NOTE, "note"))
    body += [
        *_networks_html(result),
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
    body += _subgroups_html(result)
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
