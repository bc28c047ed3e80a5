"""A cohort sheet from a DICOM tree (``hccrad sheet``; docs/dicom_sheet.md).

:func:`build_sheet` reads the headers of every file under a folder (any layout, with or without
``.dcm``), groups the CT and MR image series by patient and study, gives each usable series a
phase from its SeriesDescription or, where the description does not decide, from its acquisition
time (rules in a phase map, :func:`load_phase_map`), attaches DICOM SEG and RTSTRUCT objects to
the series they reference, and writes the cohort sheet plus a report that says what happened to
every series, object and non-DICOM file.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.config import RESERVED_NAMES
from hccrad.dicomsheet.masks import attach_objects, segment_cell
from hccrad.dicomsheet.phasemap import (
    MODALITY_PHASES,
    REFERENCE_PHASE,
    TEMPORAL_ORDER,
    PhaseMap,
    default_phase_map_text,
    load_phase_map,
)
from hccrad.dicomsheet.phases import assign_study
from hccrad.dicomsheet.scan import MaskObject, Scan, Series, scan_tree
from hccrad.errors import InputError
from hccrad.fileio import write_tsv
from hccrad.sheets import BASE_COLUMNS

__all__ = [
    "MODALITY_PHASES",
    "REFERENCE_PHASE",
    "REPORT_COLUMNS",
    "SHEET_COLUMNS",
    "TEMPORAL_ORDER",
    "PhaseMap",
    "SheetResult",
    "build_sheet",
    "default_phase_map_text",
    "load_phase_map",
    "scan_tree",
    "valid_id",
]

log = logging.getLogger(__name__)

#: Columns of the written sheet: the cohort sheet's required ones (reader-2 masks left empty)
#: and the selections it fills.
SHEET_COLUMNS = (
    *(c for c in BASE_COLUMNS if c != "reader1_repeat_mask"),
    "series",
    "tumor_segment",
    "liver_segment",
)
REPORT_COLUMNS = (
    "item",
    "dicom_patient_id",
    "patient",
    "modality",
    "study",
    "series",
    "series_number",
    "description",
    "images",
    "path",
    "time",
    "outcome",
    "phase",
    "reason",
)
_VALID_ID = re.compile(r"^[A-Za-z0-9]+$")


def valid_id(text: str) -> str:
    """``text`` with everything but letters and digits removed (``HCC_048`` -> ``HCC048``)."""
    return re.sub(r"[^A-Za-z0-9]", "", text)


@dataclass
class SheetResult:
    """What :func:`build_sheet` wrote."""

    sheet: pd.DataFrame
    report: pd.DataFrame
    sheet_path: Path
    report_path: Path
    patient_ids: dict[str, str]

    def summary(self) -> str:
        """A few lines for the terminal."""
        rep = self.report
        series = rep[rep["item"] == "series"]
        objects = rep[rep["item"].isin(["SEG", "RTSTRUCT"])]
        n_patients = self.sheet["patient"].nunique()
        by_mod = self.sheet.drop_duplicates("patient")["modality"].value_counts()
        mods = ", ".join(f"{m} {by_mod[m]}" for m in sorted(by_mod.index)) or "none"
        skipped = series[series["outcome"] == "skipped"]
        lines = [
            f"wrote {len(self.sheet)} rows ({n_patients} patients: {mods}) to {self.sheet_path}",
            f"series: {len(series)} found, {len(series) - len(skipped)} placed, "
            f"{len(skipped)} skipped; SEG/RTSTRUCT: {len(objects)} found, "
            f"{int((objects['outcome'] == 'used').sum())} used; "
            f"other files: {int((rep['item'] == 'file').sum())}",
        ]
        changed = {k: v for k, v in self.patient_ids.items() if k != v}
        if changed:
            lines.append(
                "patient ids changed: " + ", ".join(f"{k} -> {v}" for k, v in changed.items())
            )
        lines.append(f"every series and object with what happened to it: {self.report_path}")
        return "\n".join(lines)


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def _center(center: str | None, placed: list[Series], patient: str) -> str:
    if center is not None:
        return center
    names = Counter(valid_id(s.institution) for s in placed if valid_id(s.institution))
    if not names:
        raise InputError(
            "no center: the series carry no InstitutionName; pass --center NAME",
            patient=patient,
            file=placed[0].files[0].parent,
        )
    name = names.most_common(1)[0][0]
    if name in RESERVED_NAMES:
        raise InputError(
            f"center {name!r} (from InstitutionName) is a reserved name; pass --center NAME",
            patient=patient,
            file=placed[0].files[0].parent,
        )
    return name


def _patient_ids(series: Iterable[Series], objects: Iterable[MaskObject]) -> dict[str, str]:
    """DICOM PatientID -> sheet id; refuses two PatientIDs that become the same id."""
    ids: dict[str, str] = {}
    by_new: dict[str, str] = {}
    for pid in sorted({s.patient_id for s in series} | {o.patient_id for o in objects}):
        new = valid_id(pid)
        if not new:
            continue
        if new in by_new:
            raise InputError(
                f"PatientIDs {by_new[new]!r} and {pid!r} both become {new!r} (letters and digits "
                "only): rename one in the DICOM headers",
                patient=new,
            )
        by_new[new] = pid
        ids[pid] = new
    return ids


def build_sheet(
    root: str | Path,
    out: str | Path,
    *,
    phase_map: PhaseMap | str | Path | None = None,
    center: str | None = None,
    min_slices: int = 5,
    min_matrix: int = 16,
) -> SheetResult:
    """Scan ``root`` and write the cohort sheet ``out`` and its report ``<out stem>.report.tsv``.

    Args:
        root: top folder of the DICOM tree (any layout).
        out: the sheet to write; paths in it are relative to its folder.
        phase_map: a :class:`PhaseMap`, a YAML file, or None for the default.
        center: the center of every patient; None: each patient's InstitutionName made valid.
        min_slices: series with fewer images are skipped as tiny.
        min_matrix: series with fewer rows or columns are skipped as tiny.

    Raises:
        InputError: bad root or phase map, an invalid ``center``, a patient without a center, two
            PatientIDs that become the same sheet id.
    """
    out = Path(out)
    pmap = phase_map if isinstance(phase_map, PhaseMap) else load_phase_map(phase_map)
    if center is not None and (not _VALID_ID.match(center) or center in RESERVED_NAMES):
        raise InputError(
            f"center {center!r} must be letters and digits only and not one of "
            f"{sorted(RESERVED_NAMES)}"
        )
    scan = scan_tree(root)
    ids = _patient_ids(scan.series.values(), scan.objects)
    chosen = _choose_studies(_place_series(scan, ids, pmap, min_slices, min_matrix))
    attached = attach_objects(scan, pmap)
    base = out.resolve().parent
    rows = []
    for (patient, _study, modality), group in sorted(chosen.items()):
        placed = [s for s in group if s.outcome == "placed"]
        site = _center(center, placed, patient)
        for s in sorted(placed, key=lambda s: MODALITY_PHASES[modality].index(s.phase)):
            folder = s.files[0].parent
            row = dict.fromkeys(SHEET_COLUMNS, "")
            row.update(
                center=site,
                patient=patient,
                phase=s.phase,
                modality=modality,
                image=_relative(folder, base),
                series=s.uid if len(scan.folder_series.get(folder, ())) > 1 else "",
            )
            for kind, (obj, segments) in attached.get(s.uid, {}).items():
                row[f"{kind}_mask"] = _relative(obj.path, base)
                row[f"{kind}_segment"] = segment_cell(obj, segments)
            rows.append(row)
    sheet = pd.DataFrame(rows, columns=list(SHEET_COLUMNS))
    report = _report(scan, ids, base)
    report_path = out.with_name(f"{out.stem}.report.tsv")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_tsv(sheet, out)
    write_tsv(report, report_path)
    log.info("wrote %s (%d rows) and %s", out, len(sheet), report_path)
    return SheetResult(sheet, report, out, report_path, ids)


def _place_series(
    scan: Scan, ids: dict[str, str], pmap: PhaseMap, min_slices: int, min_matrix: int
) -> dict[tuple[str, str, str], list[Series]]:
    """Group the image series by (sheet patient id, study, modality) and give each its outcome
    and phase; a study without the reference phase places nothing."""
    groups: dict[tuple[str, str, str], list[Series]] = defaultdict(list)
    for s in scan.series.values():
        if s.patient_id not in ids:
            s.outcome, s.reason = "skipped", f"PatientID {s.patient_id!r} has no letter or digit"
        elif s.modality not in MODALITY_PHASES:
            s.outcome = "skipped"
            s.reason = f"not a CT or MR image series (modality {s.modality or 'missing'})"
        else:
            groups[(ids[s.patient_id], s.study, s.modality)].append(s)
    for (_pid, _study, modality), group in groups.items():
        assign_study(group, modality, pmap, min_slices, min_matrix)
        placed = [s for s in group if s.outcome == "placed"]
        if placed and not any(s.phase == REFERENCE_PHASE for s in placed):
            for s in placed:
                s.outcome, s.phase = "skipped", ""
                s.reason = (
                    f"study has no {REFERENCE_PHASE} series (the reference phase); {s.reason}"
                )
    return groups


def _choose_studies(
    groups: dict[tuple[str, str, str], list[Series]],
) -> dict[tuple[str, str, str], list[Series]]:
    """One study per patient: the one with most placed phases (then the earliest, then by UID);
    the placed series of the others are skipped with the reason."""
    by_patient: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for key, group in groups.items():
        if any(s.outcome == "placed" for s in group):
            by_patient[key[0]].append(key)

    def rank(key: tuple[str, str, str]) -> tuple[Any, ...]:
        placed = [s for s in groups[key] if s.outcome == "placed"]
        times = [s.time for s in placed if s.time is not None]
        return (-len(placed), min(times) if times else datetime.max, key[1], key[2])

    chosen = {}
    for keys in by_patient.values():
        keys.sort(key=rank)
        chosen[keys[0]] = groups[keys[0]]
        for other in keys[1:]:
            for s in groups[other]:
                if s.outcome == "placed":
                    s.outcome, s.phase = "skipped", ""
                    s.reason = (
                        f"patient's other study {keys[0][1]} ({keys[0][2]}) is used; {s.reason}"
                    )
    return chosen


_OUTCOME_RANK = {"placed": 0, "used": 0, "skipped": 1}


def _report(scan: Scan, ids: dict[str, str], base: Path) -> pd.DataFrame:
    """One row per series, object and non-DICOM file, in a fixed order."""
    rows = []
    for s in scan.series.values():
        folders = sorted(s.folders)
        rows.append(
            {
                "item": "series",
                "dicom_patient_id": s.patient_id,
                "patient": ids.get(s.patient_id, ""),
                "modality": s.modality,
                "study": s.study,
                "series": s.uid,
                "series_number": "" if s.number is None else str(s.number),
                "description": s.description,
                "images": str(s.images),
                "path": ", ".join(_relative(f, base) for f in folders),
                "time": s.time.isoformat() if s.time is not None else "",
                "outcome": s.outcome,
                "phase": s.phase,
                "reason": s.reason,
            }
        )
    for o in scan.objects:
        rows.append(
            {
                "item": o.kind,
                "dicom_patient_id": o.patient_id,
                "patient": ids.get(o.patient_id, ""),
                "modality": o.kind,
                "study": o.study,
                "series": o.uid,
                "series_number": "" if o.number is None else str(o.number),
                "description": o.description,
                "images": str(len(o.segments)),
                "path": _relative(o.path, base),
                "time": "",
                "outcome": o.outcome,
                "phase": o.phase,
                "reason": o.reason,
            }
        )
    for path, reason in scan.other_files:
        row = dict.fromkeys(REPORT_COLUMNS, "")
        row.update(item="file", path=_relative(path, base), outcome="skipped", reason=reason)
        rows.append(row)

    def key(r: dict[str, str]) -> tuple[Any, ...]:
        phase = r["phase"]
        return (
            r["item"] == "file",
            r["patient"] or "~",
            r["dicom_patient_id"],
            r["study"],
            r["item"] != "series",
            _OUTCOME_RANK.get(r["outcome"], 2),
            MODALITY_PHASES["MR"].index(phase) if phase in MODALITY_PHASES["MR"] else 9,
            int(r["series_number"]) if r["series_number"] else 10**9,
            r["series"],
            r["path"],
        )

    rows.sort(key=key)
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
