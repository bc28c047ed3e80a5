"""Tests of hccrad.report (summary and report tables) and of the Snakemake report.

Unit tests run on small hand-made study tables with known values. The workflow test builds
``results/report.html`` on the tiny cohort without running the pipeline: every output the DAG
plans is written as a placeholder (study tables from the hand-made ones), then the real
``summarize_results`` rule runs and ``snakemake --report`` renders captions and categories
(about 15 s).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_snakemake, write_sheets
from hccrad import report

NAN = math.nan
SPLITS = ("train", "validation", "external", "temporal")


# ---------------------------------------------------------------------------------------------
# hand-made study outputs (columns as hccrad.studies writes them)
# ---------------------------------------------------------------------------------------------


#: Unpaired DeLong P of the primary's held-out AUCs against its training AUC (others: 0.5).
TRAIN_P = {"validation": 0.0321, "external": 0.0004, "temporal": NAN}


def _train_p(model: str, split: str) -> float:
    if split == "train" or model == "fusion":
        return NAN
    return TRAIN_P[split] if model == "rad_clin" else 0.5


def performance_table() -> pd.DataFrame:
    """Models ``rad`` and ``clinical`` and a failed ``fusion``; ``rad_clin`` is the primary.
    The temporal split has one class (NaN AUC)."""
    rows = []
    aucs = {
        "rad": (0.90, 0.74, 0.70, NAN),
        "clinical": (0.70, 0.61, 0.66, NAN),
        "rad_clin": (0.93, 0.812, 0.75, NAN),
        "fusion": (NAN, NAN, NAN, NAN),
    }
    sizes = {"train": (40, 20), "validation": (20, 9), "external": (30, 12), "temporal": (5, 0)}
    for model, values in aucs.items():
        for split, auc in zip(SPLITS, values, strict=True):
            n, pos = sizes[split]
            note = "failed: singular matrix" if model == "fusion" else ""
            if split == "temporal" and not note:
                note = "only one class"
            rows.append(
                {
                    "model": model,
                    "split": split,
                    "n": n,
                    "n_pos": pos,
                    "auc": auc,
                    "auc_lower": auc - 0.1,
                    "auc_upper": min(auc + 0.1, 1.0),
                    "cutoff": 0.4321 if model != "fusion" else NAN,
                    "accuracy": 0.8,
                    "sensitivity": 0.75,
                    "specificity": 0.85,
                    "ppv": 0.7,
                    "npv": 0.9,
                    "train_delong_z": NAN if split == "train" else -2.0,
                    "train_delong_p": _train_p(model, split),
                    "note": note,
                }
            )
    return pd.DataFrame(rows)


def comparisons_table() -> pd.DataFrame:
    """Pairs in configured order: rad vs clinical first, then the primary's comparison."""
    rows = []
    for model, reference in (("rad", "clinical"), ("rad_clin", "clinical")):
        for i, split in enumerate(SPLITS):
            rows.append(
                {
                    "model": model,
                    "reference": reference,
                    "split": split,
                    "n": 40 - i,
                    "n_pos": 10,
                    "auc_model": 0.8 + i / 100,
                    "auc_reference": 0.7,
                    "delong_z": 2.0,
                    "delong_p": [0.0004, 0.0123, 0.25, NAN][i],
                    "nri_categorical": NAN if split == "temporal" else 0.3,
                    "nri_categorical_p": NAN if split == "temporal" else 0.04,
                    "nri_continuous": {"external": 0.456, "temporal": NAN}.get(split, 0.2),
                    "nri_continuous_p": NAN if split == "temporal" else 0.0009,
                    "note": "only one class" if split == "temporal" else "",
                }
            )
    return pd.DataFrame(rows)


def by_center_table() -> pd.DataFrame:
    """Subgroup AUCs of ``rad`` (first in the file) and of the primary ``rad_clin``: by center
    over all evaluated patients (B against A: P = 0.0456 for the primary) and by field strength
    on the held-out splits (1.5 T has one class)."""
    subgroups = (
        ("all", "center", "A", 60, 25, 0.91, "", ""),
        ("all", "center", "B", 35, 16, 0.72, "A", ""),
        ("held_out", "field_strength", "1.5", 4, 0, NAN, "", "one class only"),
        ("held_out", "field_strength", "3", 51, 21, 0.80, "", ""),
    )
    rows = []
    for model, shift, p in (("rad", -0.05, 0.6), ("rad_clin", 0.0, 0.0456)):
        for scope, by, value, n, pos, auc, ref, note in subgroups:
            rows.append(
                {
                    "model": model,
                    "scope": scope,
                    "by": by,
                    "value": value,
                    "n": n,
                    "n_pos": pos,
                    "auc": auc + shift,
                    "auc_lower": auc + shift - 0.1,
                    "auc_upper": min(auc + shift + 0.05, 1.0),
                    "reference": ref,
                    "delong_z": -2.0 if ref else NAN,
                    "delong_p": p if ref else NAN,
                    "note": note,
                }
            )
    return pd.DataFrame(rows)


