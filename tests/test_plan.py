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


def plan_of(
    records: list[ImageRecord], settings=SETTINGS, studies=STUDIES, clinical=None
) -> CohortPlan:
    """The plan of ``records``; by default every patient has a value of every study's label."""
    if clinical is None:
        patients = list(dict.fromkeys(r.patient for r in records))
        labels = sorted({spec.label for spec in studies.values()})
        clinical = pd.DataFrame({"patient": patients, **dict.fromkeys(labels, "1")})
    return CohortPlan(settings, Cohort(records=records, clinical=clinical), studies)


# MR patients: P1 all masks on AP (reference) only, both readers and reader 1's repeat; P2 tumor
# on PVP only (no liver: segmented); P3 no mask at all; P4 AP+HBP only (no PVP: no habitats); C1
# a CT patient with both readers and reader 1's repeat.
RECORDS = [
    record("P1", "AP", tumor=True, liver=True, reader2=True, reader1_repeat=True),
    record("P1", "PVP"),
    record("P2", "AP"),
    record("P2", "PVP", tumor=True),
    record("P3", "AP"),
    record("P3", "PVP"),
    record("P4", "AP", tumor=True, liver=True),
    record("P4", "HBP"),
    record("C1", "AP", "CT", "B", tumor=True, liver=True, reader2=True, reader1_repeat=True),
    record("C1", "PVP", "CT", "B"),
]


@pytest.fixture(scope="module")
def plan() -> CohortPlan:
    return plan_of(RECORDS)


def test_mask_sources_are_own_else_reference_else_another_phase(plan: CohortPlan) -> None:
    assert plan.mask_source_phase("P1", "AP", "tumor") == "AP"
    assert plan.mask_source_phase("P1", "PVP", "tumor") == "AP"  # carried from the reference
    assert plan.mask_source_phase("P2", "PVP", "tumor") == "PVP"
    # drawn on PVP only: the reference phase gets it through PVP's registration
    assert plan.mask_source_phase("P2", "AP", "tumor") == "PVP"
    assert plan.mask_source_phase("P3", "PVP", "liver") is None


def test_a_mask_on_a_later_phase_stands_for_the_phases_without_one() -> None:
    """Own first, then the reference's, then the first phase in the modality's order (AP, PVP,
    HBP, DP) that has one, whatever the sheet's row order."""
    plan = plan_of(
        [
            record("Q1", "DP", tumor=True),
            record("Q1", "HBP", tumor=True, liver=True),
            record("Q1", "PVP"),
            record("Q1", "AP"),
        ]
    )
    assert [plan.mask_source_phase("Q1", ph, "tumor") for ph in ("AP", "PVP", "HBP", "DP")] == [
        "HBP",
        "HBP",
        "HBP",
        "DP",
    ]
    assert plan.mask_source_phase("Q1", "AP", "liver") == "HBP"
    assert plan.predicted_kinds("Q1") == ()  # nothing left for the U-Net
    assert all(plan.has_tumor("Q1", ph) for ph in ("AP", "PVP", "HBP", "DP"))


def test_the_unet_predicts_what_no_sheet_gives(plan: CohortPlan) -> None:
    assert plan.predicted_kinds("P1") == ()
    assert plan.predicted_kinds("P2") == ("liver",)  # the tumor is given on PVP
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
    assert plan.reader2_patients == ("P1", "C1")
    # habitats: MR, PVP acquired, a tumor on PVP (carried, own or predicted); not P4 (no PVP)
    assert plan.habitat_patients == ("P1", "P2", "P3")
    assert plan.raw_inputs("C1") == {
        "image_AP": "/img/C1/AP.nii.gz",
        "tumor_AP": "/m/C1/AP_tumor.nii.gz",
        "liver_AP": "/m/C1/AP_liver.nii.gz",
        "reader2_AP": "/m/C1/AP_reader2.nii.gz",
        "reader1_repeat_AP": "/m/C1/AP_reader1_repeat.nii.gz",
        "image_PVP": "/img/C1/PVP.nii.gz",
    }


