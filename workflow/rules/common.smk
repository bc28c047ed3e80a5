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
from hccrad.patient import deep_key as steps_deep_key
from hccrad.snakemake_speedups import (
    cache_function_signatures,
    freeze_constant_resources,
    memoize_script_sources,
    memoize_source_uri_parsing,
)
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
DEEP_THREADS = int(config.get("deep", {}).get("threads", 2))
# Jobs on the cohort's longest chain (the U-Net, then the patients it segments; the studies'
# deep models and fits) go before per-patient jobs that are ready at the same time: the chain
# starts as soon as its inputs exist instead of after every other patient's radiomics and
# habitats, and per-patient jobs fill the cores beside it. Order only; outputs are the same.
CHAIN_PRIORITY = 10


def modality_of(wildcards):
    return SETTINGS.modality(COHORT.modality(wildcards.patient))


# Parameters of the preprocessing rules (listed so that changing them reruns the stage).
REGISTER_PARAMS = dict(
    phases=lambda w: COHORT.phases(w.patient),
    reference=lambda w: modality_of(w).reference_phase,
    n4=lambda w: modality_of(w).n4,
    spacing=SETTINGS.spacing,
    n4_settings=(
        SETTINGS.n4_shrink_factor,
        SETTINGS.n4_iterations,
        SETTINGS.n4_convergence_threshold,
        SETTINGS.n4_spline_distance_mm,
    ),
    method=SETTINGS.registration_method,
    refine=SETTINGS.registration_refine,
    seed=SETTINGS.seed,
    keep_intermediates=SETTINGS.keep_intermediates,
)
NORMALIZE_PARAMS = dict(
    modality=lambda w: COHORT.modality(w.patient),
    phases=lambda w: COHORT.phases(w.patient),
    normalization=lambda w: modality_of(w).normalization,
    ring=(SETTINGS.ring_distance_mm, SETTINGS.ring_clip_to_liver),
    # the input tensors this patient gets: {name: definition}
    deep_inputs=lambda w: {s.name: repr(s) for s in patient_deep_inputs(w.patient)},
)


def get_register_inputs(wildcards):
    """Raw image (`image_{phase}`) and given masks (`{kind}_{phase}`) of every phase of one
    patient, as the sheet lists them."""
    inputs = {}
    for ph in COHORT.phases(wildcards.patient):
        rec = COHORT.record(wildcards.patient, ph)
        inputs[f"image_{ph}"] = str(rec.image)
        for kind in ("tumor", "liver", "reader2"):
            mask = rec.mask(kind)
            if mask is not None:
                inputs[f"{kind}_{ph}"] = str(mask)
    return inputs


def reference_phases(patients):
    """{patient: reference phase of its modality}."""
    return {p: SETTINGS.modality(COHORT.modality(p)).reference_phase for p in patients}


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


def segmented_patients():
    """Patients for whom the U-Net predicts a mask the sheet does not give."""
    return [
        p for p in COHORT.patients if any(predicts_mask(p, k) for k in PREDICTED_KINDS)
    ]


# Patients preprocessed in two jobs around segment_patient (register_patient, normalize_patient;
# wildcard constraint); all others in one (preprocess_patient). (?!) matches nothing.
SEGMENTED_PATIENTS = "|".join(segmented_patients()) or "(?!)"


def get_predicted_masks(wildcards):
    """The U-Net's masks (`liver`, `tumor`) for the kinds the sheet does not give ({} mostly)."""
    return {
        kind: predicted_mask(wildcards.center, wildcards.patient, kind)
        for kind in PREDICTED_KINDS
        if predicts_mask(wildcards.patient, kind)
    }


def register_manifest(patient):
    return paths.patient_path(
        "register", "manifest.json", center=COHORT.center(patient), patient=patient
    )


def normalize_manifest(patient):
    return paths.patient_path(
        "normalize", "manifest.json", center=COHORT.center(patient), patient=patient
    )


def get_patient_images(wildcards):
    """The patient's two preprocessing manifests (its images, masks, regions and tensors)."""
    return {
        "registration": register_manifest(wildcards.patient),
        "normalization": normalize_manifest(wildcards.patient),
    }


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