def split_metrics_table(level: str = "patient") -> pd.DataFrame:
    """A deep network's own metrics per split (columns of hccrad.deep.split_metrics); per
    slice (``instance``) for a MIL network."""
    per = 11 if level == "instance" else 1
    rows = []
    for split, n, pos, auc in (("train", 33, 10, 0.85), ("external", 12, 5, 0.6612)):
        rows.append(
            {
                "split": split,
                "level": level,
                "n_patients": n,
                "n": n * per,
                "positives": pos * per,
                "auc": auc,
                "auc_lower": auc - 0.14,
                "auc_upper": auc + 0.14,
                "cutoff": 0.31416,
                "accuracy": 0.7,
                "sensitivity": 0.6,
                "specificity": 0.777,
                "ppv": 0.5,
                "npv": 0.85,
            }
        )
    return pd.DataFrame(rows)


#: Deep models of the hand-made study: a patient-level CNN, a MIL network, a per-phase bundle
#: (one table per member network) and a model without a scored patient (an empty table).
NETWORKS = {"cnn": "patient", "mil": "instance", "phases": "bundle", "empty": None}


def write_networks(folder: Path, networks=NETWORKS) -> dict[str, Path]:
    """``deep/{model}/split_metrics.parquet`` of each network (None: an empty table; bundle: a
    patient-level table per member, AP and HBP)."""
    files = {}
    for model, level in networks.items():
        path = folder / "deep" / model / "split_metrics.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        if level == "bundle":
            table = pd.concat(
                [split_metrics_table().assign(member=m) for m in ("AP", "HBP")], ignore_index=True
            )
        else:
            table = split_metrics_table(level or "patient")
        (table if level else table.iloc[:0]).to_parquet(path)
        files[model] = path
    return files


def metrics_dict(study: str = "demo") -> dict:
    splits = {s: {"n": n, "n_analysed": n, "n_pos": p} for s, (n, p) in zip(
        SPLITS, ((40, 20), (20, 9), (30, 12), (5, 0)), strict=True
    )}  # fmt: skip
    return {
        "study": study,
        "title": "A demo study",
        "modality": "MR",
        "label": "grade_pd",
        "n_patients": 100,
        "n_analysed": 95,
        "splits": splits,
        "primary": "rad_clin",
        "models": {
            "rad": {"status": "fitted", "note": ""},
            "fusion": {"status": "failed", "note": "singular matrix"},
        },
        "notes": ["split temporal: only one class"],
        "survival": {
            "os": {
                "model": "rad",
                "cutpoint": 0.12345,
                "km_scope": "held_out",
                "groups": {"held_out": {"logrank_p": 0.0301, "n_high": 20, "n_low": 35}},
            },
            "rfs": {"model": "rad", "cutpoint": None, "note": "model rad not fitted"},
        },
    }


def write_study(folder: Path, study: str = "demo") -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "performance": folder / "performance.parquet",
        "comparisons": folder / "comparisons.parquet",
        "metrics": folder / "metrics.json",
        "by_center": folder / "by_center.parquet",
    }
    performance_table().to_parquet(files["performance"])
    comparisons_table().to_parquet(files["comparisons"])
    by_center_table().to_parquet(files["by_center"])
    files["metrics"].write_text(json.dumps(metrics_dict(study)))
    return files


def preprocess_summary() -> pd.DataFrame:
    """Two MR patients of center A (2 phases), one CT patient of center B (2 phases)."""
    rows = []
    for center, patient, modality in (("A", "P1", "MR"), ("A", "P2", "MR"), ("B", "P3", "CT")):
        for phase, method in (("PVP", "identity"), ("AP", "QuickRigid")):
            rows.append(
                {
                    "center": center,
                    "patient": patient,
                    "modality": modality,
                    "phase": phase,
                    "index_tumor_ml": {"P1": 2.0, "P2": 4.0, "P3": 10.0}[patient],
                    "liver_ml": 1000.0,
                    "registration_method": method,
                    "ncc_before": 1.0 if method == "identity" else 0.5,
                    "ncc_after": 1.0 if method == "identity" else (0.4 if patient == "P2" else 0.9),
                    "reader2_dice": 0.8,
                }
            )
    return pd.DataFrame(rows)


