"""Leakage-safe patient splits: development (train/validation), external and temporal sets.

Rules, applied per patient (one row of the clinical table):

* ``external``: the patient's center is not one of ``primary_centers`` (whatever the date);
* ``temporal``: a primary-center patient acquired **on or after** ``temporal_cutoff``;
* ``train`` / ``validation``: the remaining primary-center patients (acquired strictly before the
  cut-off, or all of them when ``temporal_cutoff`` is ``None``), split at random, stratified on
  the label and seeded, with ``validation_fraction`` of them in ``validation``;
* ``unlabeled``: a patient whose label is missing, in any center. Such patients never take part
  in the stratified split (they would leak nothing but could not be scored); with
  ``unlabeled="drop"`` they are left out of the result instead.

The split is a pure function of the table's content and ``seed``: the development patients are
sorted by patient id before the split, so shuffling the input rows gives the same assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

#: Split names, in the order they are reported.
SPLITS = ("train", "validation", "external", "temporal", "unlabeled")


def _names(patients: pd.Series, limit: int = 10) -> str:
    shown = ", ".join(map(str, patients[:limit]))
    return shown + (f" and {len(patients) - limit} more" if len(patients) > limit else "")


def make_splits(
    table: pd.DataFrame,
    *,
    label: str,
    center_col: str = "center",
    date_col: str = "acquisition_date",
    primary_centers: str | Sequence[str],
    validation_fraction: float = 0.3,
    temporal_cutoff: str | pd.Timestamp | None = None,
    seed: int = 42,
    patient_col: str = "patient",
    unlabeled: Literal["keep", "drop"] = "keep",
) -> pd.DataFrame:
    """Assign every patient to ``train``, ``validation``, ``external``, ``temporal``
    (or ``unlabeled``), see the module docstring for the rules.

    Args:
        table: One row per patient with ``patient_col``, ``label``, ``center_col`` and (when
            ``temporal_cutoff`` is given) ``date_col`` (ISO dates or datetimes).
        label: Outcome column used for stratification (any discrete values; NaN = unlabeled).
        center_col: Center column; compared as text with ``primary_centers``.
        date_col: Acquisition date column.
        primary_centers: The development center(s).
        validation_fraction: Fraction of development patients in ``validation``, in ``[0, 1)``
            (0 puts every development patient in ``train``).
        temporal_cutoff: Patients of the primary centers acquired on or after this date form the
            ``temporal`` set; ``None`` for no temporal set.
        seed: Seed of the stratified split.
        patient_col: Patient id column.
        unlabeled: ``"keep"`` (split ``unlabeled``) or ``"drop"`` patients without a label.

    Returns:
        DataFrame with columns ``patient`` and ``split``, in the order of ``table``'s rows.

    Raises:
        ValueError: Missing columns, duplicate patients, no primary-center patient, a
            development patient without a date when a cut-off is given, a fraction outside
            ``[0, 1)``, or a development set whose label cannot be stratified (a single class,
            a class with fewer than 2 patients, or a validation set too small to hold each
            class once).
    """
    needed = [patient_col, label, center_col] + ([date_col] if temporal_cutoff is not None else [])
    _check_arguments(table, needed, validation_fraction, unlabeled)
    patients = table[patient_col].astype(str).reset_index(drop=True)
    dup = patients[patients.duplicated()]
    if len(dup):
        raise ValueError(f"make_splits: duplicate patient(s) {_names(dup.drop_duplicates())}")

    primary = {primary_centers} if isinstance(primary_centers, str) else set(primary_centers)
    primary = {str(c) for c in primary}
    centers = table[center_col].astype(str).reset_index(drop=True)
    is_primary = centers.isin(primary).to_numpy()
    if not is_primary.any():
        raise ValueError(f"make_splits: no patient from primary center(s) {sorted(primary)}")
    labels = table[label].reset_index(drop=True)
    has_label = labels.notna().to_numpy()

    split = np.full(len(table), "external", dtype=object)
    development = is_primary.copy()
    if temporal_cutoff is not None:
        late = _temporal_patients(table[date_col], date_col, temporal_cutoff, is_primary, patients)
        split[late] = "temporal"
        development &= ~late
    split[~has_label] = "unlabeled"

    dev = np.flatnonzero(development & has_label)
    order = dev[np.argsort(patients.to_numpy()[dev], kind="stable")]
    where = f"primary center(s) {sorted(primary)}" + (
        f" before {pd.Timestamp(temporal_cutoff).date()}" if temporal_cutoff is not None else ""
    )
    split[order] = "train"
    y = labels.to_numpy()[order]
    val = _validation_patients(order, y, label, where, validation_fraction, seed)
    split[val] = "validation"

    out = pd.DataFrame({"patient": patients, "split": split})
    if unlabeled == "drop":
        out = out[out["split"] != "unlabeled"].reset_index(drop=True)
    return out


def _check_arguments(
    table: pd.DataFrame, needed: list[str], validation_fraction: float, unlabeled: str
) -> None:
    """Raise ValueError for columns ``table`` lacks, a fraction outside ``[0, 1)`` or an
    unknown ``unlabeled`` mode."""
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"make_splits: table lacks column(s) {missing}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if unlabeled not in ("keep", "drop"):
        raise ValueError(f"unlabeled must be 'keep' or 'drop', got {unlabeled!r}")


def _temporal_patients(
    dates: pd.Series,
    date_col: str,
    temporal_cutoff: str | pd.Timestamp,
    is_primary: np.ndarray,
    patients: pd.Series,
) -> np.ndarray:
    """Mask of the primary-center patients acquired on or after the cut-off (every one of them
    must have a date)."""
    cutoff = pd.Timestamp(temporal_cutoff)
    dates = pd.to_datetime(dates.reset_index(drop=True), errors="raise")
    no_date = is_primary & dates.isna().to_numpy()
    if no_date.any():
        raise ValueError(
            f"make_splits: primary-center patient(s) without {date_col} (needed for the "
            f"temporal cut-off {cutoff.date()}): {_names(patients[no_date])}"
        )
    return is_primary & (dates >= cutoff).to_numpy()


def _validation_patients(
    order: np.ndarray,
    y: np.ndarray,
    label: str,
    where: str,
    validation_fraction: float,
    seed: int,
) -> np.ndarray:
    """Rows (of ``order``, the sorted labelled development patients with labels ``y``) drawn
    into ``validation`` by the seeded stratified split; none when the fraction is 0."""
    if len(order) == 0:
        raise ValueError(f"make_splits: no labelled development patient ({where})")
    classes, counts = np.unique(y.astype(str), return_counts=True)
    if len(classes) < 2:
        raise ValueError(
            f"make_splits: the development set ({where}, {len(order)} patients) has a single "
            f"class of {label!r} ({classes[0]}); stratification is impossible"
        )
    if validation_fraction <= 0:
        return order[:0]
    if counts.min() < 2:
        raise ValueError(
            f"make_splits: class {classes[counts.argmin()]} of {label!r} has a single "
            f"development patient ({where}); stratification is impossible"
        )
    try:
        _, val = train_test_split(
            order, test_size=validation_fraction, stratify=y.astype(str), random_state=seed
        )
    except ValueError as err:
        raise ValueError(
            f"make_splits: cannot stratify {label!r} ({where}, class counts "
            f"{dict(zip(classes, counts.tolist(), strict=True))}, validation_fraction "
            f"{validation_fraction}): {err}"
        ) from err
    return val