def get_train_segmentation_inputs(wildcards):
    train, _, _ = segmentation_sets()
    if not train:
        raise ValueError(
            "segmentation: no patient with given liver and tumor masks to train the U-Net on; "
            "give segmentation.checkpoint or disable segmentation"
        )
    return {f"register_{p}": register_manifest(p) for p in train}


def get_evaluate_segmentation_inputs(wildcards):
    """The U-Net and the held-out patients' registration manifests (image and given masks)."""
    _, held, _ = segmentation_sets()
    inputs = {"checkpoint": segmentation_checkpoint()}
    for p in held:
        inputs[f"register_{p}"] = register_manifest(p)
    return inputs


def get_radiomics_inputs(wildcards):
    """The patient's preprocessing manifests and its modality's PyRadiomics parameter file."""
    modality = COHORT.modality(wildcards.patient)
    return {
        **get_patient_images(wildcards),
        # an input, so that editing the parameter file reruns the extraction
        "params": workflow_file(str(SETTINGS.radiomics_params[modality])),
    }


def workflow_file(path):
    """A configured file: as given when it exists from the working directory, else relative to
    the workflow's own folder (so that shipped presets work from any working directory).
    """
    if os.path.isabs(path) or os.path.exists(path):
        return str(path)
    return os.path.join(workflow.basedir, path)


def reader2_patients():
    """Patients with both readers' tumor masks on some phase (own or the reference phase's)."""
    return [
        p
        for p in COHORT.patients
        if any(
            has_tumor(p, ph) and mask_source_phase(p, ph, "reader2") is not None
            for ph in COHORT.phases(p)
        )
    ]


def radiomics_json(patient):
    return paths.patient_path(
        "radiomics", "features.json", center=COHORT.center(patient), patient=patient
    )


def get_reader_icc_jsons():
    return [radiomics_json(p) for p in reader2_patients()]


def radiomics_patients():
    """Patients with a tumor mask on some phase (own, the reference phase's or predicted)."""
    return [
        p for p in COHORT.patients if any(has_tumor(p, ph) for ph in COHORT.phases(p))
    ]


def get_radiomics_jsons():
    return [radiomics_json(p) for p in radiomics_patients()]


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


def voxelmap_output(wildcards, name, phase=None):
    """Voxel-map output `name` of cluster_habitats (first habitat phase unless given)."""
    return paths.image_path(
        "voxelmaps",
        name,
        center=wildcards.center,
        patient=wildcards.patient,
        phase=phase or HABITATS.phases[0],
    )


def voxelmap_outputs():
    """Voxel-map outputs of cluster_habitats: per habitat phase the maps folder (`maps_{phase}`), the
    resampled image (`image_{phase}`) and tumor mask (`mask_{phase}`)."""
    outputs = {}
    for ph in HABITATS.phases:
        outputs[f"maps_{ph}"] = directory(
            paths.image_path("voxelmaps", "maps", phase=ph)
        )
        outputs[f"image_{ph}"] = paths.image_path("voxelmaps", "image.nii.gz", phase=ph)
        outputs[f"mask_{ph}"] = paths.image_path("voxelmaps", "mask.nii.gz", phase=ph)
    return outputs


def get_assign_habitats_inputs(wildcards):
    """Resampled image and mask of the first habitat phase (the subregions' grid)."""
    return {
        "image": voxelmap_output(wildcards, "image.nii.gz"),
        "mask": voxelmap_output(wildcards, "mask.nii.gz"),
    }


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
    """Patients that get input `spec` (patient_deep_inputs, habitat_deep_inputs)."""
    if spec.per_subregion:
        return [p for p in habitat_patients() if spec in habitat_deep_inputs(p)]
    return [p for p in COHORT.patients if spec in patient_deep_inputs(p)]


def _gets_deep_input(patient, spec):
    return (
        COHORT.modality(patient) in spec.modalities
        and all(ph in COHORT.phases(patient) for ph in spec.phases)
        and has_tumor(patient, spec.phases[0])
    )