def load_demo(tmp_path: Path, **extra) -> report.StudyResult:
    """The hand-made study written under ``tmp_path/demo`` and loaded (``extra``: optional
    inputs of :func:`report.load_study_result`, given the written files)."""
    files = write_study(tmp_path / "demo")
    return report.load_study_result(
        "demo", files["performance"], files["comparisons"], files["metrics"],
        **{k: (v(files) if callable(v) else v) for k, v in extra.items()},
    )  # fmt: skip


@pytest.fixture
def result(tmp_path) -> report.StudyResult:
    return load_demo(tmp_path, figures=[str(tmp_path / "demo" / "roc_train.png")])


@pytest.fixture
def full_result(tmp_path) -> report.StudyResult:
    """The hand-made study with its subgroup table and three deep networks."""
    return load_demo(
        tmp_path,
        by_center=lambda files: files["by_center"],
        networks=write_networks(tmp_path / "demo"),
    )


# ---------------------------------------------------------------------------------------------
# formatting and cohort tables
# ---------------------------------------------------------------------------------------------


def test_number_formats():
    assert report.fmt_auc(0.8123, 0.7049, 0.9) == "0.81 (0.70\u20130.90)"
    assert report.fmt_auc(0.8123, NAN, NAN) == "0.81"
    assert report.fmt_auc(NAN, 0.1, 0.2) == report.DASH
    assert report.fmt_p(0.0004) == "< 0.001"
    assert report.fmt_p(0.04321) == "0.043"
    assert report.fmt_p(None) == report.DASH
    assert report.fmt_num(1.23456, 3) == "1.235"
    assert report.split_label("external") == "external test"
    assert report.split_label("holdout") == "holdout"


def test_cohort_table_counts_patients_and_images():
    table = report.cohort_table(preprocess_summary())
    assert table.to_dict("records") == [
        {"center": "A", "modality": "MR", "patients": 2, "images": 4, "phases": "AP, PVP"},
        {"center": "B", "modality": "CT", "patients": 1, "images": 2, "phases": "AP, PVP"},
        {"center": "all", "modality": "all", "patients": 3, "images": 6, "phases": "AP, PVP"},
    ]


def test_qc_table_medians_skip_the_reference_phase_for_registration():
    table = report.qc_table(preprocess_summary()).set_index(["center", "modality"])
    a = table.loc[("A", "MR")]
    assert a["index lesion (ml)"] == 3.0  # median of 2, 2, 4, 4
    assert a["NCC before registration"] == 0.5  # identity rows (NCC 1) excluded
    assert a["NCC after registration"] == pytest.approx(0.65)  # median of 0.9 and 0.4
    assert table.loc[("B", "CT"), "NCC after registration"] == 0.9
    flags = report.registration_flags(preprocess_summary())
    assert flags[["patient", "phase"]].to_dict("records") == [{"patient": "P2", "phase": "AP"}]


def test_markdown_table_escapes_pipes_and_missing():
    table = pd.DataFrame({"a": ["x|y", None], "b": [1, NAN]})
    assert report.markdown_table(table).splitlines() == [
        "| a | b |",
        "|---|---|",
        "| x\\|y | 1.0 |",
        f"| {report.DASH} | {report.DASH} |",
    ]


# ---------------------------------------------------------------------------------------------
# one study
# ---------------------------------------------------------------------------------------------


def test_performance_matrix_primary_first_with_ci(result):
    table = report.performance_matrix(result)
    assert list(table["model"]) == ["rad_clin (primary)", "rad", "clinical", "fusion"]
    assert list(table.columns) == [
        "model",
        "training (n=40, 20 cases)",
        "internal validation (n=20, 9 cases)",
        "external test (n=30, 12 cases)",
        "temporal test (n=5, 0 cases)",
    ]
    row = table.iloc[0]
    assert row["internal validation (n=20, 9 cases)"] == "0.81 (0.71\u20130.91)"
    assert row["training (n=40, 20 cases)"] == "0.93 (0.83\u20131.00)"
    assert row["temporal test (n=5, 0 cases)"] == report.DASH
    # the failed model says so in every cell, never a result
    assert set(table.iloc[3, 1:]) == {"NOT FITTED: singular matrix"}


def test_classification_table_of_every_model(result):
    table = report.classification_table(result)
    assert list(dict.fromkeys(table["model"])) == ["rad_clin", "rad", "clinical", "fusion"]
    primary = table[table["model"] == "rad_clin"]
    assert list(primary["split"]) == [report.split_label(s) for s in SPLITS]
    first = primary.iloc[0].to_dict()
    assert first == {
        "model": "rad_clin",
        "split": "training",
        "n": 40,
        "cases": 20,
        "cut-off": "0.432",
        "accuracy": "0.80",
        "sensitivity": "0.75",
        "specificity": "0.85",
        "PPV": "0.70",
        "NPV": "0.90",
    }


