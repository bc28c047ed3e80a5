# Ingestion: every image (DICOM series, NRRD, NIfTI) becomes a NIfTI with the same geometry.


rule convert_image:
    input:
        image=get_raw_image,
    output:
        image=intermediate(paths.image_path("convert", "image.nii.gz")),
    log:
        paths.log_path("convert_image", "{center}", "{patient}", "{phase}"),
    benchmark:
        paths.benchmark_path("convert_image", "{center}", "{patient}", "{phase}")
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/convert_image.py"
