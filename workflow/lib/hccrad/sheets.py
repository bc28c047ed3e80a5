"""Cohort sheet and clinical table: reading, schema validation and cross-checks.

The cohort sheet has one row per patient x phase image with the columns
``center, patient, phase, modality, image, tumor_mask, liver_mask, reader2_mask`` and the optional
``reader1_repeat_mask`` (reader 1's second outline of the same tumor, for the intra-observer ICC;
a sheet without the column has none). Mask cells may be empty. Paths are absolute or relative to
the sheet's folder. The optional selection columns pick within a file: ``series`` one DICOM series
of an image folder holding several (SeriesInstanceUID, else SeriesDescription), and
``{kind}_segment`` what counts as a mask's foreground (a label value or segment number, a segment
name, or several joined by ``+``: docs/inputs.md). The clinical table is keyed by ``patient``.
Everything is checked before any job runs; every problem names the row, patient, column and file
it is about.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.config import RESERVED_NAMES, Settings, load_schema
from hccrad.errors import InputError

log = logging.getLogger(__name__)

#: The columns every sheet written by the project carries (the synthetic cohort's).
BASE_COLUMNS = (
    "center",
    "patient",
    "phase",
    "modality",
    "image",
    "tumor_mask",
    "liver_mask",
    "reader2_mask",
    "reader1_repeat_mask",
)
MASK_KINDS = ("tumor", "liver", "reader2", "reader1_repeat")
#: Selections within a file: one series of a DICOM folder, the segments of a mask file.
SELECTION_COLUMNS = ("series", *(f"{kind}_segment" for kind in MASK_KINDS))
COHORT_COLUMNS = (*BASE_COLUMNS, *SELECTION_COLUMNS)
#: Columns a sheet may leave out (read as all empty).
OPTIONAL_COLUMNS = ("reader1_repeat_mask", *SELECTION_COLUMNS)


@dataclass(frozen=True)
class ImageRecord:
    """One row of the cohort sheet, with paths resolved."""

    row: int
    center: str
    patient: str
    phase: str
    modality: str
    image: Path
    masks: dict[str, Path] = field(default_factory=dict)
    series: str | None = None
    segments: dict[str, str] = field(default_factory=dict)

    def mask(self, kind: str) -> Path | None:
        """Path of mask ``kind`` (tumor, liver, reader2 or reader1_repeat), or None when the sheet
        gives none."""
        return self.masks.get(kind)

    def segment(self, kind: str) -> str | None:
        """The sheet's selection within mask ``kind``'s file (``{kind}_segment``), or None."""
        return self.segments.get(kind)


@dataclass(frozen=True)
class Problem:
    """One problem found in the sheets."""

    message: str
    row: int | None = None
    patient: str | None = None
    phase: str | None = None
    column: str | None = None
    file: str | None = None
    sheet: str = "cohort"

    def __str__(self) -> str:
        return str(
            InputError(
                f"{self.message} [{self.sheet} sheet]",
                row=self.row,
                patient=self.patient,
                phase=self.phase,
                column=self.column,
                file=self.file,
            )
        )


class SheetError(InputError):
    """The sheets hold one or more problems; ``problems`` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        text = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the cohort sheets:\n{text}")


@dataclass
class Cohort:
    """The validated cohort: image records by patient and phase, and the clinical table."""

    records: list[ImageRecord]
    clinical: pd.DataFrame
    excluded: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_key = {(r.patient, r.phase): r for r in self.records}
        self._by_patient: dict[str, list[ImageRecord]] = defaultdict(list)
        for r in self.records:
            self._by_patient[r.patient].append(r)

    @property
    def patients(self) -> list[str]:
        """Patient ids in sheet order."""
        return list(self._by_patient)

    def center(self, patient: str) -> str:
        """Center of ``patient``."""
        return self._by_patient[patient][0].center

    def modality(self, patient: str) -> str:
        """Modality of ``patient``."""
        return self._by_patient[patient][0].modality

    def phases(self, patient: str) -> list[str]:
        """Phases imaged for ``patient``, in sheet order."""
        return [r.phase for r in self._by_patient[patient]]

    def record(self, patient: str, phase: str) -> ImageRecord:
        """The sheet row of ``patient`` in ``phase``."""
        try:
            return self._by_key[(patient, phase)]
        except KeyError:
            raise InputError(
                "no such image in the cohort sheet", patient=patient, phase=phase
            ) from None

    def images(self) -> Iterable[ImageRecord]:
        """Every image record."""
        return iter(self.records)


