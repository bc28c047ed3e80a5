"""The run's summary: a short Markdown file and HTML tables for ``snakemake --report``.

Reporting only reads results: the preprocessing summary (``results/cohort/preprocess/
summary.parquet``), the segmentation Dice table when there is one, and each study's
``performance.parquet``, ``comparisons.parquet`` and ``metrics.json`` (``hccrad.studies``). It
writes ``results/summary.md`` (cohort size per center and modality; per study its title, primary
model, AUC with 95 % CI per split, the key comparison's DeLong P and NRI, survival, where the
figures are) and self-contained HTML tables that the Snakemake report shows inline
(``docs/report.md``).

The **key comparison** of a study is the first pair of its ``comparisons`` whose new model is
the primary model (the paper's comparator), else its first pair.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.fileio import write_text

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

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
p.note { color: #555; }
"""


# ============================================================================================
# Formatting
# ============================================================================================


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


# ============================================================================================
# Cohort tables (preprocessing summary)
# ============================================================================================


def cohort_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Patients and images per center and modality, with a total row.

    Args:
        summary: The preprocessing summary (one row per patient x phase: ``center, patient,
            modality, phase``).

    Returns:
        Columns ``center, modality, patients, images, phases`` (phases: sorted, comma-joined);
        the last row is ``all`` / ``all``.
    """
    rows = []
    for (center, modality), sub in summary.groupby(["center", "modality"], sort=True):
        rows.append(
            {
                "center": center,
                "modality": modality,
                "patients": sub["patient"].nunique(),
                "images": len(sub),
                "phases": ", ".join(sorted(sub["phase"].unique())),
            }
        )
    rows.append(
        {
            "center": "all",
            "modality": "all",
            "patients": summary["patient"].nunique(),
            "images": len(summary),
            "phases": ", ".join(sorted(summary["phase"].unique())) if len(summary) else "",
        }
    )
    return pd.DataFrame(rows, columns=["center", "modality", "patients", "images", "phases"])


#: QC medians of the preprocessing HTML: (summary column, header).
QC_MEDIANS = (
    ("index_tumor_ml", "index lesion (ml)"),
    ("liver_ml", "liver (ml)"),
    ("ncc_before", "NCC before registration"),
    ("ncc_after", "NCC after registration"),
    ("reader2_dice", "reader 1 vs 2 Dice"),
)


def qc_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Median QC measures per center and modality (columns of :data:`QC_MEDIANS` present).

    Registration similarity is taken over the registered phases only (the reference phase,
    ``registration_method == identity``, is compared with itself).
    """
    moving = summary
    if "registration_method" in summary:
        moving = summary[summary["registration_method"] != "identity"]
    rows = []
    for (center, modality), sub in summary.groupby(["center", "modality"], sort=True):
        row: dict[str, Any] = {"center": center, "modality": modality}
        mov = moving[(moving["center"] == center) & (moving["modality"] == modality)]
        for col, header in QC_MEDIANS:
            if col not in summary:
                continue
            source = mov if col.startswith("ncc_") else sub
            row[header] = pd.to_numeric(source[col], errors="coerce").median()
        rows.append(row)
    return pd.DataFrame(rows)


def registration_flags(summary: pd.DataFrame) -> pd.DataFrame:
    """Registered images whose similarity to the reference phase went *down* (NCC after <
    before): the first images to look at in the per-patient QC figures."""
    cols = ["center", "patient", "modality", "phase", "ncc_before", "ncc_after"]
    if not {"ncc_before", "ncc_after"} <= set(summary.columns):
        return pd.DataFrame(columns=cols)
    before = pd.to_numeric(summary["ncc_before"], errors="coerce")
    after = pd.to_numeric(summary["ncc_after"], errors="coerce")
    return summary.loc[after < before, cols].reset_index(drop=True)


# ============================================================================================
# Study results
# ============================================================================================


@dataclass
class StudyResult:
    """What the summary says about one study (from its output folder)."""

    name: str
    folder: str
    metrics: dict[str, Any]
    performance: pd.DataFrame
    comparisons: pd.DataFrame
    figures: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return str(self.metrics.get("title") or self.name)

    @property
    def primary(self) -> str:
        return str(self.metrics.get("primary", ""))

    @property
    def splits(self) -> list[str]:
        """Evaluated splits in the study's order (as in the performance table)."""
        return list(dict.fromkeys(self.performance["split"]))

    @property
    def models(self) -> list[str]:
        """Models in the study's order, the primary first."""
        models = list(dict.fromkeys(self.performance["model"]))
        if self.primary in models:
            models.remove(self.primary)
            models.insert(0, self.primary)
        return models


