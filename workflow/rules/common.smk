# Settings, sheets and studies loaded once; wildcard constraints; input functions (get_<what>).
# Who gets what is decided by hccrad.plan.CohortPlan (unit-tested without Snakemake): the
# functions below only turn its answers into the paths and report items of the rules.
import os
import sys

# The package is imported from this checkout, also by jobs inside per-rule conda envs
# (--sdm conda), which do not have it installed: its folder is put first on their module path.
LIB = os.path.join(workflow.basedir, "workflow", "lib")
sys.path.insert(0, LIB)
os.environ.update(
    PYTHONPATH=os.pathsep.join(filter(None, [LIB, os.environ.get("PYTHONPATH")]))
)

from hccrad import paths
from hccrad import studies as hccrad_studies
from hccrad.audit.planted import find_truth
from hccrad.audit.run import AUDIT_OUTPUTS
from hccrad.config import project_file, register_params, settings_from_config
from hccrad.deep.segmentation.config import cpus_per_gpu, requested_gpus
from hccrad.plan import PREDICTED_KINDS, CohortPlan
from hccrad.sheets import load_cohort
from hccrad.snakemake_speedups import (
    cache_function_signatures,
    freeze_constant_resources,
    memoize_script_sources,
    memoize_source_uri_parsing,
    stop_reevaluation_timers,
)
from hccrad.studies.files import radiomics_table

# The config is validated once (schema, defaults, cross-checks), then both sheets are checked
# (schemas + cross-checks + files exist) before any job runs.
SETTINGS = settings_from_config(config)
COHORT = load_cohort(SETTINGS)


def workflow_file(path):
    """A configured file, from the working directory or the workflow's folder."""
    return project_file(path, workflow.basedir)


# Jobs that Snakemake starts on a cluster parse the workflow again: the estimator check (it
# imports scikit-learn and xgboost, ~2 s) runs once, in the main process, and not again while
# the study models and package versions stay the same (markers in .snakemake/hccrad).
STUDIES = hccrad_studies.load_studies(
    [workflow_file(str(f)) for f in SETTINGS.studies],
    overlay=SETTINGS.overlay,
    check_estimators=workflow.is_main_process,
    estimator_cache=os.path.join(".snakemake", "hccrad"),
)
PLAN = CohortPlan(SETTINGS, COHORT, STUDIES)
HABITATS = SETTINGS.habitats
SEGMENTATION = SETTINGS.segmentation


wildcard_constraints:
    center="[A-Za-z0-9]+",
    patient="[A-Za-z0-9]+",
    phase="|".join(SETTINGS.all_phases),
    kind="tumor|liver|reader2|reader1_repeat",
    input="|".join(SETTINGS.deep_inputs) or "none",
    # the studies' own radiomics parameter files, by name ((?!) matches nothing)
    params="|".join(PLAN.radiomics_param_files) or "(?!)",


PREPROCESS_ENV = "../../envs/preprocess.yaml"
RADIOMICS_ENV = "../../envs/radiomics.yaml"
DEEP_ENV = "../../envs/deep.yaml"
STATS_ENV = "../../envs/stats.yaml"
# GPUs a deep training job asks for (resources: gpu); 0 on CPU-only clusters.
DEEP_TRAIN_GPUS = SETTINGS.deep.train_gpus
DEEP_THREADS = SETTINGS.deep.threads
# CPUs per GPU of a GPU job (resources: cpus_per_gpu, the SLURM plugin's --cpus-per-gpu): its
# threads over its GPUs; 0 without a GPU (the plugin then asks for `threads` CPUs per task).
DEEP_TRAIN_CPUS_PER_GPU = cpus_per_gpu(DEEP_THREADS, DEEP_TRAIN_GPUS)
# The U-Net training job asks for a GPU when segmentation.train.device does (cuda, cuda:N), or
# when it is auto (the default) and deep.train_gpus > 0; none with device cpu.
SEGMENTATION_GPUS = requested_gpus(SEGMENTATION.train, DEEP_TRAIN_GPUS)
SEGMENTATION_CPUS_PER_GPU = cpus_per_gpu(SEGMENTATION.threads, SEGMENTATION_GPUS)
# Jobs on the cohort's longest chain (the U-Net, then the patients it segments; the studies'
# deep models and fits) go before per-patient jobs that are ready at the same time: the chain
# starts as soon as its inputs exist instead of after every other patient's radiomics and
# habitats, and per-patient jobs fill the cores beside it. Order only; outputs are the same.
CHAIN_PRIORITY = 10


