"""Cohort sheet and clinical table validation: every problem names row, patient, column, file."""

from pathlib import Path

import pandas as pd
import pytest

from hccrad.config import settings_from_config
from hccrad.sheets import COHORT_COLUMNS, SheetError, load_cohort

CLINICAL_COLUMNS = ["patient", "center", "modality", "age", "sex", "afp", "mvi"]


def _write_cohort(tmp_path: Path, rows, clinical_rows, *, touch=True):
    for r in rows:
        for col in ("image", "tumor_mask", "liver_mask", "reader2_mask", "reader1_repeat_mask"):
            if r.get(col) and touch:
                p = tmp_path / r[col]
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
    full = [{c: r.get(c, "") for c in COHORT_COLUMNS} for r in rows]
    pd.DataFrame(full, columns=list(COHORT_COLUMNS)).to_csv(
        tmp_path / "cohort.tsv", sep="\t", index=False
    )
    pd.DataFrame(clinical_rows, columns=CLINICAL_COLUMNS).to_csv(
        tmp_path / "clinical.tsv", sep="\t", index=False
    )
    return settings_from_config(
        {"cohort": str(tmp_path / "cohort.tsv"), "clinical": str(tmp_path / "clinical.tsv")}
    )


def _mr(patient, phase, center="A", **kw):
    row = {
        "center": center,
        "patient": patient,
        "phase": phase,
        "modality": "MR",
        "image": f"img/{patient}_{phase}.nii.gz",
        "tumor_mask": f"msk/{patient}_{phase}_t.nii.gz",
        "liver_mask": f"msk/{patient}_{phase}_l.nii.gz",
    }
    row.update(kw)
    return row


def _clin(patient, center="A", **kw):
    row = {
        "patient": patient,
        "center": center,
        "modality": "MR",
        "age": "60",
        "sex": "M",
        "afp": "12.5",
        "mvi": "1",
    }
    row.update(kw)
    return row


GOOD = [_mr("P1", ph) for ph in ("AP", "PVP")] + [_mr("P2", "AP", center="B", tumor_mask="")]


def test_valid_sheets_load(tmp_path):
    s = _write_cohort(tmp_path, GOOD, [_clin("P1"), _clin("P2", center="B")])
    cohort = load_cohort(s)
    assert cohort.patients == ["P1", "P2"]
    assert cohort.phases("P1") == ["AP", "PVP"]
    assert cohort.center("P2") == "B"
    rec = cohort.record("P1", "PVP")
    assert rec.image == tmp_path / "img/P1_PVP.nii.gz"  # relative to the sheet's folder
    assert rec.mask("tumor") == tmp_path / "msk/P1_PVP_t.nii.gz"
    assert cohort.record("P2", "AP").mask("tumor") is None
    assert cohort.clinical.loc[0, "age"] == 60 and cohort.clinical.loc[0, "afp"] == 12.5


def _problems(tmp_path, rows, clinical, **kw):
    s = _write_cohort(tmp_path, rows, clinical, **kw)
    with pytest.raises(SheetError) as info:
        load_cohort(s)
    return info.value


def test_duplicate_patient_phase(tmp_path):
    err = _problems(tmp_path, [*GOOD, _mr("P1", "AP")], [_clin("P1"), _clin("P2", center="B")])
    assert "row 4, patient P1, phase AP, column 'patient'" in str(err)
    assert "duplicate patient x phase (first at row 1)" in str(err)


def test_unknown_phase(tmp_path):
    err = _problems(tmp_path, [*GOOD, _mr("P1", "T2W")], [_clin("P1"), _clin("P2", center="B")])
    assert "row 4, patient P1, phase T2W, column 'phase'" in str(err)
    assert "unknown phase 'T2W' for MR" in str(err)


