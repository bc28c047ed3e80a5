# Per-image intensity and geometry preprocessing: resampling, N4 (MR), normalisation.


rule resample_image:
    input:
        image=paths.image_path("convert", "image.nii.gz"),
    output:
        image=intermediate(paths.image_path("resample", "image.nii.gz")),
    log:
        paths.log_path("resample_image", "{center}", "{patient}", "{phase}"),
    benchmark:
        paths.benchmark_path("resample_image", "{center}", "{patient}", "{phase}")
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spacing=SETTINGS.spacing,
    script:
        "../scripts/resample_image.py"


rule correct_bias_n4:
    input:
        unpack(get_n4_mask_inputs),
        image=paths.image_path("resample", "image.nii.gz"),
    output:
        image=intermediate(paths.image_path("n4", "image.nii.gz")),
        bias=paths.image_path("n4", "bias.nii.gz"),
    log:
        paths.log_path("correct_bias_n4", "{center}", "{patient}", "{phase}"),
    benchmark:
        paths.benchmark_path("correct_bias_n4", "{center}", "{patient}", "{phase}")
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        shrink_factor=SETTINGS.n4_shrink_factor,
        iterations=SETTINGS.n4_iterations,
        convergence_threshold=SETTINGS.n4_convergence_threshold,
        spline_distance_mm=SETTINGS.n4_spline_distance_mm,
    script:
        "../scripts/correct_bias_n4.py"


rule normalize_intensity:
    input:
        unpack(get_liver_mask),
        image=paths.image_path("register", "image.nii.gz"),
    output:
        image=paths.image_path("normalize", "image.nii.gz"),
    log:
        paths.log_path("normalize_intensity", "{center}", "{patient}", "{phase}"),
    benchmark:
        paths.benchmark_path("normalize_intensity", "{center}", "{patient}", "{phase}")
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        normalization=get_normalization,
    script:
        "../scripts/normalize_intensity.py"
