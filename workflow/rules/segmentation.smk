# 3-D U-Net segmentation (liver + tumor): trained on patients with given masks (minus a held-out
# share), it predicts the masks of patients without them (segment_patient); Dice on the held-out
# patients (evaluate_segmentation).


rule train_segmentation:
    input:
        unpack(get_train_segmentation_inputs),
    output:
        checkpoint=paths.cohort_path("segmentation", "checkpoint.pt"),
        metrics=paths.cohort_path("segmentation", "metrics.json"),
        config=paths.cohort_path("segmentation", "config.json"),
    log:
        paths.log_path("train_segmentation"),
    benchmark:
        paths.benchmark_path("train_segmentation")
    priority: CHAIN_PRIORITY
    conda:
        DEEP_ENV
    threads: SEGMENTATION.threads
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=SEGMENTATION_GPUS,
        cpus_per_gpu=SEGMENTATION_CPUS_PER_GPU,
    params:
        # listed so that changing them retrains
        train=SEGMENTATION.train,
        holdout=SEGMENTATION.holdout_fraction,
        seed=SETTINGS.seed,
        references=lambda w: reference_phases(PLAN.segmentation.train),
        phases=lambda w: phase_orders(PLAN.segmentation.train),
    script:
        "../scripts/train_segmentation.py"


rule segment_patient:
    input:
        checkpoint=segmentation_checkpoint(),
        registration=paths.patient_path("register", "manifest.json"),
    output:
        liver=paths.image_path("segment", "liver.nii.gz"),
        tumor=paths.image_path("segment", "tumor.nii.gz"),
    log:
        paths.log_path("segment_patient", "{center}", "{patient}", "{phase}"),
    benchmark:
        paths.benchmark_path("segment_patient", "{center}", "{patient}", "{phase}")
    priority: CHAIN_PRIORITY
    conda:
        DEEP_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/segment_patient.py"


# The held-out patients are segmented here, in one job (their masks are given, the predictions
# only feed the Dice): one torch import and model load instead of one per patient.
rule evaluate_segmentation:
    input:
        unpack(get_evaluate_segmentation_inputs),
    output:
        dice=paths.cohort_path("segmentation", "dice.parquet"),
        predictions=directory(paths.cohort_path("segmentation", "heldout")),
    log:
        paths.log_path("evaluate_segmentation"),
    benchmark:
        paths.benchmark_path("evaluate_segmentation")
    conda:
        DEEP_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        references=lambda w: reference_phases(PLAN.segmentation.held_out),
        phases=lambda w: phase_orders(PLAN.segmentation.held_out),
    script:
        "../scripts/evaluate_segmentation.py"
