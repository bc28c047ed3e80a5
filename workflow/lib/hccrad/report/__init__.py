"""The run's summary: a short Markdown file and HTML tables for ``snakemake --report``.

Reporting only reads results: the preprocessing summary (``results/cohort/preprocess/
summary.parquet``), the segmentation Dice table when there is one, and each study's
``performance.parquet``, ``comparisons.parquet``, ``metrics.json``, ``by_center.parquet`` and
its deep models' ``deep/{model}/split_metrics.parquet`` (``hccrad.studies``, ``hccrad.deep``). It
writes ``results/summary.md`` (cohort size per center and modality; what a configuration overlay
scaled; per study its title, primary model, AUC with 95 % CI per split, the key comparison's
DeLong P and NRI, survival, where the figures are) and self-contained HTML tables that the
Snakemake report shows inline (``docs/report.md``).

Modules: :mod:`~hccrad.report.format` (numbers, Markdown, HTML), :mod:`~hccrad.report.cohort`,
:mod:`~hccrad.report.studies` (one study's tables), :mod:`~hccrad.report.networks` (its deep
networks' own metrics per split), :mod:`~hccrad.report.subgroups` (AUC by center and scanner),
:mod:`~hccrad.report.paper` (the paper next to this run), :mod:`~hccrad.report.pages` (a study's
summary section and report page), :mod:`~hccrad.report.scaled` (what an overlay changed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.fileio import write_text
from hccrad.report.cohort import (
    QC_MEDIANS,
    cohort_table,
    dice_html,
    preprocessing_html,
    qc_table,
    registration_flags,
)
from hccrad.report.format import (
    CSS,
    DASH,
    HELD_OUT,
    SPLIT_NAMES,
    fmt_auc,
    fmt_num,
    fmt_p,
    html_document,
    html_table,
    markdown_table,
    split_label,
)
from hccrad.report.networks import network_notes, network_table
from hccrad.report.pages import study_html, study_markdown
from hccrad.report.paper import deviations_table, key_comparison_line, paper_vs_run
from hccrad.report.planted import Verdict, planted_html, planted_markdown, planted_verdicts
from hccrad.report.scaled import SCALED_COLUMNS, scaled_html, scaled_markdown, scaled_table
from hccrad.report.studies import (
    TRAIN_P,
    StudyResult,
    classification_table,
    comparison_pairs,
    comparison_rows,
    key_comparison,
    load_study_result,
    performance_matrix,
    study_notes,
    study_overview,
    survival_lines,
)
from hccrad.report.subgroups import shown_models, subgroup_tables

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

__all__ = [
    "CSS",
    "DASH",
    "HELD_OUT",
    "QC_MEDIANS",
    "SCALED_COLUMNS",
    "SPLIT_NAMES",
    "TRAIN_P",
    "StudyResult",
    "classification_table",
    "cohort_table",
    "comparison_pairs",
    "comparison_rows",
    "deviations_table",
    "dice_html",
    "fmt_auc",
    "fmt_num",
    "fmt_p",
    "html_document",
    "html_table",
    "key_comparison",
    "key_comparison_line",
    "load_study_result",
    "markdown_table",
    "network_notes",
    "network_table",
    "paper_vs_run",
    "performance_matrix",
    "planted_html",
    "planted_markdown",
    "planted_verdicts",
    "preprocessing_html",
    "qc_table",
    "registration_flags",
    "scaled_html",
    "scaled_markdown",
    "scaled_table",
    "shown_models",
    "split_label",
    "study_html",
    "study_markdown",
    "study_notes",
    "study_overview",
    "subgroup_tables",
    "summarize_results_job",
    "summary_markdown",
    "survival_lines",
]


def summary_markdown(
    summary: pd.DataFrame,
    results: Sequence[StudyResult],
    *,
    skipped: Mapping[str, str] | None = None,
    dice: pd.DataFrame | None = None,
    report: str = "results/report.html",
    scaled: str = "",
    planted: Sequence[Verdict] = (),
) -> str:
    """The whole ``summary.md``: cohort, what an overlay scaled (``scaled``, Markdown), the
    planted-signal verdicts of a synthetic cohort (``planted``), segmentation Dice, every study,
    skipped studies."""
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
    if scaled:
        lines += [scaled, ""]
    if planted:
        lines += [planted_markdown(planted), ""]
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


def _paths(value: PathLike | Sequence[PathLike]) -> list[PathLike]:
    """A named input as a list of paths (Snakemake gives a list-valued input as a list)."""
    if isinstance(value, str | os.PathLike):
        return [value]
    return list(value)


def summarize_results_job(
    inputs: Mapping[str, PathLike | Sequence[PathLike]],
    outputs: Mapping[str, PathLike],
    *,
    studies: Mapping[str, Sequence[str]],
    skipped: Mapping[str, str] | None = None,
    report: str = "results/report.html",
    overlay: Mapping[str, Any] | None = None,
) -> None:
    """Rule summarize_results: read the results, write the summary and the report tables.

    Args:
        inputs: ``preprocess`` (summary parquet), optional ``dice``, per study
            ``performance_{study}``, ``comparisons_{study}``, ``metrics_{study}``, optional
            ``by_center_{study}`` (the subgroup section of its page) and
            ``split_metrics_{study}`` (the ``deep/{model}/split_metrics.parquet`` files of its
            deep models, the model named by its folder; absent for a study without deep
            models: no section), and on a synthetic cohort ``truth`` (truth.tsv) and
            ``predictions_{study}``.
        outputs: ``summary`` (Markdown), ``preprocessing`` (HTML), ``dice`` (HTML, when the
            input is given), ``study_{study}`` (HTML) per study, ``planted`` (HTML) on a
            synthetic cohort.
        studies: The studies in report order, each with the paths of its figures.
        skipped: Configured studies not run on this cohort, with the reason.
        report: Where the Snakemake report is written (named in the summary).
        overlay: The configuration overlay of the run (``path``, ``reason``, ``changes``: rows
            of :meth:`hccrad.overlay.Change.as_row`), written to ``outputs["scaled"]`` (HTML)
            and the summary; None without one.
    """
    scaled = ""
    if overlay is not None:
        args = (overlay["changes"], overlay["path"], overlay["reason"])
        write_text(scaled_html(*args), outputs["scaled"])
        scaled = scaled_markdown(*args)
    summary = pd.read_parquet(inputs["preprocess"])
    dice = pd.read_parquet(inputs["dice"]) if "dice" in inputs else None
    planted = planted_verdicts(inputs, studies)
    if planted:
        write_text(planted_html(planted), outputs["planted"])
    results = [
        load_study_result(
            name,
            inputs[f"performance_{name}"],
            inputs[f"comparisons_{name}"],
            inputs[f"metrics_{name}"],
            figures=figures,
            by_center=inputs.get(f"by_center_{name}"),
            networks={
                Path(path).parent.name: path
                for path in _paths(inputs.get(f"split_metrics_{name}", []))
            },
        )
        for name, figures in studies.items()
    ]
    for result in results:
        write_text(study_html(result), outputs[f"study_{result.name}"])
    write_text(preprocessing_html(summary), outputs["preprocessing"])
    if dice is not None:
        write_text(dice_html(dice), outputs["dice"])
    text = summary_markdown(
        summary, results, skipped=skipped, dice=dice, report=report, scaled=scaled, planted=planted
    )
    write_text(text, outputs["summary"])
    log.info("summary of %d studies written to %s", len(results), outputs["summary"])
