"""The Snakemake workflow end to end on a tiny generated cohort.

One real run (centers A and B), then center C is added: the dry run must schedule only C's
per-patient jobs and the cohort aggregates; the completed run covers every patient. Bad input
cases check that errors name the patient, phase and file, leave no partial output, and that
``--keep-going`` completes the rest of the cohort.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import DEMO_OVERLAY, ROOT, job_counts, run_snakemake, write_sheets

pytestmark = pytest.mark.workflow

#: Preprocessing rules of a patient whose masks the U-Net predicts (two jobs around
#: segment_patient); every other patient takes one preprocess_patient job.
SEGMENTED = ("register_patient", "normalize_patient")
#: Per-patient rules that rerun for earlier patients when patients are added (they depend on a
#: cohort-level model: the reference habitats, the U-Net).
RERUN_FOR_ALL = ("assign_habitats", "segment_patient")


def expected_jobs(sheet: pd.DataFrame) -> dict[str, int]:
    """Jobs the workflow must schedule for the patients of ``sheet`` (per-patient rules only)."""
    from hccrad.config import load_settings

    settings = load_settings(ROOT / "config" / "config.yaml", overlay=str(DEMO_OVERLAY))
    counts: dict[str, int] = dict.fromkeys(SEGMENTED, 0)
    counts.update(preprocess_patient=0, extract_radiomics=0, segment_patient=0)
    counts.update(cluster_habitats=0, assign_habitats=0)
    for _patient, rows in sheet.groupby("patient", sort=False):
        mod = settings.modality(rows["modality"].iloc[0])
        ref = rows[rows["phase"] == mod.reference_phase].iloc[0]
        role = segmentation_role(rows, settings)
        if role == "missing":
            for rule in SEGMENTED:
                counts[rule] += 1
        else:
            counts["preprocess_patient"] += 1
        if role == "missing":  # held-out patients are segmented by evaluate_segmentation
            counts["segment_patient"] += 1
        if has_habitats(rows, settings):
            counts["cluster_habitats"] += 1
            counts["assign_habitats"] += 1
        has_tumor = any(
            bool(r["tumor_mask"] or ref["tumor_mask"]) or segmentation_on(settings)
            for _, r in rows.iterrows()
        )
        counts["extract_radiomics"] += int(has_tumor)
    return {k: v for k, v in counts.items() if v}


def segmentation_on(settings) -> bool:
    return bool(settings.segmentation.enabled)


def segmentation_role(rows: pd.DataFrame, settings) -> str | None:
    """The patient's role for the U-Net: train, held (held out, Dice), missing (predicted)."""
    from hccrad.plan import segmentation_holdout

    if not segmentation_on(settings):
        return None
    ref_phase = settings.modality(rows["modality"].iloc[0]).reference_phase
    ref = rows[rows["phase"] == ref_phase].iloc[0]
    if ref["tumor_mask"] and ref["liver_mask"]:
        patient = rows["patient"].iloc[0]
        fraction = settings.segmentation.holdout_fraction
        return "held" if segmentation_holdout(patient, settings.seed, fraction) else "train"
    return "missing"


def has_input(rows: pd.DataFrame, settings, spec) -> bool:
    """Whether a patient gets deep input ``spec``: modality, phases, a tumor on the first phase."""
    modality = rows["modality"].iloc[0]
    if modality not in spec.modalities or not set(spec.phases) <= set(rows["phase"]):
        return False
    first = rows[rows["phase"] == spec.phases[0]].iloc[0]
    ref = rows[rows["phase"] == settings.modality(modality).reference_phase].iloc[0]
    return bool(first["tumor_mask"] or ref["tumor_mask"]) or segmentation_on(settings)


def has_habitats(rows: pd.DataFrame, settings) -> bool:
    """Whether a patient (its sheet rows) gets habitats: modality, phases, a tumor mask."""
    hab = settings.habitats
    modality = rows["modality"].iloc[0]
    if not hab.enabled or modality not in hab.modalities:
        return False
    if not set(hab.phases) <= set(rows["phase"]):
        return False
    first = rows[rows["phase"] == hab.phases[0]].iloc[0]
    ref = rows[rows["phase"] == settings.modality(modality).reference_phase].iloc[0]
    return bool(first["tumor_mask"] or ref["tumor_mask"]) or segmentation_on(settings)


