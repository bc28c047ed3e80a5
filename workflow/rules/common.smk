# Sheet loading and validation, wildcard constraints and input functions (get_<what>).
# All logic lives in the hccrad package; this file only binds it to the workflow.
import os
import sys

# The package is imported from this checkout, also by jobs inside per-rule conda envs
# (--sdm conda), which do not have it installed: its folder is put first on their module path.
LIB = os.path.join(workflow.basedir, "workflow", "lib")
sys.path.insert(0, LIB)
os.environ.update(
    PYTHONPATH=os.pathsep.join(filter(None, [LIB, os.environ.get("PYTHONPATH")]))
)

from hccrad import paths, steps
from hccrad.config import settings_from_config
from hccrad.sheets import load_cohort
from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

# Both sheets are checked (schemas + cross-checks + files exist) before any job runs.
SETTINGS = settings_from_config(config)
COHORT = load_cohort(SETTINGS)


wildcard_constraints:
    center="[A-Za-z0-9]+",
    patient="[A-Za-z0-9]+",
    phase="|".join(SETTINGS.all_phases),
    kind="tumor|liver|reader2",
    input="|".join(SETTINGS.deep_inputs) or "none",


PREPROCESS_ENV = "../../envs/preprocess.yaml"
RADIOMICS_ENV = "../../envs/radiomics.yaml"
DEEP_ENV = "../../envs/deep.yaml"
# GPUs a deep training job asks for (resources: gpu); 0 on CPU-only clusters.
DEEP_TRAIN_GPUS = int(config.get("deep", {}).get("train_gpus", 1))
REGION_FILES = {"tumor": "index_tumor.nii.gz", "ring": "ring.nii.gz"}


def intermediate(path):
    """An output later steps consume once: deleted afterwards unless keep_intermediates."""
    return path if SETTINGS.keep_intermediates else temp(path)


def get_modality_name(wildcards):
    return COHORT.modality(wildcards.patient)


def modality_of(wildcards):
    return SETTINGS.modality(COHORT.modality(wildcards.patient))


def get_raw_image(wildcards):
    return str(COHORT.record(wildcards.patient, wildcards.phase).image)


def get_raw_mask(wildcards):
    return str(COHORT.record(wildcards.patient, wildcards.phase).mask(wildcards.kind))


def _prereg(center, patient, phase):
    """The image a phase enters registration with: N4-corrected (MR) or resampled (CT)."""
    stage = "n4" if SETTINGS.modality(COHORT.modality(patient)).n4 else "resample"
    return paths.image_path(
        stage, "image.nii.gz", center=center, patient=patient, phase=phase
    )


def get_n4_mask_inputs(wildcards):
    """The phase's own liver mask (with the image it was drawn on) to fit N4 in, when given."""
    mask = COHORT.record(wildcards.patient, wildcards.phase).mask("liver")
    if mask is None:
        return {}
    return {
        "liver": str(mask),
        "raw": paths.image_path(
            "convert",
            "image.nii.gz",
            center=wildcards.center,
            patient=wildcards.patient,
            phase=wildcards.phase,
        ),
    }


def get_prereg_image(wildcards):
    return _prereg(wildcards.center, wildcards.patient, wildcards.phase)


def get_reference_image(wildcards):
    ref = modality_of(wildcards).reference_phase
    return _prereg(wildcards.center, wildcards.patient, ref)


def is_reference_phase(wildcards):
    return wildcards.phase == modality_of(wildcards).reference_phase


def get_normalization(wildcards):
    return modality_of(wildcards).normalization


def mask_source_phase(patient, phase, kind):
    """Phase whose mask of `kind` stands for `phase` in the registered space, or None.

    A phase's own mask when the sheet gives one; else the reference phase's (every phase shares
    the reference grid after registration); else none.
    """
    if COHORT.record(patient, phase).mask(kind) is not None:
        return phase
    ref = SETTINGS.modality(COHORT.modality(patient)).reference_phase
    if COHORT.record(patient, ref).mask(kind) is not None:
        return ref
    return None


SEGMENTATION = SETTINGS.segmentation
PREDICTED_KINDS = ("tumor", "liver")


