"""hccrad.plan.CohortPlan: who gets what, without Snakemake."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from hccrad.config import load_settings, project_file
from hccrad.errors import ConfigError
from hccrad.plan import CohortPlan, segmentation_holdout
from hccrad.sheets import Cohort, ImageRecord
from hccrad.studies import load_studies

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = load_settings(ROOT / "config" / "config.yaml")
STUDIES = load_studies([project_file(f) for f in SETTINGS.studies], check_estimators=False)


def record(patient: str, phase: str, modality: str = "MR", center: str = "A", **masks: bool):
    """A sheet row; ``tumor=True`` etc. give that mask."""
    return ImageRecord(
        row=0,
        center=center,
        patient=patient,
        phase=phase,
        modality=modality,
        image=Path(f"/img/{patient}/{phase}.nii.gz"),
        masks={k: Path(f"/m/{patient}/{phase}_{k}.nii.gz") for k, given in masks.items() if given},
    )


def plan_of(records: list[ImageRecord], settings=SETTINGS, studies=STUDIES) -> CohortPlan:
    return CohortPlan(settings, Cohort(records=records, clinical=pd.DataFrame()), studies)


# MR patients: P1 all masks on AP (reference) only; P2 tumor on PVP only (no liver: segmented);
# P3 no mask at all; P4 AP+HBP only (no PVP: no habitats); C1 a CT patient with both readers.
RECORDS = [
    record("P1", "AP", tumor=True, liver=True),
    record("P1", "PVP"),
    record("P2", "AP"),
    record("P2", "PVP", tumor=True),
    record("P3", "AP"),
    record("P3", "PVP"),
    record("P4", "AP", tumor=True, liver=True),
    record("P4", "HBP"),
    record("C1", "AP", "CT", "B", tumor=True, liver=True, reader2=True),
    record("C1", "PVP", "CT", "B"),
]


@pytest.fixture(scope="module")
def plan() -> CohortPlan:
    return plan_of(RECORDS)


def test_mask_sources_are_own_else_reference_phase(plan: CohortPlan) -> None:
    assert plan.mask_source_phase("P1", "AP", "tumor") == "AP"
    assert plan.mask_source_phase("P1", "PVP", "tumor") == "AP"  # carried from the reference
    assert plan.mask_source_phase("P2", "PVP", "tumor") == "PVP"
    assert plan.mask_source_phase("P2", "AP", "tumor") is None  # PVP is not the reference
    assert plan.mask_source_phase("P3", "PVP", "liver") is None


def test_the_unet_predicts_what_no_sheet_gives(plan: CohortPlan) -> None:
    assert plan.predicted_kinds("P1") == ()
    assert plan.predicted_kinds("P2") == ("tumor", "liver")  # no tumor on the reference phase
    assert plan.predicted_kinds("P3") == ("tumor", "liver")
    assert plan.segmented_patients == ("P2", "P3")
    assert plan.predicted_mask("P2", "liver") == "results/A/P2/AP/segment/liver.nii.gz"
    seg = plan.segmentation
    assert seg.predict == ("P2", "P3")
    assert sorted(seg.train + seg.held_out) == ["C1", "P1", "P4"]
    assert not set(seg.train) & set(seg.held_out)


def test_without_segmentation_nothing_is_predicted() -> None:
    off = dataclasses.replace(
        SETTINGS, segmentation=dataclasses.replace(SETTINGS.segmentation, enabled=False)
    )
    plan = plan_of(RECORDS, settings=off)
    assert plan.segmented_patients == ()
    assert plan.segmentation.train == plan.segmentation.held_out == ()
    # P3 has no tumor anywhere, P2 only on PVP
    assert plan.radiomics_patients == ("P1", "P2", "P4", "C1")
    assert not plan.has_tumor("P3", "AP") and plan.has_tumor("P2", "PVP")


def test_holdout_is_a_stable_per_patient_draw() -> None:
    patients = [f"X{i:03d}" for i in range(400)]

    def held_out(names: list[str]) -> set[str]:
        records = [record(p, "AP", tumor=True, liver=True) for p in names]
        return set(plan_of(records, studies={}).segmentation.held_out)

    held = held_out(patients)
    assert held == {p for p in patients if segmentation_holdout(p, SETTINGS.seed, 0.2)}
    assert 0.15 < len(held) / len(patients) < 0.25
    # adding patients moves nobody: the draw depends on the patient alone
    assert held_out([*patients, "NEW1", "NEW2"]) - {"NEW1", "NEW2"} == held


def test_patient_sets(plan: CohortPlan) -> None:
    assert plan.radiomics_patients == ("P1", "P2", "P3", "P4", "C1")  # P3: predicted tumor
    assert plan.reader2_patients == ("C1",)
    # habitats: MR, PVP acquired, a tumor on PVP (carried, own or predicted); not P4 (no PVP)
    assert plan.habitat_patients == ("P1", "P2", "P3")
    assert plan.raw_inputs("C1") == {
        "image_AP": "/img/C1/AP.nii.gz",
        "tumor_AP": "/m/C1/AP_tumor.nii.gz",
        "liver_AP": "/m/C1/AP_liver.nii.gz",
        "reader2_AP": "/m/C1/AP_reader2.nii.gz",
        "image_PVP": "/img/C1/PVP.nii.gz",
    }


def test_deep_inputs_follow_modality_phases_and_tumor(plan: CohortPlan) -> None:
    names = {p: [s.name for s in plan.patient_deep_inputs(p)] for p in ("P1", "P2", "P4", "C1")}
    assert names["C1"] == ["mil_slices"]
    # P4 has no PVP (no habitat_slices / habitat_tumor_cube) and no DP (no er_stack); P2's AP
    # tumor is predicted
    assert names["P4"] == ["mvi_tumor_cube", "mvi_ring_cube"]
    assert names["P1"] == [
        "habitat_slices",
        "habitat_tumor_cube",
        "mvi_tumor_cube",
        "mvi_ring_cube",
    ]
    assert [s.name for s in plan.habitat_deep_inputs("P1")] == [
        "habitat_subregion_slices",
        "habitat_subregion_cubes",
    ]
    assert plan.habitat_deep_inputs("P4") == []
    sub = SETTINGS.deep_inputs["habitat_subregion_slices"]
    assert plan.deep_input_patients(sub) == ["P1", "P2", "P3"]
    off = dataclasses.replace(SETTINGS, deep=dataclasses.replace(SETTINGS.deep, enabled=False))
    assert plan_of(RECORDS, settings=off).patient_deep_inputs("P1") == []


def test_studies_run_or_are_skipped_with_the_reason(plan: CohortPlan) -> None:
    assert plan.study_patients("mil_er") == {"C1": "CT"}
    assert set(plan.study_patients("habitat_grade")) == {"P1", "P2", "P3", "P4"}
    assert plan.skipped_studies == {}
    mr_only = plan_of([r for r in RECORDS if r.modality == "MR"])
    assert mr_only.skipped_studies == {
        "mil_er": "no CT patient in the cohort",
        "proliferative_tace": "no CT patient in the cohort",
        # its ICC filter: the MR patients have no second reader
        "er_fusion": "its ICC filter needs second-reader masks and the cohort has none",
    }
    assert mr_only.runnable_studies == ["habitat_grade", "mvi_biregional"]
    no_pvp = plan_of([r for r in RECORDS if r.phase != "PVP"])
    assert no_pvp.skipped_studies["habitat_grade"] == (
        "it needs habitat features and no patient gets habitats"
    )
    no_reader2 = plan_of([dataclasses.replace(r, masks={}) for r in RECORDS])
    icc = [s for s, spec in STUDIES.items() if "reader_icc" in no_reader2.study_tables(s)]
    assert icc and all("second-reader masks" in no_reader2.skipped_studies[s] for s in icc)


def test_deep_models_of_the_studies(plan: CohortPlan) -> None:
    inp = plan.deep_model_input("habitat_grade", "whole_25d")
    assert inp.spec.name == "habitat_slices" and inp.phase == "PVP"
    assert inp.key == "deep/habitat_slices/PVP"
    assert plan.deep_model_patients("habitat_grade", "whole_25d") == ["P1", "P2", "P3"]
    sub = plan.deep_model_input("habitat_grade", "habitat_25d")
    assert sub.spec.per_subregion
    stacked = [
        (s, m)
        for s in plan.runnable_studies
        for m in plan.deep_models(s)
        if plan.deep_model_input(s, m).phase is None
    ]
    assert stacked and all(plan.deep_model_input(s, m).key.count("/") == 1 for s, m in stacked)
    assert ("mil_er", "mil_slices") in plan.trained_deep_models()
    with pytest.raises(ValueError, match="no deep model 'nope'"):
        plan.deep_model_spec("mil_er", "nope")


def test_summary_counts(plan: CohortPlan) -> None:
    summary = plan.summary()
    assert summary["patients"] == 5 and summary["images"] == 10
    assert summary["segmented by the U-Net"] == 2
    assert summary["preprocessed in one job"] == 3
    assert summary["habitats"] == 3
    assert summary["deep inputs"]["mil_slices"] == 1
    assert summary["skipped studies"] == {}


def test_pretrained_weights_are_an_input_of_the_training(tmp_path: Path) -> None:
    """A study model that starts from a weights file names it (its training job's input); a
    missing file is a configuration error that names the study, the model and the path."""
    plan = plan_of(RECORDS)
    assert plan.deep_model_weights("mil_er", "mil_slices") is None  # random initialisation
    weights = tmp_path / "imagenet_resnet18.pt"
    weights.write_bytes(b"0")
    specs = dict(STUDIES)
    mil = specs["mil_er"]
    raw = {**mil.deep_models["mil_slices"].raw}
    raw["train"] = {**raw.get("train", {}), "pretrained": str(weights)}
    models = {**mil.deep_models, "mil_slices": dataclasses.replace(mil.deep_models["mil_slices"],
                                                                  raw=raw)}  # fmt: skip
    specs["mil_er"] = dataclasses.replace(mil, deep_models=models)
    assert plan_of(RECORDS, studies=specs).deep_model_weights("mil_er", "mil_slices") == str(
        weights
    )
    raw["train"]["pretrained"] = str(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match=r"study mil_er: deep_models\.mil_slices\.train\."
                       r"pretrained: pretrained weights file .*missing\.pt not found"):  # fmt: skip
        plan_of(RECORDS, studies=specs).deep_model_weights("mil_er", "mil_slices")
