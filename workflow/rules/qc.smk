# Quality control: the cohort summary table and QC montage, from the per-patient QC figure and
# JSON that normalize_patient writes (preprocess.smk).


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