def predicts_mask(patient, kind):
    """Whether the U-Net's mask of `kind` stands in for a missing given one (all phases)."""
    if not SEGMENTATION["enabled"] or kind not in PREDICTED_KINDS:
        return False
    ref = SETTINGS.modality(COHORT.modality(patient)).reference_phase
    return mask_source_phase(patient, ref, kind) is None


def predicted_mask(center, patient, kind):
    ref = SETTINGS.modality(COHORT.modality(patient)).reference_phase
    return paths.image_path(
        "segment", f"{kind}.nii.gz", center=center, patient=patient, phase=ref
    )


def registered_mask(center, patient, phase, kind):
    """Path of the registered mask of `kind` used for `phase`, or None: the given one (own or
    the reference phase's), else the U-Net's prediction on the reference phase."""
    source = mask_source_phase(patient, phase, kind)
    if source is None:
        if predicts_mask(patient, kind):
            return predicted_mask(center, patient, kind)
        return None
    return paths.image_path(
        "register", f"{kind}.nii.gz", center=center, patient=patient, phase=source
    )


def get_liver_mask(wildcards):
    """Registered liver mask for this phase as an optional named input ({} when none)."""
    path = registered_mask(
        wildcards.center, wildcards.patient, wildcards.phase, "liver"
    )
    return {"liver": path} if path else {}


def get_tumor_regions_inputs(wildcards):
    args = wildcards.center, wildcards.patient, wildcards.phase
    inputs = {"tumor": registered_mask(*args, "tumor")}
    liver = registered_mask(*args, "liver") if SETTINGS.ring_clip_to_liver else None
    if liver:
        inputs["liver"] = liver
    return inputs


def has_tumor(patient, phase):
    return mask_source_phase(patient, phase, "tumor") is not None or predicts_mask(
        patient, "tumor"
    )


def segmentation_sets():
    """(training, held-out, to-predict) patients of the U-Net; given masks of both kinds on the
    reference phase (own or carried) make a patient usable for training or hold-out."""
    if not SEGMENTATION["enabled"]:
        return [], [], []
    masked, missing = [], []
    for p in COHORT.patients:
        ref = SETTINGS.modality(COHORT.modality(p)).reference_phase
        kinds = [mask_source_phase(p, ref, k) for k in PREDICTED_KINDS]
        if all(kinds):
            masked.append(p)
        elif any(predicts_mask(p, k) for k in PREDICTED_KINDS):
            missing.append(p)
    held = [
        p
        for p in masked
        if steps.segmentation_holdout(
            p, SETTINGS.seed, SEGMENTATION["holdout_fraction"]
        )
    ]
    train = [p for p in masked if p not in held]
    return train, held, missing


def segmentation_checkpoint():
    if SEGMENTATION["checkpoint"]:
        return workflow_file(SEGMENTATION["checkpoint"])
    return paths.cohort_path("segmentation", "checkpoint.pt")


def _seg_case(p):
    c = COHORT.center(p)
    ref = SETTINGS.modality(COHORT.modality(p)).reference_phase
    return {
        "image": paths.image_path(
            "register", "image.nii.gz", center=c, patient=p, phase=ref
        ),
        "liver": registered_mask(c, p, ref, "liver"),
        "tumor": registered_mask(c, p, ref, "tumor"),
    }


def get_train_segmentation_inputs(wildcards):
    train, _, _ = segmentation_sets()
    if not train:
        raise ValueError(
            "segmentation: no patient with given liver and tumor masks to train the U-Net on; "
            "give segmentation.checkpoint or disable segmentation"
        )
    return {f"{what}_{p}": path for p in train for what, path in _seg_case(p).items()}


def get_evaluate_segmentation_inputs(wildcards):
    _, held, _ = segmentation_sets()
    inputs = {}
    for p in held:
        case = _seg_case(p)
        inputs[f"liver_{p}"] = case["liver"]
        inputs[f"tumor_{p}"] = case["tumor"]
        for kind in PREDICTED_KINDS:
            inputs[f"pred{kind}_{p}"] = predicted_mask(COHORT.center(p), p, kind)
    return inputs