def load_study_result(
    name: str,
    performance: PathLike,
    comparisons: PathLike,
    metrics: PathLike,
    *,
    figures: Sequence[str] = (),
) -> StudyResult:
    """Read one study's tables; ``folder`` is the folder of ``metrics``."""
    with open(metrics) as fh:
        meta = json.load(fh)
    return StudyResult(
        name=name,
        folder=str(Path(metrics).parent),
        metrics=meta,
        performance=pd.read_parquet(performance),
        comparisons=pd.read_parquet(comparisons),
        figures=list(figures),
    )


def performance_matrix(result: StudyResult) -> pd.DataFrame:
    """AUC with 95 % CI: one row per model (primary first, marked), one column per split.

    Column headers are ``{split} (n={n}, {cases} cases)`` with the patient counts of the
    primary model (all models of a study are evaluated on the same patients).
    """
    perf = result.performance.set_index(["model", "split"])
    headers = {}
    for split in result.splits:
        headers[split] = split_label(split)
        key = (result.models[0], split)
        if key in perf.index and not _missing(perf.loc[key, "n"]):
            n, cases = int(perf.loc[key, "n"]), int(perf.loc[key, "n_pos"])
            headers[split] = f"{split_label(split)} (n={n}, {_cases(cases)})"
    rows = []
    for model in result.models:
        label = f"{model} (primary)" if model == result.primary else model
        row = {"model": label}
        for split in result.splits:
            if (model, split) in perf.index:
                r = perf.loc[(model, split)]
                row[headers[split]] = fmt_auc(r["auc"], r["auc_lower"], r["auc_upper"])
            else:
                row[headers[split]] = DASH
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", *headers.values()])


def classification_table(result: StudyResult) -> pd.DataFrame:
    """The primary model per split at its training Youden cut-off: n, cases, cut-off,
    accuracy, sensitivity, specificity, PPV, NPV."""
    perf = result.performance[result.performance["model"] == result.primary]
    rows = []
    for _, r in perf.iterrows():
        rows.append(
            {
                "split": split_label(r["split"]),
                "n": int(r["n"]),
                "cases": int(r["n_pos"]),
                "cut-off": fmt_num(r.get("cutoff"), 3),
                **{
                    name: fmt_num(r.get(col), 2)
                    for col, name in (
                        ("accuracy", "accuracy"),
                        ("sensitivity", "sensitivity"),
                        ("specificity", "specificity"),
                        ("ppv", "PPV"),
                        ("npv", "NPV"),
                    )
                },
            }
        )
    return pd.DataFrame(rows)


def comparison_pairs(comparisons: pd.DataFrame) -> list[tuple[str, str]]:
    """The study's ``[model, reference]`` pairs in their configured order."""
    pairs = zip(comparisons["model"], comparisons["reference"], strict=True)
    return list(dict.fromkeys((str(a), str(b)) for a, b in pairs))


def key_comparison(comparisons: pd.DataFrame, primary: str) -> tuple[str, str] | None:
    """The paper's comparison: the first pair whose new model is ``primary``, else the first
    pair; None when the study compares nothing."""
    pairs = comparison_pairs(comparisons)
    for pair in pairs:
        if pair[0] == primary:
            return pair
    return pairs[0] if pairs else None


def comparison_rows(comparisons: pd.DataFrame, pair: tuple[str, str] | None = None) -> pd.DataFrame:
    """Formatted comparisons (all pairs, or ``pair``): per split the two AUCs, DeLong P,
    categorical and continuous NRI with their P."""
    comp = comparisons
    if pair is not None:
        comp = comp[(comp["model"] == pair[0]) & (comp["reference"] == pair[1])]
    rows = []
    for _, r in comp.iterrows():
        rows.append(
            {
                "comparison": f"{r['model']} vs {r['reference']}",
                "split": split_label(r["split"]),
                "n": int(r["n"]),
                "AUC model": fmt_num(r.get("auc_model")),
                "AUC reference": fmt_num(r.get("auc_reference")),
                "DeLong P": fmt_p(r.get("delong_p")),
                "NRI categorical (P)": _nri(r, "nri_categorical"),
                "NRI continuous (P)": _nri(r, "nri_continuous"),
                "note": str(r.get("note") or ""),
            }
        )
    cols = [
        "comparison",
        "split",
        "n",
        "AUC model",
        "AUC reference",
        "DeLong P",
        "NRI categorical (P)",
        "NRI continuous (P)",
        "note",
    ]
    return pd.DataFrame(rows, columns=cols)


