# Whole-region radiomics (PyRadiomics), one job per patient (every phase, both readers), then the
# cohort feature table and the inter-reader ICC table.


rule extract_radiomics:
    input:
        unpack(get_radiomics_inputs),
    output:
        json=paths.patient_path("radiomics", "features.json"),
    log:
        paths.log_path("extract_radiomics", "{center}", "{patient}"),
    benchmark:
        paths.benchmark_path("extract_radiomics", "{center}", "{patient}")
    conda:
        RADIOMICS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        phases=lambda w: COHORT.phases(w.patient),
        reference=lambda w: modality_of(w).reference_phase,
        stage=lambda w: SETTINGS.radiomics_stage[COHORT.modality(w.patient)],
        regions=SETTINGS.radiomics_regions,
    script:
        "../scripts/extract_radiomics.py"


rule aggregate_radiomics:
    input:
        json=get_radiomics_jsons(),
    output:
        features=paths.cohort_path("radiomics", "features.parquet"),
        diagnostics=paths.cohort_path("radiomics", "diagnostics.parquet"),
    log:
        paths.log_path("aggregate_radiomics"),
    benchmark:
        paths.benchmark_path("aggregate_radiomics")
    conda:
        RADIOMICS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/aggregate_radiomics.py"


rule compute_reader_icc:
    input:
        json=get_reader_icc_jsons(),
    output:
        icc=paths.cohort_path("radiomics", "reader_icc.parquet"),
    log:
        paths.log_path("compute_reader_icc"),
    benchmark:
        paths.benchmark_path("compute_reader_icc")
    conda:
        RADIOMICS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/compute_reader_icc.py"