def get_patient_qc_inputs(wildcards):
    """Every per-phase output of one patient that its QC figure and QC JSON summarise."""
    c, p = wildcards.center, wildcards.patient
    inputs = {}
    for ph in COHORT.phases(p):
        inputs[f"image_{ph}"] = paths.image_path(
            "normalize", "image.nii.gz", center=c, patient=p, phase=ph
        )
        inputs[f"registration_{ph}"] = paths.image_path(
            "register", "registration.json", center=c, patient=p, phase=ph
        )
        for kind in ("liver", "reader2"):
            mask = registered_mask(c, p, ph, kind)
            if mask:
                inputs[f"{kind}_{ph}"] = mask
        if has_tumor(p, ph):
            for name in ("index_tumor", "ring"):
                inputs[f"{name}_{ph}"] = paths.image_path(
                    "regions", f"{name}.nii.gz", center=c, patient=p, phase=ph
                )
            inputs[f"tumor_{ph}"] = registered_mask(c, p, ph, "tumor")
    return inputs


def get_radiomics_inputs(wildcards):
    """The image of the configured stage and the region masks of one patient x phase."""
    modality = COHORT.modality(wildcards.patient)
    where = dict(
        center=wildcards.center, patient=wildcards.patient, phase=wildcards.phase
    )
    inputs = {
        "image": paths.image_path(
            SETTINGS.radiomics_stage[modality], "image.nii.gz", **where
        ),
        # an input, so that editing the parameter file reruns the extraction
        "params": workflow_file(str(SETTINGS.radiomics_params[modality])),
    }
    for region in SETTINGS.radiomics_regions:
        inputs[region] = paths.image_path("regions", REGION_FILES[region], **where)
    return inputs


def workflow_file(path):
    """A configured file: as given when it exists from the working directory, else relative to
    the workflow's own folder (so that shipped presets work from any working directory).
    """
    if os.path.isabs(path) or os.path.exists(path):
        return str(path)
    return os.path.join(workflow.basedir, path)


def get_reader2_radiomics_inputs(wildcards):
    """The radiomics image and parameters of this phase, with the second reader's mask."""
    inputs = get_radiomics_inputs(wildcards)
    return {
        "image": inputs["image"],
        "params": inputs["params"],
        "reader2": registered_mask(
            wildcards.center, wildcards.patient, wildcards.phase, "reader2"
        ),
    }


def reader2_images():
    """Images whose phase has both readers' tumor masks (own or the reference phase's)."""
    return [
        r
        for r in COHORT.images()
        if has_tumor(r.patient, r.phase)
        and mask_source_phase(r.patient, r.phase, "reader2") is not None
    ]


def get_reader_icc_jsons(name):
    return [
        paths.image_path(
            "radiomics",
            f"{name}.json",
            center=r.center,
            patient=r.patient,
            phase=r.phase,
        )
        for r in reader2_images()
    ]


def get_radiomics_jsons():
    """Radiomics of every patient x phase that has a tumor mask (own or the reference's)."""
    return [
        paths.image_path(
            "radiomics",
            "features.json",
            center=r.center,
            patient=r.patient,
            phase=r.phase,
        )
        for r in COHORT.images()
        if has_tumor(r.patient, r.phase)
    ]


def patient_targets(stage, name):
    return [
        paths.patient_path(stage, name, center=COHORT.center(p), patient=p)
        for p in COHORT.patients
    ]


HABITATS = SETTINGS.habitats


def habitat_patients():
    """Patients whose habitats are computed: configured modality, every habitat phase acquired,
    and a tumor mask for the first habitat phase (own or the reference phase's)."""
    if not HABITATS.enabled:
        return []
    return [
        p
        for p in COHORT.patients
        if COHORT.modality(p) in HABITATS.modalities
        and all(ph in COHORT.phases(p) for ph in HABITATS.phases)
        and has_tumor(p, HABITATS.phases[0])
    ]


def habitat_mask(wildcards):
    """Index lesion of the first habitat phase (all phases share the registered grid)."""
    return paths.image_path(
        "regions",
        REGION_FILES["tumor"],
        center=wildcards.center,
        patient=wildcards.patient,
        phase=HABITATS.phases[0],
    )