def modality_of(wildcards):
    return SETTINGS.modality(COHORT.modality(wildcards.patient))


# Parameters of the preprocessing rules: every value the jobs use, as plain data (Snakemake
# compares built-in values only), so that changing one reruns the stage
# (hccrad.config.PreprocessSettings.from_params reads them back in the job).
REGISTER_PARAMS = dict(
    phases=lambda w: COHORT.phases(w.patient),
    reference=lambda w: modality_of(w).reference_phase,
    n4=lambda w: modality_of(w).n4,
    # CT intensities rounded to integer HU after each interpolation (resample.round_ct)
    round_intensities=lambda w: (
        SETTINGS.resampling.round_ct and COHORT.modality(w.patient) == "CT"
    ),
    # the sheet's selections within the raw files: series of a DICOM folder, mask segments
    selections=lambda w: PLAN.raw_selections(w.patient),
    **register_params(SETTINGS),
)
NORMALIZE_PARAMS = dict(
    modality=lambda w: COHORT.modality(w.patient),
    phases=lambda w: COHORT.phases(w.patient),
    reference=lambda w: modality_of(w).reference_phase,
    normalization=lambda w: modality_of(w).normalization.as_param(),
    ring=(SETTINGS.ring_distance_mm, SETTINGS.ring_clip_to_liver),
    # the input tensors this patient gets: {name: definition}
    deep_inputs=lambda w: {
        s.name: s.as_param() for s in PLAN.patient_deep_inputs(w.patient)
    },
)


# ---- preprocessing and segmentation (preprocess.smk, segmentation.smk) ----
def get_register_inputs(wildcards):
    """Raw image (`image_{phase}`) and given masks (`{kind}_{phase}`) of every phase."""
    return PLAN.raw_inputs(wildcards.patient)


def reference_phases(patients):
    """{patient: reference phase of its modality}."""
    return {p: PLAN.reference_phase(p) for p in patients}


def phase_orders(patients):
    """{patient: its modality's phases, in order} (which phase's mask stands for another)."""
    return {p: list(SETTINGS.modality(COHORT.modality(p)).phases) for p in patients}


# Patients preprocessed in two jobs around segment_patient (register_patient, normalize_patient;
# wildcard constraint); all others in one (preprocess_patient). (?!) matches nothing.
SEGMENTED_PATIENTS = "|".join(PLAN.segmented_patients) or "(?!)"


def get_predicted_masks(wildcards):
    """The U-Net's masks (`liver`, `tumor`) for the kinds the sheet does not give ({} mostly)."""
    return {
        kind: PLAN.predicted_mask(wildcards.patient, kind)
        for kind in PLAN.predicted_kinds(wildcards.patient)
    }


def register_manifest(patient):
    return PLAN.patient_file(patient, "register", "manifest.json")


def normalize_manifest(patient):
    return PLAN.patient_file(patient, "normalize", "manifest.json")


def get_patient_images(wildcards):
    """The patient's two preprocessing manifests (its images, masks, regions and tensors)."""
    return {
        "registration": register_manifest(wildcards.patient),
        "normalization": normalize_manifest(wildcards.patient),
    }


def segmentation_checkpoint():
    if SEGMENTATION.checkpoint:
        return workflow_file(SEGMENTATION.checkpoint)
    return paths.cohort_path("segmentation", "checkpoint.pt")


def get_train_segmentation_inputs(wildcards):
    train = PLAN.segmentation.train
    if not train:
        raise ValueError(
            "segmentation: no patient with given liver and tumor masks to train the U-Net on; "
            "give segmentation.checkpoint or disable segmentation"
        )
    return {f"register_{p}": register_manifest(p) for p in train}


def get_evaluate_segmentation_inputs(wildcards):
    """The U-Net and the held-out patients' registration manifests (image and given masks)."""
    inputs = {"checkpoint": segmentation_checkpoint()}
    for p in PLAN.segmentation.held_out:
        inputs[f"register_{p}"] = register_manifest(p)
    return inputs


# ---- radiomics (radiomics.smk) and QC (qc.smk) ----
def get_radiomics_inputs(wildcards):
    """The patient's preprocessing manifests and its modality's PyRadiomics parameter file."""
    modality = COHORT.modality(wildcards.patient)
    return {
        **get_patient_images(wildcards),
        # an input, so that editing the parameter file reruns the extraction
        "params": workflow_file(str(SETTINGS.radiomics_params[modality])),
    }