def _nri(row: pd.Series, prefix: str) -> str:
    value = row.get(prefix)
    if _missing(value):
        return DASH
    return f"{fmt_num(value)} ({fmt_p(row.get(f'{prefix}_p'))})"


def survival_lines(result: StudyResult) -> list[str]:
    """One sentence per survival endpoint: model, training cut-point, log-rank P and group
    sizes on the KM scope."""
    lines = []
    for endpoint, info in (result.metrics.get("survival") or {}).items():
        model = info.get("model", "")
        if info.get("cutpoint") is None:
            lines.append(f"{endpoint}: not analysed ({info.get('note') or 'no cut-point'})")
            continue
        scope = info.get("km_scope", "held_out")
        group = (info.get("groups") or {}).get(scope, {})
        where = "held-out patients" if scope == "held_out" else f"{scope} patients"
        lines.append(
            f"{endpoint}: {model} score high vs low (training cut-point "
            f"{fmt_num(info['cutpoint'], 3)}), log-rank P = {fmt_p(group.get('logrank_p'))} "
            f"on {where} (high {group.get('n_high', DASH)}, low {group.get('n_low', DASH)})"
        )
    return lines


def study_notes(result: StudyResult) -> list[str]:
    """The study's notes and those of models that failed."""
    notes = [str(n) for n in result.metrics.get("notes", [])]
    for model, info in (result.metrics.get("models") or {}).items():
        if info.get("status") != "fitted":
            notes.append(f"model {model}: {info.get('status')} ({info.get('note') or 'no note'})")
    return notes


# ============================================================================================
# Markdown and HTML
# ============================================================================================


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (cells as text, ``|`` escaped)."""

    def cell(x: Any) -> str:
        return DASH if _missing(x) else str(x).replace("|", "\\|")

    head = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in table.itertuples(False)]
    return "\n".join([head, rule, *body])


def study_overview(result: StudyResult) -> str:
    """One sentence: modality, label, patients analysed per split, primary model."""
    m = result.metrics
    sizes = m.get("splits") or {}
    parts = []
    for split in result.splits:
        s = sizes.get(split, {})
        parts.append(f"{split_label(split)} {s.get('n_analysed', DASH)} ({_cases(s.get('n_pos'))})")
    per_split = f" ({'; '.join(parts)})" if parts else ""
    return (
        f"{m.get('modality', '')} patients, label {m.get('label', '')}; "
        f"{m.get('n_analysed', DASH)} of {m.get('n_patients', DASH)} patients analysed"
        f"{per_split}. Primary model: {result.primary}."
    )


def study_markdown(result: StudyResult) -> str:
    """The summary section of one study."""
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
    pair = key_comparison(result.comparisons, result.primary)
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


def summary_markdown(
    summary: pd.DataFrame,
    results: Sequence[StudyResult],
    *,
    skipped: Mapping[str, str] | None = None,
    dice: pd.DataFrame | None = None,
    report: str = "results/report.html",
) -> str:
    """The whole ``summary.md``: cohort, segmentation Dice, every study, skipped studies."""
    cohort = cohort_table(summary)
    total = cohort.iloc[-1]
    lines = [
        "# hccrad results summary",
        "",
        f"Cohort: {total['patients']} patients, {total['images']} images "
        f"({summary['center'].nunique()} centers).",
        "",
        markdown_table(cohort),
        "",
    ]
    if dice is not None and "mean" in dice.index:
        mean = dice.loc["mean"]
        parts = ", ".join(f"{c.removeprefix('dice_')} {fmt_num(v, 3)}" for c, v in mean.items())
        held = len(dice.index) - 1
        lines += [f"Segmentation (U-Net), mean Dice on {held} held-out patients: {parts}.", ""]
    lines += [
        f"Figures, captions and every table: `{report}` "
        "(`snakemake --report results/report.html`).",
        "",
    ]
    for result in results:
        lines.append(study_markdown(result))
    for name, reason in (skipped or {}).items():
        lines += [f"## {name}: skipped", "", f"Not run on this cohort: {reason}.", ""]
    return "\n".join(lines).rstrip() + "\n"


def html_table(table: pd.DataFrame, *, key_rows: Sequence[int] = ()) -> str:
    """An HTML table of text cells (escaped); rows in ``key_rows`` get class ``key``."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for i, row in enumerate(table.itertuples(False)):
        cls = ' class="key"' if i in key_rows else ""
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