def test_key_comparison_is_the_primary_models_pair(result):
    comp = result.comparisons
    assert report.comparison_pairs(comp) == [("rad", "clinical"), ("rad_clin", "clinical")]
    assert report.key_comparison(comp, "rad_clin") == ("rad_clin", "clinical")
    assert report.key_comparison(comp, "other") == ("rad", "clinical")  # else the first pair
    assert report.key_comparison(comp.iloc[:0], "rad_clin") is None
    # the study's configured key comparison comes first
    assert report.key_comparison(comp, "rad_clin", ["rad", "clinical"]) == ("rad", "clinical")
    rows = report.comparison_rows(comp, ("rad_clin", "clinical"))
    assert len(rows) == 4
    external = rows[rows["split"] == "external test"].iloc[0]
    assert external["AUC model"] == "0.82"
    assert external["DeLong P"] == "0.250"
    assert external["NRI continuous (P)"] == "0.46 (< 0.001)"
    assert external["NRI categorical (P)"] == "0.30 (0.040)"
    temporal = rows[rows["split"] == "temporal test"].iloc[0]
    assert temporal["DeLong P"] == temporal["NRI continuous (P)"] == report.DASH
    assert temporal["note"] == "only one class"


def test_survival_lines_and_notes(result):
    assert report.survival_lines(result) == [
        "os: rad score high vs low (training cut-point 0.123), log-rank P = 0.030 on held-out "
        "patients (high 20, low 35)",
        "rfs: not analysed (model rad not fitted)",
    ]
    assert report.study_notes(result) == [
        "split temporal: only one class",
        "model fusion: failed (singular matrix)",
    ]


def test_study_markdown(result):
    text = report.study_markdown(result)
    assert text.startswith("## demo: A demo study\n")
    assert "95 of 100 patients analysed (training 40 (20 cases); internal validation 20" in text
    assert "Primary model: rad_clin." in text
    assert "| rad_clin (primary) | 0.93 (0.83\u20131.00) | 0.81 (0.71\u20130.91) |" in text
    assert "Key comparison, `rad_clin` vs `clinical`" in text
    # held-out splits only, training left to the report
    assert "| internal validation | 39 | 0.81 | 0.70 | 0.012 | 0.30 (0.040) | 0.20 (< 0.001) |" in (
        text
    )
    assert not any(line.startswith("| training | 40 |") for line in text.splitlines())
    assert "| fusion | external test | 30 | 12 |" in text  # every model's metrics
    assert "log-rank P = 0.030" in text
    assert "model fusion: failed (singular matrix)" in text
    assert "`roc_train.png`" in text


def test_study_html_marks_the_key_comparison(result):
    page = report.study_html(result)
    assert page.startswith("<!DOCTYPE html>")
    assert "<h2>demo: A demo study</h2>" in page
    key_rows = re.findall(r'<tr class="key">(.*?)</tr>', page)
    # the primary model's AUC row, then the four rows of the key comparison
    assert len(key_rows) == 5
    assert all("rad_clin vs clinical" in r for r in key_rows[1:])
    assert "<td>0.81 (0.71\u20130.91)</td>" in page
    assert "model fusion: failed (singular matrix)" in page


def test_performance_matrix_with_train_p(result):
    """With train_p, each split but training is followed by its DeLong P against training."""
    table = report.performance_matrix(result, train_p=True)
    assert list(table.columns) == [
        "model",
        "training (n=40, 20 cases)",
        "internal validation (n=20, 9 cases)",
        "internal validation: P vs training",
        "external test (n=30, 12 cases)",
        "external test: P vs training",
        "temporal test (n=5, 0 cases)",
        "temporal test: P vs training",
    ]
    primary = table.iloc[0]
    assert primary["internal validation: P vs training"] == "0.032"
    assert primary["external test: P vs training"] == "< 0.001"
    assert primary["temporal test: P vs training"] == report.DASH  # one class: no test
    assert table.iloc[1]["external test: P vs training"] == "0.500"
    assert set(table.iloc[3, 1:]) == {"NOT FITTED: singular matrix"}
    # a performance table without the column (an older run): the AUCs alone
    old = report.StudyResult(
        "old",
        result.folder,
        result.metrics,
        result.performance.drop(columns=["train_delong_z", "train_delong_p"]),
        result.comparisons,
    )
    assert list(report.performance_matrix(old, train_p=True).columns) == list(
        report.performance_matrix(result).columns
    )