def patient_deep_inputs(patient):
    """The deep.inputs entries `patient` gets from its normalize_patient job: its modality,
    every phase of the entry acquired, a tumor on the entry's first phase (not the per-habitat
    entries: habitat_deep_inputs)."""
    return [
        spec
        for spec in DEEP_INPUTS.values()
        if not spec.per_subregion and _gets_deep_input(patient, spec)
    ]


def habitat_deep_inputs(patient):
    """The `region: habitats` deep.inputs entries a habitat patient gets from assign_habitats."""
    return [
        spec
        for spec in DEEP_INPUTS.values()
        if spec.per_subregion and _gets_deep_input(patient, spec)
    ]


def habitat_deep_manifest(patient):
    """Manifest of a patient's per-subregion deep-input tensors (assign_habitats)."""
    return paths.patient_path(
        "habitats", "deep_inputs.json", center=COHORT.center(patient), patient=patient
    )


def get_final_targets():
    return [
        paths.cohort_path("preprocess", "summary.parquet"),
        paths.cohort_path("preprocess", "qc_montage.png"),
        paths.cohort_path("radiomics", "features.parquet"),
        *(
            [paths.cohort_path("radiomics", "reader_icc.parquet")]
            if reader2_patients()
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
# imports scikit-learn and xgboost, ~2 s) runs once, in the main process, and not again while
# the study models and package versions stay the same (markers in .snakemake/hccrad).
STUDIES = hccrad_studies.load_studies(
    STUDY_FILES,
    check_estimators=workflow.is_main_process,
    estimator_cache=os.path.join(".snakemake", "hccrad"),
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
    if "reader_icc" in needs and not reader2_patients():
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


def deep_model_input(study, model):
    """The DeepInputSpec and phase (None: stacked) a study's deep model reads."""
    spec = deep_model_spec(study, model)
    inp = DEEP_INPUTS.get(spec["input"])
    if inp is None:
        raise ValueError(
            f"study {study}, deep model {model}: input {spec['input']!r} is not in deep.inputs"
        )
    if inp.per_subregion and spec.get("mil"):
        raise ValueError(
            f"study {study}, deep model {model}: MIL features need a per-region input, not "
            f"the per-subregion {spec['input']!r}"
        )
    return inp, (spec.get("phase", inp.phases[0]) if inp.per_phase else None)


def deep_model_input_key(study, model):
    """Manifest key of the model's tensor (hccrad.patient.deep_key)."""
    inp, phase = deep_model_input(study, model)
    return steps_deep_key(inp.name, phase)


def deep_model_inputs(study, model):
    """{patient: manifest listing the model's input} of the study's patients that have it (the
    normalize manifest; assign_habitats' deep manifest for per-subregion inputs)."""
    inp, _ = deep_model_input(study, model)
    manifest = habitat_deep_manifest if inp.per_subregion else normalize_manifest
    return {
        p: manifest(p)
        for p in deep_input_patients(inp)
        if COHORT.modality(p) == STUDIES[study].modality
    }


def deep_model_per_subregion(study, model):
    """Whether the model is one network per habitat subregion (a `region: habitats` input)."""
    return deep_model_input(study, model)[0].per_subregion


def get_train_deep_inputs(wildcards):
    inputs = {
        f"npz_{p}": path
        for p, path in deep_model_inputs(wildcards.study, wildcards.model).items()
    }
    inputs["splits"] = study_path(wildcards.study, "splits.parquet")
    inputs["clinical"] = str(SETTINGS.clinical)
    return inputs


def get_deep_outputs_inputs(wildcards):
    """The trained model and the splits. The patients' manifests are inputs of the training
    (any change retrains, hence reruns this), so they come here as a parameter: at 2,000
    patients that is 2,000 fewer files per model for Snakemake to plan."""
    return {
        "checkpoint": deep_model_path(
            wildcards.study, wildcards.model, "checkpoint.pt"
        ),
        "splits": study_path(wildcards.study, "splits.parquet"),
    }


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
    if reader2_patients():
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
