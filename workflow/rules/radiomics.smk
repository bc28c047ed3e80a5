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