def read_cohort_sheet(path: str | Path) -> pd.DataFrame:
    """Read the cohort sheet as strings (empty cells stay empty strings)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("cohort sheet not found", file=path)
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"cohort sheet is not a readable TSV ({exc})", file=path) from exc


def read_clinical(path: str | Path) -> pd.DataFrame:
    """Read the clinical table, typing columns by the clinical schema (empty cells → missing)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("clinical table not found", file=path)
    try:
        raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"clinical table is not a readable TSV ({exc})", file=path) from exc
    return raw


def _typed_value(value: str, spec: dict[str, Any]) -> Any:
    """Convert one clinical cell to the type its schema property asks for (best effort)."""
    if value == "":
        return None
    types = spec.get("type", "string")
    types = types if isinstance(types, list) else [types]
    if "integer" in types:
        try:
            f = float(value)
            return int(f) if f.is_integer() else f
        except ValueError:
            return value
    if "number" in types:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _clinical_rows(raw: pd.DataFrame) -> list[dict[str, Any]]:
    schema = load_schema("clinical")
    props = {}
    for name, spec in schema["properties"].items():
        ref = spec.get("$ref", "")
        props[name] = (
            schema["$defs"][ref.rsplit("/", 1)[-1]] if ref.startswith("#/$defs/") else spec
        )
    rows = []
    for rec in raw.to_dict(orient="records"):
        rows.append({k: _typed_value(v, props.get(k, {})) for k, v in rec.items()})
    return rows


def _resolve(base: Path, cell: str) -> Path:
    p = Path(cell)
    return p if p.is_absolute() else (base / p)


def check_sheets(
    cohort_df: pd.DataFrame,
    clinical_df: pd.DataFrame,
    settings: Settings,
    *,
    base_dir: Path,
    check_files: bool = True,
) -> tuple[list[ImageRecord], pd.DataFrame, list[Problem]]:
    """Validate both sheets; return the image records, the typed clinical table and all problems.

    Columns of :data:`OPTIONAL_COLUMNS` that the sheet lacks are read as empty.

    Row numbers count data rows from 1 (the header is row 0), as a spreadsheet user sees them
    minus one.
    """
    from jsonschema import Draft202012Validator

    problems: list[Problem] = []
    absent = [c for c in OPTIONAL_COLUMNS if c not in cohort_df.columns]
    if absent:
        cohort_df = cohort_df.assign(**dict.fromkeys(absent, ""))
    missing_cols = [c for c in COHORT_COLUMNS if c not in cohort_df.columns]
    if missing_cols:
        problems.append(Problem(f"missing column(s) {missing_cols}", column=missing_cols[0]))
        return [], clinical_df, problems
    extra = [c for c in cohort_df.columns if c not in COHORT_COLUMNS]
    if extra:
        problems.append(Problem(f"unknown column(s) {extra}", column=extra[0]))

    validator = Draft202012Validator(load_schema("cohort"))
    records: list[ImageRecord] = []
    seen: dict[tuple[str, str], int] = {}
    patient_meta: dict[str, tuple[str, str, int]] = {}
    for i, rec in enumerate(cohort_df[list(COHORT_COLUMNS)].to_dict(orient="records"), start=1):
        row_problems, usable = _cohort_row_problems(
            i, rec, validator, settings, seen, patient_meta
        )
        problems.extend(row_problems)
        if not usable:
            continue
        record, file_problems = _image_record(i, rec, base_dir, check_files=check_files)
        problems.extend(file_problems)
        records.append(record)

    problems.extend(_reference_phase_problems(records, patient_meta, settings))
    clinical, clinical_problems = _check_clinical(clinical_df, patient_meta)
    problems.extend(clinical_problems)
    return records, clinical, problems


def _cohort_row_problems(
    i: int,
    rec: dict[str, str],
    validator: Any,
    settings: Settings,
    seen: dict[tuple[str, str], int],
    patient_meta: dict[str, tuple[str, str, int]],
) -> tuple[list[Problem], bool]:
    """The problems of cohort-sheet row ``i`` (schema, names, duplicates) and whether its image
    can be used. A usable row is registered in ``seen`` (patient x phase -> row) and
    ``patient_meta`` (patient -> center, modality, first row)."""
    patient, phase = rec["patient"] or None, rec["phase"] or None
    schema_problems = [
        Problem(
            e.message,
            row=i,
            patient=patient,
            phase=phase,
            column=".".join(map(str, e.path)) or None,
        )
        for e in validator.iter_errors(rec)
    ]
    if schema_problems:
        return schema_problems, False
    problems, usable = _name_problems(i, rec, settings)
    if not usable:
        return problems, False
    identity = _identity_problem(i, rec, seen, patient_meta)
    if identity is not None:
        return [*problems, identity], False
    return problems, True


