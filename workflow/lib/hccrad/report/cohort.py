"""Cohort tables of the report: patients per center and modality, QC medians, registration flags,
segmentation Dice."""

from __future__ import annotations

from typing import Any

import pandas as pd

from hccrad.report.format import _p, _rounded, html_document, html_table


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
    ("reader1_repeat_dice", "reader 1 vs own repeat Dice"),
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
