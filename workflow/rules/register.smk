# Rigid registration of every phase onto the modality's reference phase (antspyx), and masks
# carried into that space.


rule register_phase:
    input:
        fixed=get_reference_image,
        moving=get_prereg_image,
    output:
        image=paths.image_path("register", "image.nii.gz"),
        transform=paths.image_path("register", "transform.tfm"),
        info=paths.image_path("register", "registration.json"),
    log:
        paths.log_path("register_phase", "{center}", "{patient}", "{phase}"),
    benchmark:
        paths.benchmark_path("register_phase", "{center}", "{patient}", "{phase}")
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        is_reference=is_reference_phase,
        method=SETTINGS.registration_method,
        refine=SETTINGS.registration_refine,
        seed=SETTINGS.seed,
    script:
        "../scripts/register_phase.py"


rule carry_mask:
    input:
        mask=get_raw_mask,
        image=paths.image_path("convert", "image.nii.gz"),
        grid=paths.image_path("register", "image.nii.gz"),
        transform=paths.image_path("register", "transform.tfm"),
    output:
        mask=paths.image_path("register", "{kind}.nii.gz"),
    log:
        paths.log_path("carry_mask", "{center}", "{patient}", "{phase}", "{kind}"),
    benchmark:
        paths.benchmark_path("carry_mask", "{center}", "{patient}", "{phase}", "{kind}")
    conda:
        PREPROCESS_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/carry_mask.py"