def get_study_radiomics_inputs(wildcards):
    """The patient's preprocessing manifests and the studies' parameter file `{params}`."""
    return {
        **get_patient_images(wildcards),
        "params": workflow_file(PLAN.radiomics_param_files[wildcards.params]),
    }


def get_reader_icc_jsons():
    return [PLAN.radiomics_json(p) for p in PLAN.reader2_patients]


def get_reader_icc_intra_jsons():
    return [PLAN.radiomics_json(p) for p in PLAN.reader1_repeat_patients]


def get_radiomics_jsons():
    return [PLAN.radiomics_json(p) for p in PLAN.radiomics_patients]


def get_study_radiomics_jsons(wildcards):
    """The extractions of the studies' parameter file `{params}` (its modalities' patients)."""
    patients = PLAN.radiomics_params_patients(wildcards.params)
    return [PLAN.radiomics_json(p, wildcards.params) for p in patients]


def get_study_reader_icc_jsons(wildcards):
    """The extractions of `{params}` of its patients with a second reader."""
    patients = PLAN.radiomics_params_icc_patients(wildcards.params)
    return [PLAN.radiomics_json(p, wildcards.params) for p in patients]


def get_study_reader_icc_intra_jsons(wildcards):
    """The extractions of `{params}` of its patients with reader 1's repeat outline."""
    patients = PLAN.radiomics_params_intra_patients(wildcards.params)
    return [PLAN.radiomics_json(p, wildcards.params) for p in patients]


def patient_targets(stage, name):
    return [PLAN.patient_file(p, stage, name) for p in COHORT.patients]


# ---- habitats (habitats.smk) ----
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


def habitat_training_splits():
    """The split tables of the studies that read the subregions (PLAN.habitat_studies): the k
    and the reference habitats are fitted on the patients every one of them trains on.
    """
    return [study_path(s, "splits.parquet") for s in PLAN.habitat_studies]


def habitat_targets(stage, name):
    return [PLAN.patient_file(p, stage, name) for p in PLAN.habitat_patients]


def habitat_deep_manifest(patient):
    """Manifest of a patient's per-subregion deep-input tensors (assign_habitats)."""
    return PLAN.patient_file(patient, "habitats", "deep_inputs.json")


def get_final_targets():
    return [
        paths.cohort_path("preprocess", "summary.parquet"),
        paths.cohort_path("preprocess", "qc_montage.png"),
        paths.cohort_path("radiomics", "features.parquet"),
        *(
            [paths.cohort_path("radiomics", "reader_icc.parquet")]
            if PLAN.reader2_patients
            else []
        ),
        *(
            [paths.cohort_path("radiomics", "reader_icc_intra.parquet")]
            if PLAN.reader1_repeat_patients
            else []
        ),
        *(
            [
                paths.cohort_path("habitats", "features.parquet"),
                paths.cohort_path("habitats", "k_selection.png"),
            ]
            if PLAN.habitat_patients
            else []
        ),
        *(
            [paths.cohort_path("segmentation", "dice.parquet")]
            if PLAN.segmentation.held_out
            else []
        ),
    ]


# ---- studies (studies.smk) ----
def study_path(study, name):
    """A file of a study's folder, results/cohort/studies/{study}/{name}."""
    return f"{hccrad_studies.study_dir(study)}/{name}"


def study_config_files(study):
    """The study file and the defaults merged under it (inputs: editing them reruns)."""
    spec_file = STUDIES[study].path
    files = {"spec": spec_file}
    defaults = os.path.join(os.path.dirname(spec_file), "defaults.yaml")
    if os.path.isfile(defaults):
        files["defaults"] = defaults
    return files


def get_study_splits_inputs(wildcards):
    return {**study_config_files(wildcards.study), "clinical": str(SETTINGS.clinical)}


def get_run_study_inputs(study):
    """Input function of run_study_{study}: spec, splits and the tables its blocks read."""

    def inputs(wildcards):
        return {
            **study_config_files(study),
            "splits": study_path(study, "splits.parquet"),
            **PLAN.study_tables(study),
        }

    return inputs