def get_voxelmap_inputs(wildcards):
    """The image of the radiomics stage of this phase and the habitat tumor mask."""
    modality = COHORT.modality(wildcards.patient)
    return {
        "image": paths.image_path(
            SETTINGS.radiomics_stage[modality],
            "image.nii.gz",
            center=wildcards.center,
            patient=wildcards.patient,
            phase=wildcards.phase,
        ),
        "mask": habitat_mask(wildcards),
    }


def voxelmap_output(wildcards, name, phase=None):
    """Output `name` of compute_voxel_maps (first habitat phase unless given)."""
    return paths.image_path(
        "voxelmaps",
        name,
        center=wildcards.center,
        patient=wildcards.patient,
        phase=phase or HABITATS.phases[0],
    )


def get_cluster_habitats_inputs(wildcards):
    """Maps and resampled image of every habitat phase (`maps_{phase}`, `image_{phase}`) and the
    resampled tumor mask."""
    inputs = {"mask": voxelmap_output(wildcards, "mask.nii.gz")}
    for ph in HABITATS.phases:
        inputs[f"maps_{ph}"] = voxelmap_output(wildcards, "maps", ph)
        inputs[f"image_{ph}"] = voxelmap_output(wildcards, "image.nii.gz", ph)
    return inputs


def get_assign_habitats_inputs(wildcards):
    """Resampled image and mask of the first habitat phase, and every phase's radiomics-stage
    image (`phase_{phase}`, for the per-phase mean intensities of each habitat)."""
    modality = COHORT.modality(wildcards.patient)
    inputs = {
        "image": voxelmap_output(wildcards, "image.nii.gz"),
        "mask": voxelmap_output(wildcards, "mask.nii.gz"),
    }
    for ph in COHORT.phases(wildcards.patient):
        inputs[f"phase_{ph}"] = paths.image_path(
            SETTINGS.radiomics_stage[modality],
            "image.nii.gz",
            center=wildcards.center,
            patient=wildcards.patient,
            phase=ph,
        )
    return inputs


def habitat_reference():
    """The reference habitats: a frozen file from the config, else this cohort's."""
    if HABITATS.reference:
        return workflow_file(HABITATS.reference)
    return paths.cohort_path("habitats", "reference_habitats.parquet")


def habitat_targets(stage, name):
    return [
        paths.patient_path(stage, name, center=COHORT.center(p), patient=p)
        for p in habitat_patients()
    ]


DEEP_INPUTS = SETTINGS.deep_inputs if SETTINGS.deep_enabled else {}


def deep_input_patients(spec):
    """Patients that get input `spec`: modality, phases acquired, a tumor on the first phase."""
    return [
        p
        for p in COHORT.patients
        if COHORT.modality(p) in spec.modalities
        and all(ph in COHORT.phases(p) for ph in spec.phases)
        and has_tumor(p, spec.phases[0])
    ]


def deep_input_targets():
    """Every configured input tensor of every eligible patient."""
    targets = []
    for name, spec in DEEP_INPUTS.items():
        for p in deep_input_patients(spec):
            where = dict(center=COHORT.center(p), patient=p)
            if spec.per_phase:
                targets += [
                    paths.image_path("deep", f"{name}.npz", phase=ph, **where)
                    for ph in spec.phases
                ]
            else:
                targets.append(paths.patient_path("deep", f"{name}.npz", **where))
    return targets


def get_deep_image_input(wildcards):
    """Normalised image and region mask of one phase for a per-phase input tensor."""
    spec = DEEP_INPUTS[wildcards.input]
    where = dict(
        center=wildcards.center, patient=wildcards.patient, phase=wildcards.phase
    )
    return {
        f"image_{wildcards.phase}": paths.image_path(
            "normalize", "image.nii.gz", **where
        ),
        "mask": paths.image_path("regions", REGION_FILES[spec.region], **where),
    }


