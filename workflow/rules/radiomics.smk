# Whole-region radiomics (PyRadiomics), one job per patient (every phase, both readers and reader
# 1's repeat outline where given), then the cohort feature table, the inter-reader ICC table and,
# when the sheet gives repeat outlines, the intra-observer ICC table: with the modality's default parameter file
# (config radiomics.params) for every radiomics patient, and with each parameter file that a
# study names (its radiomics.params; wildcard {params}: the file's name) for the patients of that
# study's modality, once however many studies name it (results/.../radiomics/{params}/).


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
    params:
        second="reader2",
    script:
        "../scripts/compute_reader_icc.py"


# reader 1 against reader 1's repeat outline, from the same extraction jobs
use rule compute_reader_icc as compute_reader_icc_intra with:
    input:
        json=get_reader_icc_intra_jsons(),
    output:
        icc=paths.cohort_path("radiomics", "reader_icc_intra.parquet"),
    log:
        paths.log_path("compute_reader_icc_intra"),
    benchmark:
        paths.benchmark_path("compute_reader_icc_intra")
    params:
        second="reader1_repeat",


# The studies' own parameter files: the same jobs, one results folder per file.
use rule extract_radiomics as extract_study_radiomics with:
    input:
        unpack(get_study_radiomics_inputs),
    output:
        json=paths.patient_path("radiomics", "{params}/features.json"),
    log:
        paths.log_path("extract_study_radiomics", "{params}", "{center}", "{patient}"),
    benchmark:
        paths.benchmark_path(
            "extract_study_radiomics", "{params}", "{center}", "{patient}"
        )
    params:
        # only the phases and regions that the studies reading the file take
        phases=lambda w: PLAN.radiomics_params_phases(w.patient, w.params),
        reference=lambda w: modality_of(w).reference_phase,
        stage=lambda w: SETTINGS.radiomics_stage[COHORT.modality(w.patient)],
        regions=lambda w: PLAN.radiomics_params_regions(w.params),


use rule aggregate_radiomics as aggregate_study_radiomics with:
    input:
        json=get_study_radiomics_jsons,
    output:
        features=radiomics_table("features.parquet", "{params}"),
        diagnostics=radiomics_table("diagnostics.parquet", "{params}"),
    log:
        paths.log_path("aggregate_study_radiomics", "{params}"),
    benchmark:
        paths.benchmark_path("aggregate_study_radiomics", "{params}")


# only for the files that a study with an ICC step reads
use rule compute_reader_icc as compute_study_reader_icc with:
    input:
        json=get_study_reader_icc_jsons,
    output:
        icc=radiomics_table("reader_icc.parquet", "{params}"),
    log:
        paths.log_path("compute_study_reader_icc", "{params}"),
    benchmark:
        paths.benchmark_path("compute_study_reader_icc", "{params}")


# only for the files that a study with an intra-observer ICC step reads
use rule compute_reader_icc as compute_study_reader_icc_intra with:
    input:
        json=get_study_reader_icc_intra_jsons,
    output:
        icc=radiomics_table("reader_icc_intra.parquet", "{params}"),
    log:
        paths.log_path("compute_study_reader_icc_intra", "{params}"),
    benchmark:
        paths.benchmark_path("compute_study_reader_icc_intra", "{params}")
    params:
        second="reader1_repeat",