def cohort_jobs(sheet: pd.DataFrame) -> dict[str, int]:
    """Cohort-level jobs of a run over ``sheet`` (all of them rerun when patients are added)."""
    from hccrad.config import load_settings

    settings = load_settings(ROOT / "config" / "config.yaml", overlay=str(DEMO_OVERLAY))
    jobs = {
        "summarize_preprocessing": 1,
        "aggregate_radiomics": 1,
        "summarize_results": 1,
        "audit": 1,
        "all": 1,
    }
    if (sheet["reader2_mask"] != "").any():
        jobs["compute_reader_icc"] = 1
    if _has_repeat(sheet):
        jobs["compute_reader_icc_intra"] = 1
    if any(has_habitats(rows, settings) for _, rows in sheet.groupby("patient")):
        jobs["select_habitat_k"] = jobs["aggregate_habitats"] = 1
    roles = [segmentation_role(rows, settings) for _, rows in sheet.groupby("patient")]
    if "train" in roles and ("held" in roles or "missing" in roles):
        jobs["train_segmentation"] = 1
    if "held" in roles:
        jobs["evaluate_segmentation"] = 1
    from hccrad.studies import DEFAULT_STUDY_FILES, load_studies

    specs = load_studies([ROOT / f for f in DEFAULT_STUDY_FILES])
    for name in runnable_studies(sheet, settings):
        jobs["study_splits"] = jobs.get("study_splits", 0) + 1
        jobs[f"run_study_{name}"] = 1
        for model in specs[name].raw.get("deep_models", {}).values():
            spec = settings.deep_inputs[model["input"]]
            if any(
                rows["modality"].iloc[0] == specs[name].modality
                and has_input(rows, settings, spec)
                and (not spec.per_subregion or has_habitats(rows, settings))
                for _, rows in sheet.groupby("patient")
            ):
                for rule in ("train_deep_model", "deep_model_outputs"):
                    jobs[rule] = jobs.get(rule, 0) + 1
    return jobs


def runnable_studies(sheet: pd.DataFrame, settings) -> list[str]:
    """The seed studies the workflow runs on ``sheet`` (modality present, inputs available)."""
    from hccrad.studies import DEFAULT_STUDY_FILES, load_studies, study_inputs

    specs = load_studies([ROOT / f for f in DEFAULT_STUDY_FILES])
    groups = list(sheet.groupby("patient"))
    out = []
    for name, spec in specs.items():
        needs = study_inputs(spec, "clinical.tsv")
        if spec.modality not in set(sheet["modality"]):
            continue
        if "habitats" in needs and not any(has_habitats(r, settings) for _, r in groups):
            continue
        if "reader_icc" in needs and not (sheet["reader2_mask"] != "").any():
            continue
        if "reader_icc_intra" in needs and not _has_repeat(sheet):
            continue
        out.append(name)
    return out


def _has_repeat(sheet: pd.DataFrame) -> bool:
    """Whether the sheet gives reader 1's repeat outline (an optional column)."""
    return "reader1_repeat_mask" in sheet and (sheet["reader1_repeat_mask"] != "").any()


@pytest.fixture(scope="module")
def first_run(ab_run):
    """The shared A+B run (conftest.ab_run); read-only here."""
    return ab_run


def test_lint_is_clean(cohort_dir, tmp_path):
    cohort, clinical = write_sheets(cohort_dir, tmp_path / "sheets")
    res = run_snakemake(tmp_path, "--lint", cohort=cohort, clinical=clinical)
    assert res.returncode == 0, res.stdout + res.stderr  # a workflow that fails to parse too
    assert "Lints for" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_dry_run_plans_every_patient(cohort_dir, tmp_path):
    cohort, clinical = write_sheets(cohort_dir, tmp_path / "sheets")
    res = run_snakemake(tmp_path, "-n", cohort=cohort, clinical=clinical)
    assert res.returncode == 0, res.stderr[-3000:]
    sheet = pd.read_csv(cohort, sep="\t", dtype=str, keep_default_na=False)
    counts = job_counts(res.stdout)
    want = expected_jobs(sheet) | cohort_jobs(sheet)
    assert counts == {**want, "total": sum(want.values())}