def without_repeat(records: list[ImageRecord]) -> list[ImageRecord]:
    """The records as a sheet without the reader1_repeat_mask column reads them."""
    return [
        dataclasses.replace(r, masks={k: v for k, v in r.masks.items() if k != "reader1_repeat"})
        for r in records
    ]


def test_the_intra_observer_icc_only_with_repeat_outlines(plan: CohortPlan) -> None:
    """Reader 1's repeat outline is carried into registration (a raw input of the patient's
    job, extracted by its one radiomics job) and gives the studies whose ICC step has ``intra``
    the intra-observer table; a sheet without repeat outlines plans none of it and skips those
    studies with the reason, as a missing second reader does."""
    assert plan.reader1_repeat_patients == ("P1", "C1")
    assert plan.raw_inputs("P1")["reader1_repeat_AP"] == "/m/P1/AP_reader1_repeat.nii.gz"
    intra = {s for s in plan.runnable_studies if "reader_icc_intra" in plan.study_tables(s)}
    assert intra == {"er_fusion", "proliferative_tace"}  # their ICC steps have intra: true
    assert "reader_icc_intra" not in plan.study_tables("mil_er")  # inter-observer only
    tables = plan.study_tables("proliferative_tace")
    assert tables["reader_icc_intra"] == "results/cohort/radiomics/reader_icc_intra.parquet"
    assert tables["reader_icc"] == "results/cohort/radiomics/reader_icc.parquet"
    assert plan.summary()["reader 1 repeat (intra-observer ICC)"] == 2

    old = plan_of(without_repeat(RECORDS))
    assert old.reader1_repeat_patients == ()
    assert not any(k.startswith("reader1_repeat_") for p in ("P1", "C1") for k in old.raw_inputs(p))
    assert old.reader2_patients == plan.reader2_patients  # the inter-observer ICC as before
    reason = (
        "its intra-observer ICC filter needs reader 1's repeat masks (reader1_repeat_mask) "
        "and the cohort has none; without them set intra: false on the study's icc step "
        "(inter-reader ICC only)"
    )
    assert old.skipped_studies == {"er_fusion": reason, "proliferative_tace": reason}
    assert "mil_er" in old.runnable_studies


def test_deep_inputs_follow_modality_phases_and_tumor(plan: CohortPlan) -> None:
    names = {p: [s.name for s in plan.patient_deep_inputs(p)] for p in ("P1", "P2", "P4", "C1")}
    assert names["C1"] == ["mil_slices"]
    # P4 has no PVP (no habitat_slices / habitat_tumor_cube, no MVI cubes of AP, PVP and HBP)
    # and no DP (no er_stack); P1 has no HBP (no MVI cubes); P2's AP tumor is predicted
    assert names["P4"] == []
    assert names["P1"] == ["habitat_slices", "habitat_tumor_cube"]
    with_pvp = plan_of([*RECORDS, record("P4", "PVP")])
    assert [s.name for s in with_pvp.patient_deep_inputs("P4")] == [
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
    }
    assert mr_only.runnable_studies == ["habitat_grade", "mvi_biregional", "er_fusion"]
    # its ICC filter: without P1's second reader, no patient has one
    no_p1_reader2 = [
        dataclasses.replace(r, masks={k: v for k, v in r.masks.items() if k != "reader2"})
        for r in RECORDS
        if r.modality == "MR"
    ]
    assert plan_of(no_p1_reader2).skipped_studies["er_fusion"] == (
        "its ICC filter needs second-reader masks and the cohort has none"
    )
    no_pvp = plan_of([r for r in RECORDS if r.phase != "PVP"])
    assert no_pvp.skipped_studies["habitat_grade"] == (
        "it needs habitat features and no patient gets habitats"
    )
    no_reader2 = plan_of([dataclasses.replace(r, masks={}) for r in RECORDS])
    icc = [s for s, spec in STUDIES.items() if "reader_icc" in no_reader2.study_tables(s)]
    assert icc and all("second-reader masks" in no_reader2.skipped_studies[s] for s in icc)


