"""A study's patient splits (train, validation, external, temporal, unlabeled)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from hccrad.errors import InputError
from hccrad.stats.splits import make_splits
from hccrad.studies.spec import StudySpec
from hccrad.studies.tables import included

log = logging.getLogger(__name__)


def study_splits(spec: StudySpec, clinical: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``patient, split`` for the study's patients (sorted by patient), by
    :func:`hccrad.stats.make_splits` on the study's label and split settings.

    When the development set cannot be stratified (one class, or a class too small for the
    validation set), the split is retried without a validation set, then done by the center
    and date rules alone (every development patient in ``train``); a warning says so. The
    consequence (a study that cannot be trained) is reported by :func:`run_study`. Patients
    the study's ``include`` / ``exclude`` criteria remove get no split (as in
    :func:`~hccrad.studies.tables.study_clinical`).
    """
    s = spec.splits
    table = included(spec, clinical).reset_index()
    for col in (s.center_column, s.date_column if s.temporal_cutoff else None):
        if col is not None and col not in table.columns:
            raise InputError(f"study {spec.name}: the clinical table has no column {col!r}")
    if s.temporal_cutoff is not None:
        primary = table[s.center_column].astype(str).isin(set(s.primary_centers))
        undated = table.loc[primary & table[s.date_column].isna(), "patient"].tolist()
        if undated:
            raise InputError(
                f"study {spec.name}: primary-center patient(s) without {s.date_column} (needed "
                f"for the temporal cut-off): {undated[:10]}"
            )
    kwargs = dict(
        label=spec.label,
        center_col=s.center_column,
        date_col=s.date_column,
        primary_centers=list(s.primary_centers),
        temporal_cutoff=s.temporal_cutoff,
        seed=seed,
    )
    for fraction in dict.fromkeys((s.validation_fraction, 0.0)):
        try:
            out = make_splits(table, validation_fraction=fraction, **kwargs)
            if fraction != s.validation_fraction:
                log.warning("study %s: no validation set (stratification impossible)", spec.name)
            return out.sort_values("patient", kind="stable").reset_index(drop=True)
        except ValueError as err:
            last = err
    log.warning("study %s: split by center and date only (%s)", spec.name, last)
    centers = table[s.center_column].astype(str)
    split = np.where(centers.isin(set(s.primary_centers)), "train", "external").astype(object)
    if s.temporal_cutoff is not None:
        dates = pd.to_datetime(table[s.date_column], errors="coerce")
        split[(split == "train") & (dates >= pd.Timestamp(s.temporal_cutoff)).to_numpy()] = (
            "temporal"
        )
    split[table[spec.label].isna().to_numpy()] = "unlabeled"
    out = pd.DataFrame({"patient": table["patient"].astype(str), "split": split})
    return out.sort_values("patient", kind="stable").reset_index(drop=True)