def test_network_table_every_deep_model_per_split(full_result):
    assert list(full_result.networks) == ["cnn", "mil", "phases", "empty"]
    table = report.network_table(full_result)
    assert list(zip(table["network"], table["split"], strict=True)) == [
        ("cnn", "training"),
        ("cnn", "external test"),
        ("mil", "training"),
        ("mil", "external test"),
        ("phases (AP)", "training"),
        ("phases (AP)", "external test"),
        ("phases (HBP)", "training"),
        ("phases (HBP)", "external test"),
    ]
    cnn = table.iloc[1].to_dict()
    assert cnn == {
        "network": "cnn",
        "split": "external test",
        "scored per": "patient",
        "patients": 12,
        "n": 12,
        "cases": 5,
        "AUC (95 % CI)": "0.66 (0.52\u20130.80)",
        "cut-off": "0.314",
        "accuracy": "0.70",
        "sensitivity": "0.60",
        "specificity": "0.78",
        "PPV": "0.50",
        "NPV": "0.85",
    }
    mil = table.iloc[2]
    assert (mil["scored per"], mil["patients"], mil["n"], mil["cases"]) == ("slice", 33, 363, 110)
    # a bundle: one row per member network and split (above); an empty table: a note, no row
    assert [n.split(":")[0] for n in report.network_notes(full_result)] == ["empty"]


def test_subgroup_tables_primary_first_with_unpaired_delong_p(full_result):
    tables = report.subgroup_tables(full_result)
    assert list(tables) == ["center", "field strength"]
    center = tables["center"]
    assert "note" not in center  # no subgroup of this column has a note
    # the primary and the key comparison's other model (clinical: no subgroup rows); rad, a
    # model outside the key comparison, stays in by_center.parquet
    assert report.shown_models(full_result) == ["rad_clin"]
    assert list(center["model"]) == ["rad_clin", "rad_clin"]
    assert center.iloc[0].to_dict() == {
        "model": "rad_clin",
        "patients": "all evaluated",
        "subgroup": "A",
        "n": 60,
        "cases": 25,
        "AUC (95 % CI)": "0.91 (0.81\u20130.96)",
        "compared with": "reference",
        "DeLong P": report.DASH,
    }
    b = center.iloc[1]
    assert (b["compared with"], b["DeLong P"]) == ("A", "0.046")
    field = tables["field strength"]
    one_class = field.iloc[0]
    assert one_class["patients"] == "held-out splits"
    assert one_class["AUC (95 % CI)"] == one_class["compared with"] == report.DASH
    assert one_class["note"] == "one class only"
    assert field.iloc[1]["compared with"] == "reference"  # the first evaluable subgroup
    bare = report.StudyResult("x", "", {}, full_result.performance, full_result.comparisons)
    assert report.subgroup_tables(bare) == {}  # no subgroup table read


def test_study_html_shows_networks_subgroups_and_train_p(full_result):
    page = report.study_html(full_result)
    heads = re.findall(r"<h[34]>(.*?)</h[34]>", page)
    order = [
        "Discrimination: AUC (95 % DeLong CI)",
        "Deep networks on their own: performance per split",
        "Every model at its training Youden cut-off",
        "Subgroups: AUC by center and scanner (unpaired DeLong test against the reference "
        "subgroup)",
        "By center",
        "By field strength",
        "Survival",
    ]
    assert [h for h in heads if h in order] == order
    # the primary's AUC row: held-out AUCs, each followed by its P against training
    primary = re.findall(r'<tr class="key">(.*?)</tr>', page)[0]
    cells = re.findall(r"<td>(.*?)</td>", primary)
    assert cells[:5] == [
        "rad_clin (primary)",
        "0.93 (0.83\u20131.00)",
        "0.81 (0.71\u20130.91)",
        "0.032",
        "0.75 (0.65\u20130.85)",
    ]
    assert cells[5] == "&lt; 0.001"
    assert "P vs training: unpaired DeLong test" in page
    # the networks' own rows (a bundle's members too) and the empty table's note
    assert "<td>cnn</td><td>external test</td><td>patient</td><td>12</td><td>12</td>" in page
    assert "<td>0.66 (0.52\u20130.80)</td><td>0.314</td>" in page
    assert "<td>mil</td><td>training</td><td>slice</td><td>33</td><td>363</td><td>110</td>" in page
    assert "empty: no per-split metrics" in page and "<td>phases (HBP)</td>" in page
    # subgroups: the primary's rows in bold, its P against the reference center; the models
    # left out are named with the file that holds them
    assert "Shown: rad_clin (the primary model and the key comparison&#x27;s other model)" in page
    # (rows)
    key = re.findall(r'<tr class="key">(.*?)</tr>', page)
    assert "<td>rad_clin</td><td>all evaluated</td><td>B</td><td>35</td><td>16</td>" in key[-3]
    assert "<td>A</td><td>0.046</td>" in key[-3]