def test_the_habitat_reference_is_fitted_for_the_studies_that_read_subregions(
    plan: CohortPlan,
) -> None:
    """habitat_grade reads the habitat table and per-subregion networks: the reference habitats
    are fitted on its training patients; without a study that reads them, on every patient."""
    assert plan.habitat_studies == ["habitat_grade"]
    others = {k: v for k, v in STUDIES.items() if k != "habitat_grade"}
    assert plan_of(RECORDS, studies=others).habitat_studies == []
    assert plan_of([r for r in RECORDS if r.phase != "PVP"]).habitat_studies == []


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


def test_a_deep_model_per_phase_reads_each_phase_tensor() -> None:
    """The MVI study's networks: one per phase (AP, PVP, HBP), of the patients that have all."""
    plan = plan_of([*RECORDS, record("P4", "PVP")])
    inp = plan.deep_model_input("mvi_biregional", "ring_3d")
    assert inp.spec.name == "mvi_ring_cube" and inp.phases == ("AP", "PVP", "HBP")
    assert inp.phase_keys == {
        "AP": "deep/mvi_ring_cube/AP",
        "PVP": "deep/mvi_ring_cube/PVP",
        "HBP": "deep/mvi_ring_cube/HBP",
    }
    assert plan.deep_model_patients("mvi_biregional", "ring_3d") == ["P4"]
    assert plan.deep_model_input("habitat_grade", "whole_25d").phase_keys == {}
    # without the HBP record nobody has the three phases: no network to train
    assert ("mvi_biregional", "ring_3d") not in plan_of(RECORDS).trained_deep_models()

    def with_model(study: str, **changes) -> CohortPlan:
        spec = STUDIES[study]
        model = spec.deep_models["tumor_3d" if study == "mvi_biregional" else "whole_25d"]
        models = {**spec.deep_models, model.name: dataclasses.replace(model, **changes)}
        studies = {**STUDIES, study: dataclasses.replace(spec, deep_models=models)}
        return plan_of(RECORDS, studies=studies)

    with pytest.raises(ValueError, match=r"phases \['DP'\] are not built for input"):
        with_model("mvi_biregional", phases=("AP", "DP")).deep_model_input(
            "mvi_biregional", "tumor_3d"
        )
    with pytest.raises(ValueError, match=r"phases \['AP'\] are not built"):
        with_model("habitat_grade", phase="AP").deep_model_input("habitat_grade", "whole_25d")
    with pytest.raises(ValueError, match="per-region input without MIL"):
        with_model("mvi_biregional", mil=True).deep_model_input("mvi_biregional", "tumor_3d")


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


# ---- the studies' own radiomics parameter files -------------------------------------------------

ER_PRESET = "config/radiomics/mr_er_original_wavelet_log.yaml"
ER_NAME = "mr_er_original_wavelet_log"
MR_DEFAULT = str(SETTINGS.radiomics_params["MR"])


def with_params(**files: str) -> dict:
    """The seed studies, those named with the given ``radiomics.params``, the others with none
    (whatever their study files say)."""
    return {
        study: dataclasses.replace(spec, radiomics_params=files.get(study))
        for study, spec in STUDIES.items()
    }


def test_a_file_shared_by_two_studies_is_extracted_once_per_patient() -> None:
    specs = with_params(er_fusion=ER_PRESET, habitat_grade=ER_PRESET)
    plan = plan_of(RECORDS, studies=specs)
    assert plan.skipped_studies == {}
    # one file, one extraction per MR radiomics patient, whichever study asked for it
    assert plan.radiomics_param_files == {ER_NAME: ER_PRESET}
    assert plan.radiomics_params_patients(ER_NAME) == ("P1", "P2", "P3", "P4")
    assert {p: plan.patient_radiomics_params(p) for p in ("P1", "P4", "C1")} == {
        "P1": [ER_NAME],
        "P4": [ER_NAME],
        "C1": [],  # CT: its studies read the CT default only
    }
    assert plan.radiomics_json("P1", ER_NAME) == f"results/A/P1/radiomics/{ER_NAME}/features.json"
    # what the two studies' blocks take: er_fusion AP, PVP, DP tumor; habitat_grade PVP tumor
    assert plan.radiomics_params_regions(ER_NAME) == ("tumor",)
    assert plan.radiomics_params_phases("P1", ER_NAME) == ("AP", "PVP")
    assert plan.radiomics_params_phases("P4", ER_NAME) == ("AP",)  # P4's HBP: taken by none
    # its ICC table: er_fusion's chain has an ICC step; the file's second-reader patients
    assert plan.radiomics_params_icc_patients(ER_NAME) == ("P1",)
    folder = f"results/cohort/radiomics/{ER_NAME}"
    for study in ("er_fusion", "habitat_grade"):
        assert plan.study_radiomics(study).name == ER_NAME
        assert plan.study_tables(study)["radiomics"] == f"{folder}/features.parquet"
    assert plan.study_tables("er_fusion")["reader_icc"] == f"{folder}/reader_icc.parquet"
    # and its intra-observer ICC table: er_fusion's ICC step has intra; P1 has a repeat outline
    assert plan.radiomics_params_intra_patients(ER_NAME) == ("P1",)
    tables = plan.study_tables("er_fusion")
    assert tables["reader_icc_intra"] == f"{folder}/reader_icc_intra.parquet"
    assert plan.summary()["radiomics, studies' own parameter files"] == {ER_NAME: 4}