def get_deep_stack_input(wildcards):
    """Normalised images of the stacked phases and the first phase's region mask."""
    spec = DEEP_INPUTS[wildcards.input]
    where = dict(center=wildcards.center, patient=wildcards.patient)
    inputs = {
        f"image_{ph}": paths.image_path("normalize", "image.nii.gz", phase=ph, **where)
        for ph in spec.phases
    }
    inputs["mask"] = paths.image_path(
        "regions", REGION_FILES[spec.region], phase=spec.phases[0], **where
    )
    return inputs


def get_final_targets():
    return [
        paths.cohort_path("preprocess", "summary.parquet"),
        paths.cohort_path("preprocess", "qc_montage.png"),
        paths.cohort_path("radiomics", "features.parquet"),
        *(
            [paths.cohort_path("radiomics", "reader_icc.parquet")]
            if reader2_images()
            else []
        ),
        *(
            [
                paths.cohort_path("habitats", "features.parquet"),
                paths.cohort_path("habitats", "k_selection.png"),
            ]
            if habitat_patients()
            else []
        ),
        *deep_input_targets(),
        *(
            [paths.cohort_path("segmentation", "dice.parquet")]
            if segmentation_sets()[1]
            else []
        ),
    ]


# ---- studies (workflow/rules/studies.smk) ----
import os
import sys
from pathlib import Path

from hccrad import studies as hccrad_studies

STATS_ENV = "../../envs/stats.yaml"
# The study files (config key `studies`; default: the five seed studies).
STUDY_FILES = [
    workflow_file(str(f))
    for f in config.get("studies", list(hccrad_studies.DEFAULT_STUDY_FILES))
]
# Jobs that Snakemake starts on a cluster parse the workflow again: the estimator check (it
# imports scikit-learn, ~1 s) runs once, in the main process.
STUDIES = hccrad_studies.load_studies(
    STUDY_FILES, check_estimators=workflow.is_main_process
)


def study_path(study, name):
    """A file of a study's folder, results/cohort/studies/{study}/{name}."""
    return f"{hccrad_studies.study_dir(study)}/{name}"


def study_config_files(study):
    """The study file and the defaults merged under it (inputs: editing them reruns)."""
    spec_file = STUDIES[study].path
    files = {"spec": spec_file}
    defaults = Path(spec_file).parent / "defaults.yaml"
    if defaults.is_file():
        files["defaults"] = str(defaults)
    return files


def study_patients(study):
    """{patient: modality} of the cohort patients of the study's modality."""
    modality = STUDIES[study].modality
    return {p: modality for p in COHORT.patients if COHORT.modality(p) == modality}


def get_study_splits_inputs(wildcards):
    return {**study_config_files(wildcards.study), "clinical": str(SETTINGS.clinical)}


def get_run_study_inputs(study):
    """Input function of run_study_{study}: spec, splits and the tables its blocks read."""

    def inputs(wildcards):
        tables = hccrad_studies.study_inputs(STUDIES[study], str(SETTINGS.clinical))
        return {
            **study_config_files(study),
            "splits": study_path(study, "splits.parquet"),
            **tables,
        }

    return inputs


def study_output_paths(study):
    """The declared outputs of run_study_{study} (hccrad.studies.study_outputs)."""
    outputs = hccrad_studies.study_outputs(STUDIES[study])
    return {key: study_path(study, name) for key, name in outputs.items()}


def study_unavailable(study):
    """Why a configured study cannot run on this cohort ('' when it can)."""
    spec = STUDIES[study]
    if not study_patients(study):
        return f"no {spec.modality} patient in the cohort"
    needs = hccrad_studies.study_inputs(spec, str(SETTINGS.clinical))
    if "habitats" in needs and not habitat_patients():
        return "it needs habitat features and no patient gets habitats"
    if "reader_icc" in needs and not reader2_images():
        return "its ICC filter needs second-reader masks and the cohort has none"
    return ""


def study_targets():
    """Every output of every configured study that can run on this cohort (for rule all);
    the others are skipped with a message on stderr."""
    targets = []
    for study in STUDIES:
        reason = study_unavailable(study)
        if reason:
            print(f"hccrad: study {study} skipped: {reason}", file=sys.stderr)
            continue
        targets.append(study_path(study, "splits.parquet"))
        targets += list(study_output_paths(study).values())
    return targets