def test_missing_file_names_row_column_and_path(tmp_path):
    s = _write_cohort(tmp_path, GOOD, [_clin("P1"), _clin("P2", center="B")])
    (tmp_path / "msk/P1_PVP_l.nii.gz").unlink()
    with pytest.raises(SheetError) as info:
        load_cohort(s)
    msg = str(info.value)
    assert "row 2, patient P1, phase PVP, column 'liver_mask'" in msg
    assert str(tmp_path / "msk/P1_PVP_l.nii.gz") in msg and "file not found" in msg


def test_clinical_row_without_images_and_images_without_clinical(tmp_path):
    err = _problems(tmp_path, GOOD, [_clin("P1"), _clin("P9")])
    msg = str(err)
    assert "row 2, patient P9, column 'patient'" in msg
    assert "clinical row without images" in msg
    assert "patient P2" in msg and "images without a clinical row" in msg


def test_duplicate_clinical_patient_and_bad_value(tmp_path):
    err = _problems(tmp_path, GOOD, [_clin("P1"), _clin("P2", center="B"), _clin("P1", afp="high")])
    msg = str(err)
    assert "row 3, patient P1, column 'patient'" in msg and "duplicate patient" in msg
    assert "column 'afp'" in msg


def test_bad_identifier_and_modality(tmp_path):
    rows = [*GOOD, _mr("P-3", "AP"), _mr("P4", "AP", modality="PET")]
    err = _problems(tmp_path, rows, [_clin("P1"), _clin("P2", center="B"), _clin("P4")])
    msg = str(err)
    assert "row 4, patient P-3, phase AP, column 'patient'" in msg
    assert "row 5, patient P4, phase AP, column 'modality'" in msg


def test_missing_reference_phase(tmp_path):
    rows = [_mr("P1", "PVP")]
    err = _problems(tmp_path, rows, [_clin("P1")])
    assert "reference phase 'AP' of MR is missing" in str(err)


def test_patient_id_reused_across_centers(tmp_path):
    rows = [_mr("P1", "AP"), _mr("P1", "PVP", center="B")]
    err = _problems(tmp_path, rows, [_clin("P1")])
    assert "patient ids must be unique" in str(err)


def test_exclude_mode_keeps_the_rest(tmp_path):
    rows = [*GOOD, _mr("P3", "AP")]
    s = _write_cohort(tmp_path, rows, [_clin("P1"), _clin("P2", center="B"), _clin("P3")])
    (tmp_path / "img/P3_AP.nii.gz").unlink()
    s = settings_from_config(
        {"cohort": str(s.cohort), "clinical": str(s.clinical), "sheet_errors": "exclude"}
    )
    cohort = load_cohort(s)
    assert cohort.patients == ["P1", "P2"]
    assert "P3" in cohort.excluded and "file not found" in cohort.excluded["P3"][0]
    assert list(cohort.clinical["patient"]) == ["P1", "P2"]


def test_missing_column(tmp_path):
    _write_cohort(tmp_path, GOOD, [_clin("P1"), _clin("P2", center="B")])
    df = pd.read_csv(tmp_path / "cohort.tsv", sep="\t").drop(columns=["reader2_mask"])
    df.to_csv(tmp_path / "cohort.tsv", sep="\t", index=False)
    s = settings_from_config(
        {"cohort": str(tmp_path / "cohort.tsv"), "clinical": str(tmp_path / "clinical.tsv")}
    )
    with pytest.raises(SheetError, match="missing column"):
        load_cohort(s)