def test_study_without_deep_models_or_subgroups(result, tmp_path):
    """No deep model: no networks section; no subgroup table given: no subgroup section; an
    empty subgroup table: the section says why there is none."""
    assert result.networks == {} and result.by_center is None
    page = report.study_html(result)
    assert "Deep networks" not in page and "Subgroups" not in page
    assert "0.032" in page  # the train-vs-split P is shown all the same
    text = report.study_markdown(result)
    assert "Deep networks" not in text and "P vs training" not in text  # summary unchanged
    empty = report.StudyResult(
        "demo",
        result.folder,
        result.metrics,
        result.performance,
        result.comparisons,
        by_center=by_center_table().iloc[:0],
    )
    assert '<p class="note">No subgroup AUC: no subgroup column' in report.study_html(empty)


PUBLISHED = {
    "source": "A et al. 2025, Table 2",
    "cohorts": {"train": {"n": 400, "positives": 100}, "external": {"n": 80, "positives": 30}},
    "models": {
        "rad_clin": {"paper_name": "nomogram", "auc": {"train": [0.91, 0.88, 0.94],
                                                      "external": [0.84, None, None]}},
        "fusion": {"auc": {"external": [0.8, 0.7, 0.9]}},
        "rad": None,
    },
    "missing_models": {"deep_3d": {"auc": {"external": [0.7, 0.6, 0.8]}}},
}  # fmt: skip


def test_paper_next_to_this_run(tmp_path):
    files = write_study(tmp_path / "demo")
    meta = json.loads(files["metrics"].read_text())
    meta["published"] = PUBLISHED
    meta["key_comparison"] = {
        "pair": ["rad_clin", "clinical"],
        "claim": "nomogram > clinical",
        "p": 0.01,
        "split": "external",
    }
    meta["deviations"] = [{"step": "splits", "paper": "one center", "ours": "three", "reason": "r"}]
    files["metrics"].write_text(json.dumps(meta))
    res = report.load_study_result(
        "demo", files["performance"], files["comparisons"], files["metrics"]
    )
    table = report.paper_vs_run(res)
    rows = table.set_index(["model", "split"])
    nomogram = rows.loc[("rad_clin (nomogram)", "training")]
    assert nomogram["paper n"] == "400 (100 cases)"
    assert nomogram["paper AUC (95 % CI)"] == "0.910 (0.880\u20130.940)"
    assert nomogram["this run n"] == "40 (20 cases)"
    assert nomogram["this run AUC (95 % CI)"] == "0.930 (0.830\u20131.000)"
    assert rows.loc[("rad_clin (nomogram)", "external test"), "paper AUC (95 % CI)"] == "0.840"
    # a model this run could not fit: said so, never a number; a model the study lacks
    assert rows.loc[("fusion", "external test"), "this run AUC (95 % CI)"] == (
        "NOT FITTED: singular matrix"
    )
    assert rows.loc[("deep_3d", "external test"), "this run AUC (95 % CI)"] == "not in this study"
    assert not any(m.startswith("rad ") or m == "rad" for m, _ in rows.index)  # null: no row
    text = report.study_markdown(res)
    assert "Paper vs this run (A et al. 2025, Table 2):" in text
    assert (
        "Key comparison `rad_clin` vs `clinical`. Paper: nomogram > clinical (P = 0.01, "
        "external). This run: internal validation 0.81 vs 0.70, DeLong P = 0.012;" in text
    )
    assert "| splits | one center | three | r |" in text
    assert "**fusion could not be fitted: it has no result.**" in text
    page = report.study_html(res)
    bad = re.findall(r'<tr class="bad">(.*?)</tr>', page)
    # the AUC row and both of its paper rows (training, external test)
    assert len(bad) == 3 and all("NOT FITTED" in r for r in bad)


def test_study_without_results_or_comparisons(tmp_path):
    """A study whose training set could not be trained: empty tables, no crash."""
    perf = performance_table().iloc[:0]
    comp = comparisons_table().iloc[:0]
    res = report.StudyResult("empty", str(tmp_path), {"primary": "rad"}, perf, comp)
    text = report.study_markdown(res)
    assert "No comparison configured." in text
    assert "patients analysed. Primary model: rad." in text
    assert "<table>" in report.study_html(res)


def test_html_escapes_cells():
    page = report.html_table(pd.DataFrame({"a<b": ["<script>"]}))
    assert "<script>" not in page and "&lt;script&gt;" in page and "a&lt;b" in page


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------