def study_targets():
    """Every output of every configured study that can run on this cohort (for rule all);
    the others are skipped with a message on stderr."""
    for study, reason in PLAN.skipped_studies.items():
        print(f"hccrad: study {study} skipped: {reason}", file=sys.stderr)
    targets = []
    for study in PLAN.runnable_studies:
        targets.append(study_path(study, "splits.parquet"))
        targets += list(PLAN.study_outputs(study).values())
    return targets


# ---- deep models of the studies (deep.smk) ----
def deep_model_path(study, model, name):
    return study_path(study, f"deep/{model}/{name}")


def deep_model_inputs(study, model):
    """{patient: manifest listing the model's input} of the study's patients that have it (the
    normalize manifest; assign_habitats' deep manifest for per-subregion inputs)."""
    per_subregion = PLAN.deep_model_input(study, model).spec.per_subregion
    manifest = habitat_deep_manifest if per_subregion else normalize_manifest
    return {p: manifest(p) for p in PLAN.deep_model_patients(study, model)}


def study_backbone_inputs(study):
    """{deep model: {"manifests": {patient: manifest}, "input_key": key}} of the networks a
    study's models train end to end (head.backbone). The manifests are inputs of the network's
    training (any change retrains it, hence reruns the study), so they come as a parameter.
    """
    out = {}
    for model in STUDIES[study].backbones:
        if PLAN.deep_model_input(study, model).spec.per_subregion:
            raise ValueError(
                f"study {study}: head.backbone {model!r} has a per-subregion input; end-to-end "
                "training needs one input per patient"
            )
        out[model] = {
            "manifests": deep_model_inputs(study, model),
            "input_key": PLAN.deep_model_input(study, model).key,
        }
    return out


def get_train_deep_inputs(wildcards):
    inputs = {
        f"npz_{p}": path
        for p, path in deep_model_inputs(wildcards.study, wildcards.model).items()
    }
    inputs["splits"] = study_path(wildcards.study, "splits.parquet")
    inputs["clinical"] = str(SETTINGS.clinical)
    weights = PLAN.deep_model_weights(wildcards.study, wildcards.model)
    if weights is not None:
        inputs["pretrained"] = weights
    return inputs


def get_deep_outputs_inputs(wildcards):
    """The trained model, the splits and the clinical table (labels of the per-split metrics).
    The patients' manifests are inputs of the training (any change retrains, hence reruns
    this), so they come here as a parameter: at 2,000 patients that is 2,000 fewer files per
    model for Snakemake to plan."""
    return {
        "checkpoint": deep_model_path(
            wildcards.study, wildcards.model, "checkpoint.pt"
        ),
        "splits": study_path(wildcards.study, "splits.parquet"),
        "clinical": str(SETTINGS.clinical),
    }


def deep_model_targets():
    """Grad-CAM folders of every deep model of every runnable study (features are inputs of
    the studies' table blocks)."""
    return [
        deep_model_path(study, model, "gradcam")
        for study, model in PLAN.trained_deep_models()
    ]


# ---- report (report.smk; `snakemake --report`, docs/report.md) ----
# Captions are paths relative to workflow/rules/, where the rules using them are defined.
CAPTIONS = "../report"


def caption(name):
    return f"{CAPTIONS}/{name}.rst"


def study_category(study):
    """Report category of a study: `Study {n} - {name}` (n: its place in the config)."""
    return f"Study {list(STUDIES).index(study) + 1} - {study}"


def get_study_category(wildcards):
    return study_category(wildcards.study)


def _study_figure(key):
    """(subcategory, caption, labels) of a study figure's report entry (output `key` of
    run_study_{study}), or None for a table."""
    if key.startswith("roc_"):
        return "Discrimination", "study_roc", {"split": key.removeprefix("roc_")}
    if key in ("calibration_png", "decision_curve_png"):
        name = key.removesuffix("_png")
        return (
            "Calibration and decision curves",
            f"study_{name}",
            {"figure": name.replace("_", " ")},
        )
    if key in ("nomogram", "shap_beeswarm", "shap_waterfall", "shap_force"):
        return (
            "Explanation and nomogram",
            f"study_{key}",
            {"figure": key.replace("_", " ")},
        )
    if key.startswith("km_"):
        return "Survival", "study_km", {"endpoint": key.removeprefix("km_")}
    return None