def test_reader1_repeat_mask_is_an_optional_column(tmp_path):
    """A sheet without reader1_repeat_mask (every sheet before the column) loads with no repeat
    outline; a sheet with it gives the repeat mask's path; a bad path names patient, phase and
    file."""
    clinical = [_clin("P1"), _clin("P2", center="B")]
    _write_cohort(tmp_path, GOOD, clinical)
    df = pd.read_csv(tmp_path / "cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    df.drop(columns=["reader1_repeat_mask"]).to_csv(tmp_path / "cohort.tsv", sep="\t", index=False)
    s = settings_from_config(
        {"cohort": str(tmp_path / "cohort.tsv"), "clinical": str(tmp_path / "clinical.tsv")}
    )
    old = load_cohort(s)
    assert old.patients == ["P1", "P2"]
    assert all(r.mask("reader1_repeat") is None for r in old.records)
    assert old.record("P1", "AP").mask("tumor") == tmp_path / "msk/P1_AP_t.nii.gz"

    rows = [
        _mr("P1", "AP", reader2_mask="msk/P1_AP_r2.nii.gz",
            reader1_repeat_mask="msk/P1_AP_r1b.nii.gz"),
        _mr("P1", "PVP"),
        GOOD[2],
    ]  # fmt: skip
    s = _write_cohort(tmp_path, rows, clinical)
    cohort = load_cohort(s)
    assert cohort.record("P1", "AP").mask("reader1_repeat") == tmp_path / "msk/P1_AP_r1b.nii.gz"
    assert cohort.record("P1", "PVP").mask("reader1_repeat") is None
    (tmp_path / "msk/P1_AP_r1b.nii.gz").unlink()
    with pytest.raises(SheetError) as info:
        load_cohort(s)
    msg = str(info.value)
    assert "row 1, patient P1, phase AP, column 'reader1_repeat_mask'" in msg
    assert str(tmp_path / "msk/P1_AP_r1b.nii.gz") in msg and "file not found" in msg


def test_selection_columns_are_optional_and_reach_the_records(tmp_path):
    """``series`` and ``{kind}_segment`` are optional columns: a sheet without them loads with no
    selection; filled, the records carry them; a selection the row cannot use (a segment for a
    mask the row does not give, an empty part in a '+' list, a series of an image that is a
    file) is a problem naming row, patient, phase and column."""
    clinical = [_clin("P1"), _clin("P2", center="B")]
    _write_cohort(tmp_path, GOOD, clinical)
    df = pd.read_csv(tmp_path / "cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    selection = ["series", "tumor_segment", "liver_segment", "reader2_segment"]
    df.drop(columns=[*selection, "reader1_repeat_segment"]).to_csv(
        tmp_path / "cohort.tsv", sep="\t", index=False
    )
    s = settings_from_config(
        {"cohort": str(tmp_path / "cohort.tsv"), "clinical": str(tmp_path / "clinical.tsv")}
    )
    old = load_cohort(s)
    assert all(r.series is None and r.segments == {} for r in old.records)

    (tmp_path / "dicom" / "P1_AP").mkdir(parents=True)
    rows = [
        _mr("P1", "AP", image="dicom/P1_AP", series="1.2.840.99.1", tumor_mask="seg/P1.dcm",
            tumor_segment=" Tumor ", liver_mask="seg/P1.dcm", liver_segment="liver+tumor"),
        _mr("P1", "PVP", tumor_segment="2"),
        GOOD[2],
    ]  # fmt: skip
    s = _write_cohort(tmp_path, rows, clinical)
    cohort = load_cohort(s)
    ap, pvp = cohort.record("P1", "AP"), cohort.record("P1", "PVP")
    assert ap.series == "1.2.840.99.1" and ap.image == tmp_path / "dicom/P1_AP"
    assert ap.segment("tumor") == "Tumor" and ap.segment("liver") == "liver+tumor"
    assert ap.mask("tumor") == ap.mask("liver") == tmp_path / "seg/P1.dcm"
    assert pvp.segments == {"tumor": "2"} and pvp.series is None

    bad = [
        _mr("P1", "AP", reader2_segment="Tumor"),
        _mr("P1", "PVP", tumor_segment="1++2", series="2.25.1"),
        GOOD[2],
    ]
    err = str(_problems(tmp_path, bad, clinical))
    assert "row 1, patient P1, phase AP, column 'reader2_segment'" in err
    assert "reader2_segment is 'Tumor' but the row gives no reader2_mask" in err
    assert "row 2, patient P1, phase PVP, column 'tumor_segment'" in err
    assert "has an empty part" in err
    assert "row 2, patient P1, phase PVP, column 'series'" in err
    assert "the image is a file, not a folder of DICOM series" in err
