# Deep models of the studies: training (a GPU job where the cluster has one; one network, or a
# bundle of one per habitat subregion or per listed phase) and per-patient
# deep features, predictions, MIL features, the network's metrics per split and Grad-CAM (or
# Score-CAM) overlays. The input tensors (.npz, config deep.inputs, docs/methods.md) are built
# per patient by normalize_patient (preprocess.smk), the per-habitat-subregion ones (region:
# habitats) by assign_habitats (habitats.smk).


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
    priority: CHAIN_PRIORITY
    conda:
        DEEP_ENV
    threads: DEEP_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=DEEP_TRAIN_GPUS,
        cpus_per_gpu=DEEP_TRAIN_CPUS_PER_GPU,
    params:
        # listed so that changing the model's definition retrains it
        spec=lambda w: PLAN.deep_model_spec(w.study, w.model),
        input_key=lambda w: PLAN.deep_model_input(w.study, w.model).key,
        label=lambda w: STUDIES[w.study].label,
        seed=SETTINGS.seed,
        # one network per habitat subregion (a region: habitats input)
        per_subregion=lambda w: PLAN.deep_model_input(
            w.study, w.model
        ).spec.per_subregion,
        # one network per phase (the model's phases): {phase: manifest key}, else empty
        phase_keys=lambda w: PLAN.deep_model_input(w.study, w.model).phase_keys,
    script:
        "../scripts/train_deep_model.py"


rule deep_model_outputs:
    input:
        unpack(get_deep_outputs_inputs),
    output:
        features=deep_model_path("{study}", "{model}", "features.parquet"),
        predictions=deep_model_path("{study}", "{model}", "predictions.parquet"),
        mil=deep_model_path("{study}", "{model}", "mil_features.parquet"),
        # the network's own AUC (CI), accuracy, sensitivity, specificity per split (per slice
        # for MIL models: the MIL study's slice-level table); empty for bundles
        split_metrics=deep_model_path("{study}", "{model}", "split_metrics.parquet"),
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
    priority: CHAIN_PRIORITY
    conda:
        DEEP_ENV
    threads: DEEP_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        spec=lambda w: PLAN.deep_model_spec(w.study, w.model),
        input_key=lambda w: PLAN.deep_model_input(w.study, w.model).key,
        # {patient: normalize manifest} (inputs of train_deep_model)
        manifests=lambda w: deep_model_inputs(w.study, w.model),
        label=lambda w: STUDIES[w.study].label,
        per_subregion=lambda w: PLAN.deep_model_input(
            w.study, w.model
        ).spec.per_subregion,
        phase_keys=lambda w: PLAN.deep_model_input(w.study, w.model).phase_keys,
    script:
        "../scripts/deep_model_outputs.py"