def test_summarize_results_job_writes_every_output(tmp_path):
    study_files = write_study(tmp_path / "studies" / "demo")
    pre = tmp_path / "summary.parquet"
    preprocess_summary().to_parquet(pre, index=False)
    dice = tmp_path / "dice.parquet"
    pd.DataFrame(
        {"dice_liver": [0.9, 0.8, 0.85], "dice_tumor": [0.6, 0.4, 0.5]},
        index=pd.Index(["P1", "P2", "mean"], name="patient"),
    ).to_parquet(dice)
    inputs = {"preprocess": pre, "dice": dice}
    inputs.update({f"{k}_demo": v for k, v in study_files.items()})
    # as Snakemake gives a named list of files: the deep models' tables, named by folder
    networks = write_networks(tmp_path / "studies" / "demo")
    inputs["split_metrics_demo"] = [str(networks["cnn"]), str(networks["mil"])]
    # a second study without deep models
    plain = write_study(tmp_path / "studies" / "plain", "plain")
    inputs.update({f"{k}_plain": v for k, v in plain.items()})
    out = tmp_path / "out"
    outputs = {
        "summary": out / "summary.md",
        "preprocessing": out / "preprocessing.html",
        "dice": out / "dice.html",
        "study_demo": out / "demo.html",
        "study_plain": out / "plain.html",
    }
    report.summarize_results_job(
        inputs,
        outputs,
        studies={"demo": ["results/cohort/studies/demo/roc_train.png"], "plain": []},
        skipped={"mil_er": "no CT patient in the cohort"},
    )
    text = outputs["summary"].read_text()
    assert text.startswith("# hccrad results summary\n\nCohort: 3 patients, 6 images (2 centers).")
    assert "| A | MR | 2 | 4 | AP, PVP |" in text
    assert "mean Dice on 2 held-out patients: liver 0.850, tumor 0.500." in text
    assert "## demo: A demo study" in text
    assert "## mil_er: skipped\n\nNot run on this cohort: no CT patient in the cohort." in text
    assert "P2" in outputs["preprocessing"].read_text()  # the registration flag
    assert "<td>0.850</td>" in outputs["dice"].read_text()
    page = outputs["study_demo"].read_text()
    assert "rad_clin vs clinical" in page
    assert "<td>cnn</td><td>external test</td>" in page and "<td>mil</td>" in page
    assert "phases (AP)" not in page  # not an input
    assert "<td>A</td><td>0.046</td>" in page  # the subgroup P
    plain_page = outputs["study_plain"].read_text()
    assert "Deep networks" not in plain_page and "<h4>By center</h4>" in plain_page
    assert not list(out.glob(".*.tmp"))  # atomic writes leave nothing behind


# ---------------------------------------------------------------------------------------------
# workflow: summarize_results and snakemake --report on the tiny cohort
# ---------------------------------------------------------------------------------------------


def _png() -> bytes:
    from matplotlib.image import imsave

    buf = io.BytesIO()
    imsave(buf, np.zeros((4, 4)), format="png")
    return buf.getvalue()


def planned_outputs(dry_run: str) -> dict[str, list[str]]:
    """{rule: output paths} of every job a dry run (``-n``) prints."""
    out: dict[str, list[str]] = {}
    rule = None
    for line in dry_run.splitlines():
        m = re.match(r"^(?:local)?rule (\S+):", line)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+output: (.*)$", line)
        if m and rule is not None:
            out.setdefault(rule, []).extend(m.group(1).split(", "))
    return out


def fake_results(work: Path, planned: dict[str, list[str]], sheet: pd.DataFrame) -> None:
    """Write every planned output except the summary's: figures as tiny PNGs, directories with
    one PNG, the tables the summary reads hand-made, everything else empty; one mtime for all
    so that nothing upstream looks outdated."""
    png = _png()
    written = []
    for rule, files in planned.items():
        if rule in ("summarize_results", "all"):
            continue
        for name in files:
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.suffix:  # directory() outputs: gradcam/, masks/, maps/
                path.mkdir(exist_ok=True)
                (path / "P001.png").write_bytes(png)
                written.append(path / "P001.png")
            elif path.suffix == ".png":
                path.write_bytes(png)
            else:
                path.write_bytes(b"")
            written.append(path)
    for folder in (work / "results/cohort/studies").iterdir():
        write_study(folder, folder.name)
        for table in folder.glob("deep/*/split_metrics.parquet"):
            split_metrics_table().to_parquet(table)
    summary = sheet[["center", "patient", "modality", "phase"]].assign(ncc_before=0.5)
    summary.to_parquet(work / "results/cohort/preprocess/summary.parquet", index=False)
    dice = work / "results/cohort/segmentation/dice.parquet"
    if dice.exists():
        pd.DataFrame({"dice_liver": [0.9]}, index=pd.Index(["mean"])).to_parquet(dice)
    now = time.time()
    for path in written:
        os.utime(path, (now, now))


