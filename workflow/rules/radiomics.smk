# Whole-region radiomics (PyRadiomics) per patient x phase, then the cohort feature table.


rule extract_radiomics:
    input:
        unpack(get_radiomics_inputs),
    output:
        json=paths.image_path("radiomics", "features.json"),
    log:
        paths.log_path("extract_radiomics", "{center}", "{patient}", "{phase}"),
    benchmark:
        paths.benchmark_path("extract_radiomics", "{center}", "{patient}", "{phase}")
    conda:
        RADIOMICS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
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


rule extract_reader2_radiomics:
    input:
        unpack(get_reader2_radiomics_inputs),
    output:
        json=paths.image_path("radiomics", "reader2.json"),
    log:
        paths.log_path("extract_reader2_radiomics", "{center}", "{patient}", "{phase}"),
    benchmark:
        paths.benchmark_path(
            "extract_reader2_radiomics", "{center}", "{patient}", "{phase}"
        )
    conda:
        RADIOMICS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/extract_reader2_radiomics.py"


rule compute_reader_icc:
    input:
        reader1=get_reader_icc_jsons("features"),
        reader2=get_reader_icc_jsons("reader2"),
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