def _name_problems(i: int, rec: dict[str, str], settings: Settings) -> tuple[list[Problem], bool]:
    """Reserved center name, unconfigured modality or phase of row ``i``; whether the row can
    still be used (a reserved center name alone does not stop it)."""
    patient, phase = rec["patient"] or None, rec["phase"] or None
    center, modality = rec["center"], rec["modality"]
    problems = []
    if center in RESERVED_NAMES:
        problems.append(
            Problem(
                f"center name {center!r} is reserved", row=i, patient=patient, column="center"
            )
        )
    if modality not in settings.modalities:
        problems.append(
            Problem(
                f"modality {modality!r} is not configured",
                row=i,
                patient=patient,
                column="modality",
            )
        )
        return problems, False
    mod = settings.modalities[modality]
    if phase not in mod.phases:
        problems.append(
            Problem(
                f"unknown phase {phase!r} for {modality} (configured: {', '.join(mod.phases)})",
                row=i,
                patient=patient,
                phase=phase,
                column="phase",
            )
        )
        return problems, False
    return problems, True


def _identity_problem(
    i: int,
    rec: dict[str, str],
    seen: dict[tuple[str, str], int],
    patient_meta: dict[str, tuple[str, str, int]],
) -> Problem | None:
    """A duplicate patient x phase, or a patient id seen with another center or modality; else
    None, with row ``i`` registered in ``seen`` and ``patient_meta``."""
    patient, phase = rec["patient"] or None, rec["phase"] or None
    center, modality = rec["center"], rec["modality"]
    key = (rec["patient"], rec["phase"])
    if key in seen:
        return Problem(
            f"duplicate patient x phase (first at row {seen[key]})",
            row=i,
            patient=patient,
            phase=phase,
            column="patient",
        )
    seen[key] = i
    first = patient_meta.setdefault(rec["patient"], (center, modality, i))
    if first[:2] != (center, modality):
        return Problem(
            f"patient id used with center/modality {first[0]}/{first[1]} at row {first[2]} "
            f"and {center}/{modality} here: patient ids must be unique across the cohort",
            row=i,
            patient=patient,
            phase=phase,
            column="patient",
        )
    return None


def _image_record(
    i: int, rec: dict[str, str], base_dir: Path, *, check_files: bool
) -> tuple[ImageRecord, list[Problem]]:
    """The image record of row ``i`` (paths resolved against ``base_dir``) and a problem per
    file not found (when ``check_files``)."""
    patient, phase = rec["patient"] or None, rec["phase"] or None
    image = _resolve(base_dir, rec["image"])
    masks = {
        kind: _resolve(base_dir, rec[f"{kind}_mask"]) for kind in MASK_KINDS if rec[f"{kind}_mask"]
    }
    segments = {
        kind: rec[f"{kind}_segment"].strip()
        for kind in MASK_KINDS
        if rec[f"{kind}_segment"].strip()
    }
    series = rec["series"].strip() or None
    problems = _selection_problems(i, rec, image, masks, segments, series)
    if check_files:
        for column, path in [("image", image), *((f"{k}_mask", p) for k, p in masks.items())]:
            if not path.exists():
                problems.append(
                    Problem(
                        "file not found",
                        row=i,
                        patient=patient,
                        phase=phase,
                        column=column,
                        file=str(path),
                    )
                )
    record = ImageRecord(
        row=i,
        center=rec["center"],
        patient=rec["patient"],
        phase=rec["phase"],
        modality=rec["modality"],
        image=image,
        masks=masks,
        series=series,
        segments=segments,
    )
    return record, problems


def _selection_problems(
    i: int,
    rec: dict[str, str],
    image: Path,
    masks: dict[str, Path],
    segments: dict[str, str],
    series: str | None,
) -> list[Problem]:
    """A selection column filled for a file it cannot select in: ``{kind}_segment`` without its
    mask, a segment list with an empty part, ``series`` for an image that is a file."""
    patient, phase = rec["patient"] or None, rec["phase"] or None
    problems = []
    for kind, selection in segments.items():
        column = f"{kind}_segment"
        if kind not in masks:
            problems.append(
                Problem(
                    f"{column} is {selection!r} but the row gives no {kind}_mask",
                    row=i,
                    patient=patient,
                    phase=phase,
                    column=column,
                )
            )
        elif any(not part.strip() for part in selection.split("+")):
            problems.append(
                Problem(
                    f"{column} {selection!r} has an empty part: use a label value, a segment "
                    "name, or several joined by '+' (e.g. 1+2, liver+tumor)",
                    row=i,
                    patient=patient,
                    phase=phase,
                    column=column,
                )
            )
    if series is not None and image.is_file():
        problems.append(
            Problem(
                f"series is {series!r} but the image is a file, not a folder of DICOM series",
                row=i,
                patient=patient,
                phase=phase,
                column="series",
                file=str(image),
            )
        )
    return problems


