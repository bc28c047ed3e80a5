# Analysis regions in the registered space: index lesion and peritumoral ring.


rule make_tumor_regions:
    input:
        unpack(get_tumor_regions_inputs),
    output:
        index_tumor=paths.image_path("regions", "index_tumor.nii.gz"),
        ring=paths.image_path("regions", "ring.nii.gz"),
    log:
        paths.log_path("make_tumor_regions", "{center}", "{patient}", "{phase}"),
    benchmark:
        paths.benchmark_path("make_tumor_regions", "{center}", "{patient}", "{phase}")
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        distance_mm=SETTINGS.ring_distance_mm,
    script:
        "../scripts/make_tumor_regions.py"
