# Quality control: one figure and one JSON per patient, then the cohort summary and montage.


rule plot_patient_qc:
    input:
        unpack(get_patient_qc_inputs),
    output:
        png=report(
            paths.patient_path("qc", "qc.png"),
            caption=caption("patient_qc"),
            category="Preprocessing QC",
            subcategory="Per-patient QC",
            labels={"center": "{center}", "patient": "{patient}"},
        ),
        json=paths.patient_path("qc", "qc.json"),
    log:
        paths.log_path("plot_patient_qc", "{center}", "{patient}"),
    benchmark:
        paths.benchmark_path("plot_patient_qc", "{center}", "{patient}")
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        modality=get_modality_name,
    script:
        "../scripts/plot_patient_qc.py"


rule summarize_preprocessing:
    input:
        json=patient_targets("qc", "qc.json"),
        png=patient_targets("qc", "qc.png"),
    output:
        table=paths.cohort_path("preprocess", "summary.parquet"),
        montage=report(
            paths.cohort_path("preprocess", "qc_montage.png"),
            caption=caption("qc_montage"),
            category="Preprocessing QC",
            subcategory="Cohort",
        ),
    log:
        paths.log_path("summarize_preprocessing"),
    benchmark:
        paths.benchmark_path("summarize_preprocessing")
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        per_row=SETTINGS.montage_per_row,
    script:
        "../scripts/summarize_preprocessing.py"