def _reference_phase_problems(
    records: list[ImageRecord],
    patient_meta: dict[str, tuple[str, str, int]],
    settings: Settings,
) -> list[Problem]:
    """Every patient needs its modality's reference phase (everything is registered onto it)."""
    phases_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        phases_of[r.patient].add(r.phase)
    problems = []
    for patient, (_center, modality, row) in patient_meta.items():
        mod = settings.modalities.get(modality)
        if (
            mod is not None
            and patient in phases_of
            and mod.reference_phase not in phases_of[patient]
        ):
            problems.append(
                Problem(
                    f"reference phase {mod.reference_phase!r} of {modality} is missing "
                    "(every phase is registered onto it)",
                    row=row,
                    patient=patient,
                    column="phase",
                )
            )
    return problems


def _check_clinical(
    clinical_df: pd.DataFrame, patient_meta: dict[str, tuple[str, str, int]]
) -> tuple[pd.DataFrame, list[Problem]]:
    from jsonschema import Draft202012Validator

    problems: list[Problem] = []
    if "patient" not in clinical_df.columns:
        return clinical_df, [
            Problem("missing column 'patient'", column="patient", sheet="clinical")
        ]
    rows = _clinical_rows(clinical_df)
    validator = Draft202012Validator(load_schema("clinical"))
    seen: dict[str, int] = {}
    for i, rec in enumerate(rows, start=1):
        patient = rec.get("patient") or None
        for e in validator.iter_errors(rec):
            problems.append(
                Problem(
                    e.message,
                    row=i,
                    patient=patient,
                    column=".".join(map(str, e.path)) or None,
                    sheet="clinical",
                )
            )
        if patient is None:
            continue
        if patient in seen:
            problems.append(
                Problem(
                    f"duplicate patient (first at row {seen[patient]})",
                    row=i,
                    patient=patient,
                    column="patient",
                    sheet="clinical",
                )
            )
            continue
        seen[patient] = i
        meta = patient_meta.get(patient)
        if meta is None:
            problems.append(
                Problem(
                    "clinical row without images in the cohort sheet",
                    row=i,
                    patient=patient,
                    column="patient",
                    sheet="clinical",
                )
            )
        elif rec.get("center") is not None and rec["center"] != meta[0]:
            problems.append(
                Problem(
                    f"center {rec['center']!r} differs from the cohort sheet's {meta[0]!r}",
                    row=i,
                    patient=patient,
                    column="center",
                    sheet="clinical",
                )
            )
    for patient, (_c, _m, row) in patient_meta.items():
        if patient not in seen:
            problems.append(
                Problem("images without a clinical row", row=row, patient=patient, column="patient")
            )
    typed = pd.DataFrame(rows, columns=list(clinical_df.columns))
    return typed, problems


def load_cohort(settings: Settings, *, check_files: bool = True) -> Cohort:
    """Read and check both sheets named by ``settings``.

    With ``settings.sheet_errors == "error"`` any problem raises :class:`SheetError` listing all of
    them. With ``"exclude"`` the patients concerned are left out (a warning per patient) and only
    problems that cannot be pinned on a patient raise.
    """
    cohort_path = Path(settings.cohort)
    cohort_df = read_cohort_sheet(cohort_path)
    clinical_df = read_clinical(settings.clinical)
    records, clinical, problems = check_sheets(
        cohort_df,
        clinical_df,
        settings,
        base_dir=cohort_path.resolve().parent,
        check_files=check_files,
    )
    excluded: dict[str, list[str]] = defaultdict(list)
    if problems:
        if settings.sheet_errors == "error" or any(p.patient is None for p in problems):
            raise SheetError(problems)
        for p in problems:
            excluded[str(p.patient)].append(str(p))
        for patient, reasons in excluded.items():
            log.warning("excluding patient %s: %s", patient, "; ".join(reasons))
        records = [r for r in records if r.patient not in excluded]
    if "patient" in clinical.columns:
        clinical = clinical[clinical["patient"].isin({r.patient for r in records})]
    return Cohort(
        records=records, clinical=clinical.reset_index(drop=True), excluded=dict(excluded)
    )