@pytest.mark.workflow
def test_report_has_a_category_per_study_and_qc(cohort_dir, tmp_path):
    from hccrad.studies import DEFAULT_STUDY_FILES, load_studies

    cohort, clinical = write_sheets(cohort_dir, tmp_path / "sheets")
    sheet = pd.read_csv(cohort, sep="\t", dtype=str, keep_default_na=False)
    dry = run_snakemake(tmp_path, "-n", cohort=cohort, clinical=clinical, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = planned_outputs(dry.stdout)
    assert "summarize_results" in planned, sorted(planned)
    fake_results(tmp_path, planned, sheet)

    # the real rule, alone (--allowed-rules: nothing upstream may run)
    args = ("--cores", "1", "--allowed-rules", "summarize_results", "results/summary.md")
    run = run_snakemake(tmp_path, *args, cohort=cohort, clinical=clinical, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = (tmp_path / "results/summary.md").read_text()
    # the demo overlay (conftest) is listed: every value it changed, the full-scale one beside it
    assert "## Scaled for this run (" in summary and "Not the papers' settings." in summary
    assert "| config | deep.inputs.er_stack.size | 64 | 256 |" in summary
    assert (tmp_path / "results/cohort/report/scaled.html").exists()
    studies = load_studies([ROOT / f for f in DEFAULT_STUDY_FILES])
    for name in studies:  # the tiny cohort has both modalities, readers and habitats
        assert f"## {name}: A demo study" in summary
        assert (tmp_path / f"results/cohort/report/{name}.html").exists()
    # the study pages show the deep networks' own metrics (declared inputs of the rule), the
    # subgroup AUCs and the train-vs-split P; proliferative_tace has no deep model
    for name, spec in studies.items():
        page = (tmp_path / f"results/cohort/report/{name}.html").read_text()
        assert "<td>A</td><td>0.046</td>" in page and "<td>0.032</td>" in page
        for model in spec.deep_models:
            assert f"<td>{model}</td><td>external test</td>" in page
        assert ("Deep networks on their own" in page) == bool(spec.deep_models)
    assert not studies["proliferative_tace"].deep_models
    n = sheet["patient"].nunique()
    assert f"Cohort: {n} patients, {len(sheet)} images" in summary

    res = run_snakemake(
        tmp_path, "--report", "results/report.html", cohort=cohort, clinical=clinical
    )
    assert res.returncode == 0, res.stderr[-3000:]
    page = (tmp_path / "results/report.html").read_text()
    categories = json.loads(re.search(r"var categories = (\{.*?\});", page).group(1))
    expected = {f"Study {i} - {name}" for i, name in enumerate(studies, 1)}
    assert expected | {"Preprocessing QC", "Habitats"} <= set(categories)
    qc = categories["Preprocessing QC"]
    assert len(qc["Per-patient QC"]) == n
    assert "results/cohort/report/preprocessing.html" in qc["Cohort"]
    assert set(categories["Study 1 - habitat_grade"]) >= {
        "Performance tables",
        "Discrimination",
        "Calibration and decision curves",
        "Survival",
        "Deep models (training)",
        "Deep models (Grad-CAM)",
    }
    # captions are rendered with the job's wildcards
    patient = sheet["patient"].iloc[0]
    assert f"Preprocessing QC of patient <strong>{patient}</strong>" in page
    assert "ROC curves of every model of study <strong>habitat_grade</strong>" in page


def test_planted_signal_section_and_page():
    from hccrad.audit.planted import Verdict

    verdicts = [
        Verdict("habitat_grade", False, True, (), "habitat_grade: planted effect recovered: x"),
        Verdict("mil_er", False, False, ("CI",), "mil_er: planted effect NOT RECOVERED: y"),
        Verdict("er_fusion", False, None, (), "er_fusion: no planted latent"),
    ]
    text = report.planted_markdown(verdicts)
    assert text.splitlines()[:3] == [
        "## Planted signal (synthetic cohort)",
        "",
        "1 of 2 studies recovered the effect the generator planted.",
    ]
    assert "- habitat_grade: planted effect recovered: x" in text
    assert "- **mil_er: planted effect NOT RECOVERED: y**" in text
    page = report.planted_html(verdicts)
    assert re.findall(r'<p class="warn">(.*?)</p>', page) == [
        "mil_er: planted effect NOT RECOVERED: y"
    ]
    null = [Verdict("mil_er", True, True, (), "mil_er (null cohort): at chance")]
    assert "Null cohort (labels permuted): 1 of 1 studies stay at chance." in (
        report.planted_markdown(null)
    )
    summary = report.summary_markdown(preprocess_summary(), [], planted=verdicts)
    assert "## Planted signal (synthetic cohort)" in summary