def _study_report_item(key, path, study):
    """`path` (output `key` of run_study_{study}) flagged for the report, or as is."""
    figure = _study_figure(key)
    if figure is None:
        return path
    subcategory, name, labels = figure
    return report(
        path,
        caption=caption(name),
        category=study_category(study),
        subcategory=subcategory,
        labels=labels,
    )


def study_report_outputs(study):
    """The outputs of run_study_{study}, its figures flagged for the report."""
    return {
        key: _study_report_item(key, path, study)
        for key, path in PLAN.study_outputs(study).items()
    }


def study_trained_deep_models(study):
    """The study's deep models that are trained (those with patients), in config order."""
    return [m for m in PLAN.deep_models(study) if PLAN.deep_model_patients(study, m)]


def study_figures(study):
    """Figures of a study (its own and its deep models' folders), for the summary."""
    figures = [p for p in PLAN.study_outputs(study).values() if p.endswith(".png")]
    for model in study_trained_deep_models(study):
        figures += [
            deep_model_path(study, model, "curves.png"),
            deep_model_path(study, model, "gradcam"),
        ]
    return figures


def study_network_metrics(study):
    """split_metrics.parquet of every trained deep model of a study: the networks' own
    performance per split on the study's report page."""
    return [
        deep_model_path(study, model, "split_metrics.parquet")
        for model in study_trained_deep_models(study)
    ]


def get_summarize_results_inputs(wildcards):
    inputs = {"preprocess": paths.cohort_path("preprocess", "summary.parquet")}
    if PLAN.segmentation.held_out:
        inputs["dice"] = paths.cohort_path("segmentation", "dice.parquet")
    for study in PLAN.runnable_studies:
        for name in ("performance", "comparisons", "metrics", "by_center"):
            ext = "json" if name == "metrics" else "parquet"
            inputs[f"{name}_{study}"] = study_path(study, f"{name}.{ext}")
        networks = study_network_metrics(study)
        if networks:
            inputs[f"split_metrics_{study}"] = networks
        if AUDIT_TRUTH is not None:
            inputs[f"predictions_{study}"] = study_path(study, "predictions.parquet")
    if AUDIT_TRUTH is not None:
        inputs["truth"] = str(AUDIT_TRUTH)
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
    if PLAN.segmentation.held_out:
        outputs["dice"] = report(
            paths.cohort_path("report", "segmentation_dice.html"),
            caption=caption("segmentation_dice"),
            category="Preprocessing QC",
            subcategory="Segmentation",
        )
    if SETTINGS.overlay is not None:
        outputs["scaled"] = report(
            paths.cohort_path("report", "scaled.html"),
            caption=caption("scaled"),
            category="Scaled for this run",
            subcategory="Overlay",
        )
    if AUDIT_TRUTH is not None:
        outputs["planted"] = report(
            paths.cohort_path("report", "planted_signal.html"),
            caption=caption("planted_signal"),
            category="Planted signal",
            subcategory="Synthetic cohort",
        )
    for study in PLAN.runnable_studies:
        outputs[f"study_{study}"] = report(
            paths.cohort_path("report", f"{study}.html"),
            caption=caption("study_table"),
            category=study_category(study),
            subcategory="Performance tables",
        )
    return outputs


def summarize_results_params():
    """Studies in report order with their figures, the skipped ones with the reason, and the
    values the configuration overlay changed (None without one)."""
    return {
        "studies": {s: study_figures(s) for s in PLAN.runnable_studies},
        "skipped": dict(PLAN.skipped_studies),
        "overlay": PLAN.overlay_summary(),
    }


def report_targets():
    return [f"{paths.RESULTS}/summary.md"]


# ---- audit (audit.smk) ----
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
    return [hccrad_studies.study_dir(s) for s in PLAN.runnable_studies]


def get_audit_inputs(wildcards):
    """The sheets, the radiomics tables and every other target of the run: the audit runs last,
    so that its manifest and privacy scan see every result."""
    inputs = {
        "cohort": str(SETTINGS.cohort),
        "clinical": str(SETTINGS.clinical),
        "features": paths.cohort_path("radiomics", "features.parquet"),
        "results": [*get_final_targets(), *study_targets(), *deep_model_targets()],
    }
    if PLAN.reader2_patients:
        inputs["reader_icc"] = paths.cohort_path("radiomics", "reader_icc.parquet")
    if PLAN.reader1_repeat_patients:
        inputs["reader_icc_intra"] = paths.cohort_path(
            "radiomics", "reader_icc_intra.parquet"
        )
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