def study_html(result: StudyResult) -> str:
    """The report's table page of one study: AUCs, the primary model's classification metrics,
    every comparison (key comparison in bold), survival and notes."""
    body = [
        f"<h2>{html.escape(result.name)}: {html.escape(result.title)}</h2>",
        _p(study_overview(result)),
        "<h3>Discrimination: AUC (95 % DeLong CI)</h3>",
        html_table(performance_matrix(result), key_rows=[0]),
        f"<h3>Primary model ({html.escape(result.primary)}) at its training Youden cut-off</h3>",
        html_table(classification_table(result)),
    ]
    pair = key_comparison(result.comparisons, result.primary)
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


def preprocessing_html(summary: pd.DataFrame) -> str:
    """The report's preprocessing page: cohort size, QC medians, registration flags."""
    flags = registration_flags(summary)
    body = [
        "<h2>Cohort and preprocessing</h2>",
        "<h3>Patients and images per center and modality</h3>",
        html_table(cohort_table(summary)),
        "<h3>Median QC measures per center and modality</h3>",
        html_table(_rounded(qc_table(summary))),
        "<h3>Images whose registration lowered the similarity to the reference phase</h3>",
    ]
    if len(flags):
        body.append(html_table(_rounded(flags)))
    else:
        body.append(_p("None: every registered image is at least as similar after registration."))
    return html_document("Preprocessing summary", body)


def dice_html(dice: pd.DataFrame) -> str:
    """The report's segmentation page: Dice of the U-Net's masks per held-out patient."""
    table = dice.reset_index().rename(columns={"index": "patient"})
    table = table.rename(columns=lambda c: c.removeprefix("dice_"))
    body = [
        "<h2>Segmentation: Dice of the predicted masks on held-out patients</h2>",
        html_table(
            _rounded(table, 3), key_rows=[i for i, p in enumerate(table.iloc[:, 0]) if p == "mean"]
        ),
    ]
    return html_document("Segmentation Dice", body)


def _rounded(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    out = table.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = [fmt_num(x, digits) for x in out[col]]
    return out


# ============================================================================================
# The job
# ============================================================================================


def summarize_results_job(
    inputs: Mapping[str, PathLike],
    outputs: Mapping[str, PathLike],
    *,
    studies: Mapping[str, Sequence[str]],
    skipped: Mapping[str, str] | None = None,
    report: str = "results/report.html",
) -> None:
    """Rule summarize_results: read the results, write the summary and the report tables.

    Args:
        inputs: ``preprocess`` (summary parquet), optional ``dice``, and per study
            ``performance_{study}``, ``comparisons_{study}``, ``metrics_{study}``.
        outputs: ``summary`` (Markdown), ``preprocessing`` (HTML), ``dice`` (HTML, when the
            input is given), ``study_{study}`` (HTML) per study.
        studies: The studies in report order, each with the paths of its figures.
        skipped: Configured studies not run on this cohort, with the reason.
        report: Where the Snakemake report is written (named in the summary).
    """
    summary = pd.read_parquet(inputs["preprocess"])
    dice = pd.read_parquet(inputs["dice"]) if "dice" in inputs else None
    results = [
        load_study_result(
            name,
            inputs[f"performance_{name}"],
            inputs[f"comparisons_{name}"],
            inputs[f"metrics_{name}"],
            figures=figures,
        )
        for name, figures in studies.items()
    ]
    for result in results:
        write_text(study_html(result), outputs[f"study_{result.name}"])
    write_text(preprocessing_html(summary), outputs["preprocessing"])
    if dice is not None:
        write_text(dice_html(dice), outputs["dice"])
    text = summary_markdown(summary, results, skipped=skipped, dice=dice, report=report)
    write_text(text, outputs["summary"])
    log.info("summary of %d studies written to %s", len(results), outputs["summary"])