# ---- deep models of the studies (workflow/rules/deep.smk) ----
def deep_model_spec(study, model):
    spec = STUDIES[study].raw.get("deep_models", {}).get(model)
    if spec is None:
        raise ValueError(f"study {study}: no deep model {model!r}")
    return spec


def deep_model_inputs(study, model):
    """{patient: input .npz} of the study's patients that have the model's input."""
    spec = deep_model_spec(study, model)
    inp = DEEP_INPUTS.get(spec["input"])
    if inp is None:
        raise ValueError(
            f"study {study}, deep model {model}: input {spec['input']!r} is not in deep.inputs"
        )
    phase = spec.get("phase", inp.phases[0])
    out = {}
    for p in deep_input_patients(inp):
        if COHORT.modality(p) != STUDIES[study].modality:
            continue
        where = dict(center=COHORT.center(p), patient=p)
        out[p] = (
            paths.image_path("deep", f"{inp.name}.npz", phase=phase, **where)
            if inp.per_phase
            else paths.patient_path("deep", f"{inp.name}.npz", **where)
        )
    return out


def get_train_deep_inputs(wildcards):
    inputs = {
        f"npz_{p}": path
        for p, path in deep_model_inputs(wildcards.study, wildcards.model).items()
    }
    inputs["splits"] = study_path(wildcards.study, "splits.parquet")
    inputs["clinical"] = str(SETTINGS.clinical)
    return inputs


def get_deep_outputs_inputs(wildcards):
    inputs = get_train_deep_inputs(wildcards)
    inputs["checkpoint"] = deep_model_path(
        wildcards.study, wildcards.model, "checkpoint.pt"
    )
    return inputs


def deep_model_path(study, model, name):
    return study_path(study, f"deep/{model}/{name}")


def deep_model_targets():
    """Grad-CAM folders of every deep model of every runnable study (features are inputs of
    the studies' table blocks)."""
    out = []
    for study, spec in STUDIES.items():
        if study_unavailable(study):
            continue
        for model in spec.raw.get("deep_models", {}):
            if deep_model_inputs(study, model):
                out.append(deep_model_path(study, model, "gradcam"))
    return out


# ---- report (workflow/rules/report.smk; `snakemake --report`, docs/report.md) ----
# Captions are paths relative to workflow/rules/, where the rules using them are defined.
CAPTIONS = "../report"


def caption(name):
    return f"{CAPTIONS}/{name}.rst"


def report_studies():
    """The configured studies that run on this cohort, in config order."""
    return [s for s in STUDIES if not study_unavailable(s)]


def study_category(study):
    """Report category of a study: `Study {n} - {name}` (n: its place in the config)."""
    return f"Study {list(STUDIES).index(study) + 1} - {study}"


def get_study_category(wildcards):
    return study_category(wildcards.study)


def _study_report_item(key, path, study):
    """`path` (output `key` of run_study_{study}) flagged for the report, or as is."""
    category = study_category(study)
    if key.startswith("roc_"):
        return report(
            path,
            caption=caption("study_roc"),
            category=category,
            subcategory="Discrimination",
            labels={"split": key.removeprefix("roc_")},
        )
    if key in ("calibration_png", "decision_curve_png"):
        name = key.removesuffix("_png")
        return report(
            path,
            caption=caption(f"study_{name}"),
            category=category,
            subcategory="Calibration and decision curves",
            labels={"figure": name.replace("_", " ")},
        )
    if key in ("nomogram", "shap_beeswarm", "shap_waterfall"):
        return report(
            path,
            caption=caption(f"study_{key}"),
            category=category,
            subcategory="Explanation and nomogram",
            labels={"figure": key.replace("_", " ")},
        )
    if key.startswith("km_"):
        return report(
            path,
            caption=caption("study_km"),
            category=category,
            subcategory="Survival",
            labels={"endpoint": key.removeprefix("km_")},
        )
    return path


def study_report_outputs(study):
    """The outputs of run_study_{study}, its figures flagged for the report."""
    return {
        key: _study_report_item(key, path, study)
        for key, path in study_output_paths(study).items()
    }


