# Deep-learning inputs: per-patient tensors (.npz) named in config deep.inputs (docs/methods.md).


rule build_deep_input:
    input:
        unpack(get_deep_image_input),
    output:
        npz=paths.image_path("deep", "{input}.npz"),
    log:
        paths.log_path(
            "build_deep_input", "{center}", "{patient}", "{phase}", "{input}"
        ),
    benchmark:
        paths.benchmark_path(
            "build_deep_input", "{center}", "{patient}", "{phase}", "{input}"
        )
    conda:
        DEEP_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # listed so that changing the input's definition rebuilds it
        spec=lambda w: repr(DEEP_INPUTS[w.input]),
        scale=lambda w: SETTINGS.modality(
            COHORT.modality(w.patient)
        ).normalization.unit_scale,
    script:
        "../scripts/build_deep_input.py"


rule build_deep_stack:
    input:
        unpack(get_deep_stack_input),
    output:
        npz=paths.patient_path("deep", "{input}.npz"),
    log:
        paths.log_path("build_deep_stack", "{center}", "{patient}", "{input}"),
    benchmark:
        paths.benchmark_path("build_deep_stack", "{center}", "{patient}", "{input}")
    conda:
        DEEP_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # listed so that changing the input's definition rebuilds it
        spec=lambda w: repr(DEEP_INPUTS[w.input]),
        scale=lambda w: SETTINGS.modality(
            COHORT.modality(w.patient)
        ).normalization.unit_scale,
    script:
        "../scripts/build_deep_input.py"


rule train_deep_model:
    input:
        unpack(get_train_deep_inputs),
    output:
        checkpoint=deep_model_path("{study}", "{model}", "checkpoint.pt"),
        metrics=deep_model_path("{study}", "{model}", "metrics.json"),
        curves=report(
            deep_model_path("{study}", "{model}", "curves.png"),
            caption=caption("deep_curves"),
            category=get_study_category,
            subcategory="Deep models (training)",
            labels={"model": "{model}"},
        ),
        config=deep_model_path("{study}", "{model}", "config.json"),
        patients=deep_model_path("{study}", "{model}", "patients.json"),
    log:
        paths.log_path("train_deep_model", "{study}", "{model}"),
    benchmark:
        paths.benchmark_path("train_deep_model", "{study}", "{model}")
    conda:
        DEEP_ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=DEEP_TRAIN_GPUS,
    params:
        # listed so that changing the model's definition retrains it
        spec=lambda w: deep_model_spec(w.study, w.model),
        label=lambda w: STUDIES[w.study].label,
        seed=SETTINGS.seed,
    script:
        "../scripts/train_deep_model.py"


rule deep_model_outputs:
    input:
        unpack(get_deep_outputs_inputs),
    output:
        features=deep_model_path("{study}", "{model}", "features.parquet"),
        predictions=deep_model_path("{study}", "{model}", "predictions.parquet"),
        mil=deep_model_path("{study}", "{model}", "mil_features.parquet"),
        gradcam=report(
            directory(deep_model_path("{study}", "{model}", "gradcam")),
            patterns=["{name}.png"],
            caption=caption("deep_gradcam"),
            category=get_study_category,
            subcategory="Deep models (Grad-CAM)",
            labels={"model": "{model}", "patient": "{name}"},
        ),
    log:
        paths.log_path("deep_model_outputs", "{study}", "{model}"),
    benchmark:
        paths.benchmark_path("deep_model_outputs", "{study}", "{model}")
    conda:
        DEEP_ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        spec=lambda w: deep_model_spec(w.study, w.model),
    script:
        "../scripts/deep_model_outputs.py"
