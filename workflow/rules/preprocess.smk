# Preprocessing, one job per patient (hccrad.patient; docs/methods.md): every phase converted,
# resampled, bias-corrected (MR) and rigidly registered onto the reference phase, the sheet's
# masks carried there; then every phase normalised, its index lesion and peritumoral ring, the
# deep-learning input tensors and the patient's QC figure. A patient whose masks are all given
# takes one job (preprocess_patient); one whose masks the U-Net predicts takes two
# (register_patient, then normalize_patient once segment_patient has run). Each stage declares
# its manifest (the files it wrote, hccrad.manifest) as output.


ruleorder: register_patient > preprocess_patient
ruleorder: normalize_patient > preprocess_patient


rule preprocess_patient:
    input:
        unpack(get_register_inputs),
    output:
        registration=paths.patient_path("register", "manifest.json"),
        normalization=paths.patient_path("normalize", "manifest.json"),
        png=report(
            paths.patient_path("qc", "qc.png"),
            caption=caption("patient_qc"),
            category="Preprocessing QC",
            subcategory="Per-patient QC",
            labels={"center": "{center}", "patient": "{patient}"},
        ),
        json=paths.patient_path("qc", "qc.json"),
    log:
        paths.log_path("preprocess_patient", "{center}", "{patient}"),
    benchmark:
        paths.benchmark_path("preprocess_patient", "{center}", "{patient}")
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=90,
    params:
        **(REGISTER_PARAMS | NORMALIZE_PARAMS),
    script:
        "../scripts/preprocess_patient.py"


rule register_patient:
    input:
        unpack(get_register_inputs),
    output:
        manifest=paths.patient_path("register", "manifest.json"),
    log:
        paths.log_path("register_patient", "{center}", "{patient}"),
    benchmark:
        paths.benchmark_path("register_patient", "{center}", "{patient}")
    wildcard_constraints:
        patient=SEGMENTED_PATIENTS,
    priority: CHAIN_PRIORITY
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        **REGISTER_PARAMS,
    script:
        "../scripts/register_patient.py"


rule normalize_patient:
    input:
        unpack(get_predicted_masks),
        registration=paths.patient_path("register", "manifest.json"),
    output:
        manifest=paths.patient_path("normalize", "manifest.json"),
        png=report(
            paths.patient_path("qc", "qc.png"),
            caption=caption("patient_qc"),
            category="Preprocessing QC",
            subcategory="Per-patient QC",
            labels={"center": "{center}", "patient": "{patient}"},
        ),
        json=paths.patient_path("qc", "qc.json"),
    log:
        paths.log_path("normalize_patient", "{center}", "{patient}"),
    benchmark:
        paths.benchmark_path("normalize_patient", "{center}", "{patient}")
    wildcard_constraints:
        patient=SEGMENTED_PATIENTS,
    priority: CHAIN_PRIORITY
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        **NORMALIZE_PARAMS,
    script:
        "../scripts/normalize_patient.py"