def test_a_file_is_extracted_for_the_phases_its_studies_take() -> None:
    plan = plan_of(RECORDS, studies=with_params(habitat_grade=ER_PRESET))
    # habitat_grade's radiomics block is PVP tumor: P4 (AP + HBP) gets no extraction
    assert plan.radiomics_params_patients(ER_NAME) == ("P1", "P2", "P3")
    assert plan.radiomics_params_phases("P1", ER_NAME) == ("PVP",)
    assert plan.radiomics_params_icc_patients(ER_NAME) == ()  # no ICC step: no ICC table
    assert plan.radiomics_params_intra_patients(ER_NAME) == ()
    assert "reader_icc" not in plan.study_tables("habitat_grade")


def test_the_modality_default_keeps_todays_paths() -> None:
    # mvi_biregional names the MR default itself: the same file, today's paths, no extra job
    plan = plan_of(RECORDS, studies=with_params(mvi_biregional=MR_DEFAULT))
    assert (
        STUDIES["mvi_biregional"].radiomics_params
        == "config/radiomics/mr_original_wavelet_log.yaml"
    )
    assert plan.study_radiomics("mvi_biregional").name is None
    assert plan.radiomics_param_files == {}
    assert plan.patient_radiomics_params("P1") == []
    assert plan.radiomics_json("P1") == "results/A/P1/radiomics/features.json"
    for study in plan.runnable_studies:
        tables = plan.study_tables(study)
        assert tables["radiomics"] == "results/cohort/radiomics/features.parquet"
        if "reader_icc" in tables:
            assert tables["reader_icc"] == "results/cohort/radiomics/reader_icc.parquet"


def test_the_default_is_per_modality() -> None:
    """The MR default named by a CT study is a file of its own for the CT patients."""
    plan = plan_of(RECORDS, studies=with_params(mil_er=MR_DEFAULT))
    name = "mr_original_wavelet_log"
    assert plan.radiomics_param_files == {name: MR_DEFAULT}
    assert plan.radiomics_params_patients(name) == ("C1",)
    assert plan.radiomics_params_icc_patients(name) == ("C1",)  # mil_er's ICC step
    assert plan.study_tables("proliferative_tace")["radiomics"] == (
        "results/cohort/radiomics/features.parquet"
    )
    # a file's ICC table needs a second reader of the study's own modality
    mr_reader2 = [dataclasses.replace(r, masks={}) if r.patient == "C1" else r for r in RECORDS]
    plan = plan_of(mr_reader2, studies=with_params(mil_er=MR_DEFAULT))
    assert "second-reader masks" in plan.skipped_studies["mil_er"]
    assert "proliferative_tace" not in plan.skipped_studies  # the cohort-wide default table
    assert plan.radiomics_param_files == {}  # nobody left to read the file


def test_studies_params_off_reads_every_modality_default() -> None:
    off = dataclasses.replace(SETTINGS, radiomics_study_params=False)
    plan = plan_of(RECORDS, settings=off, studies=with_params(er_fusion=ER_PRESET))
    assert plan.radiomics_param_files == {}
    assert plan.study_radiomics("er_fusion").path == MR_DEFAULT
    assert (
        plan.study_tables("er_fusion")["radiomics"] == "results/cohort/radiomics/features.parquet"
    )