def test_first_run_outputs(first_run):
    table = pd.read_parquet(first_run / "results/cohort/preprocess/summary.parquet")
    sheet = pd.read_csv(first_run / "sheets/cohort.tsv", sep="\t", dtype=str)
    assert len(table) == len(sheet)
    assert set(table["patient"]) == set(sheet["patient"])
    assert (table[["spacing_x", "spacing_y", "spacing_z"]] == 1.0).all().all()
    assert set(table["registration_method"]) == {"identity", "QuickRigid"}
    with_tumor = table[table["tumor_ml"].notna()]
    assert (with_tumor["ring_ml"] > 0).all() and (with_tumor["index_tumor_ml"] > 0).all()
    assert (first_run / "results/cohort/preprocess/qc_montage.png").stat().st_size > 10_000
    # outline agreement on the registered masks: reader 1's repeat agrees better than reader 2
    repeat = table.dropna(subset=["reader1_repeat_dice"])
    assert set(repeat["patient"]) == set(sheet.dropna(subset=["reader1_repeat_mask"])["patient"])
    assert repeat["reader1_repeat_dice"].between(0.7, 1.0).all()
    assert repeat["reader1_repeat_dice"].median() > repeat["reader2_dice"].median()
    for _, r in sheet.drop_duplicates("patient").iterrows():
        qc = first_run / f"results/{r.center}/{r.patient}/qc"
        assert (qc / "qc.png").stat().st_size > 5_000
        rec = json.loads((qc / "qc.json").read_text())
        assert set(rec["phases"]) == set(sheet[sheet.patient == r.patient]["phase"])
    # intermediates are gone once consumed (keep_intermediates: false)
    assert not list((first_run / "results").rglob("convert/image.nii.gz"))
    assert not list((first_run / "results").rglob("resample/image.nii.gz"))
    assert list((first_run / "results").rglob("n4/bias.nii.gz"))
    logs = list((first_run / "results/logs").rglob("*.log"))
    benches = list((first_run / "results/benchmarks").rglob("*.tsv"))
    assert len(logs) == len(benches) > 0


def test_habitat_outputs(first_run):
    """Voxel maps, per-patient clusters for every k, the k choice and consistent subregions."""
    from hccrad.config import load_settings

    settings = load_settings(ROOT / "config" / "config.yaml", overlay=str(DEMO_OVERLAY))
    sheet = pd.read_csv(first_run / "sheets/cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    patients = [
        (rows["center"].iloc[0], p)
        for p, rows in sheet.groupby("patient")
        if has_habitats(rows, settings)
    ]
    assert patients
    cohort = first_run / "results/cohort/habitats"
    summary = pd.read_csv(cohort / "k_selection.tsv", sep="\t")
    lo, hi = settings.habitats.k_range
    assert summary["k"].tolist() == list(range(lo, hi + 1))
    k = int(summary.loc[summary["chosen"], "k"].iloc[0])
    assert (cohort / "k_selection.png").stat().st_size > 20_000
    features = pd.read_parquet(cohort / "features.parquet")
    assert sorted(features.index) == sorted(p for _, p in patients)
    assert (features["habitat_k"] == k).all()
    fractions = features[[f"habitat{i}_fraction" for i in range(1, k + 1)]]
    np.testing.assert_allclose(fractions.sum(1), 1.0)
    # subregion 1 has the lowest local mean (the ordering feature) in the reference
    ref = pd.read_parquet(cohort / "reference_habitats.parquet")
    order = ref.loc[ref["subregion"] > 0, ref["order_by"].iloc[0]].to_numpy()
    assert (np.diff(order) > 0).all()
    for center, patient in patients:
        base = first_run / f"results/{center}/{patient}"
        maps = base / f"{settings.habitats.phases[0]}/voxelmaps/maps"
        assert len(list(maps.glob("*.nii.gz"))) == 77
        voxels = pd.read_parquet(maps / "voxels.parquet")
        mask = sitk.ReadImage(str(base / f"{settings.habitats.phases[0]}/voxelmaps/mask.nii.gz"))
        assert mask.GetSpacing() == (settings.habitats.spacing,) * 3
        assert len(voxels) == int(sitk.GetArrayViewFromImage(mask).sum())
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(base / "habitats/subregions.nii.gz")))
        inside = sitk.GetArrayViewFromImage(mask) > 0
        assert (labels[inside] >= 1).all() and (labels[~inside] == 0).all()
        assert set(np.unique(labels[inside])) == set(range(1, k + 1))
        for i in range(1, k + 1):
            sub = sitk.GetArrayFromImage(
                sitk.ReadImage(str(base / f"habitats/masks/subregion_{i}.nii.gz"))
            )
            assert np.array_equal(sub > 0, labels == i)
        stats = json.loads((base / "habitats/stats.json").read_text())
        assert stats["k"] == k and stats["n_voxels"] == int(inside.sum())
        assert (base / "habitats/overlay.png").stat().st_size > 10_000
        clusters = pd.read_parquet(base / "habitats/clusters.parquet")
        assert {f"k{j}" for j in range(lo, hi + 1)} <= set(clusters.columns)