def study_figures(study):
    """Figures of a study (its own and its deep models' folders), for the summary."""
    figures = [p for p in study_output_paths(study).values() if p.endswith(".png")]
    for model in STUDIES[study].raw.get("deep_models", {}):
        if deep_model_inputs(study, model):
            figures += [
                deep_model_path(study, model, "curves.png"),
                deep_model_path(study, model, "gradcam"),
            ]
    return figures


def get_summarize_results_inputs(wildcards):
    inputs = {"preprocess": paths.cohort_path("preprocess", "summary.parquet")}
    if segmentation_sets()[1]:
        inputs["dice"] = paths.cohort_path("segmentation", "dice.parquet")
    for study in report_studies():
        for name in ("performance", "comparisons", "metrics"):
            ext = "json" if name == "metrics" else "parquet"
            inputs[f"{name}_{study}"] = study_path(study, f"{name}.{ext}")
    return inputs


def summarize_results_outputs():
    """summary.md and the report's HTML tables (preprocessing, Dice, one per study)."""
    outputs = {
        "summary": f"{paths.RESULTS}/summary.md",
        "preprocessing": report(
            paths.cohort_path("report", "preprocessing.html"),
            caption=caption("preprocessing_table"),
            category="Preprocessing QC",
            subcategory="Cohort",
        ),
    }
    if segmentation_sets()[1]:
        outputs["dice"] = report(
            paths.cohort_path("report", "segmentation_dice.html"),
            caption=caption("segmentation_dice"),
            category="Preprocessing QC",
            subcategory="Segmentation",
        )
    for study in report_studies():
        outputs[f"study_{study}"] = report(
            paths.cohort_path("report", f"{study}.html"),
            caption=caption("study_table"),
            category=study_category(study),
            subcategory="Performance tables",
        )
    return outputs


def summarize_results_params():
    """Studies in report order with their figures, and the skipped ones with the reason."""
    return {
        "studies": {s: study_figures(s) for s in report_studies()},
        "skipped": {s: study_unavailable(s) for s in STUDIES if study_unavailable(s)},
    }


def report_targets():
    return [f"{paths.RESULTS}/summary.md"]


# ---- audit (workflow/rules/audit.smk) -------------------------------------------------------
from hccrad.audit.planted import find_truth
from hccrad.audit.run import AUDIT_OUTPUTS

# truth.tsv of a synthetic cohort (config audit.truth, else beside the cohort sheet); None for
# real cohorts (the planted-signal table is then empty).
AUDIT_TRUTH = find_truth(SETTINGS.cohort, SETTINGS.audit.truth)


def audit_output(name):
    """Output `name` of the audit (hccrad.audit.AUDIT_OUTPUTS), results/cohort/audit/..."""
    return paths.cohort_path("audit", AUDIT_OUTPUTS[name])


def audit_targets():
    """Every audit output (for rule all)."""
    return [audit_output(name) for name in AUDIT_OUTPUTS]


def audit_study_dirs():
    """Folders of the studies that run on this cohort."""
    return [hccrad_studies.study_dir(s) for s in STUDIES if not study_unavailable(s)]


def get_audit_inputs(wildcards):
    """The sheets, the radiomics tables and every other target of the run: the audit runs last,
    so that its manifest and privacy scan see every result."""
    inputs = {
        "cohort": str(SETTINGS.cohort),
        "clinical": str(SETTINGS.clinical),
        "features": paths.cohort_path("radiomics", "features.parquet"),
        "results": [*get_final_targets(), *study_targets(), *deep_model_targets()],
    }
    if reader2_images():
        inputs["reader_icc"] = paths.cohort_path("radiomics", "reader_icc.parquet")
    if AUDIT_TRUTH is not None:
        inputs["truth"] = str(AUDIT_TRUTH)
    return inputs


def audit_report(name, subcategory, label):
    """Audit output `name` flagged for the report (caption workflow/report/audit_{name}.rst)."""
    return report(
        audit_output(name),
        caption=caption(f"audit_{name}"),
        category="Audit",
        subcategory=subcategory,
        labels={"item": label},
    )