def test_two_files_of_one_name_are_refused(tmp_path: Path) -> None:
    other = tmp_path / f"{ER_NAME}.yaml"
    other.write_text((ROOT / ER_PRESET).read_text())
    plan = plan_of(RECORDS, studies=with_params(er_fusion=ER_PRESET, habitat_grade=str(other)))
    with pytest.raises(
        ConfigError, match=rf"studies habitat_grade and er_fusion: .*radiomics/{ER_NAME}/"
    ):
        _ = plan.radiomics_param_files


def test_the_demo_overlay_sets_the_studies_files_aside_and_lists_them() -> None:
    demo = load_settings(
        ROOT / "config" / "config.yaml", overlay=str(ROOT / "config" / "demo.yaml")
    )
    specs = load_studies(
        [project_file(f) for f in demo.studies], overlay=demo.overlay, check_estimators=False
    )
    specs["er_fusion"] = dataclasses.replace(specs["er_fusion"], radiomics_params=ER_PRESET)
    plan = plan_of(RECORDS, settings=demo, studies=specs)
    # one light extraction per patient: no study file of its own, every study on demo_fast
    assert plan.radiomics_param_files == {}
    assert {plan.study_radiomics(s).path for s in specs} == {"config/radiomics/demo_fast.yaml"}
    rows = {(r["where"], r["key"]): r for r in plan.overlay_summary()["changes"]}
    assert rows["config", "radiomics.study_params"]["this_run"] == "False"
    assert rows["er_fusion", "radiomics.params"] == {
        "where": "er_fusion",
        "key": "radiomics.params",
        "this_run": "config/radiomics/demo_fast.yaml",
        "full_scale": ER_PRESET,
    }
    assert rows["mvi_biregional", "radiomics.params"]["full_scale"] == MR_DEFAULT
    assert ("mil_er", "radiomics.params") not in rows  # no file of its own: nothing set aside


def test_a_study_without_its_label_is_left_out_before_any_job() -> None:
    """The clinical table lacks er_fusion's label column, and has mvi for CT patients only: both
    MR studies are skipped with the reason; the others run."""
    clinical = pd.DataFrame(
        {
            "patient": ["P1", "P2", "P3", "P4", "C1"],
            "grade_pd": ["1", "0", "", "1", ""],
            "mvi": [None, "", float("nan"), "", "1"],
            "proliferative": ["", "", "", "", "0"],
        }
    )
    plan = plan_of(RECORDS, clinical=clinical)
    skipped = plan.skipped_studies
    assert "has no column 'early_recurrence'" in skipped["er_fusion"]
    assert (
        "has no value of 'mvi', the study's label, for any MR patient" in skipped["mvi_biregional"]
    )
    assert "habitat_grade" not in skipped and "proliferative_tace" not in skipped
    assert "mil_er" in skipped  # CT, early_recurrence absent too
    assert plan.runnable_studies == ["habitat_grade", "proliferative_tace"]


def test_raw_selections_carry_the_sheets_series_and_segments(plan: CohortPlan) -> None:
    """The selections within raw files reach the preprocessing jobs per phase; a segment of a
    mask the row does not give is left out; no selection gives empty mappings."""
    records = [
        dataclasses.replace(
            record("P1", "AP", tumor=True, liver=True),
            series="1.2.3.4",
            segments={"tumor": "Tumor", "liver": "liver+tumor"},
        ),
        dataclasses.replace(record("P1", "PVP", tumor=True), segments={"tumor": "2"}),
        dataclasses.replace(record("P2", "AP"), segments={"tumor": "1"}),
    ]
    selected = plan_of(records)
    assert selected.raw_selections("P1") == {
        "series": {"AP": "1.2.3.4"},
        "segments": {"AP": {"tumor": "Tumor", "liver": "liver+tumor"}, "PVP": {"tumor": "2"}},
    }
    assert selected.raw_selections("P2") == {"series": {}, "segments": {}}
    assert plan.raw_selections("C1") == {"series": {}, "segments": {}}