def test_deep_inputs(first_run):
    """Every configured input tensor exists for every eligible patient, with its shape."""
    from hccrad.config import load_settings
    from hccrad.deep.inputs import DeepInput

    settings = load_settings(ROOT / "config" / "config.yaml", overlay=str(DEMO_OVERLAY))
    sheet = pd.read_csv(first_run / "sheets/cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    n = n_sub = 0
    k = int(
        json.loads(next((first_run / "results").glob("*/*/habitats/stats.json")).read_text())["k"]
    )
    for name, spec in settings.deep_inputs.items():
        for patient, rows in sheet.groupby("patient"):
            if not has_input(rows, settings, spec):
                continue
            base = first_run / "results" / rows["center"].iloc[0] / patient
            if spec.per_subregion:  # built by assign_habitats: one tensor per subregion
                if not has_habitats(rows, settings):
                    continue
                listed = json.loads((base / "habitats/deep_inputs.json").read_text())["files"]
                files = [
                    first_run / listed[f"deep/{name}/{ph}/h{i}"]["path"]
                    for ph in spec.phases
                    for i in range(1, k + 1)
                    if f"deep/{name}/{ph}/h{i}" in listed
                ]
                assert files == [
                    base / ph / "deep" / f"{name}_h{i}.npz"
                    for ph in spec.phases
                    for i in range(1, k + 1)
                    if f"deep/{name}/{ph}/h{i}" in listed
                ]
                n_sub += len(files)
            else:
                files = (
                    [base / ph / "deep" / f"{name}.npz" for ph in spec.phases]
                    if spec.per_phase
                    else [base / "deep" / f"{name}.npz"]
                )
            for f in files:
                d = DeepInput.load(f)
                n += 1
                s = spec.size
                want = {
                    "slices": (len(spec.offsets or range(2 * spec.neighbours + 1)), 1, s, s),
                    "cube": (1, s, s, s),
                    "multiphase": (len(spec.phases), spec.k, s, s),
                }[spec.builder]
                assert d.x.shape == want, (f, d.x.shape)
                assert np.isfinite(d.x).all() and d.x.std() > 0
                assert d.meta["patient"] == patient and d.meta["region"] == spec.region
    assert n > 0
    if any(spec.per_subregion for spec in settings.deep_inputs.values()):
        assert n_sub > 0


def test_segmentation_outputs(first_run):
    """The U-Net is trained on the patients with masks and scored on the held-out ones."""
    from hccrad.config import load_settings

    settings = load_settings(ROOT / "config" / "config.yaml", overlay=str(DEMO_OVERLAY))
    sheet = pd.read_csv(first_run / "sheets/cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    roles = {p: segmentation_role(rows, settings) for p, rows in sheet.groupby("patient")}
    held = sorted(p for p, r in roles.items() if r == "held")
    seg = first_run / "results/cohort/segmentation"
    metrics = json.loads((seg / "metrics.json").read_text())
    assert held, "the tiny cohort must hold out at least one patient"
    assert len(metrics["epochs"]) == settings.segmentation.train["epochs"]
    assert metrics["epochs"][-1]["loss"] < metrics["epochs"][0]["loss"]
    trained_on = set(metrics["train_patients"]) | set(metrics["val_patients"])
    assert trained_on == {p for p, r in roles.items() if r == "train"}  # held-out never seen
    dice = pd.read_parquet(seg / "dice.parquet")
    assert sorted(dice.index.drop("mean")) == held
    assert dice.ge(0).all().all() and dice.le(1).all().all()
    assert dice.loc["mean", "dice_liver"] > 0.5  # a rough liver after a tiny CPU training
    for p in held:
        rows = sheet[sheet["patient"] == p]
        ref = settings.modality(rows["modality"].iloc[0]).reference_phase
        base = first_run / "results" / rows["center"].iloc[0] / p / ref
        assert not (base / "segment").exists()  # segmented inside evaluate_segmentation
        pred = sitk.ReadImage(str(seg / f"heldout/{p}_liver.nii.gz"))
        image = sitk.ReadImage(str(base / "register/image.nii.gz"))
        assert pred.GetSize() == image.GetSize() and pred.GetSpacing() == image.GetSpacing()


def test_deep_models_and_studies(first_run):
    """Each study's deep models and study folder exist (the tiny cohort's splits are degenerate:
    models may be marked untrained, studies report NaN with a note, nothing crashes)."""
    from hccrad.studies import DEFAULT_STUDY_FILES, load_studies

    specs = load_studies([ROOT / f for f in DEFAULT_STUDY_FILES])
    sheet = pd.read_csv(first_run / "sheets/cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    from hccrad.config import load_settings

    settings = load_settings(ROOT / "config" / "config.yaml", overlay=str(DEMO_OVERLAY))
    for name in runnable_studies(sheet, settings):
        folder = first_run / "results/cohort/studies" / name
        assert (folder / "performance.parquet").exists() and (folder / "metrics.json").exists()
        splits = pd.read_parquet(folder / "splits.parquet")
        for model in specs[name].raw.get("deep_models", {}):
            deep = folder / "deep" / model
            used = json.loads((deep / "patients.json").read_text())
            train = set(splits.loc[splits["split"] == "train", "patient"])
            members = used.get("subregions") or used.get("phases")
            seen = (  # one network per habitat subregion or per phase, or one network
                set().union(*(set(u["patients"]) for u in members.values()))
                if members
                else set(used["patients"])
            )
            if "phases" in used:  # every phase's network trained on the same patients
                assert set(used["phases"]) == set(specs[name].raw["deep_models"][model]["phases"])
            assert seen <= train  # never a validation or test patient
            feats = pd.read_parquet(deep / "features.parquet")
            assert feats.shape[0] > 0 and feats.index.name == "patient"
            assert list((deep / "gradcam").glob("*.png"))


def test_radiomics_table(first_run):
    sheet = pd.read_csv(first_run / "sheets/cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    with_masks = set(sheet.loc[sheet.tumor_mask != "", "patient"])
    table = pd.read_parquet(first_run / "results/cohort/radiomics/features.parquet")
    assert set(table.index) == with_masks
    for phase in ("AP", "PVP"):
        for region in ("tumor", "ring"):
            col = f"{phase}_{region}_original_firstorder_Mean"
            assert table[col].notna().all(), col
    # the index lesion's voxel count matches the registered index-tumor mask of that phase
    diag = pd.read_parquet(first_run / "results/cohort/radiomics/diagnostics.parquet")
    patient = sorted(with_masks)[0]
    row = sheet[(sheet.patient == patient) & (sheet.phase == "AP")].iloc[0]
    mask = sitk.ReadImage(
        str(first_run / f"results/{row.center}/{patient}/AP/regions/index_tumor.nii.gz")
    )
    n = int(sitk.GetArrayViewFromImage(mask).sum())
    assert int(diag.loc[patient, "AP_tumor_diagnostics_Mask-original_VoxelNum"]) == n


def test_reader_icc_table(first_run):
    icc = pd.read_parquet(first_run / "results/cohort/radiomics/reader_icc.parquet")
    assert list(icc.columns) == ["icc2_1", "icc3_1", "n"]
    assert icc.index.str.match(r"^(AP|PVP|HBP|DP)_tumor_original_").all()
    assert (icc["n"] >= 2).all()
    finite = icc["icc2_1"].dropna()
    assert (finite <= 1 + 1e-9).all() and len(finite) > 0.8 * len(icc)
    # the two readers' outlines differ by a voxel or two: tumor volume is highly reproducible
    assert icc.loc["AP_tumor_original_shape_VoxelVolume", "icc2_1"] > 0.8


def test_registered_masks_overlap_the_reference(first_run):
    """Each phase's own liver mask, carried through its registration, lands on the reference's
    better than the same mask resampled without registration."""
    from hccrad.preprocess import resample_like
    from hccrad.steps import dice

    sheet = pd.read_csv(first_run / "sheets/cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    checked = 0
    for _, r in sheet[(sheet.phase != "AP") & (sheet.liver_mask != "")].iterrows():
        base = first_run / f"results/{r.center}/{r.patient}"
        ref = sitk.ReadImage(str(base / "AP/register/liver.nii.gz"))
        moved = sitk.ReadImage(str(base / f"{r.phase}/register/liver.nii.gz"))
        unregistered = resample_like(sitk.ReadImage(r.liver_mask), ref, is_mask=True)
        registered_dice, unregistered_dice = dice(ref, moved), dice(ref, unregistered)
        assert registered_dice > 0.85, (r.patient, r.phase, registered_dice)
        assert registered_dice > unregistered_dice, (r.patient, r.phase, unregistered_dice)
        checked += 1
    assert checked >= 4


def test_ring_is_inside_liver_and_outside_tumor(first_run):
    ring_path = next((first_run / "results").rglob("regions/ring.nii.gz"))
    folder = ring_path.parents[1]
    ring = sitk.GetArrayFromImage(sitk.ReadImage(str(ring_path))) > 0
    tumor = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "register/tumor.nii.gz"))) > 0
    liver_file = folder / "register/liver.nii.gz"
    assert not np.logical_and(ring, tumor).any()
    if liver_file.exists():
        liver = sitk.GetArrayFromImage(sitk.ReadImage(str(liver_file))) > 0
        assert not np.logical_and(ring, ~liver).any()


@pytest.mark.slow  # a second whole run (~4 min); run with -m slow
def test_a_second_run_of_the_same_config_audits_identical(first_run, tmp_path):
    """The same sheets and config run again in another folder: `hccrad audit compare` finds
    no difference in any table, JSON, image or figure (cohort-trained models included)."""
    from hccrad.cli import main

    sheets = first_run / "sheets"
    res = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        cohort=sheets / "cohort.tsv",
        clinical=sheets / "clinical.tsv",
    )
    assert res.returncode == 0, res.stderr[-4000:]
    out = tmp_path / "compare.tsv"
    status = main(["audit", "compare", str(first_run), str(tmp_path), "--out", str(out)])
    assert status == 0, out.read_text() if out.exists() else "no report"


def test_adding_a_center_reruns_only_its_jobs(cohort_dir, first_run, tmp_path):
    work = tmp_path / "grown"  # a copy: the shared run stays as it is
    shutil.copytree(first_run, work, symlinks=True)
    cohort, clinical = write_sheets(cohort_dir, work / "sheets")  # now with center C
    res = run_snakemake(work, "-n", cohort=cohort, clinical=clinical)
    assert res.returncode == 0, res.stderr[-3000:]
    sheet = pd.read_csv(cohort, sep="\t", dtype=str, keep_default_na=False)
    want = expected_jobs(sheet[sheet["center"] == "C"])
    want |= cohort_jobs(sheet)
    # the cohort's k and reference habitats are derived again, so every earlier habitat patient
    # is relabeled (assign_habitats), and the U-Net is retrained on more patients, so earlier
    # held-out / mask-less patients are segmented again; nothing else of A and B reruns
    old = expected_jobs(sheet[sheet["center"] != "C"])
    for rule in RERUN_FOR_ALL:
        want[rule] = want.get(rule, 0) + old.get(rule, 0)
        if not want[rule]:
            del want[rule]
    assert job_counts(res.stdout) == {**want, "total": sum(want.values())}
    blocks = re.split(r"^(?=(?:local)?rule \w+:)", res.stdout, flags=re.M)[1:]
    assert blocks
    for block in blocks:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        centers = set(re.findall(r"wildcards: .*?center=(\w+)", block))
        if rule not in RERUN_FOR_ALL:
            assert centers <= {"C"}, (rule, centers)

    res = run_snakemake(work, "--cores", "2", cohort=cohort, clinical=clinical)
    assert res.returncode == 0, res.stderr[-4000:]
    table = pd.read_parquet(work / "results/cohort/preprocess/summary.parquet")
    assert set(table["patient"]) == set(sheet["patient"])
    res = run_snakemake(work, "-n", cohort=cohort, clinical=clinical)
    assert "Nothing to be done" in res.stdout + res.stderr
